//! q15, q16 and q17: the suite's daily statistics reports (unbounded group aggregates grouped
//! by day, with counts per price rank and distinct counts). Each group's row is final once the
//! watermark passes the end of its day, and is emitted then, once (Flink emits a changelog of
//! every update instead; its last row per group equals this one).
//!
//! Price ranks, as in the suite: rank 1 below 10,000, rank 2 from 10,000 to below 1,000,000,
//! rank 3 from 1,000,000 (cents).

use serde::{Deserialize, Serialize};

use super::model::{sql_timestamp, Bid};
use crate::api::{
    Context, KeyedProcessFunction, MapStateDescriptor, OpenContext, Output, TaskError, Timestamp,
    ValueStateDescriptor,
};

/// One day, ms.
pub const DAY_MS: i64 = 86_400_000;

/// The day of `ms` since the epoch (days since 1970-01-01, UTC).
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// `day` (days since the epoch) as `YYYY-MM-DD`.
pub fn day_string(day: i64) -> String {
    sql_timestamp(day * DAY_MS)[..10].to_string()
}

/// The price rank of `price` cents: 1, 2 or 3.
pub fn price_rank(price: u64) -> usize {
    match price {
        p if p < 10_000 => 1,
        p if p < 1_000_000 => 2,
        _ => 3,
    }
}

/// Counts per price rank: `[all, rank 1, rank 2, rank 3]`.
pub type RankCounts = [u64; 4];

/// q15's and q16's row for one group: bids, distinct bidders and distinct auctions, each as
/// [`RankCounts`], and the latest bid time (ms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BiddingStats {
    /// Bids.
    pub bids: RankCounts,
    /// Distinct bidders.
    pub bidders: RankCounts,
    /// Distinct auctions.
    pub auctions: RankCounts,
    /// The latest bid time of the group, ms.
    pub latest: i64,
}

impl BiddingStats {
    /// `bids..., bidders..., auctions...` as 12 comma-separated columns.
    pub fn columns(&self) -> String {
        let all: Vec<String> = [self.bids, self.bidders, self.auctions]
            .iter()
            .flatten()
            .map(u64::to_string)
            .collect();
        all.join(",")
    }
}

const STATS: ValueStateDescriptor<BiddingStats> = ValueStateDescriptor::new("bidding-stats");
/// Per bidder, the ranks (bit 0: any, bit r: rank r) it has bid in.
const BIDDER_RANKS: MapStateDescriptor<u64, u8> = MapStateDescriptor::new("bidder-ranks");
/// Per auction, the ranks it has been bid on in.
const AUCTION_RANKS: MapStateDescriptor<u64, u8> = MapStateDescriptor::new("auction-ranks");

/// Adds the bits of `mask` missing from `seen` to `counts`; the new mask.
fn count_new(seen: u8, mask: u8, counts: &mut RankCounts) -> u8 {
    for (r, c) in counts.iter_mut().enumerate() {
        if mask & !seen & (1 << r) != 0 {
            *c += 1;
        }
    }
    seen | mask
}

/// q15 and q16: bidding statistics per (channel, day) (q15 groups all channels under `""`),
/// emitted when the watermark passes the end of the day.
#[derive(Clone)]
pub struct BiddingReport;

