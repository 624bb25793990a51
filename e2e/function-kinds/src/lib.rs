//! A user's job crate that uses every kind of function of `weir_runtime::api`, with the
//! reference each output must equal. The job `function-kinds` reads two event sources (clicks
//! and views) and a broadcast source of rules, and writes one directory per function kind
//! under `job.args.output`:
//!
//! | directory | operator (uid) | function kind |
//! | --- | --- | --- |
//! | `buckets` | `buckets` | keyed process over a union, value/list/map/reducing state, event-time timers |
//! | `bad` | `buckets` | its side output |
//! | `counts` | `lines-per-user` | a second keyed stage (another key) |
//! | `pairs` | `pairs` | connect of two keyed streams (co-process, shared state and timers) |
//! | `alerts` | `alerts` | keyed broadcast process (broadcast state, keyed state, timers) |
//! | `milestones` | `milestones` | process over a plain stream with operator (split) state |
//!
//! Arguments: `events` (per source, default 20000), `output` (required),
//! `maxRecordsPerSecond` (per source subtask, default unbounded), `alertsSeenVersion` (1 or 2:
//! the version `alerts` declares its state `seen` at; default 1).
//!
//! Every output is independent of how the inputs interleave, so that a run killed and resumed
//! any number of times, or rescaled through savepoints, must produce exactly the reference.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_runtime::api::{
    BroadcastContext, BroadcastState, Context, JobBuilder, JobGraph, KeyedBroadcastProcessFunction,
    KeyedCoProcessFunction, KeyedProcessFunction, ListStateDescriptor, MapStateDescriptor,
    OpenContext, OperatorListDescriptor, Output, OutputTag, ProcessContext, ProcessFunction,
    ReducingStateDescriptor, Source, SourceReader, StateContext, TaskContext, TaskError, Timestamp,
    ValueStateDescriptor, WatermarkStrategy,
};
use weir_runtime::connectors::file_sink::LineEncoder;
use weir_runtime::connectors::throttle::Throttle;
use weir_runtime::connectors::FileSink;
use weir_runtime::jobs::{optional_arg, ArgError, JobArgs, JobEntry, Registry};

/// The registry name of the job.
pub const ENTRY: &str = "function-kinds";

/// A click or a view of a user at a time (ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// User id, `0..13`.
    pub user: u64,
    /// Event time, ms.
    pub ts: i64,
    /// `click`, `view`, ... or `bad` (every 17th).
    pub kind: String,
}

/// Event `i` of a source of `kind`: event time `i * 100` ms.
pub fn event(kind: &str, i: u64) -> Event {
    Event {
        user: (i * 7 + kind.len() as u64) % 13,
        ts: i as i64 * 100,
        kind: if i.is_multiple_of(17) {
            "bad".to_string()
        } else {
            kind.to_string()
        },
    }
}

/// Splits of an event source: split `j` holds the events `i` with `i % SPLITS == j`.
pub const SPLITS: u64 = 6;

/// Events `0..n` of one kind in [`SPLITS`] splits; subtask `s` of `p` reads the splits
/// `j % p == s`, merged in event-time order. Its positions (union operator state) are
/// `[split, next index]`, so that any parallelism resumes every split where it was.
#[derive(Clone)]
pub struct Events {
    /// Events per source.
    pub n: u64,
    /// Their kind.
    pub kind: &'static str,
    /// Throttle per subtask (records/s).
    pub max_records_per_second: Option<u64>,
}

impl Events {
    /// Events `0..n` of `kind`, unthrottled.
    pub const fn new(n: u64, kind: &'static str) -> Self {
        Self {
            n,
            kind,
            max_records_per_second: None,
        }
    }
}

struct EventReader {
    src: Events,
    /// Owned splits: (split, next index).
    next: Vec<(u64, u64)>,
    throttle: Throttle,
}

