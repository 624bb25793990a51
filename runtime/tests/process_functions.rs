//! Keyed process functions through the public API, run by the library's `run_job`: a job
//! with two sources joined by a union, a keyed process function with value, list, map and
//! reducing state and event-time timers, a side output read by its own sink, and a second
//! keyed stage; its committed output equals a reference computed here, on both backends.
//! A graph error (a uid used twice) is reported by `build` naming the uid.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_runtime::api::{
    Context, JobBuilder, JobGraph, KeyedProcessFunction, ListStateDescriptor, MapStateDescriptor,
    OpenContext, Output, OutputTag, ReducingStateDescriptor, Source, SourceReader, TaskContext,
    TaskError, Timestamp, ValueStateDescriptor, WatermarkStrategy,
};
use weir_runtime::connectors::file_sink::LineEncoder;
use weir_runtime::connectors::FileSink;
use weir_runtime::runner::{run_job, RunOptions};

/// A click or a view of a user at a time (ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Event {
    user: u64,
    ts: i64,
    kind: String,
}

/// Events `0..n` of one kind; subtask s of p reads those with `i % p == s`, in order; its
/// position is the next index.
#[derive(Clone)]
struct Events {
    n: u64,
    kind: &'static str,
}

fn event(kind: &str, i: u64) -> Event {
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

struct EventReader {
    src: Events,
    next: u64,
    step: u64,
}

impl Source<Event> for Events {
    fn create_reader(
        &self,
        ctx: &TaskContext,
        positions: Vec<serde_json::Value>,
    ) -> Result<Box<dyn SourceReader<Event>>, TaskError> {
        // Restores at the same parallelism only: each subtask gets its own position back.
        let next = positions
            .first()
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(ctx.subtask as u64);
        Ok(Box::new(EventReader {
            src: self.clone(),
            next,
            step: ctx.parallelism as u64,
        }))
    }
}

impl SourceReader<Event> for EventReader {
    fn read_batch(&mut self, out: &mut Vec<Event>, max: usize) -> Result<bool, TaskError> {
        for _ in 0..max {
            if self.next >= self.src.n {
                return Ok(false);
            }
            out.push(event(self.src.kind, self.next));
            self.next += self.step;
        }
        Ok(true)
    }
    fn positions(&self) -> Vec<serde_json::Value> {
        vec![self.next.into()]
    }
}

const LAST_TS: ValueStateDescriptor<i64> = ValueStateDescriptor::new("last-ts");
const KINDS: ListStateDescriptor<String> = ListStateDescriptor::new("kinds");
const COUNTS: MapStateDescriptor<String, u64> = MapStateDescriptor::new("counts");
const TOTAL: ReducingStateDescriptor<i64> = ReducingStateDescriptor::new("total", |a, b| a + b);
const BAD: OutputTag<Event> = OutputTag::new("bad");

/// The end of the 1 s bucket of event time holding `ts`.
fn bucket_end(ts: i64) -> i64 {
    ts - ts.rem_euclid(1000) + 1000
}

/// Keyed by `user,bucket end`: when the watermark passes the bucket's end, emits
/// `user,bucket end,kinds sorted,counts per kind,sum of timestamps`.
#[derive(Clone)]
struct Buckets;

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
        assert!(
            ctx.key().ends_with(&format!(",{timestamp}")),
            "timer of its own key"
        );
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

/// Counts the bucket lines per user (a second keyed stage, keyed by another key type).
#[derive(Clone)]
struct LinesPerUser;

const SEEN: ValueStateDescriptor<u64> = ValueStateDescriptor::new("seen");

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

const N: u64 = 5_000;

fn lines<T: 'static>(f: fn(&T) -> String) -> LineEncoder<T> {
    Arc::new(move |v: &T, out: &mut Vec<u8>| out.extend_from_slice(f(v).as_bytes()))
}