impl KeyedProcessFunction for BiddingReport {
    type Key = (String, i64);
    type In = Bid;
    type Out = ((String, i64), BiddingStats);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&STATS)?;
        ctx.declare(&BIDDER_RANKS)?;
        ctx.declare(&AUCTION_RANKS)
    }

    fn process_element(
        &mut self,
        bid: Bid,
        ctx: &mut Context<'_, (String, i64)>,
        _out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        let mut stats = match ctx.value(&STATS).get()? {
            Some(s) => s,
            None => {
                let day = ctx.key().1;
                ctx.timer_service()
                    .register_event_time_timer((day + 1) * DAY_MS - 1)?;
                BiddingStats::default()
            }
        };
        let rank = price_rank(bid.price);
        let mask = 1 | (1 << rank);
        stats.bids[0] += 1;
        stats.bids[rank] += 1;
        stats.latest = stats.latest.max(bid.date_time);
        let seen = ctx.map(&BIDDER_RANKS).get(&bid.bidder)?.unwrap_or(0);
        if seen | mask != seen {
            let now = count_new(seen, mask, &mut stats.bidders);
            ctx.map(&BIDDER_RANKS).put(&bid.bidder, &now)?;
        }
        let seen = ctx.map(&AUCTION_RANKS).get(&bid.auction)?.unwrap_or(0);
        if seen | mask != seen {
            let now = count_new(seen, mask, &mut stats.auctions);
            ctx.map(&AUCTION_RANKS).put(&bid.auction, &now)?;
        }
        ctx.value(&STATS).update(&stats)
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        ctx: &mut Context<'_, (String, i64)>,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        let Some(stats) = ctx.value(&STATS).get()? else {
            return Ok(());
        };
        ctx.value(&STATS).clear()?;
        ctx.map(&BIDDER_RANKS).clear()?;
        ctx.map(&AUCTION_RANKS).clear()?;
        out.collect((ctx.key().clone(), stats))
    }
}

/// q17's row for one (auction, day): bids per rank and the prices' min, max and sum (cents).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionStats {
    /// Bids.
    pub bids: RankCounts,
    /// Lowest price.
    pub min: u64,
    /// Highest price.
    pub max: u64,
    /// Sum of the prices.
    pub sum: u64,
}

impl AuctionStats {
    /// `total,rank1,rank2,rank3,min,max,avg,sum`; the average is truncated to an integer, as
    /// SQL's `AVG` over a `BIGINT` column.
    pub fn columns(&self) -> String {
        let [all, r1, r2, r3] = self.bids;
        let avg = self.sum / all.max(1);
        format!(
            "{all},{r1},{r2},{r3},{},{},{avg},{}",
            self.min, self.max, self.sum
        )
    }
}

const AUCTION_STATS: ValueStateDescriptor<AuctionStats> =
    ValueStateDescriptor::new("auction-stats");

/// q17: statistics per (auction, day), emitted when the watermark passes the end of the day.
#[derive(Clone)]
pub struct AuctionReport;

impl KeyedProcessFunction for AuctionReport {
    type Key = (u64, i64);
    type In = Bid;
    type Out = ((u64, i64), AuctionStats);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&AUCTION_STATS)
    }

    fn process_element(
        &mut self,
        bid: Bid,
        ctx: &mut Context<'_, (u64, i64)>,
        _out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        let mut stats = match ctx.value(&AUCTION_STATS).get()? {
            Some(s) => s,
            None => {
                let day = ctx.key().1;
                ctx.timer_service()
                    .register_event_time_timer((day + 1) * DAY_MS - 1)?;
                AuctionStats {
                    min: u64::MAX,
                    ..AuctionStats::default()
                }
            }
        };
        stats.bids[0] += 1;
        stats.bids[price_rank(bid.price)] += 1;
        stats.min = stats.min.min(bid.price);
        stats.max = stats.max.max(bid.price);
        stats.sum += bid.price;
        ctx.value(&AUCTION_STATS).update(&stats)
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        ctx: &mut Context<'_, (u64, i64)>,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        let Some(stats) = ctx.value(&AUCTION_STATS).get()? else {
            return Ok(());
        };
        ctx.value(&AUCTION_STATS).clear()?;
        out.collect((*ctx.key(), stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_days_follow_the_suite() {
        assert_eq!(
            [9_999, 10_000, 999_999, 1_000_000].map(price_rank),
            [1, 2, 2, 3]
        );
        assert_eq!(
            day_string(day_of(1_577_836_800_000 + DAY_MS - 1)),
            "2020-01-01"
        );
        assert_eq!(day_of(-1), -1);
    }

    #[test]
    fn distinct_counts_count_each_rank_once() {
        let mut counts = RankCounts::default();
        let seen = count_new(0, 1 | 1 << 2, &mut counts);
        let seen = count_new(seen, 1 | 1 << 2, &mut counts);
        let seen = count_new(seen, 1 | 1 << 3, &mut counts);
        assert_eq!(seen, 0b1101);
        assert_eq!(counts, [1, 0, 1, 1]);
    }
}