impl Source<Event> for Events {
    fn create_reader(
        &self,
        ctx: &TaskContext,
        positions: Vec<serde_json::Value>,
    ) -> Result<Box<dyn SourceReader<Event>>, TaskError> {
        let restored: BTreeMap<u64, u64> = positions
            .iter()
            .map(|p| serde_json::from_value::<(u64, u64)>(p.clone()))
            .collect::<Result<_, _>>()
            .map_err(|e| TaskError::Restore(format!("event source positions: {e}")))?;
        let next = (0..SPLITS)
            .filter(|j| j % ctx.parallelism as u64 == ctx.subtask as u64)
            .map(|j| (j, restored.get(&j).copied().unwrap_or(j)))
            .collect();
        Ok(Box::new(EventReader {
            src: self.clone(),
            next,
            throttle: Throttle::new(self.max_records_per_second),
        }))
    }
}

impl SourceReader<Event> for EventReader {
    fn read_batch(&mut self, out: &mut Vec<Event>, max: usize) -> Result<bool, TaskError> {
        let before = out.len();
        for _ in 0..max.min(64) {
            let Some(split) = self
                .next
                .iter_mut()
                .filter(|(_, i)| *i < self.src.n)
                .min_by_key(|(_, i)| *i)
            else {
                break;
            };
            out.push(event(self.src.kind, split.1));
            split.1 += SPLITS;
        }
        self.throttle.pass((out.len() - before) as u64);
        Ok(self.next.iter().any(|(_, i)| *i < self.src.n))
    }
    fn positions(&self) -> Vec<serde_json::Value> {
        self.next
            .iter()
            .map(|(j, i)| serde_json::json!([j, i]))
            .collect()
    }
}

/// The end of the 1 s bucket of event time holding `ts`.
pub fn bucket_end(ts: i64) -> i64 {
    ts - ts.rem_euclid(1000) + 1000
}

const LAST_TS: ValueStateDescriptor<i64> = ValueStateDescriptor::new("last-ts");
const KINDS: ListStateDescriptor<String> = ListStateDescriptor::new("kinds");
const COUNTS: MapStateDescriptor<String, u64> = MapStateDescriptor::new("counts");
const TOTAL: ReducingStateDescriptor<i64> = ReducingStateDescriptor::new("total", |a, b| a + b);
/// The side output of [`Buckets`]: events of kind `bad`.
pub const BAD: OutputTag<Event> = OutputTag::new("bad");

/// Keyed by `user,bucket end`: when the watermark passes the bucket's end, emits
/// `user,bucket end,kinds sorted,counts per kind,sum of timestamps`; `bad` events go to the
/// side output [`BAD`].
#[derive(Clone)]
pub struct Buckets;

impl KeyedProcessFunction for Buckets {
    type Key = String;
    type In = Event;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&LAST_TS)?;
        ctx.declare(&KINDS)?;
        ctx.declare(&COUNTS)?;
        ctx.declare(&TOTAL)
    }

    fn process_element(
        &mut self,
        e: Event,
        ctx: &mut Context<'_, String>,
        _out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        if e.kind == "bad" {
            return ctx.output(&BAD, e);
        }
        let end = bucket_end(e.ts);
        ctx.timer_service().register_event_time_timer(end)?;
        ctx.value(&LAST_TS).update(&e.ts)?;
        ctx.list(&KINDS).add(&e.kind)?;
        let n = ctx.map(&COUNTS).get(&e.kind)?.unwrap_or(0);
        ctx.map(&COUNTS).put(&e.kind, &(n + 1))?;
        ctx.reducing(&TOTAL).add(e.ts)
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut Context<'_, String>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        if !ctx.key().ends_with(&format!(",{timestamp}")) {
            return Err(TaskError::Data(format!(
                "timer {timestamp} fired for key {}",
                ctx.key()
            )));
        }
        let mut kinds = ctx.list(&KINDS).get()?;
        kinds.sort();
        let counts: Vec<String> = ctx
            .map(&COUNTS)
            .entries()?
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let total = ctx.reducing(&TOTAL).get()?.unwrap_or(0);
        let key = ctx.key().clone();
        ctx.list(&KINDS).clear()?;
        ctx.map(&COUNTS).clear()?;
        ctx.reducing(&TOTAL).clear()?;
        ctx.value(&LAST_TS).clear()?;
        out.collect(format!(
            "{key},{},{},{total}",
            kinds.join("|"),
            counts.join("|")
        ))
    }
}