fn graph(dir: &Path) -> JobGraph {
    let job = JobBuilder::new();
    let wm = || WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts);
    let clicks = job.source(
        "clicks",
        Events {
            n: N,
            kind: "click",
        },
        wm(),
    );
    let views = job.source("views", Events { n: N, kind: "view" }, wm());
    let buckets = clicks
        .union(&[views])
        .key_by(|e: &Event| format!("{},{}", e.user, bucket_end(e.ts)))
        .process("buckets", Buckets);
    buckets
        .side_output(&BAD)
        .map(|e: Event| format!("{},{},{}", e.user, e.ts, e.kind))
        .sink(
            "bad-sink",
            FileSink::new(dir.join("bad"), lines(String::clone)),
        );
    buckets.sink(
        "bucket-sink",
        FileSink::new(dir.join("buckets"), lines(String::clone)),
    );
    buckets
        .key_by(|l: &String| l.split(',').next().unwrap_or_default().to_string())
        .process("lines-per-user", LinesPerUser)
        .sink(
            "count-sink",
            FileSink::new(dir.join("counts"), lines(String::clone)),
        );
    job.build().expect("graph builds")
}

fn reference() -> (Vec<String>, Vec<String>, Vec<String>) {
    let events: Vec<Event> = ["click", "view"]
        .iter()
        .flat_map(|k| (0..N).map(move |i| event(k, i)))
        .collect();
    let mut bad: Vec<String> = events
        .iter()
        .filter(|e| e.kind == "bad")
        .map(|e| format!("{},{},{}", e.user, e.ts, e.kind))
        .collect();
    bad.sort();
    let mut per: BTreeMap<(u64, i64), Vec<&Event>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind != "bad") {
        per.entry((e.user, bucket_end(e.ts))).or_default().push(e);
    }
    let mut buckets = Vec::new();
    let mut per_user: BTreeMap<u64, u64> = BTreeMap::new();
    for ((user, end), es) in &per {
        let mut kinds: Vec<&str> = es.iter().map(|e| e.kind.as_str()).collect();
        kinds.sort();
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for k in &kinds {
            *counts.entry(k).or_default() += 1;
        }
        // Map state iterates in the order of the keys' postcard bytes: length, then bytes.
        let mut counts: Vec<(&str, u64)> = counts.into_iter().collect();
        counts.sort_by_key(|(k, _)| (k.len(), k.to_string()));
        let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let total: i64 = es.iter().map(|e| e.ts).sum();
        buckets.push(format!(
            "{user},{end},{},{},{total}",
            kinds.join("|"),
            counts.join("|")
        ));
        *per_user.entry(*user).or_default() += 1;
    }
    buckets.sort();
    let mut counts: Vec<String> = per_user.iter().map(|(u, n)| format!("{u},{n}")).collect();
    counts.sort();
    (buckets, bad, counts)
}

/// A `StreamJob` for `run_job`: job `name` at `parallelism` over `max_parallelism` key groups
/// on `backend`, with `extra` fields of `spec.job` (`, key: value` ...), checkpointing every
/// 50 ms under `dir`.
fn manifest(
    dir: &Path,
    name: &str,
    parallelism: u32,
    max_parallelism: u32,
    backend: &str,
    extra: &str,
) -> weir_crds::LoadedManifest {
    weir_crds::load_manifest(&format!(
        "apiVersion: weir.dev/v1alpha1\nkind: StreamJob\nmetadata: {{name: {name}}}\nspec:\n  job: {{entry: test, parallelism: {parallelism}, maxParallelism: {max_parallelism}{extra}}}\n  checkpointing: {{interval: 50ms, storage: 'file://{}'}}\n  stateBackend: {backend}\n",
        dir.join("checkpoints").display()
    ))
    .expect("manifest")
}

/// Run options keeping the local state under `dir`.
fn options(dir: &Path) -> RunOptions {
    RunOptions {
        local_state_dir: Some(dir.join("local")),
        ..RunOptions::default()
    }
}

fn read_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).expect("output directory") {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-")
        {
            lines.extend(
                std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .map(String::from),
            );
        }
    }
    lines.sort();
    lines
}

