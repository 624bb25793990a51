//! Joins of two keyed streams on their key.
//!
//! - [`WindowJoin`] (Flink's `join(..).where(..).equalTo(..).window(..)`): the records of both
//!   streams with the same key in the same window, every pair, when the window fires. Runs as
//!   a window operator over both inputs (its elements are list state), so it has every window
//!   kind: tumbling, sliding, session, event or processing time.
//! - [`IntervalJoin`] (Flink's `intervalJoin(..).between(lower, upper)`): each record `a` of
//!   the first stream with every record `b` of the second whose event time lies in
//!   `[a.ts + lower, a.ts + upper]`, as soon as both are there; each buffered record leaves
//!   state once the watermark has passed the last time a partner could have, so a bounded
//!   input ends with empty state. Runs as a [`KeyedCoProcessFunction`] written with the public
//!   API.
//! - The unbounded join (every pair ever, Flink SQL's regular join) is a
//!   [`KeyedCoProcessFunction`] of the user's with [`super::MapStateDescriptor`]s and a state
//!   TTL that bounds how long a record waits for partners.
//!
//! ```
//! # use weir_runtime::api::*;
//! # fn demo(persons: KeyedStream<u64, String>, auctions: KeyedStream<u64, u64>) -> Stream<String> {
//! // Persons and the auctions they opened in the same 10 s (Nexmark q8).
//! persons
//!     .window_join(&auctions, WindowAssigner::tumbling_event_time(10_000))
//!     .apply("new-sellers", |id: &u64, name: &String, _auction: &u64| format!("{id},{name}"))
//! # }
//! ```

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::process::{CoInput, Context, KeyedCoProcessFunction, OpenContext, Output};
use super::state::MapStateDescriptor;
use super::stream::{add_window_operator, co_edges, KeyedStream, Stream};
use super::window::{ProcessWindowFunction, TimeWindow, WindowAssigner};
use super::{Key, TaskError, Timestamp};
use crate::operators::window::contents::Elements;
use crate::operators::window::operator::WindowSettings;

/// A join function: the key and one record of each stream to an output record.
type JoinFn<K, A, B, O> = Arc<dyn Fn(&K, &A, &B) -> O + Send + Sync>;

/// Two keyed streams joined per key and window; see [`KeyedStream::window_join`].
pub struct WindowJoin<K, A, B> {
    pub(super) first: KeyedStream<K, A>,
    pub(super) second: KeyedStream<K, B>,
    pub(super) assigner: WindowAssigner,
}

impl<K, A, B> WindowJoin<K, A, B>
where
    K: Key,
    A: Clone + Send + Serialize + DeserializeOwned + 'static,
    B: Clone + Send + Serialize + DeserializeOwned + 'static,
{
    /// Emits `join(key, a, b)` for every pair of records with the same key in the same
    /// window, when the window fires, with event time `end - 1`; both streams' records are
    /// keyed list state of `uid` until then. A window with records of one stream only emits
    /// nothing (an inner join).
    pub fn apply<O, F>(self, uid: &str, join: F) -> Stream<O>
    where
        O: Clone + Send + 'static,
        F: Fn(&K, &A, &B) -> O + Send + Sync + 'static,
    {
        if let Err(e) = self.assigner.validate() {
            self.first.upstream.job.problem(e);
        }
        let pairs = JoinPairs {
            join: Arc::new(join) as JoinFn<K, A, B, O>,
            _t: PhantomData,
        };
        let settings = WindowSettings {
            assigner: self.assigner,
            allowed_lateness_ms: 0,
            late_tag: None,
        };
        let edges = co_edges(&self.first, &self.second);
        add_window_operator::<K, CoInput<A, B>, Elements<JoinPairs<K, A, B, O>>, _>(
            &self.first.upstream.job,
            uid,
            settings,
            vec![Elements::<JoinPairs<K, A, B, O>>::info()],
            move |store| Elements::open(store, pairs.clone()),
            edges,
        )
    }
}