const SEEN: ValueStateDescriptor<u64> = ValueStateDescriptor::new("seen");

/// Counts the bucket lines per user (a second keyed stage, keyed by another key); emits
/// `user,count` when the input ends.
#[derive(Clone)]
pub struct LinesPerUser;

impl KeyedProcessFunction for LinesPerUser {
    type Key = String;
    type In = String;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&SEEN)
    }

    fn process_element(
        &mut self,
        _line: String,
        ctx: &mut Context<'_, String>,
        _out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let n = ctx.value(&SEEN).get()?.unwrap_or(0);
        if n == 0 {
            ctx.timer_service().register_event_time_timer(i64::MAX)?;
        }
        ctx.value(&SEEN).update(&(n + 1))
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        ctx: &mut Context<'_, String>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let n = ctx.value(&SEEN).get()?.unwrap_or(0);
        out.collect(format!("{},{n}", ctx.key()))
    }
}

const WAITING: MapStateDescriptor<i64, String> = MapStateDescriptor::new("waiting");

/// Joins clicks and views of the same user and 1 s bucket arriving on two connected
/// streams: the first record of a bucket waits in state for a record of the other input; a
/// pair is emitted once, an unmatched record when the watermark passes its bucket.
#[derive(Clone)]
pub struct PairUp;

impl PairUp {
    fn meet(
        &self,
        e: Event,
        ctx: &mut Context<'_, u64>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let end = bucket_end(e.ts);
        match ctx.map(&WAITING).get(&end)? {
            Some(other) if other != "paired" && other != e.kind => {
                ctx.map(&WAITING).put(&end, &"paired".to_string())?;
                out.collect(format!("{},{end},pair", e.user))
            }
            Some(_) => Ok(()),
            None => {
                ctx.timer_service().register_event_time_timer(end)?;
                ctx.map(&WAITING).put(&end, &e.kind)
            }
        }
    }
}

impl KeyedCoProcessFunction for PairUp {
    type Key = u64;
    type In1 = Event;
    type In2 = Event;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&WAITING)
    }
    fn process_element1(
        &mut self,
        e: Event,
        ctx: &mut Context<'_, u64>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        self.meet(e, ctx, out)
    }
    fn process_element2(
        &mut self,
        e: Event,
        ctx: &mut Context<'_, u64>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        self.meet(e, ctx, out)
    }
    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut Context<'_, u64>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let state = ctx.map(&WAITING).get(&timestamp)?;
        ctx.map(&WAITING).remove(&timestamp)?;
        match state {
            Some(s) if s != "paired" => out.collect(format!("{},{timestamp},{s} only", ctx.key())),
            _ => Ok(()),
        }
    }
}

/// From event time `ts` on, every `every`-th event of a user raises an alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rule {
    /// Event time (ms) the rule applies from.
    pub ts: i64,
    /// Alert on every this many events.
    pub every: u64,
}

/// The rules the rules source emits.
pub const RULES: [Rule; 3] = [
    Rule { ts: 0, every: 3 },
    Rule {
        ts: 30_000,
        every: 5,
    },
    Rule {
        ts: 70_000,
        every: 2,
    },
];

/// The [`RULES`], all read by subtask 0 (its position: how many it emitted).
#[derive(Clone)]
pub struct Rules;

struct RulesReader {
    next: usize,
    mine: bool,
}

impl Source<Rule> for Rules {
    fn create_reader(
        &self,
        ctx: &TaskContext,
        positions: Vec<serde_json::Value>,
    ) -> Result<Box<dyn SourceReader<Rule>>, TaskError> {
        let next = positions
            .iter()
            .filter_map(|v| v.as_u64())
            .max()
            .unwrap_or(0) as usize;
        Ok(Box::new(RulesReader {
            next,
            mine: ctx.subtask == 0,
        }))
    }
}

impl SourceReader<Rule> for RulesReader {
    fn read_batch(&mut self, out: &mut Vec<Rule>, _max: usize) -> Result<bool, TaskError> {
        if self.mine && self.next < RULES.len() {
            out.push(RULES[self.next].clone());
            self.next += 1;
            return Ok(true);
        }
        Ok(false)
    }
    fn positions(&self) -> Vec<serde_json::Value> {
        if self.mine {
            vec![self.next.into()]
        } else {
            Vec::new()
        }
    }
}