fn run(backend: &str, parallelism: u32) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path(), "buckets", parallelism, 64, backend, "");
    let options = options(dir.path());
    let summary = run_job(&manifest, graph(dir.path()), &options).expect("run");
    let (buckets, bad, counts) = reference();
    assert!(buckets.len() > 1000 && !bad.is_empty());
    // Per-operator record counts follow the graph: two sources, a union, a side output.
    let op = |uid: &str| {
        let o = summary
            .operators
            .iter()
            .find(|o| o.uid == uid)
            .unwrap_or_else(|| panic!("no operator {uid} in {:?}", summary.operators));
        (o.records_in, o.records_out)
    };
    let (n, b, x, c) = (
        N,
        buckets.len() as u64,
        bad.len() as u64,
        counts.len() as u64,
    );
    assert_eq!(op("clicks"), (n, n));
    assert_eq!(op("views"), (n, n));
    assert_eq!(op("buckets"), (2 * n, b + x), "main and side outputs");
    assert_eq!(op("bucket-sink").0, b);
    assert_eq!(op("bad-sink").0, x);
    assert_eq!(op("lines-per-user"), (b, c));
    assert_eq!(op("count-sink").0, c);
    assert_eq!(
        read_lines(&dir.path().join("buckets")),
        buckets,
        "{backend} p={parallelism}"
    );
    assert_eq!(
        read_lines(&dir.path().join("bad")),
        bad,
        "{backend} p={parallelism}"
    );
    assert_eq!(
        read_lines(&dir.path().join("counts")),
        counts,
        "{backend} p={parallelism}"
    );
}

#[test]
fn union_keyed_state_timers_and_side_outputs_on_rocksdb() {
    run("rocksdb", 2);
}

#[test]
fn union_keyed_state_timers_and_side_outputs_on_heap() {
    run("heap", 3);
}

#[test]
fn a_uid_used_twice_is_a_graph_error_naming_it() {
    let job = JobBuilder::new();
    let wm = || WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts);
    let s = job.source("events", Events { n: 1, kind: "x" }, wm());
    s.key_by(|e: &Event| e.user.to_string())
        .process("events", Buckets);
    let err = job.build().err().expect("duplicate uid refused");
    assert!(
        err.to_string()
            .contains("operator uid `events` is used twice"),
        "{err}"
    );
}

/// Joins clicks and views of the same user and 1 s bucket arriving on two connected
/// streams: the first record of a bucket waits in state for a record of the other input;
/// a pair is emitted once, an unmatched record when the watermark passes its bucket.
#[derive(Clone)]
struct PairUp;

const WAITING: MapStateDescriptor<i64, String> = MapStateDescriptor::new("waiting");

