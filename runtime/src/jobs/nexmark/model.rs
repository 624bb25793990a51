//! Nexmark's records (an online auction): persons, auctions and bids, with the fields of the
//! Nexmark benchmark suite for Flink (`dateTime` and `expires` as ms since the epoch here; as
//! SQL timestamps `YYYY-MM-DD HH:MM:SS.mmm` in the JSON files of `weir nexmark generate`).

use serde::{Deserialize, Serialize};

/// A new person (a seller or a bidder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Person id, from 1000.
    pub id: u64,
    /// First and last name.
    pub name: String,
    /// E-mail address.
    pub email_address: String,
    /// Credit card number, four groups of four digits.
    pub credit_card: String,
    /// City.
    pub city: String,
    /// US state, two letters.
    pub state: String,
    /// Event time, ms since the epoch.
    pub date_time: i64,
    /// Padding to the model's average record size.
    pub extra: String,
}

/// A new auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    /// Auction id, from 1000.
    pub id: u64,
    /// Item name.
    pub item_name: String,
    /// Item description.
    pub description: String,
    /// Opening bid, in cents.
    pub initial_bid: u64,
    /// Reserve price, in cents (above the opening bid).
    pub reserve: u64,
    /// Event time, ms since the epoch.
    pub date_time: i64,
    /// When the auction closes, ms since the epoch (after `date_time`).
    pub expires: i64,
    /// The seller's person id.
    pub seller: u64,
    /// Category id, 10 to 14.
    pub category: u64,
    /// Padding to the model's average record size.
    pub extra: String,
}

/// A bid on an auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The auction's id.
    pub auction: u64,
    /// The bidder's person id.
    pub bidder: u64,
    /// Price, in cents.
    pub price: u64,
    /// Where the bid came from: `Google`, `Facebook`, `Baidu`, `Apple` or `channel-N`.
    pub channel: String,
    /// The page the bid was made on; other channels than the four named carry
    /// `&channel_id=N` in it.
    pub url: String,
    /// Event time, ms since the epoch.
    pub date_time: i64,
    /// Padding to the model's average record size.
    pub extra: String,
}

/// One Nexmark event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A new person.
    Person(Person),
    /// A new auction.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// Event time, ms since the epoch.
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }
}

/// `ms` as a SQL timestamp, `YYYY-MM-DD HH:MM:SS.mmm` in UTC (what Flink's JSON format reads
/// as `TIMESTAMP(3)`).
pub fn sql_timestamp(ms: i64) -> String {
    let mut s = String::with_capacity(23);
    push_sql_timestamp(ms, &mut s);
    s
}

/// Appends [`sql_timestamp`]`(ms)` to `out`. Written digit by digit: the queries print one or
/// two per output line, and a `strftime` pattern parsed per call was a tenth of q19's time.
/// Years outside 0..=9999 are written as the number of ms.
pub fn push_sql_timestamp(ms: i64, out: &mut String) {
    use chrono::{Datelike, Timelike};
    let Some(t) =
        chrono::DateTime::from_timestamp_millis(ms).filter(|t| (0..=9999).contains(&t.year()))
    else {
        out.push_str(&ms.to_string());
        return;
    };
    let mut b = *b"0000-00-00 00:00:00.000";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, t.year() as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    put(20, 3, t.timestamp_subsec_millis());
    out.push_str(std::str::from_utf8(&b).expect("invariant: ASCII digits"));
}

impl Person {
    /// The person as one line of JSON with the suite's field names.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "id": self.id, "name": self.name, "emailAddress": self.email_address,
            "creditCard": self.credit_card, "city": self.city, "state": self.state,
            "dateTime": sql_timestamp(self.date_time), "extra": self.extra,
        })
        .to_string()
    }
}

impl Auction {
    /// The auction as one line of JSON with the suite's field names.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "id": self.id, "itemName": self.item_name, "description": self.description,
            "initialBid": self.initial_bid, "reserve": self.reserve,
            "dateTime": sql_timestamp(self.date_time), "expires": sql_timestamp(self.expires),
            "seller": self.seller, "category": self.category, "extra": self.extra,
        })
        .to_string()
    }
}

impl Bid {
    /// The bid as one line of JSON with the suite's field names.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "auction": self.auction, "bidder": self.bidder, "price": self.price,
            "channel": self.channel, "url": self.url,
            "dateTime": sql_timestamp(self.date_time), "extra": self.extra,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_sql_timestamps_in_utc() {
        assert_eq!(sql_timestamp(0), "1970-01-01 00:00:00.000");
        assert_eq!(sql_timestamp(1_700_000_000_123), "2023-11-14 22:13:20.123");
        assert_eq!(sql_timestamp(-1), "1969-12-31 23:59:59.999");
        assert_eq!(
            sql_timestamp(253_402_300_799_999),
            "9999-12-31 23:59:59.999"
        );
        assert_eq!(sql_timestamp(253_402_300_800_000), "253402300800000");
    }
}