/// Broadcast state of [`Alerts`]: rule start (ms) -> every.
pub const EVERY: MapStateDescriptor<i64, u64> = MapStateDescriptor::new("every");
static SEEN_EVENTS: ValueStateDescriptor<u64> = ValueStateDescriptor::new("seen");
static SEEN_EVENTS_V2: ValueStateDescriptor<u64> =
    ValueStateDescriptor::new("seen").with_version(2);
const PENDING: MapStateDescriptor<i64, u64> = MapStateDescriptor::new("pending");

/// Counts each user's events in event-time order (buffered until the watermark passes them,
/// so that every rule up to their time has arrived) and alerts `user,ts,count` on every n-th,
/// n from the rule in force at the event's time, read from broadcast state. Its count is state
/// `seen`, declared at version 1, or 2 with [`Alerts::with_seen_version_2`] (a descriptor
/// change without a migration, which a restore must refuse).
#[derive(Clone, Default)]
pub struct Alerts {
    seen_v2: bool,
}

impl Alerts {
    /// Declares state `seen` at version 2.
    pub fn with_seen_version_2(mut self) -> Self {
        self.seen_v2 = true;
        self
    }

    fn seen(&self) -> &'static ValueStateDescriptor<u64> {
        if self.seen_v2 {
            &SEEN_EVENTS_V2
        } else {
            &SEEN_EVENTS
        }
    }
}

impl KeyedBroadcastProcessFunction for Alerts {
    type Key = u64;
    type In = Event;
    type Broadcast = Rule;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(self.seen())?;
        ctx.declare(&PENDING)
    }

    fn process_element(
        &mut self,
        e: Event,
        ctx: &mut Context<'_, u64>,
        _rules: &BroadcastState,
        _out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let n = ctx.map(&PENDING).get(&e.ts)?.unwrap_or(0);
        ctx.map(&PENDING).put(&e.ts, &(n + 1))?;
        ctx.timer_service().register_event_time_timer(e.ts)
    }

    fn process_broadcast_element(
        &mut self,
        rule: Rule,
        _ctx: &mut BroadcastContext<'_>,
        rules: &mut BroadcastState,
        _out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        rules.get_mut(&EVERY)?.insert(rule.ts, rule.every);
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut Context<'_, u64>,
        rules: &BroadcastState,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let every = *rules
            .get(&EVERY)?
            .range(..=t)
            .next_back()
            .map(|(_, e)| e)
            .ok_or_else(|| TaskError::Data(format!("no rule at {t}")))?;
        let n = ctx.map(&PENDING).get(&t)?.unwrap_or(0);
        ctx.map(&PENDING).remove(&t)?;
        let mut seen = ctx.value(self.seen()).get()?.unwrap_or(0);
        for _ in 0..n {
            seen += 1;
            if seen.is_multiple_of(every) {
                out.collect(format!("{},{t},{seen}", ctx.key()))?;
            }
        }
        ctx.value(self.seen()).update(&seen)
    }
}

const COUNT: OperatorListDescriptor<u64> = OperatorListDescriptor::split("count");

/// Counts the records of its subtask (split operator state) and emits
/// `milestone,subtask,count` at every hundredth: independent of how its inputs interleave.
#[derive(Clone, Default)]
pub struct Milestones {
    count: u64,
}

impl ProcessFunction for Milestones {
    type In = Event;
    type Out = String;

    fn open(&mut self, ctx: &mut StateContext<'_>) -> Result<(), TaskError> {
        self.count = ctx.restored(&COUNT)?.iter().sum();
        Ok(())
    }