impl PairUp {
    fn meet(
        &self,
        e: Event,
        ctx: &mut Context<'_, u64>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let end = e.ts - e.ts.rem_euclid(1000) + 1000;
        match ctx.map(&WAITING).get(&end)? {
            Some(other) if !other.starts_with(&e.kind) => {
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

impl weir_runtime::api::KeyedCoProcessFunction for PairUp {
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

#[test]
fn connected_streams_share_keyed_state_and_timers() {
    let dir = tempfile::tempdir().unwrap();
    let job = JobBuilder::new();
    let wm = || WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts);
    let good = |e: &Event| e.kind != "bad";
    let clicks = job
        .source(
            "clicks",
            Events {
                n: N,
                kind: "click",
            },
            wm(),
        )
        .filter(good)
        .key_by(|e: &Event| e.user);
    let views = job
        .source("views", Events { n: N, kind: "view" }, wm())
        .filter(good)
        .key_by(|e: &Event| e.user);
    clicks.connect(&views).process("pair-up", PairUp).sink(
        "pairs",
        FileSink::new(dir.path().join("pairs"), lines(String::clone)),
    );
    let graph = job.build().unwrap();
    let manifest = manifest(dir.path(), "pairs", 2, 32, "rocksdb", "");
    let options = options(dir.path());
    run_job(&manifest, graph, &options).expect("run");

    let mut per: BTreeMap<(u64, i64), BTreeMap<String, u32>> = BTreeMap::new();
    for k in ["click", "view"] {
        for e in (0..N).map(|i| event(k, i)).filter(|e| e.kind != "bad") {
            *per.entry((e.user, bucket_end(e.ts)))
                .or_default()
                .entry(e.kind)
                .or_default() += 1;
        }
    }
    let mut expected: Vec<String> = per
        .iter()
        .map(
            |((user, end), kinds)| match kinds.keys().collect::<Vec<_>>().as_slice() {
                [only] => format!("{user},{end},{only} only"),
                _ => format!("{user},{end},pair"),
            },
        )
        .collect();
    expected.sort();
    assert!(expected.iter().any(|l| l.ends_with("pair")));
    assert!(expected.iter().any(|l| l.ends_with("only")));
    assert_eq!(read_lines(&dir.path().join("pairs")), expected);
}

/// Processing-time timers fired so far (by [`PingLater`]).
static FIRED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const KEYS: u64 = 10;

/// Subtask 0 emits keys `0..KEYS` once, then holds the input open (empty batches) until every
/// key's processing-time timer fired, or 20 s passed.
struct WaitForTimers;

struct WaitForTimersReader {
    emitted: bool,
    started: std::time::Instant,
}

impl Source<u64> for WaitForTimers {
    fn create_reader(
        &self,
        ctx: &TaskContext,
        _positions: Vec<serde_json::Value>,
    ) -> Result<Box<dyn SourceReader<u64>>, TaskError> {
        Ok(Box::new(WaitForTimersReader {
            emitted: ctx.subtask != 0,
            started: std::time::Instant::now(),
        }))
    }
}

impl SourceReader<u64> for WaitForTimersReader {
    fn read_batch(&mut self, out: &mut Vec<u64>, _max: usize) -> Result<bool, TaskError> {
        if !self.emitted {
            self.emitted = true;
            out.extend(0..KEYS);
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        let done = FIRED.load(std::sync::atomic::Ordering::SeqCst) >= KEYS as usize;
        Ok(!done && self.started.elapsed().as_secs() < 20)
    }
    fn positions(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }
}

/// Sets a processing-time timer 30 ms ahead per key (and, for even keys, a second one that
/// it deletes again); each firing emits `key,domain`.
#[derive(Clone)]
struct PingLater;

impl KeyedProcessFunction for PingLater {
    type Key = u64;
    type In = u64;
    type Out = String;

    fn process_element(
        &mut self,
        key: u64,
        ctx: &mut Context<'_, u64>,
        _out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let at = ctx.current_processing_time() + 30;
        ctx.timer_service().register_processing_time_timer(at)?;
        if key.is_multiple_of(2) {
            ctx.timer_service().register_processing_time_timer(at + 1)?;
            ctx.timer_service().delete_processing_time_timer(at + 1)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut Context<'_, u64>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        assert!(ctx.current_processing_time() >= timestamp, "fired early");
        FIRED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        out.collect(format!("{},{:?}", ctx.key(), ctx.time_domain()))
    }
}

#[test]
fn processing_time_timers_fire_once_on_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let job = JobBuilder::new();
    job.source(
        "keys",
        WaitForTimers,
        WatermarkStrategy::bounded_out_of_orderness(0, |_: &u64| 0),
    )
    .key_by(|k: &u64| *k)
    .process("ping-later", PingLater)
    .sink(
        "pings",
        FileSink::new(dir.path().join("pings"), lines(String::clone)),
    );
    let manifest = manifest(dir.path(), "pings", 2, 16, "heap", "");
    let options = options(dir.path());
    run_job(&manifest, job.build().unwrap(), &options).expect("run");
    let mut expected: Vec<String> = (0..KEYS)
        .map(|k| format!("{k},Some(ProcessingTime)"))
        .collect();
    expected.sort();
    assert_eq!(read_lines(&dir.path().join("pings")), expected);
}

static COUNT_V1: ValueStateDescriptor<u64> = ValueStateDescriptor::new("count");
static COUNT_V2: ValueStateDescriptor<u64> = ValueStateDescriptor::new("count").with_version(2);

/// Counts records per key in state `count`, declared at version 1 or 2.
#[derive(Clone)]
struct Counter {
    v2: bool,
}

impl Counter {
    fn state(&self) -> &'static ValueStateDescriptor<u64> {
        if self.v2 {
            &COUNT_V2
        } else {
            &COUNT_V1
        }
    }
}

impl KeyedProcessFunction for Counter {
    type Key = u64;
    type In = Event;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(self.state())
    }

    fn process_element(
        &mut self,
        _e: Event,
        ctx: &mut Context<'_, u64>,
        _out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let d = self.state();
        let n = ctx.value(d).get()?.unwrap_or(0);
        ctx.value(d).update(&(n + 1))
    }
}

#[test]
fn a_state_version_change_is_refused_on_restore_naming_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path(), "counter", 1, 16, "heap", "");
    let graph = |v2: bool| {
        let job = JobBuilder::new();
        job.source(
            "events",
            Events {
                n: 100,
                kind: "click",
            },
            WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts),
        )
        .key_by(|e: &Event| e.user)
        .process("counter", Counter { v2 })
        .sink(
            "out",
            FileSink::new(dir.path().join("out"), lines(String::clone)),
        );
        job.build().unwrap()
    };
    let options = options(dir.path());
    let first = run_job(&manifest, graph(false), &options).expect("first run");
    assert_eq!(first.restored_from, None);
    let err = run_job(&manifest, graph(true), &options).expect_err("version 2 refused");
    let msg = err.to_string();
    assert!(
        msg.contains("operator `counter` state `count` holds u64 version 1")
            && msg.contains("declares u64 version 2"),
        "{msg}"
    );
    // The same descriptor restores (the refusal changed nothing).
    let again = run_job(&manifest, graph(false), &options).expect("same version restores");
    assert!(again.restored_from.is_some());
}

