//! The Nexmark queries, with the public job API only. Semantics follow the Nexmark SQL of the
//! Nexmark benchmark suite for Flink; every query writes CSV lines (no header) with the columns
//! of the suite's result table, timestamps as `YYYY-MM-DD HH:MM:SS.mmm` (UTC):
//!
//! | query | what | columns |
//! | --- | --- | --- |
//! | `q0` | pass-through of the bids | auction, bidder, price, dateTime, extra |
//! | `q1` | bid prices in euros (`0.908 * price`, 3 decimals) | auction, bidder, price, dateTime, extra |
//! | `q2` | bids on every 123rd auction | auction, price |
//! | `q3` | local item suggestion: sellers in OR, ID or CA of auctions in category 10 (an incremental join) | name, city, state, id |
//! | `q4` | average winning price per category, updated as each auction closes (one line per closed auction; the last line per category, the one with the most auctions, is the suite's result) | category, avg, auctions |
//! | `q5` | hot items: the auctions with the most bids in each 10 s window sliding by 2 s | auction, num |
//! | `q7` | highest bid: the bids at the largest price of each 10 s window (window end inclusive) | auction, bidder, price, dateTime, extra |
//! | `q8` | new users: persons who opened an auction in the 10 s window they appeared in | id, name, starttime |
//! | `q9` | winning bids: each auction with its highest bid (earliest among equal prices) made while it was open | the auction's 10 columns, auction, bidder, price, bid dateTime, bid extra |
//! | `q10` | the bids into a partitioned file sink: bucket `dt=YYYY-MM-DD/hm=HH:MM` of the bid's time (the partition columns are the path, as in Flink's partitioned filesystem tables) | auction, bidder, price, dateTime, extra |
//! | `q11` | user sessions: bids per bidder per session (gap 10 s) | bidder, bid_count, starttime, endtime |
//! | `q12` | bids per bidder per 10 s of processing time | bidder, bid_count, starttime, endtime |
//! | `q13` | bids joined with a bounded side input on `auction % 10000` (the side input: the `sideInput` file, else the one `weir nexmark generate` writes) | auction, bidder, price, dateTime, value |
//! | `q14` | calculation: bids between 1,000,000 and 50,000,000 in euros, the part of the day, the `c`s in `extra` | auction, bidder, price, bidTimeType, dateTime, extra, c_counts |
//! | `q15` | bidding statistics per day: bids, distinct bidders and distinct auctions, each in all and per price rank (below 10,000; to 1,000,000; above); one line per day once the day has passed | day, 4 bid counts, 4 bidder counts, 4 auction counts |
//! | `q16` | q15 per channel and day, with the day's latest minute | channel, day, minute, the 12 counts |
//! | `q17` | per auction and day: bids in all and per price rank, min, max, average (truncated) and sum of the prices; once the day has passed | auction, day, 4 bid counts, min, max, avg, sum |
//! | `q18` | the last bid per bidder and auction (deduplication); upserts: the last line per (bidder, auction) is the result | auction, bidder, price, channel, url, dateTime, extra |
//! | `q19` | the 10 highest bids per auction (top-N; earlier first among equal prices); upserts: the last line per (auction, rank_number) is the result | auction, bidder, price, channel, url, dateTime, extra, rank_number |
//! | `q20` | bids expanded with their auction, for auctions in category 10 (an unbounded join) | the bid's 7 columns, itemName, description, initialBid, reserve, auction dateTime, expires, seller, category, auction extra |
//! | `q21` | channel id: from the four named channels, else from the URL's `channel_id` | auction, bidder, price, channel, channel_id |
//! | `q22` | URL directories: the first three path segments of the URL | auction, bidder, price, channel, dir1, dir2, dir3 |

use std::sync::Arc;

