//! The user API of `weir_runtime::api` exercised in-process by the library's `run_job`: the
//! job of every function kind (a union of two sources into a keyed process function with
//! value, list, map and reducing state and event-time timers, its side output, a second keyed
//! stage, connected streams, broadcast state, operator state) equals its reference on both
//! backends and at several parallelisms; processing-time timers; state versions and
//! migrations; an idle source; operator state redistribution; broadcast state restored to
//! every subtask at any parallelism; a uid used twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use weir_function_kinds::{
    event, first_difference, graph, lines, reference, reference_alerts, Alerts, Buckets, Event,
    Events, Rule, Rules, EVERY, OUTPUTS,
};
use weir_runtime::api::{
    Context, JobBuilder, KeyedProcessFunction, OpenContext, Output, Source, SourceReader,
    TaskContext, TaskError, Timestamp, ValueStateDescriptor, WatermarkStrategy,
};
use weir_runtime::connectors::FileSink;
use weir_runtime::runner::{run_job, RunOptions};

const N: u64 = 5_000;

fn bucket_end(ts: i64) -> i64 {
    weir_function_kinds::bucket_end(ts)
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
    let manifest = manifest(dir.path(), "kinds", parallelism, 64, backend, "");
    let options = options(dir.path());
    let out = dir.path().join("out");
    let summary = run_job(
        &manifest,
        graph(N, &out.display().to_string(), None).unwrap(),
        &options,
    )
    .expect("run");
    let reference = reference(N, parallelism);
    for name in OUTPUTS {
        assert!(!reference[name].is_empty(), "{name}");
        let diff = first_difference(&read_lines(&out.join(name)), &reference[name]);
        assert!(
            diff.is_none(),
            "{name}: {backend} p={parallelism}: {diff:?}"
        );
    }
    // Per-operator record counts follow the graph: two sources, a union, a side output.
    let op = |uid: &str| {
        let o = summary
            .operators
            .iter()
            .find(|o| o.uid == uid)
            .unwrap_or_else(|| panic!("no operator {uid} in {:?}", summary.operators));
        (o.records_in, o.records_out)
    };
    let count = |name: &str| reference[name].len() as u64;
    let (b, x, c) = (count("buckets"), count("bad"), count("counts"));
    // Records out are counted once per record emitted, however many consumers read them.
    assert_eq!(op("clicks"), (N, N));
    assert_eq!(op("views"), (N, N));
    assert_eq!(op("buckets"), (2 * N, b + x), "main and side outputs");
    assert_eq!(op("bucket-sink").0, b);
    assert_eq!(op("bad-sink").0, x);
    assert_eq!(op("lines-per-user"), (b, c));
    assert_eq!(op("count-sink").0, c);
    assert_eq!(
        op("alerts").0,
        N + 3 * parallelism as u64,
        "rules to every subtask"
    );
}

#[test]
fn every_function_kind_equals_its_reference_on_rocksdb() {
    run("rocksdb", 2);
}

#[test]
fn every_function_kind_equals_its_reference_on_heap() {
    run("heap", 3);
}