/// Counts records per key as text in state `count`, version 2, migrated from version 1's
/// `u64`; emits every key's count at the end of the input.
#[derive(Clone)]
struct TextCounter {
    count: Arc<ValueStateDescriptor<String>>,
}

impl TextCounter {
    fn new() -> Self {
        Self {
            count: Arc::new(
                ValueStateDescriptor::new("count")
                    .with_version(2)
                    .with_migration(1, |old: u64| format!("{old} (migrated)")),
            ),
        }
    }
}

impl KeyedProcessFunction for TextCounter {
    type Key = u64;
    type In = Event;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(self.count.as_ref())
    }

    fn process_element(
        &mut self,
        _e: Event,
        ctx: &mut Context<'_, u64>,
        _out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let text = ctx.value(&self.count).get()?.unwrap_or_else(|| "0".into());
        let (n, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let n: u64 = n.parse().map_err(|_| TaskError::Data(text.clone()))?;
        let next = if rest.is_empty() {
            format!("{}", n + 1)
        } else {
            format!("{} {rest}", n + 1)
        };
        ctx.value(&self.count).update(&next)?;
        ctx.timer_service().register_event_time_timer(i64::MAX)
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        ctx: &mut Context<'_, u64>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let text = ctx.value(&self.count).get()?.unwrap_or_default();
        out.collect(format!("{},{text}", ctx.key()))
    }
}

#[test]
fn a_declared_migration_restores_the_old_version_into_the_new_type() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path(), "counter", 2, 16, "rocksdb", "");
    let options = options(dir.path());
    let source = |n| {
        (
            Events { n, kind: "click" },
            WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts),
        )
    };
    // Version 1 counts the first 100 events (u64 state), then the job is upgraded.
    let job = JobBuilder::new();
    let (events, wm) = source(100);
    job.source("events", events, wm)
        .key_by(|e: &Event| e.user)
        .process("counter", Counter { v2: false })
        .sink(
            "out",
            FileSink::new(dir.path().join("v1"), lines(String::clone)),
        );
    run_job(&manifest, job.build().unwrap(), &options).expect("version 1");
    // Version 2 (text) restores with the migration and counts the next 100 events on.
    let job = JobBuilder::new();
    let (events, wm) = source(200);
    job.source("events", events, wm)
        .key_by(|e: &Event| e.user)
        .process("counter", TextCounter::new())
        .sink(
            "out",
            FileSink::new(dir.path().join("v2"), lines(String::clone)),
        );
    let summary = run_job(&manifest, job.build().unwrap(), &options).expect("version 2");
    assert!(summary.restored_from.is_some());
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for i in 0..200 {
        *counts.entry(event("click", i).user).or_default() += 1;
    }
    let expected: Vec<String> = counts
        .iter()
        .map(|(u, n)| format!("{u},{n} (migrated)"))
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(read_lines(&dir.path().join("v2")), expected);
}

