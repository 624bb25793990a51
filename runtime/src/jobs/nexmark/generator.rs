//! The Nexmark generator, pure: event number `n` to its event, the same for the same
//! [`GeneratorConfig`] on every machine and at every parallelism (each event has its own
//! random stream, seeded from the config's seed and `n`).
//!
//! The model is the Nexmark benchmark suite's: of every 50 events 1 is a new person, 3 are
//! new auctions and 46 are bids; event `n` happens at `base_time + n / rate`; ids are dense
//! from 1000 in order of creation. Sellers and bidders are mostly "hot": 3 of 4 auctions are
//! by the first person of the latest block of 100 people, 3 of 4 bids by the second; 1 of 2
//! bids is on the first auction of the latest block of 100 auctions; the others pick among the
//! last 1000 people and the 100 auctions in flight (plus a few ids not created yet). An
//! auction closes after a random time averaging the time 100 more auctions take to appear.

use super::model::{Auction, Bid, Event, Person};

/// Persons among every [`TOTAL_PROPORTION`] events.
pub const PERSON_PROPORTION: u64 = 1;
/// Auctions among every [`TOTAL_PROPORTION`] events.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bids among every [`TOTAL_PROPORTION`] events.
pub const BID_PROPORTION: u64 = 46;
/// The length of the repeating person/auction/bid pattern.
pub const TOTAL_PROPORTION: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
/// The first person id.
pub const FIRST_PERSON_ID: u64 = 1000;
/// The first auction id.
pub const FIRST_AUCTION_ID: u64 = 1000;
/// The first category id; there are [`CATEGORIES`].
pub const FIRST_CATEGORY_ID: u64 = 10;
/// Number of categories.
pub const CATEGORIES: u64 = 5;
/// The four named bid channels; other bids come from `channel-N`.
pub const NAMED_CHANNELS: [&str; 4] = ["Apple", "Google", "Facebook", "Baidu"];

/// Size of the id blocks whose first member is hot.
const HOT_BLOCK: u64 = 100;
/// 1 in this many auctions is by a random seller, the others by the hot one.
const HOT_SELLER_ODDS: u64 = 4;
/// 1 in this many bids is on a random auction, the others on the hot one.
const HOT_AUCTION_ODDS: u64 = 2;
/// 1 in this many bids is by a random bidder, the others by the hot one.
const HOT_BIDDER_ODDS: u64 = 4;
/// Auctions open at a time.
const IN_FLIGHT_AUCTIONS: u64 = 100;
/// People who sell and bid.
const ACTIVE_PEOPLE: u64 = 1000;
/// Ids not created yet that a random pick may return.
const ID_LEAD: u64 = 10;
/// Average record sizes the `extra` field pads to, bytes.
const PERSON_BYTES: usize = 200;
const AUCTION_BYTES: usize = 500;
const BID_BYTES: usize = 100;

const FIRST_NAMES: [&str; 10] = [
    "Ada", "Bruno", "Chen", "Dana", "Emil", "Farah", "Greta", "Hugo", "Ines", "Jonas",
];
const LAST_NAMES: [&str; 8] = [
    "Keller", "Lind", "Moreau", "Novak", "Okafor", "Petrov", "Quist", "Rossi",
];
const CITIES: [&str; 10] = [
    "Phoenix", "Tucson", "Fresno", "Oakland", "Boise", "Eugene", "Salem", "Tacoma", "Spokane",
    "Casper",
];
const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GeneratorConfig {
    /// Seed of every event's random stream.
    pub seed: u64,
    /// Events per second of event time (> 0): event `n` happens `n / rate` s after the first.
    pub events_per_second: u64,
    /// Event time of event 0, ms since the epoch.
    pub base_time_ms: i64,
    /// Number of events (event numbers `0..events`).
    pub events: u64,
}

impl GeneratorConfig {
    /// Event time of event `n`, ms since the epoch.
    pub fn timestamp(&self, n: u64) -> i64 {
        let offset = (u128::from(n) * 1000) / u128::from(self.events_per_second.max(1));
        self.base_time_ms
            .saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
    }

    /// Event `n`.
    pub fn event(&self, n: u64) -> Event {
        let mut rng = Rng::for_event(self.seed, n);
        let ts = self.timestamp(n);
        match n % TOTAL_PROPORTION {
            r if r < PERSON_PROPORTION => Event::Person(self.person(n, ts, &mut rng)),
            r if r < PERSON_PROPORTION + AUCTION_PROPORTION => {
                Event::Auction(self.auction(n, ts, &mut rng))
            }
            _ => Event::Bid(self.bid(n, ts, &mut rng)),
        }
    }