/// The window function of a window join: the cross product of the window's records.
struct JoinPairs<K, A, B, O> {
    join: JoinFn<K, A, B, O>,
    _t: PhantomData<fn(K, A, B) -> O>,
}

impl<K, A, B, O> Clone for JoinPairs<K, A, B, O> {
    fn clone(&self) -> Self {
        Self {
            join: self.join.clone(),
            _t: PhantomData,
        }
    }
}

impl<K, A, B, O> ProcessWindowFunction for JoinPairs<K, A, B, O>
where
    K: Key,
    A: Clone + Send + Serialize + DeserializeOwned + 'static,
    B: Clone + Send + Serialize + DeserializeOwned + 'static,
    O: Clone + Send + 'static,
{
    type Key = K;
    type In = CoInput<A, B>;
    type Out = O;

    fn process(
        &mut self,
        key: &K,
        _window: TimeWindow,
        elements: Vec<CoInput<A, B>>,
        out: &mut Output<'_, O>,
    ) -> Result<(), TaskError> {
        let mut firsts = Vec::new();
        let mut seconds = Vec::new();
        for e in elements {
            match e {
                CoInput::First(a) => firsts.push(a),
                CoInput::Second(b) => seconds.push(b),
            }
        }
        for a in &firsts {
            for b in &seconds {
                out.collect((self.join)(key, a, b))?;
            }
        }
        Ok(())
    }
}

/// Two keyed streams joined on event-time intervals; see [`KeyedStream::interval_join`].
pub struct IntervalJoin<K, A, B> {
    pub(super) first: KeyedStream<K, A>,
    pub(super) second: KeyedStream<K, B>,
    pub(super) lower_ms: i64,
    pub(super) upper_ms: i64,
}

impl<K, A, B> IntervalJoin<K, A, B>
where
    K: Key,
    A: Clone + Send + Serialize + DeserializeOwned + 'static,
    B: Clone + Send + Serialize + DeserializeOwned + 'static,
{
    /// Emits `join(key, a, b)` for every record `a` of the first stream and `b` of the second
    /// with the same key and `a.ts + lower <= b.ts <= a.ts + upper`, with event time
    /// `max(a.ts, b.ts)`, as soon as the later of the two arrives. Records are buffered as
    /// keyed map state of `uid` (by event time) and removed when the watermark passes the
    /// last time a partner could arrive. Records behind the watermark when they arrive are
    /// dropped (Flink's interval join does the same). `lower > upper` is a problem of the
    /// job, reported by [`super::JobBuilder::build`].
    pub fn process<O, F>(self, uid: &str, join: F) -> Stream<O>
    where
        O: Clone + Send + 'static,
        F: Fn(&K, &A, &B) -> O + Send + Sync + 'static,
    {
        if self.lower_ms > self.upper_ms {
            self.first.upstream.job.problem(format!(
                "interval join `{uid}`: the lower bound ({} ms) is above the upper bound ({} ms)",
                self.lower_ms, self.upper_ms
            ));
        }
        let function = IntervalJoinFunction {
            lower: self.lower_ms,
            upper: self.upper_ms,
            join: Arc::new(join) as JoinFn<K, A, B, O>,
            _t: PhantomData,
        };
        self.first.connect(&self.second).process(uid, function)
    }
}

/// Name of the interval join's buffer of first-stream records.
pub const FIRST_BUFFER: &str = "interval-join-first";
/// Name of the interval join's buffer of second-stream records.
pub const SECOND_BUFFER: &str = "interval-join-second";

fn first_buffer<A>() -> MapStateDescriptor<i64, Vec<A>> {
    MapStateDescriptor::new(FIRST_BUFFER)
}

fn second_buffer<B>() -> MapStateDescriptor<i64, Vec<B>> {
    MapStateDescriptor::new(SECOND_BUFFER)
}

/// Flink's `IntervalJoinOperator` as a keyed co-process function.
struct IntervalJoinFunction<K, A, B, O> {
    lower: i64,
    upper: i64,
    join: JoinFn<K, A, B, O>,
    _t: PhantomData<fn(K, A, B) -> O>,
}

