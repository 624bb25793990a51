//! q18 (the last bid per bidder and auction: deduplication) and q19 (the 10 highest bids per
//! auction: top-N). Both are updating results, written as upserts: every line replaces the
//! earlier line with the same upsert key (q18: bidder and auction; q19: auction and rank), so
//! the last line per key is the result (Flink's `ROW_NUMBER` queries emit the same updates as
//! retractions).

use std::fmt::Write;

use super::model::{push_sql_timestamp, Bid};
use crate::api::{
    Context, KeyedProcessFunction, OpenContext, Output, TaskError, ValueStateDescriptor,
};

/// How many bids q19 keeps per auction.
pub const TOP_N: usize = 10;

/// `auction,bidder,price,channel,url,dateTime,extra`: the bid's columns as q18 and q19 write
/// them.
pub fn bid_columns(b: &Bid) -> String {
    let mut s = String::with_capacity(96 + b.channel.len() + b.url.len() + b.extra.len());
    push_bid_columns(b, &mut s);
    s
}

/// Appends [`bid_columns`]`(b)` to `out`.
pub fn push_bid_columns(b: &Bid, out: &mut String) {
    let _ = write!(
        out,
        "{},{},{},{},{},",
        b.auction, b.bidder, b.price, b.channel, b.url
    );
    push_sql_timestamp(b.date_time, out);
    out.push(',');
    out.push_str(&b.extra);
}

const LATEST: ValueStateDescriptor<i64> = ValueStateDescriptor::new("latest-bid-time");

/// q18: per (bidder, auction), each bid at or after the latest time seen so far (Flink's
/// keep-last-row deduplication on event time: among bids at the same time, the later arrival
/// wins).
#[derive(Clone)]
pub struct LastBid;

impl KeyedProcessFunction for LastBid {
    type Key = (u64, u64);
    type In = Bid;
    type Out = Bid;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&LATEST)
    }

    fn process_element(
        &mut self,
        bid: Bid,
        ctx: &mut Context<'_, (u64, u64)>,
        out: &mut Output<'_, Bid>,
    ) -> Result<(), TaskError> {
        if ctx
            .value(&LATEST)
            .get()?
            .is_some_and(|latest| bid.date_time < latest)
        {
            return Ok(());
        }
        ctx.value(&LATEST).update(&bid.date_time)?;
        out.collect(bid)
    }
}

const TOP: ValueStateDescriptor<Vec<Bid>> = ValueStateDescriptor::new("top-bids");

/// Where `bid` goes among `top` (highest price first; among equal prices the earlier bid,
/// then the earlier arrival, first), or `None` when it is not among the first `n`.
pub fn rank_position(top: &[Bid], bid: &Bid, n: usize) -> Option<usize> {
    let at = top
        .iter()
        .position(|t| (bid.price, -bid.date_time) > (t.price, -t.date_time))
        .unwrap_or(top.len());
    (at < n).then_some(at)
}

/// q19: per auction its [`TOP_N`] highest bids; a bid entering them emits `(rank, bid)` for
/// itself and for each bid it moved down (ranks from 1).
#[derive(Clone)]
pub struct TopBids;

impl KeyedProcessFunction for TopBids {
    type Key = u64;
    type In = Bid;
    type Out = (usize, Bid);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&TOP)
    }

    fn process_element(
        &mut self,
        bid: Bid,
        ctx: &mut Context<'_, u64>,
        out: &mut Output<'_, (usize, Bid)>,
    ) -> Result<(), TaskError> {
        let mut top = ctx.value(&TOP).get()?.unwrap_or_default();
        let Some(at) = rank_position(&top, &bid, TOP_N) else {
            return Ok(());
        };
        top.insert(at, bid);
        top.truncate(TOP_N);
        for (i, b) in top.iter().enumerate().skip(at) {
            out.collect((i + 1, b.clone()))?;
        }
        ctx.value(&TOP).update(&top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(price: u64, date_time: i64) -> Bid {
        Bid {
            auction: 1,
            bidder: 2,
            price,
            channel: String::new(),
            url: String::new(),
            date_time,
            extra: String::new(),
        }
    }

    #[test]
    fn higher_prices_and_then_earlier_bids_rank_first() {
        let top = vec![bid(10, 5), bid(10, 7), bid(3, 1)];
        assert_eq!(rank_position(&top, &bid(11, 9), 10), Some(0));
        assert_eq!(rank_position(&top, &bid(10, 6), 10), Some(1));
        assert_eq!(rank_position(&top, &bid(10, 7), 10), Some(2));
        assert_eq!(rank_position(&top, &bid(1, 0), 10), Some(3));
        assert_eq!(rank_position(&top, &bid(1, 0), 3), None);
    }
}