use super::enrichment::{default_side_input, q13_line, q20_line, SideInput, SIDE_INPUT_ROWS};
use super::generator::GeneratorConfig;
use super::lookup_join::LookupJoin;
use super::model::{sql_timestamp, Auction, Bid, Event, Person};
use super::ranking::{bid_columns, LastBid, TopBids};
use super::reports::{
    day_of, day_string, AuctionReport, AuctionStats, BiddingReport, BiddingStats,
};
use super::source::NexmarkSource;
use crate::api::{
    AggregateFunction, Context, JobBuilder, JobGraph, KeyedCoProcessFunction, KeyedProcessFunction,
    ListStateDescriptor, OpenContext, Output, Stream, TaskError, Timestamp, ValueStateDescriptor,
    WatermarkStrategy, WindowAssigner, WindowResult,
};
use crate::connectors::file_sink::{LineEncoder, OutputLocation};
use crate::connectors::FileSink;

/// The queries this job runs.
pub const QUERIES: [&str; 22] = [
    "q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9", "q10", "q11", "q12", "q13", "q14", "q15",
    "q16", "q17", "q18", "q19", "q20", "q21", "q22",
];

/// Window size of q5, q7 and q8, ms.
pub const WINDOW_MS: i64 = 10_000;
/// Slide of q5's windows, ms.
pub const Q5_SLIDE_MS: i64 = 2_000;
/// Session gap of q11, ms.
pub const SESSION_GAP_MS: i64 = 10_000;

/// Why a query's job could not be built.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Not one of [`QUERIES`].
    #[error("unknown query `{0}`")]
    Unknown(String),
    /// The graph was refused.
    #[error(transparent)]
    Graph(#[from] TaskError),
}

/// The job of `query` over the events of `config` (read at most `max_events_per_second` per
/// source subtask), writing to `output`; q13 joins `side_input` (the generated one when
/// `None`).
///
/// # Errors
/// [`QueryError::Unknown`] for a query not in [`QUERIES`].
pub fn build(
    query: &str,
    config: GeneratorConfig,
    max_events_per_second: Option<u64>,
    output: &OutputLocation,
    side_input: Option<Arc<SideInput>>,
) -> Result<JobGraph, QueryError> {
    let job = JobBuilder::new();
    let events = job.source(
        "nexmark-events",
        NexmarkSource {
            config,
            max_events_per_second,
        },
        WatermarkStrategy::bounded_out_of_orderness(0, Event::date_time),
    );
    let lines = match query {
        "q0" => bids(&events).map(|b| bid_line(&b, &b.price.to_string())),
        "q1" => bids(&events).map(|b| bid_line(&b, &euros(b.price))),
        "q2" => bids(&events)
            .filter(|b| b.auction % 123 == 0)
            .map(|b| format!("{},{}", b.auction, b.price)),
        "q5" => q5(&events),
        "q7" => q7(&events),
        "q8" => q8(&events),
        "q3" => q3(&events),
        "q4" => q4(&events),
        "q9" => winning_bids(&events).map(|(a, b)| q9_line(&a, &b)),
        "q10" => {
            let sink = FileSink::new(output.clone(), line_encoder())
                .with_buckets(Arc::new(|l: &Q10Line| l.bucket.clone()));
            bids(&events)
                .map(|b| {
                    // The timestamp formatted once, for the bucket and the line.
                    let t = sql_timestamp(b.date_time);
                    Q10Line {
                        bucket: bucket_of(&t),
                        line: format!("{},{},{},{t},{}", b.auction, b.bidder, b.price, b.extra),
                    }
                })
                .sink("nexmark-sink", sink);
            return Ok(job.build()?);
        }
        "q11" => q11(&events),
        "q12" => q12(&events),
        "q13" => {
            let table = side_input.unwrap_or_else(|| Arc::new(default_side_input()));
            bids(&events).flat_map(move |b| {
                table
                    .get(&(b.auction % SIDE_INPUT_ROWS))
                    .map(|v| q13_line(&b, v))
            })
        }
        "q15" => bidding_report(&events, false),
        "q16" => bidding_report(&events, true),
        "q17" => bids(&events)
            .key_by(|b: &Bid| (b.auction, day_of(b.date_time)))
            .process("q17-auction-report", AuctionReport)
            .map(|((auction, day), stats): ((u64, i64), AuctionStats)| {
                format!("{auction},{},{}", day_string(day), stats.columns())
            }),
        "q18" => bids(&events)
            .key_by(|b: &Bid| (b.bidder, b.auction))
            .process("q18-last-bid", LastBid)
            .map(|b: Bid| bid_columns(&b)),
        "q19" => bids(&events)
            .key_by(|b: &Bid| b.auction)
            .process("q19-top-bids", TopBids)
            .map(|(rank, b): (usize, Bid)| {
                let mut line = bid_columns(&b);
                line.push(',');
                line.push_str(&rank.to_string());
                line
            }),
        "q20" => {
            let auctions = auctions(&events).key_by(|a: &Auction| a.id);
            let bids = bids(&events).key_by(|b: &Bid| b.auction);
            let in_category_10 = |a: &Auction| a.category == 10;
            auctions
                .connect(&bids)
                .process(
                    "q20-auction-bids",
                    LookupJoin::new("auction", "waiting-bids", in_category_10),
                )
                .map(|(a, b): (Auction, Bid)| q20_line(&b, &a))
        }
        "q14" => bids(&events).flat_map(|b| q14(&b)),
        "q21" => bids(&events).flat_map(|b| q21(&b)),
        "q22" => bids(&events).map(|b| q22(&b)),
        other => return Err(QueryError::Unknown(other.to_string())),
    };
    let encode: LineEncoder<String> =
        Arc::new(|line: &String, out: &mut Vec<u8>| out.extend_from_slice(line.as_bytes()));
    lines.sink("nexmark-sink", FileSink::new(output.clone(), encode));
    Ok(job.build()?)
}