/// Bucket timers fired so far (by [`CountBuckets`]), and whether [`Stalled`] ended because
/// one fired while it was still open.
static BUCKETS_FIRED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static ENDED_BY_TIMERS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A source that emits nothing and stays open until a bucket timer fired (or 10 s passed).
struct Stalled;

struct StalledReader(std::time::Instant);

impl Source<Event> for Stalled {
    fn create_reader(
        &self,
        _ctx: &TaskContext,
        _positions: Vec<serde_json::Value>,
    ) -> Result<Box<dyn SourceReader<Event>>, TaskError> {
        Ok(Box::new(StalledReader(std::time::Instant::now())))
    }
}

impl SourceReader<Event> for StalledReader {
    fn read_batch(&mut self, _out: &mut Vec<Event>, _max: usize) -> Result<bool, TaskError> {
        std::thread::sleep(std::time::Duration::from_millis(5));
        if BUCKETS_FIRED.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            ENDED_BY_TIMERS.store(true, std::sync::atomic::Ordering::SeqCst);
            return Ok(false);
        }
        Ok(self.0.elapsed().as_secs() < 10)
    }
    fn positions(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }
}

/// Emits each `user,bucket end` key when the watermark passes the bucket's end.
#[derive(Clone)]
struct CountBuckets;

impl KeyedProcessFunction for CountBuckets {
    type Key = String;
    type In = Event;
    type Out = String;

    fn process_element(
        &mut self,
        e: Event,
        ctx: &mut Context<'_, String>,
        _out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        ctx.timer_service()
            .register_event_time_timer(bucket_end(e.ts))
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        ctx: &mut Context<'_, String>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        BUCKETS_FIRED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        out.collect(ctx.key().clone())
    }
}

#[test]
fn an_idle_source_does_not_hold_back_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let job = JobBuilder::new();
    let wm = || WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts);
    let clicks = job.source(
        "clicks",
        Events {
            n: 2_000,
            kind: "click",
        },
        wm(),
    );
    let stalled = job.source("stalled", Stalled, wm().with_idleness(50));
    clicks
        .union(&[stalled])
        .key_by(|e: &Event| format!("{},{}", e.user, bucket_end(e.ts)))
        .process("buckets", CountBuckets)
        .sink(
            "out",
            FileSink::new(dir.path().join("out"), lines(String::clone)),
        );
    let manifest = manifest(dir.path(), "idle", 2, 16, "heap", "");
    let options = options(dir.path());
    run_job(&manifest, job.build().unwrap(), &options).expect("run");
    assert!(
        ENDED_BY_TIMERS.load(std::sync::atomic::Ordering::SeqCst),
        "no timer fired while the stalled source was open: it held the watermark back"
    );
    let mut expected: Vec<String> = (0..2_000)
        .map(|i| event("click", i))
        .map(|e| format!("{},{}", e.user, bucket_end(e.ts)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    expected.sort();
    assert_eq!(read_lines(&dir.path().join("out")), expected);
}

const NEXT_SEQ: weir_runtime::api::OperatorListDescriptor<u64> =
    weir_runtime::api::OperatorListDescriptor::split("next-seq");
const RUNS: weir_runtime::api::OperatorListDescriptor<u32> =
    weir_runtime::api::OperatorListDescriptor::union("runs");

/// Numbers the records of each subtask 0, 1, 2, ... with the counter in split operator
/// state; its first line per run reports what it restored:
/// `open,<subtask>,<union entries>,<split entries>`.
#[derive(Clone, Default)]
struct Sequence {
    next: u64,
    restored: Option<(usize, usize)>,
}

impl weir_runtime::api::ProcessFunction for Sequence {
    type In = Event;
    type Out = String;

    fn open(&mut self, ctx: &mut weir_runtime::api::StateContext<'_>) -> Result<(), TaskError> {
        let split = ctx.restored(&NEXT_SEQ)?;
        let union = ctx.restored(&RUNS)?;
        self.next = split.iter().sum();
        self.restored = Some((union.len(), split.len()));
        Ok(())
    }

    fn process_element(
        &mut self,
        _e: Event,
        ctx: &mut weir_runtime::api::ProcessContext<'_>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        if let Some((union, split)) = self.restored.take() {
            out.collect(format!("open,{},{union},{split}", ctx.subtask()))?;
        }
        out.collect(format!("seq,{},{}", ctx.subtask(), self.next))?;
        self.next += 1;
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        ctx: &mut weir_runtime::api::StateContext<'_>,
    ) -> Result<(), TaskError> {
        ctx.set(&NEXT_SEQ, &[self.next])?;
        ctx.set(&RUNS, &[ctx.subtask()])
    }
}

