//! The Nexmark queries, with the public job API only. Semantics follow the Nexmark SQL of the
//! Nexmark benchmark suite for Flink; every query writes CSV lines (no header) with the columns
//! of the suite's result table, timestamps as `YYYY-MM-DD HH:MM:SS.mmm` (UTC):
//!
//! | query | what | columns |
//! | --- | --- | --- |
//! | `q0` | pass-through of the bids | auction, bidder, price, dateTime, extra |
//! | `q1` | bid prices in euros (`0.908 * price`, 3 decimals) | auction, bidder, price, dateTime, extra |
//! | `q2` | bids on every 123rd auction | auction, price |
//! | `q5` | hot items: the auctions with the most bids in each 10 s window sliding by 2 s | auction, num |
//! | `q7` | highest bid: the bids at the largest price of each 10 s window (window end inclusive) | auction, bidder, price, dateTime, extra |
//! | `q8` | new users: persons who opened an auction in the 10 s window they appeared in | id, name, starttime |
//! | `q11` | user sessions: bids per bidder per session (gap 10 s) | bidder, bid_count, starttime, endtime |

use std::sync::Arc;

use super::generator::GeneratorConfig;
use super::model::{sql_timestamp, Auction, Bid, Event, Person};
use super::source::NexmarkSource;
use crate::api::{
    AggregateFunction, Context, JobBuilder, JobGraph, KeyedProcessFunction, ListStateDescriptor,
    OpenContext, Output, Stream, TaskError, Timestamp, ValueStateDescriptor, WatermarkStrategy,
    WindowAssigner, WindowResult,
};
use crate::connectors::file_sink::LineEncoder;
use crate::connectors::FileSink;

/// The queries this job runs.
pub const QUERIES: [&str; 7] = ["q0", "q1", "q2", "q5", "q7", "q8", "q11"];

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
/// source subtask), writing to `output`.
///
/// # Errors
/// [`QueryError::Unknown`] for a query not in [`QUERIES`].
pub fn build(
    query: &str,
    config: GeneratorConfig,
    max_events_per_second: Option<u64>,
    output: &str,
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
        "q11" => q11(&events),
        other => return Err(QueryError::Unknown(other.to_string())),
    };
    let encode: LineEncoder<String> =
        Arc::new(|line: &String, out: &mut Vec<u8>| out.extend_from_slice(line.as_bytes()));
    lines.sink("nexmark-sink", FileSink::new(output, encode));
    Ok(job.build()?)
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

const Q5_COUNTS: ListStateDescriptor<(u64, u64)> = ListStateDescriptor::new("counts");

/// Per window (the key: its start), the auctions with the largest count, once the watermark
/// has passed the window (all its counts, emitted at `end - 1`, have arrived).
#[derive(Clone)]
struct Hottest;

impl KeyedProcessFunction for Hottest {
    type Key = i64;
    type In = WindowResult<u64, u64>;
    type Out = (u64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&Q5_COUNTS)
    }

    fn process_element(
        &mut self,
        r: WindowResult<u64, u64>,
        ctx: &mut Context<'_, i64>,
        _out: &mut Output<'_, (u64, u64)>,
    ) -> Result<(), TaskError> {
        ctx.list(&Q5_COUNTS).add(&(r.key, r.value))?;
        ctx.timer_service()
            .register_event_time_timer(r.window.max_timestamp())
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        ctx: &mut Context<'_, i64>,
        out: &mut Output<'_, (u64, u64)>,
    ) -> Result<(), TaskError> {
        let counts = ctx.list(&Q5_COUNTS).get()?;
        ctx.list(&Q5_COUNTS).clear()?;
        let max = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
        for (auction, n) in counts {
            if n >= max {
                out.collect((auction, n))?;
            }
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
}