#[test]
fn a_uid_used_twice_is_a_graph_error_naming_it() {
    let job = JobBuilder::new();
    let wm = || WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts);
    let s = job.source("events", Events::new(1, "x"), wm());
    s.key_by(|e: &Event| e.user.to_string())
        .process("events", Buckets);
    let err = job.build().err().expect("duplicate uid refused");
    assert!(
        err.to_string()
            .contains("operator uid `events` is used twice"),
        "{err}"
    );
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
    .sink("pings", FileSink::new(dir.path().join("pings"), lines()));
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
            Events::new(100, "click"),
            WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts),
        )
        .key_by(|e: &Event| e.user)
        .process("counter", Counter { v2 })
        .sink("out", FileSink::new(dir.path().join("out"), lines()));
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
            Events::new(n, "click"),
            WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts),
        )
    };
    // Version 1 counts the first 100 events (u64 state), then the job is upgraded.
    let job = JobBuilder::new();
    let (events, wm) = source(100);
    job.source("events", events, wm)
        .key_by(|e: &Event| e.user)
        .process("counter", Counter { v2: false })
        .sink("out", FileSink::new(dir.path().join("v1"), lines()));
    run_job(&manifest, job.build().unwrap(), &options).expect("version 1");
    // Version 2 (text) restores with the migration and counts the next 100 events on.
    let job = JobBuilder::new();
    let (events, wm) = source(200);
    job.source("events", events, wm)
        .key_by(|e: &Event| e.user)
        .process("counter", TextCounter::new())
        .sink("out", FileSink::new(dir.path().join("v2"), lines()));
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
    let clicks = job.source("clicks", Events::new(2_000, "click"), wm());
    let stalled = job.source("stalled", Stalled, wm().with_idleness(50));
    clicks
        .union(&[stalled])
        .key_by(|e: &Event| format!("{},{}", e.user, bucket_end(e.ts)))
        .process("buckets", CountBuckets)
        .sink("out", FileSink::new(dir.path().join("out"), lines()));
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
            Events::new(n, "click"),
            WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts),
        )
        .process("sequence", Sequence::default())
        .sink("out", FileSink::new(dir.path().join("out"), lines()));
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
    // Union lists go whole to every subtask also at unchanged parallelism.
    assert!(lines.contains(&"open,0,2,1".to_string()), "{lines:?}");
    // At parallelism 3 (a new source, its old positions dropped): the two split entries go to
    // subtasks 0 and 1, and every subtask receives both union entries.
    let mut before: BTreeMap<String, usize> = BTreeMap::new();
    for l in lines {
        *before.entry(l).or_default() += 1;
    }
    // The lines the third run added (a line may repeat an earlier run's).
    let lines: Vec<String> = run(3, "events-again", 30)
        .into_iter()
        .filter(|l| match before.get_mut(l) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
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
                Events::new(n, kind),
                WatermarkStrategy::bounded_out_of_orderness(0, |e: &Event| e.ts),
            )
            .key_by(|e: &Event| e.user)
            .connect_broadcast(&rules)
            .process("alerts", Alerts::default())
            .sink("out", FileSink::new(dir.path().join("out"), lines()));
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

/// Subtask 0 emits `0..n`; the others emit nothing (a skewed source).
struct Skewed(u64);

struct SkewedReader {
    next: u64,
    end: u64,
}

impl Source<u64> for Skewed {
    fn create_reader(
        &self,
        ctx: &TaskContext,
        _positions: Vec<serde_json::Value>,
    ) -> Result<Box<dyn SourceReader<u64>>, TaskError> {
        Ok(Box::new(SkewedReader {
            next: 0,
            end: if ctx.subtask == 0 { self.0 } else { 0 },
        }))
    }
}

impl SourceReader<u64> for SkewedReader {
    fn read_batch(&mut self, out: &mut Vec<u64>, max: usize) -> Result<bool, TaskError> {
        let to = (self.next + max as u64).min(self.end);
        out.extend(self.next..to);
        self.next = to;
        Ok(self.next < self.end)
    }
    fn positions(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }
}

/// Tags each record with the subtask that processed it.
#[derive(Clone)]
struct WhereAmI;

impl weir_runtime::api::ProcessFunction for WhereAmI {
    type In = u64;
    type Out = String;

    fn process_element(
        &mut self,
        n: u64,
        ctx: &mut weir_runtime::api::ProcessContext<'_>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        out.collect(format!("{},{n}", ctx.subtask()))
    }
}

#[test]
fn rebalance_deals_a_skewed_stream_round_robin_over_the_subtasks() {
    let dir = tempfile::tempdir().unwrap();
    let job = JobBuilder::new();
    job.source(
        "skewed",
        Skewed(300),
        WatermarkStrategy::bounded_out_of_orderness(0, |_: &u64| 0),
    )
    .rebalance()
    .process("where", WhereAmI)
    .sink("out", FileSink::new(dir.path().join("out"), lines()));
    let graph = job.build().unwrap();
    let edge = &graph.stream_graph().edges()[0];
    assert_eq!(
        edge.partitioning,
        weir_runtime::api::Partitioning::Rebalance
    );
    let manifest = manifest(dir.path(), "skewed", 3, 16, "heap", "");
    run_job(&manifest, graph, &options(dir.path())).expect("run");
    let lines = read_lines(&dir.path().join("out"));
    assert_eq!(lines.len(), 300);
    for s in 0..3u64 {
        let mine: Vec<u64> = lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{s},")))
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(mine.len(), 100, "subtask {s}");
        assert!(mine.iter().all(|n| n % 3 == s), "in turns: {mine:?}");
    }
}