/// A q10 line and its bucket.
#[derive(Debug, Clone)]
struct Q10Line {
    bucket: String,
    line: String,
}

fn line_encoder() -> LineEncoder<Q10Line> {
    Arc::new(|l: &Q10Line, out: &mut Vec<u8>| out.extend_from_slice(l.line.as_bytes()))
}

/// q10's bucket of a bid at `ms`: `dt=YYYY-MM-DD/hm=HH:MM` (the suite's partition columns).
pub fn q10_bucket(ms: i64) -> String {
    bucket_of(&sql_timestamp(ms))
}

/// The bucket of a timestamp formatted by [`sql_timestamp`].
fn bucket_of(t: &str) -> String {
    format!("dt={}/hm={}", &t[..10], &t[11..16])
}

/// q15 (all channels as one) or q16 (per channel): the daily bidding report.
fn bidding_report(events: &Stream<Event>, per_channel: bool) -> Stream<String> {
    bids(events)
        .key_by(move |b: &Bid| {
            let channel = if per_channel {
                b.channel.clone()
            } else {
                String::new()
            };
            (channel, day_of(b.date_time))
        })
        .process(
            if per_channel {
                "q16-channel-report"
            } else {
                "q15-bidding-report"
            },
            BiddingReport,
        )
        .map(
            move |((channel, day), stats): ((String, i64), BiddingStats)| {
                if per_channel {
                    let minute = &sql_timestamp(stats.latest)[11..16];
                    format!("{channel},{},{minute},{}", day_string(day), stats.columns())
                } else {
                    format!("{},{}", day_string(day), stats.columns())
                }
            },
        )
}

fn bids(events: &Stream<Event>) -> Stream<Bid> {
    events.flat_map(|e| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    })
}

fn persons(events: &Stream<Event>) -> Stream<Person> {
    events.flat_map(|e| match e {
        Event::Person(p) => Some(p),
        _ => None,
    })
}

fn auctions(events: &Stream<Event>) -> Stream<Auction> {
    events.flat_map(|e| match e {
        Event::Auction(a) => Some(a),
        _ => None,
    })
}

/// `auction,bidder,<price>,dateTime,extra`.
pub fn bid_line(b: &Bid, price: &str) -> String {
    format!(
        "{},{},{price},{},{}",
        b.auction,
        b.bidder,
        sql_timestamp(b.date_time),
        b.extra
    )
}

/// `0.908 * cents` with 3 decimals, exactly (q1's currency conversion).
pub fn euros(cents: u64) -> String {
    let thousandths = u128::from(cents) * 908;
    format!("{}.{:03}", thousandths / 1000, thousandths % 1000)
}