    fn process_element(
        &mut self,
        _e: Event,
        ctx: &mut ProcessContext<'_>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        self.count += 1;
        if self.count.is_multiple_of(100) {
            out.collect(format!("milestone,{},{}", ctx.subtask(), self.count))?;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, ctx: &mut StateContext<'_>) -> Result<(), TaskError> {
        ctx.set(&COUNT, &[self.count])
    }
}

/// A [`FileSink`] encoder writing strings as lines.
pub fn lines() -> LineEncoder<String> {
    Arc::new(|v: &String, out: &mut Vec<u8>| out.extend_from_slice(v.as_bytes()))
}

/// The outputs of the job, by directory name under `output`.
pub const OUTPUTS: [&str; 6] = ["buckets", "bad", "counts", "pairs", "alerts", "milestones"];

/// The job over `events` events per source, writing under `output` (see the crate docs).
///
/// # Errors
/// A graph error (never, for this graph).
pub fn graph(events: u64, output: &str, rate: Option<u64>) -> Result<JobGraph, TaskError> {
    graph_with(events, output, rate, Alerts::default())
}

/// [`graph`] with `alerts` as the broadcast function.
///
/// # Errors
/// A graph error (never, for this graph).
pub fn graph_with(
    events: u64,
    output: &str,
    rate: Option<u64>,
    alerts: Alerts,
) -> Result<JobGraph, TaskError> {
    let job = JobBuilder::new();
    let dir = |name: &str| std::path::PathBuf::from(format!("{output}/{name}"));
    let source = |uid: &str, kind: &'static str| {
        job.source(
            uid,
            Events {
                n: events,
                kind,
                max_records_per_second: rate,
            },
            WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts),
        )
    };
    let clicks = source("clicks", "click");
    let views = source("views", "view");
    let rules = job
        .source(
            "rules",
            Rules,
            WatermarkStrategy::bounded_out_of_orderness(0, |r: &Rule| r.ts),
        )
        .broadcast(&EVERY);
    let all = clicks.union(std::slice::from_ref(&views));
    let buckets = all
        .key_by(|e: &Event| format!("{},{}", e.user, bucket_end(e.ts)))
        .process("buckets", Buckets);
    buckets
        .side_output(&BAD)
        .map(|e: Event| format!("{},{},{}", e.user, e.ts, e.kind))
        .sink("bad-sink", FileSink::new(dir("bad"), lines()));
    buckets.sink("bucket-sink", FileSink::new(dir("buckets"), lines()));
    buckets
        .key_by(|l: &String| l.split(',').next().unwrap_or_default().to_string())
        .process("lines-per-user", LinesPerUser)
        .sink("count-sink", FileSink::new(dir("counts"), lines()));
    let good = |e: &Event| e.kind != "bad";
    clicks
        .filter(good)
        .key_by(|e: &Event| e.user)
        .connect(&views.filter(good).key_by(|e: &Event| e.user))
        .process("pairs", PairUp)
        .sink("pair-sink", FileSink::new(dir("pairs"), lines()));
    clicks
        .key_by(|e: &Event| e.user)
        .connect_broadcast(&rules)
        .process("alerts", alerts)
        .sink("alert-sink", FileSink::new(dir("alerts"), lines()));
    all.process("milestones", Milestones::default())
        .sink("milestone-sink", FileSink::new(dir("milestones"), lines()));
    job.set_output(output);
    job.build()
}

/// Builds the job from `job.args` (see the crate docs).
///
/// # Errors
/// [`ArgError`] naming the argument that is missing or malformed.
pub fn build(args: &JobArgs) -> Result<JobGraph, ArgError> {
    let output = args
        .get("output")
        .ok_or_else(|| ArgError::new("output", "required: the directory of the outputs"))?;
    let rate = optional_arg(args, "maxRecordsPerSecond")?;
    let alerts = match optional_arg::<u32>(args, "alertsSeenVersion")?.unwrap_or(1) {
        1 => Alerts::default(),
        2 => Alerts::default().with_seen_version_2(),
        v => {
            return Err(ArgError::new(
                "alertsSeenVersion",
                format!("{v} is not 1 or 2"),
            ))
        }
    };
    graph_with(
        optional_arg(args, "events")?.unwrap_or(20_000),
        output,
        rate,
        alerts,
    )
    .map_err(|e| ArgError::new("(job graph)", e.to_string()))
}

/// The built-in jobs plus `function-kinds`.
pub fn registry() -> Registry {
    let mut registry = Registry::builtin();
    registry.register(
        ENTRY,
        JobEntry {
            description: "every kind of user function over clicks, views and broadcast rules",
            build,
        },
    );
    registry
}