    fn person(&self, n: u64, ts: i64, rng: &mut Rng) -> Person {
        let name = format!("{} {}", rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES));
        let email_address = format!("{}@{}.com", rng.string(7), rng.string(5));
        let credit_card = (0..4)
            .map(|_| format!("{:04}", rng.below(10_000)))
            .collect::<Vec<_>>()
            .join(" ");
        let city = rng.pick(&CITIES).to_string();
        let state = rng.pick(&STATES).to_string();
        let size = 8 + name.len() + email_address.len() + credit_card.len() + city.len() + 2;
        Person {
            id: last_person(n) + FIRST_PERSON_ID,
            extra: rng.extra(size, PERSON_BYTES),
            name,
            email_address,
            credit_card,
            city,
            state,
            date_time: ts,
        }
    }

    fn auction(&self, n: u64, ts: i64, rng: &mut Rng) -> Auction {
        let seller = if rng.below(HOT_SELLER_ODDS) > 0 {
            (last_person(n) / HOT_BLOCK) * HOT_BLOCK
        } else {
            random_person(n, rng)
        };
        let category = FIRST_CATEGORY_ID + rng.below(CATEGORIES);
        let initial_bid = rng.price();
        // Long enough on average for IN_FLIGHT_AUCTIONS more auctions to open meanwhile.
        let ahead = IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION;
        let horizon = (self.timestamp(n + ahead) - ts).max(0) as u64;
        let expires = ts + 1 + rng.below((horizon * 2).max(1)) as i64;
        let item_name = rng.string(20);
        let description = rng.string(100);
        let reserve = initial_bid + rng.price();
        let size = 8 + item_name.len() + description.len() + 5 * 8;
        Auction {
            id: last_auction(n).max(0) as u64 + FIRST_AUCTION_ID,
            extra: rng.extra(size, AUCTION_BYTES),
            item_name,
            description,
            initial_bid,
            reserve,
            date_time: ts,
            expires,
            seller: seller + FIRST_PERSON_ID,
            category,
        }
    }

    fn bid(&self, n: u64, ts: i64, rng: &mut Rng) -> Bid {
        let last = last_auction(n).max(0) as u64;
        let auction = if rng.below(HOT_AUCTION_ODDS) > 0 {
            (last / HOT_BLOCK) * HOT_BLOCK
        } else {
            let min = last.saturating_sub(IN_FLIGHT_AUCTIONS);
            min + rng.below(last - min + 1 + ID_LEAD)
        };
        let bidder = if rng.below(HOT_BIDDER_ODDS) > 0 {
            (last_person(n) / HOT_BLOCK) * HOT_BLOCK + 1
        } else {
            random_person(n, rng)
        };
        let price = rng.price();
        let (channel, channel_id) = if rng.below(10) < 6 {
            (rng.pick(&NAMED_CHANNELS).to_string(), None)
        } else {
            let id = rng.below(10_000);
            (format!("channel-{id}"), Some(id))
        };
        let mut url = format!(
            "https://www.nexmark.com/{}/{}/{}/item.htm?query=1",
            rng.string(5),
            rng.string(5),
            rng.string(5)
        );
        if let Some(id) = channel_id {
            url.push_str(&format!("&channel_id={id}"));
        }
        Bid {
            auction: auction + FIRST_AUCTION_ID,
            bidder: bidder + FIRST_PERSON_ID,
            price,
            extra: rng.extra(32, BID_BYTES),
            channel,
            url,
            date_time: ts,
        }
    }
}

/// The id (from 0) of the latest person created at or before event `n`.
fn last_person(n: u64) -> u64 {
    let (epoch, offset) = (n / TOTAL_PROPORTION, n % TOTAL_PROPORTION);
    let offset = if offset < PERSON_PROPORTION {
        offset
    } else {
        // An auction or a bid: the block's last person.
        PERSON_PROPORTION - 1
    };
    epoch * PERSON_PROPORTION + offset
}

/// The id (from 0) of the latest auction created at or before event `n`; -1 before the first.
fn last_auction(n: u64) -> i64 {
    let (epoch, offset) = ((n / TOTAL_PROPORTION) as i64, n % TOTAL_PROPORTION);
    if offset < PERSON_PROPORTION {
        // A person: the last auction of the previous block.
        (epoch - 1) * AUCTION_PROPORTION as i64 + AUCTION_PROPORTION as i64 - 1
    } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
        epoch * AUCTION_PROPORTION as i64 + (offset - PERSON_PROPORTION) as i64
    } else {
        epoch * AUCTION_PROPORTION as i64 + AUCTION_PROPORTION as i64 - 1
    }
}