/// Counts records; accumulators merge by addition.
struct Count<T>(std::marker::PhantomData<fn(T)>);

impl<T: 'static> AggregateFunction for Count<T> {
    type In = T;
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, _: &T, acc: &mut u64) {
        *acc += 1;
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

fn count<T: 'static>() -> Count<T> {
    Count(std::marker::PhantomData)
}

/// q5: bids per auction in sliding windows, then per window the auctions whose count is the
/// window's largest.
fn q5(events: &Stream<Event>) -> Stream<String> {
    bids(events)
        .key_by(|b: &Bid| b.auction)
        .window(WindowAssigner::sliding_event_time(WINDOW_MS, Q5_SLIDE_MS))
        .aggregate("q5-bids-per-auction", count::<Bid>())
        .key_by(|r: &WindowResult<u64, u64>| r.window.start)
        .process("q5-hottest", Hottest)
        .map(|(auction, num)| format!("{auction},{num}"))
}

const Q5_HOTTEST: ValueStateDescriptor<(u64, Vec<u64>)> = ValueStateDescriptor::new("hottest");

/// Per window (the key: its start), the largest count so far and the auctions that have it;
/// emitted once the watermark has passed the window (all its counts, emitted at `end - 1`,
/// have arrived).
#[derive(Clone)]
struct Hottest;

impl KeyedProcessFunction for Hottest {
    type Key = i64;
    type In = WindowResult<u64, u64>;
    type Out = (u64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&Q5_HOTTEST)
    }

    fn process_element(
        &mut self,
        r: WindowResult<u64, u64>,
        ctx: &mut Context<'_, i64>,
        _out: &mut Output<'_, (u64, u64)>,
    ) -> Result<(), TaskError> {
        let (max, mut auctions) = ctx.value(&Q5_HOTTEST).get()?.unwrap_or((0, Vec::new()));
        if r.value < max {
            return Ok(());
        }
        if r.value > max {
            auctions.clear();
            ctx.timer_service()
                .register_event_time_timer(r.window.max_timestamp())?;
        }
        auctions.push(r.key);
        ctx.value(&Q5_HOTTEST).update(&(r.value, auctions))
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        ctx: &mut Context<'_, i64>,
        out: &mut Output<'_, (u64, u64)>,
    ) -> Result<(), TaskError> {
        let Some((max, auctions)) = ctx.value(&Q5_HOTTEST).get()? else {
            return Ok(());
        };
        ctx.value(&Q5_HOTTEST).clear()?;
        for auction in auctions {
            out.collect((auction, max))?;
        }
        Ok(())
    }
}

/// q7: per 10 s window the largest price, then the bids at that price whose time lies in
/// `[start, end]` (the suite's `BETWEEN`, so a bid exactly at the window's end counts for it
/// too). Keyed by window start.
fn q7(events: &Stream<Event>) -> Stream<String> {
    bids(events)
        .flat_map(|b: Bid| {
            let start = b.date_time - b.date_time.rem_euclid(WINDOW_MS);
            let own = (start, false, b.clone());
            // A bid at a window's start is also at the previous window's (inclusive) end.
            let boundary = (b.date_time == start).then(|| (start - WINDOW_MS, true, b));
            std::iter::once(own).chain(boundary)
        })
        .key_by(|(start, _, _): &(i64, bool, Bid)| *start)
        .process("q7-highest-bid", HighestBid)
        .map(|b: Bid| bid_line(&b, &b.price.to_string()))
}

const Q7_MAX: ValueStateDescriptor<u64> = ValueStateDescriptor::new("max-price");
const Q7_AT_MAX: ListStateDescriptor<Bid> = ListStateDescriptor::new("bids-at-max");
const Q7_AT_END: ListStateDescriptor<Bid> = ListStateDescriptor::new("bids-at-end");

/// The largest price of a window (the key: its start) and the bids at it; the bids exactly at
/// its end wait aside, as they may equal the largest price without setting it.
#[derive(Clone)]
struct HighestBid;