/// The reference output of each directory of [`OUTPUTS`] for `events` events per source at
/// `parallelism` (only the milestones depend on it), sorted lines.
pub fn reference(events: u64, parallelism: u32) -> BTreeMap<&'static str, Vec<String>> {
    let clicks: Vec<Event> = (0..events).map(|i| event("click", i)).collect();
    let views: Vec<Event> = (0..events).map(|i| event("view", i)).collect();
    let all: Vec<&Event> = clicks.iter().chain(&views).collect();
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();

    let mut per_bucket: BTreeMap<(u64, i64), Vec<&Event>> = BTreeMap::new();
    for e in &all {
        if e.kind == "bad" {
            out.entry("bad")
                .or_default()
                .push(format!("{},{},{}", e.user, e.ts, e.kind));
        } else {
            per_bucket
                .entry((e.user, bucket_end(e.ts)))
                .or_default()
                .push(e);
        }
    }
    let mut lines_per_user: BTreeMap<u64, u64> = BTreeMap::new();
    for ((user, end), events) in &per_bucket {
        let mut kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        kinds.sort();
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for k in &kinds {
            *counts.entry(k).or_default() += 1;
        }
        // Map state iterates in the order of the keys' encoding (postcard: length first).
        let mut counts: Vec<(&str, u64)> = counts.into_iter().collect();
        counts.sort_by_key(|(k, _)| (k.len(), *k));
        let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let total: i64 = events.iter().map(|e| e.ts).sum();
        out.entry("buckets").or_default().push(format!(
            "{user},{end},{},{},{total}",
            kinds.join("|"),
            counts.join("|")
        ));
        *lines_per_user.entry(*user).or_default() += 1;
    }
    out.insert(
        "counts",
        lines_per_user
            .iter()
            .map(|(u, n)| format!("{u},{n}"))
            .collect(),
    );

    let mut pairs: BTreeMap<(u64, i64), std::collections::BTreeSet<&str>> = BTreeMap::new();
    for e in all.iter().filter(|e| e.kind != "bad") {
        pairs
            .entry((e.user, bucket_end(e.ts)))
            .or_default()
            .insert(&e.kind);
    }
    out.insert(
        "pairs",
        pairs
            .iter()
            .map(|((user, end), kinds)| match kinds.len() {
                1 => format!("{user},{end},{} only", kinds.first().unwrap()),
                _ => format!("{user},{end},pair"),
            })
            .collect(),
    );

    out.insert("alerts", reference_alerts(std::slice::from_ref(&clicks)));

    let mut milestones = Vec::new();
    for s in 0..parallelism as u64 {
        let mine = (0..events)
            .filter(|i| (i % SPLITS) % parallelism as u64 == s)
            .count() as u64
            * 2;
        milestones.extend((1..=mine / 100).map(|k| format!("milestone,{s},{}", k * 100)));
    }
    out.insert("milestones", milestones);
    for lines in out.values_mut() {
        lines.sort();
    }
    out
}

/// The first difference between `actual` and `expected` sorted lines (`None` when equal), short
/// enough for a test failure message.
pub fn first_difference(actual: &[String], expected: &[String]) -> Option<String> {
    if actual == expected {
        return None;
    }
    let at = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    Some(format!(
        "{} lines, expected {}; first difference at line {at}: {:?} instead of {:?}",
        actual.len(),
        expected.len(),
        actual.get(at),
        expected.get(at)
    ))
}

/// The alerts of [`Alerts`] over `runs` (the events of each run in turn, keyed state carried
/// from one run to the next), sorted.
pub fn reference_alerts(runs: &[Vec<Event>]) -> Vec<String> {
    let every = |t: i64| {
        RULES
            .iter()
            .rev()
            .find(|r| r.ts <= t)
            .expect("a rule from 0")
            .every
    };
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for events in runs {
        let mut events = events.clone();
        events.sort_by_key(|e| (e.user, e.ts));
        for e in events {
            let s = seen.entry(e.user).or_default();
            *s += 1;
            if s.is_multiple_of(every(e.ts)) {
                out.push(format!("{},{},{s}", e.user, e.ts));
            }
        }
    }
    out.sort();
    out
}