#[test]
fn operator_state_is_restored_and_redistributed_by_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = |p: u32| {
        manifest(
            dir.path(),
            "seq",
            p,
            16,
            "heap",
            ", allowNonRestoredState: true",
        )
    };
    let options = options(dir.path());
    // One sink directory throughout: the sink's pending files are part of its state.
    let run = |p: u32, source_uid: &str, n: u64| {
        let job = JobBuilder::new();
        job.source(
            source_uid,
            Events { n, kind: "click" },
            WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts),
        )
        .process("sequence", Sequence::default())
        .sink(
            "out",
            FileSink::new(dir.path().join("out"), lines(String::clone)),
        );
        run_job(&manifest(p), job.build().unwrap(), &options).expect("run");
        read_lines(&dir.path().join("out"))
    };
    // Two runs at parallelism 2: the second continues each subtask's numbering.
    run(2, "events", 100);
    let lines = run(2, "events", 200);
    for s in 0..2 {
        let mut seqs: Vec<u64> = lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("seq,{s},")))
            .map(|n| n.parse().unwrap())
            .collect();
        seqs.sort();
        assert_eq!(seqs, (0..100).collect::<Vec<u64>>(), "subtask {s}");
    }
    assert!(lines.contains(&"open,0,1,1".to_string()), "{lines:?}");
    // At parallelism 3 (a new source, its old positions dropped): the two split entries go to
    // subtasks 0 and 1, and every subtask receives both union entries.
    let before: std::collections::BTreeSet<String> = lines.into_iter().collect();
    let lines: Vec<String> = run(3, "events-again", 30)
        .into_iter()
        .filter(|l| !before.contains(l))
        .collect();
    let opens: Vec<&String> = lines.iter().filter(|l| l.starts_with("open,")).collect();
    assert_eq!(opens, vec!["open,0,2,1", "open,1,2,1", "open,2,2,0"]);
    assert!(
        lines.contains(&"seq,2,0".to_string()),
        "subtask 2 starts from 0"
    );
    assert!(
        lines.contains(&"seq,0,100".to_string()),
        "subtask 0 continues"
    );
}

/// From event time `ts` on, every `every`-th event of a user raises an alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rule {
    ts: i64,
    every: u64,
}