impl KeyedProcessFunction for HighestBid {
    type Key = i64;
    type In = (i64, bool, Bid);
    type Out = Bid;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&Q7_MAX)?;
        ctx.declare(&Q7_AT_MAX)?;
        ctx.declare(&Q7_AT_END)
    }

    fn process_element(
        &mut self,
        (start, at_end, bid): (i64, bool, Bid),
        ctx: &mut Context<'_, i64>,
        _out: &mut Output<'_, Bid>,
    ) -> Result<(), TaskError> {
        // Fires once the watermark has passed the window's inclusive end.
        ctx.timer_service()
            .register_event_time_timer(start + WINDOW_MS)?;
        if at_end {
            return ctx.list(&Q7_AT_END).add(&bid);
        }
        let max = ctx.value(&Q7_MAX).get()?;
        match max {
            Some(m) if bid.price < m => Ok(()),
            Some(m) if bid.price == m => ctx.list(&Q7_AT_MAX).add(&bid),
            _ => {
                ctx.value(&Q7_MAX).update(&bid.price)?;
                ctx.list(&Q7_AT_MAX).update(&[bid])
            }
        }
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        ctx: &mut Context<'_, i64>,
        out: &mut Output<'_, Bid>,
    ) -> Result<(), TaskError> {
        let max = ctx.value(&Q7_MAX).get()?;
        let at_max = ctx.list(&Q7_AT_MAX).get()?;
        let at_end = ctx.list(&Q7_AT_END).get()?;
        ctx.value(&Q7_MAX).clear()?;
        ctx.list(&Q7_AT_MAX).clear()?;
        ctx.list(&Q7_AT_END).clear()?;
        let Some(max) = max else { return Ok(()) };
        for b in at_max
            .into_iter()
            .chain(at_end.into_iter().filter(|b| b.price == max))
        {
            out.collect(b)?;
        }
        Ok(())
    }
}

/// q8: persons who opened an auction in the same 10 s window they appeared in: the
/// auctions reduced to one per seller and window, window-joined with the persons.
fn q8(events: &Stream<Event>) -> Stream<String> {
    let sellers = auctions(events)
        .key_by(|a: &Auction| a.seller)
        .window(WindowAssigner::tumbling_event_time(WINDOW_MS))
        .reduce("q8-sellers", |first: Auction, _| first)
        .map(|r: WindowResult<u64, Auction>| r.value)
        .key_by(|a: &Auction| a.seller);
    persons(events)
        .key_by(|p: &Person| p.id)
        .window_join(&sellers, WindowAssigner::tumbling_event_time(WINDOW_MS))
        .apply("q8-new-users", |id: &u64, p: &Person, _a: &Auction| {
            let start = p.date_time - p.date_time.rem_euclid(WINDOW_MS);
            format!("{id},{},{}", p.name, sql_timestamp(start))
        })
}

/// q11: bids per bidder per session.
fn q11(events: &Stream<Event>) -> Stream<String> {
    bids(events)
        .key_by(|b: &Bid| b.bidder)
        .window(WindowAssigner::event_time_session(SESSION_GAP_MS))
        .aggregate("q11-sessions", count::<Bid>())
        .map(|r: WindowResult<u64, u64>| {
            format!(
                "{},{},{},{}",
                r.key,
                r.value,
                sql_timestamp(r.window.start),
                sql_timestamp(r.window.end)
            )
        })
}

/// q3: sellers in OR, ID or CA and their auctions in category 10, joined on the seller's id
/// as they arrive ([`LookupJoin`]: a person per id; auctions before their seller wait, those
/// of sellers elsewhere are dropped).
fn q3(events: &Stream<Event>) -> Stream<String> {
    let persons = persons(events).key_by(|p: &Person| p.id);
    let auctions = auctions(events)
        .filter(|a: &Auction| a.category == 10)
        .map(|a: Auction| (a.seller, a.id))
        .key_by(|(seller, _): &(u64, u64)| *seller);
    let local = |p: &Person| matches!(p.state.as_str(), "OR" | "ID" | "CA");
    persons
        .connect(&auctions)
        .process(
            "q3-local-items",
            LookupJoin::new("person", "waiting-auctions", local),
        )
        .map(|(p, (_, id)): (Person, (u64, u64))| format!("{},{},{},{id}", p.name, p.city, p.state))
}