/// A random active person (from 0), possibly one not created yet.
fn random_person(n: u64, rng: &mut Rng) -> u64 {
    let people = last_person(n) + 1;
    let active = people.min(ACTIVE_PEOPLE);
    people - active + rng.below(active + ID_LEAD)
}

/// SplitMix64: one random stream per event.
struct Rng(u64);

impl Rng {
    fn for_event(seed: u64, n: u64) -> Self {
        let mut r = Rng(seed ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }

    /// A price in cents, log-uniform between $0.01 and $10,000.
    fn price(&mut self) -> u64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (10f64.powf(unit * 6.0) * 100.0).round() as u64
    }

    /// Lowercase letters and spaces, 1 to `max` of them, not starting or ending with a space.
    fn string(&mut self, max: usize) -> String {
        let len = 1 + self.below(max as u64) as usize;
        self.exactly(len)
    }

    fn exactly(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        for i in 0..len {
            let c = self.below(27);
            if c == 26 && i > 0 && i + 1 < len {
                s.push(' ');
            } else {
                s.push((b'a' + (c % 26) as u8) as char);
            }
        }
        s
    }

    /// Padding for a record of `size` bytes to average `average`: 80 to 120 % of the gap.
    fn extra(&mut self, size: usize, average: usize) -> String {
        if size >= average {
            return String::new();
        }
        let gap = average - size;
        let len = gap * 4 / 5 + self.below((gap * 2 / 5 + 1) as u64) as usize;
        self.exactly(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GeneratorConfig {
        GeneratorConfig {
            seed: 7,
            events_per_second: 10_000,
            base_time_ms: 1_700_000_000_000,
            events: 100_000,
        }
    }

    #[test]
    fn of_every_50_events_1_is_a_person_3_are_auctions_and_46_are_bids() {
        let c = config();
        let (mut p, mut a, mut b) = (0, 0, 0);
        for n in 0..5_000 {
            match c.event(n) {
                Event::Person(_) => p += 1,
                Event::Auction(_) => a += 1,
                Event::Bid(_) => b += 1,
            }
        }
        assert_eq!((p, a, b), (100, 300, 4_600));
    }

    #[test]
    fn events_depend_only_on_the_seed_and_their_number() {
        let c = config();
        assert_eq!(c.event(12_345), c.event(12_345));
        let other = GeneratorConfig { seed: 8, ..c };
        assert_ne!(c.event(12_345), other.event(12_345));
    }

    #[test]
    fn ids_are_dense_in_creation_order_and_time_follows_the_rate() {
        let c = config();
        let mut persons = Vec::new();
        let mut auctions = Vec::new();
        for n in 0..1_000 {
            match c.event(n) {
                Event::Person(p) => persons.push(p.id),
                Event::Auction(a) => {
                    assert!(a.expires > a.date_time);
                    assert!(
                        (FIRST_CATEGORY_ID..FIRST_CATEGORY_ID + CATEGORIES).contains(&a.category)
                    );
                    assert!(a.reserve > a.initial_bid);
                    auctions.push(a.id);
                }
                Event::Bid(b) => {
                    assert!(b.auction >= FIRST_AUCTION_ID && b.auction < FIRST_AUCTION_ID + 70);
                    assert_eq!(
                        NAMED_CHANNELS.contains(&b.channel.as_str()),
                        !b.url.contains("channel_id="),
                        "{b:?}"
                    );
                }
            }
        }
        assert_eq!(persons, (1000..1020).collect::<Vec<_>>());
        assert_eq!(auctions, (1000..1060).collect::<Vec<_>>());
        assert_eq!(c.timestamp(0), c.base_time_ms);
        assert_eq!(c.timestamp(10_000), c.base_time_ms + 1_000);
        assert_eq!(c.event(25).clone(), c.event(25));
    }

    #[test]
    fn most_bids_go_to_hot_auctions_and_records_average_the_model_sizes() {
        let c = config();
        let mut hot = 0;
        let mut bids = 0;
        let mut bid_bytes = 0u64;
        for n in 0..50_000 {
            if let Event::Bid(b) = c.event(n) {
                bids += 1;
                hot += u64::from((b.auction - FIRST_AUCTION_ID).is_multiple_of(HOT_BLOCK));
                bid_bytes += 32 + b.extra.len() as u64;
            }
        }
        assert!(hot * 100 / bids >= 45, "{hot} of {bids} on hot auctions");
        let avg = bid_bytes / bids;
        assert!((90..=110).contains(&avg), "average bid size {avg}");
    }
}