impl<K, A, B, O> Clone for IntervalJoinFunction<K, A, B, O> {
    fn clone(&self) -> Self {
        Self {
            lower: self.lower,
            upper: self.upper,
            join: self.join.clone(),
            _t: PhantomData,
        }
    }
}

impl<K, A, B, O> IntervalJoinFunction<K, A, B, O> {
    /// When a first-stream record at `ts` can meet no more partners: the watermark is past
    /// `ts + upper`.
    fn first_expiry(&self, ts: Timestamp) -> Timestamp {
        ts.saturating_add(self.upper).saturating_add(1)
    }

    /// When a second-stream record at `ts` can meet no more partners: the watermark is past
    /// `ts - lower`.
    fn second_expiry(&self, ts: Timestamp) -> Timestamp {
        ts.saturating_sub(self.lower).saturating_add(1)
    }
}

impl<K, A, B, O> KeyedCoProcessFunction for IntervalJoinFunction<K, A, B, O>
where
    K: Key,
    A: Clone + Send + Serialize + DeserializeOwned + 'static,
    B: Clone + Send + Serialize + DeserializeOwned + 'static,
    O: Clone + Send + 'static,
{
    type Key = K;
    type In1 = A;
    type In2 = B;
    type Out = O;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&first_buffer::<A>())?;
        ctx.declare(&second_buffer::<B>())
    }

    fn process_element1(
        &mut self,
        a: A,
        ctx: &mut Context<'_, K>,
        out: &mut Output<'_, O>,
    ) -> Result<(), TaskError> {
        let ts = ctx.timestamp();
        if ts < ctx.current_watermark() {
            return Ok(());
        }
        let key = ctx.key().clone();
        for (tb, bs) in ctx.map(&second_buffer::<B>()).entries()? {
            if ts.saturating_add(self.lower) <= tb && tb <= ts.saturating_add(self.upper) {
                for b in &bs {
                    out.collect_with_timestamp(ts.max(tb), (self.join)(&key, &a, b))?;
                }
            }
        }
        let buffer = first_buffer::<A>();
        let mut at_ts = ctx.map(&buffer).get(&ts)?.unwrap_or_default();
        at_ts.push(a);
        ctx.map(&buffer).put(&ts, &at_ts)?;
        let expiry = self.first_expiry(ts);
        ctx.timer_service().register_event_time_timer(expiry)
    }

    fn process_element2(
        &mut self,
        b: B,
        ctx: &mut Context<'_, K>,
        out: &mut Output<'_, O>,
    ) -> Result<(), TaskError> {
        let tb = ctx.timestamp();
        if tb < ctx.current_watermark() {
            return Ok(());
        }
        let key = ctx.key().clone();
        for (ta, as_) in ctx.map(&first_buffer::<A>()).entries()? {
            if ta.saturating_add(self.lower) <= tb && tb <= ta.saturating_add(self.upper) {
                for a in &as_ {
                    out.collect_with_timestamp(ta.max(tb), (self.join)(&key, a, &b))?;
                }
            }
        }
        let buffer = second_buffer::<B>();
        let mut at_ts = ctx.map(&buffer).get(&tb)?.unwrap_or_default();
        at_ts.push(b);
        ctx.map(&buffer).put(&tb, &at_ts)?;
        let expiry = self.second_expiry(tb);
        ctx.timer_service().register_event_time_timer(expiry)
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut Context<'_, K>,
        _out: &mut Output<'_, O>,
    ) -> Result<(), TaskError> {
        let firsts = first_buffer::<A>();
        for (ta, _) in ctx.map(&firsts).entries()? {
            if self.first_expiry(ta) <= timestamp {
                ctx.map(&firsts).remove(&ta)?;
            }
        }
        let seconds = second_buffer::<B>();
        for (tb, _) in ctx.map(&seconds).entries()? {
            if self.second_expiry(tb) <= timestamp {
                ctx.map(&seconds).remove(&tb)?;
            }
        }
        Ok(())
    }
}