/// Each auction with its winning bid, once it has closed (q9, and q4 after it): auctions and
/// bids connected on the auction id.
fn winning_bids(events: &Stream<Event>) -> Stream<(Auction, Bid)> {
    let auctions = auctions(events).key_by(|a: &Auction| a.id);
    let bids = bids(events).key_by(|b: &Bid| b.auction);
    auctions.connect(&bids).process("winning-bids", WinningBids)
}

/// q9's line: the auction's columns, then the bid's.
pub fn q9_line(a: &Auction, b: &Bid) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        a.id,
        a.item_name,
        a.description,
        a.initial_bid,
        a.reserve,
        sql_timestamp(a.date_time),
        sql_timestamp(a.expires),
        a.seller,
        a.category,
        a.extra,
        b.auction,
        b.bidder,
        b.price,
        sql_timestamp(b.date_time),
        b.extra
    )
}

const Q9_AUCTION: ValueStateDescriptor<Auction> = ValueStateDescriptor::new("auction");
const Q9_BEST: ValueStateDescriptor<Bid> = ValueStateDescriptor::new("best-bid");
const Q9_EARLY: ListStateDescriptor<Bid> = ListStateDescriptor::new("early-bids");

/// Per auction id: the auction, its best bid so far among those made while it is open, and
/// bids that arrived before the auction did (another source subtask may be behind). When the
/// watermark reaches the auction's expiry, its winner is emitted and its state cleared. Early
/// bids for an auction that has not arrived by the time the watermark passes them can match no
/// auction (one would have started before them) and are dropped.
#[derive(Clone)]
struct WinningBids;

impl WinningBids {
    /// Keeps `bid` if it was made while `auction` was open and beats the best so far (higher
    /// price, or the same price earlier).
    fn offer(auction: &Auction, bid: Bid, ctx: &mut Context<'_, u64>) -> Result<(), TaskError> {
        if bid.date_time < auction.date_time || bid.date_time > auction.expires {
            return Ok(());
        }
        let better = match ctx.value(&Q9_BEST).get()? {
            Some(best) => {
                (bid.price, std::cmp::Reverse(bid.date_time))
                    > (best.price, std::cmp::Reverse(best.date_time))
            }
            None => true,
        };
        if better {
            ctx.value(&Q9_BEST).update(&bid)?;
        }
        Ok(())
    }
}

impl KeyedCoProcessFunction for WinningBids {
    type Key = u64;
    type In1 = Auction;
    type In2 = Bid;
    type Out = (Auction, Bid);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&Q9_AUCTION)?;
        ctx.declare(&Q9_BEST)?;
        ctx.declare(&Q9_EARLY)
    }

    fn process_element1(
        &mut self,
        auction: Auction,
        ctx: &mut Context<'_, u64>,
        _out: &mut Output<'_, (Auction, Bid)>,
    ) -> Result<(), TaskError> {
        for bid in ctx.list(&Q9_EARLY).get()? {
            Self::offer(&auction, bid, ctx)?;
        }
        ctx.list(&Q9_EARLY).clear()?;
        ctx.timer_service()
            .register_event_time_timer(auction.expires)?;
        ctx.value(&Q9_AUCTION).update(&auction)
    }

    fn process_element2(
        &mut self,
        bid: Bid,
        ctx: &mut Context<'_, u64>,
        _out: &mut Output<'_, (Auction, Bid)>,
    ) -> Result<(), TaskError> {
        match ctx.value(&Q9_AUCTION).get()? {
            Some(auction) => Self::offer(&auction, bid, ctx),
            None => {
                ctx.timer_service()
                    .register_event_time_timer(bid.date_time)?;
                ctx.list(&Q9_EARLY).add(&bid)
            }
        }
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut Context<'_, u64>,
        out: &mut Output<'_, (Auction, Bid)>,
    ) -> Result<(), TaskError> {
        match ctx.value(&Q9_AUCTION).get()? {
            Some(auction) if timestamp >= auction.expires => {
                if let Some(best) = ctx.value(&Q9_BEST).get()? {
                    out.collect((auction, best))?;
                }
                ctx.value(&Q9_AUCTION).clear()?;
                ctx.value(&Q9_BEST).clear()
            }
            Some(_) => Ok(()),
            None => {
                let early = ctx.list(&Q9_EARLY).get()?;
                let keep: Vec<Bid> = early
                    .into_iter()
                    .filter(|b| b.date_time > timestamp)
                    .collect();
                ctx.list(&Q9_EARLY).update(&keep)
            }
        }
    }
}