const RULES: [Rule; 3] = [
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

/// The rules, all read by subtask 0 (its position: how many it emitted).
#[derive(Clone)]
struct Rules;

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
        let next = positions.first().and_then(|v| v.as_u64()).unwrap_or(0) as usize;
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

const EVERY: MapStateDescriptor<i64, u64> = MapStateDescriptor::new("every");
const SEEN_EVENTS: ValueStateDescriptor<u64> = ValueStateDescriptor::new("seen");
const PENDING: MapStateDescriptor<i64, u64> = MapStateDescriptor::new("pending");

/// Counts each user's events in event-time order (buffered until the watermark passes them,
/// so that every rule up to their time has arrived) and alerts on every n-th, n from the rule
/// in force at the event's time, read from broadcast state.
#[derive(Clone)]
struct Alerts;

impl weir_runtime::api::KeyedBroadcastProcessFunction for Alerts {
    type Key = u64;
    type In = Event;
    type Broadcast = Rule;
    type Out = String;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&SEEN_EVENTS)?;
        ctx.declare(&PENDING)
    }

    fn process_element(
        &mut self,
        e: Event,
        ctx: &mut Context<'_, u64>,
        _rules: &weir_runtime::api::BroadcastState,
        _out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let n = ctx.map(&PENDING).get(&e.ts)?.unwrap_or(0);
        ctx.map(&PENDING).put(&e.ts, &(n + 1))?;
        ctx.timer_service().register_event_time_timer(e.ts)
    }

    fn process_broadcast_element(
        &mut self,
        rule: Rule,
        _ctx: &mut weir_runtime::api::BroadcastContext<'_>,
        rules: &mut weir_runtime::api::BroadcastState,
        _out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        rules.get_mut(&EVERY)?.insert(rule.ts, rule.every);
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut Context<'_, u64>,
        rules: &weir_runtime::api::BroadcastState,
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
        let mut seen = ctx.value(&SEEN_EVENTS).get()?.unwrap_or(0);
        for _ in 0..n {
            seen += 1;
            if seen.is_multiple_of(every) {
                out.collect(format!("{},{t},{seen}", ctx.key()))?;
            }
        }
        ctx.value(&SEEN_EVENTS).update(&seen)
    }
}

/// The alerts of [`Alerts`] over `runs` (events of each run, in order of runs).
fn reference_alerts(runs: &[Vec<Event>]) -> Vec<String> {
    let every = |t: i64| RULES.iter().rev().find(|r| r.ts <= t).unwrap().every;
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

#[test]
fn broadcast_state_is_checkpointed_once_and_restored_to_every_subtask_at_any_parallelism() {
    for backend in ["heap", "rocksdb"] {
        let dir = tempfile::tempdir().unwrap();
        let options = options(dir.path());
        // Each run reads a new event source (the old one's positions are dropped); the rules
        // source is restored, has nothing left to emit, and every subtask must find the rules
        // in its restored broadcast state.
        let run = |p: u32, source: &str, kind: &'static str, n: u64| {
            let job = JobBuilder::new();
            let rules = job
                .source(
                    "rules",
                    Rules,
                    WatermarkStrategy::bounded_out_of_orderness(0, |r: &Rule| r.ts),
                )
                .broadcast(&EVERY);
            job.source(
                source,
                Events { n, kind },
                WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts),
            )
            .key_by(|e: &Event| e.user)
            .connect_broadcast(&rules)
            .process("alerts", Alerts)
            .sink(
                "out",
                FileSink::new(dir.path().join("out"), lines(String::clone)),
            );
            let m = manifest(
                dir.path(),
                "rules",
                p,
                16,
                backend,
                ", allowNonRestoredState: true",
            );
            let summary = run_job(&m, job.build().unwrap(), &options).expect("run");
            // The rules reach every subtask, once, in the first run only.
            let alerts = summary
                .operators
                .iter()
                .find(|o| o.uid == "alerts")
                .unwrap();
            let broadcast = if source == "first" { 3 * p as u64 } else { 0 };
            assert_eq!(alerts.records_in, n + broadcast, "{backend} p={p}");
            (0..n).map(|i| event(kind, i)).collect::<Vec<_>>()
        };
        let runs = [
            run(2, "first", "click", 1_000),
            run(3, "second", "view", 1_000),
            run(1, "third", "open", 500),
        ];
        assert_eq!(
            read_lines(&dir.path().join("out")),
            reference_alerts(&runs),
            "{backend}"
        );
    }
}