/// q4: the winning prices averaged per category (integer average, as the suite's `AVG` of a
/// `BIGINT`), one line per closed auction.
fn q4(events: &Stream<Event>) -> Stream<String> {
    winning_bids(events)
        .key_by(|(a, _): &(Auction, Bid)| a.category)
        .process("q4-average-per-category", CategoryAverage)
        .map(|(category, avg, n)| format!("{category},{avg},{n}"))
}

const Q4_SUM: ValueStateDescriptor<(u64, u64)> = ValueStateDescriptor::new("sum-and-count");

/// Per category: the sum and number of winning prices; emits the average after each.
#[derive(Clone)]
struct CategoryAverage;

impl KeyedProcessFunction for CategoryAverage {
    type Key = u64;
    type In = (Auction, Bid);
    type Out = (u64, u64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&Q4_SUM)
    }

    fn process_element(
        &mut self,
        (_, bid): (Auction, Bid),
        ctx: &mut Context<'_, u64>,
        out: &mut Output<'_, (u64, u64, u64)>,
    ) -> Result<(), TaskError> {
        let (sum, n) = ctx.value(&Q4_SUM).get()?.unwrap_or((0, 0));
        let (sum, n) = (sum + bid.price, n + 1);
        ctx.value(&Q4_SUM).update(&(sum, n))?;
        out.collect((*ctx.key(), sum / n, n))
    }
}

/// q12: bids per bidder in tumbling windows of 10 s of processing time.
fn q12(events: &Stream<Event>) -> Stream<String> {
    bids(events)
        .key_by(|b: &Bid| b.bidder)
        .window(WindowAssigner::tumbling_processing_time(WINDOW_MS))
        .aggregate("q12-bids-per-bidder", count::<Bid>())
        .map(|r: WindowResult<u64, u64>| {
            format!(
                "{},{},{},{}",
                r.key,
                r.value,
                sql_timestamp(r.window.start),
                sql_timestamp(r.window.end)
            )
        })
}

/// q14's line for `b`, if its price in euros lies strictly between 1,000,000 and 50,000,000.
pub fn q14(b: &Bid) -> Option<String> {
    let thousandths = u128::from(b.price) * 908;
    if thousandths <= 1_000_000_000 || thousandths >= 50_000_000_000 {
        return None;
    }
    let hour = (b.date_time.rem_euclid(86_400_000) / 3_600_000) as u32;
    let part = match hour {
        8..=18 => "dayTime",
        0..=6 | 20..=23 => "nightTime",
        _ => "otherTime",
    };
    let c_counts = b.extra.bytes().filter(|c| *c == b'c').count();
    Some(format!(
        "{},{},{},{part},{},{},{c_counts}",
        b.auction,
        b.bidder,
        euros(b.price),
        sql_timestamp(b.date_time),
        b.extra
    ))
}

/// q21's line for `b`: its channel id from the named channels (case-insensitive), else the
/// value of the URL's `channel_id` parameter; none when neither applies.
pub fn q21(b: &Bid) -> Option<String> {
    let id = match b.channel.to_lowercase().as_str() {
        "apple" => Some("0".to_string()),
        "google" => Some("1".to_string()),
        "facebook" => Some("2".to_string()),
        "baidu" => Some("3".to_string()),
        _ => url_parameter(&b.url, "channel_id"),
    }?;
    Some(format!(
        "{},{},{},{},{id}",
        b.auction, b.bidder, b.price, b.channel
    ))
}

/// The value of `name` in `url`: after `name=` at the start or after a `&`, up to the next `&`
/// (the suite's `REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)`).
fn url_parameter(url: &str, name: &str) -> Option<String> {
    let key = format!("{name}=");
    if let Some(v) = url.strip_prefix(&key) {
        return Some(v.split('&').next().unwrap_or_default().to_string());
    }
    let at = url.find(&format!("&{key}"))?;
    let rest = &url[at + 1 + key.len()..];
    Some(rest.split('&').next().unwrap_or_default().to_string())
}

/// q22's line for `b`: the URL's segments 3 to 5 when split at `/` (the suite's
/// `SPLIT_INDEX(url, '/', 3..5)`; empty when missing).
pub fn q22(b: &Bid) -> String {
    let parts: Vec<&str> = b.url.split('/').collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{}",
        b.auction,
        b.bidder,
        b.price,
        b.channel,
        part(3),
        part(4),
        part(5)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euros_are_exact_to_the_thousandth() {
        assert_eq!(euros(0), "0.000");
        assert_eq!(euros(1), "0.908");
        assert_eq!(euros(1000), "908.000");
        assert_eq!(euros(12_345), "11209.260");
    }

    fn bid(price: u64, date_time: i64, channel: &str, url: &str) -> Bid {
        Bid {
            auction: 1001,
            bidder: 1002,
            price,
            channel: channel.into(),
            url: url.into(),
            date_time,
            extra: "abcc c".into(),
        }
    }

    #[test]
    fn q14_keeps_prices_strictly_inside_its_range_and_names_the_part_of_the_day() {
        // 0.908 * price: 1,101,322 cents -> 1,000,000.376; 1,101,321 -> 999,999.468.
        assert!(q14(&bid(1_101_321, 0, "Apple", "")).is_none());
        let line = q14(&bid(1_101_322, 9 * 3_600_000, "Apple", "")).unwrap();
        assert_eq!(
            line,
            "1001,1002,1000000.376,dayTime,1970-01-01 09:00:00.000,abcc c,3"
        );
        assert!(
            q14(&bid(55_066_079, 0, "Apple", "")).is_some(),
            "49,999,999.732"
        );
        assert!(
            q14(&bid(55_066_080, 0, "Apple", "")).is_none(),
            "50,000,000.640"
        );
        let part = |hour: i64| {
            q14(&bid(2_000_000, hour * 3_600_000, "x", ""))
                .unwrap()
                .split(',')
                .nth(3)
                .unwrap()
                .to_string()
        };
        assert_eq!(
            [part(6), part(7), part(8), part(18), part(19), part(20)],
            [
                "nightTime",
                "otherTime",
                "dayTime",
                "dayTime",
                "otherTime",
                "nightTime"
            ]
        );
    }

    #[test]
    fn q21_and_q22_read_the_channel_and_the_url() {
        let url = "https://www.nexmark.com/ab/cd/ef/item.htm?query=1&channel_id=77";
        assert_eq!(
            q21(&bid(5, 0, "Google", url)).unwrap(),
            "1001,1002,5,Google,1"
        );
        assert_eq!(
            q21(&bid(5, 0, "channel-77", url)).unwrap(),
            "1001,1002,5,channel-77,77"
        );
        assert!(q21(&bid(5, 0, "channel-9", "https://x/y?query=1")).is_none());
        assert_eq!(q22(&bid(5, 0, "Baidu", url)), "1001,1002,5,Baidu,ab,cd,ef");
    }

    #[test]
    fn url_parameters_follow_the_suites_regular_expression() {
        let url = "https://www.nexmark.com/a/b/c/item.htm?query=1&channel_id=42";
        assert_eq!(url_parameter(url, "channel_id").as_deref(), Some("42"));
        assert_eq!(
            url_parameter("channel_id=7&x=1", "channel_id").as_deref(),
            Some("7")
        );
        assert_eq!(url_parameter("https://x/?query=1", "channel_id"), None);
        assert_eq!(
            url_parameter("https://x/?xchannel_id=1", "channel_id"),
            None
        );
    }
}
