//! Windows through the public API, run in-process by `run_job`: tumbling `reduce`, sliding
//! `aggregate` and session `process` windows equal a batch computation over the same records
//! at parallelism 1 and 3 on both state backends; allowed lateness fires a window again with
//! the updated result and records later than that reach the late side output (or are counted
//! as dropped); processing-time windows count every record once; window and interval joins
//! equal a batch computation and leave no state behind at the end of the input.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_runtime::api::{
    AggregateFunction, JobBuilder, JobGraph, Output, OutputTag, ProcessWindowFunction, Source,
    SourceReader, TaskContext, TaskError, TimeWindow, WatermarkStrategy, WindowAssigner,
    WindowResult,
};
use weir_runtime::connectors::file_sink::LineEncoder;
use weir_runtime::connectors::FileSink;
use weir_runtime::runner::{run_job, RunOptions, RunSummary};

/// One input record: its key, event time (ms) and value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rec {
    key: u64,
    ts: i64,
    v: i64,
}

/// Reads `records` in order, one per batch, all in subtask 0 (the other subtasks own
/// nothing): the watermark after each record is the same in every run, so which records are
/// late is too.
#[derive(Clone)]
struct Script(Arc<Vec<Rec>>);

struct ScriptReader {
    records: Arc<Vec<Rec>>,
    next: usize,
    owner: bool,
}

impl Source<Rec> for Script {
    fn create_reader(
        &self,
        ctx: &TaskContext,
        positions: Vec<serde_json::Value>,
    ) -> Result<Box<dyn SourceReader<Rec>>, TaskError> {
        let next = positions.first().and_then(|p| p.as_u64()).unwrap_or(0) as usize;
        Ok(Box::new(ScriptReader {
            records: self.0.clone(),
            next,
            owner: ctx.subtask == 0,
        }))
    }
}

impl SourceReader<Rec> for ScriptReader {
    fn read_batch(&mut self, out: &mut Vec<Rec>, _max: usize) -> Result<bool, TaskError> {
        if !self.owner {
            return Ok(false);
        }
        if let Some(r) = self.records.get(self.next) {
            out.push(r.clone());
            self.next += 1;
        }
        Ok(self.next < self.records.len())
    }

    fn positions(&self) -> Vec<serde_json::Value> {
        if self.owner {
            vec![serde_json::json!(self.next)]
        } else {
            Vec::new()
        }
    }
}

fn lines<T: 'static>(f: fn(&T) -> String) -> LineEncoder<T> {
    Arc::new(move |v: &T, out: &mut Vec<u8>| out.extend_from_slice(f(v).as_bytes()))
}

/// Counts records; accumulators merge by addition.
struct Count;

impl AggregateFunction for Count {
    type In = Rec;
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, _: &Rec, acc: &mut u64) {
        *acc += 1;
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

/// Lists a session's values, sorted.
#[derive(Clone)]
struct ListValues;

impl ProcessWindowFunction for ListValues {
    type Key = u64;
    type In = Rec;
    type Out = String;

    fn process(
        &mut self,
        key: &u64,
        window: TimeWindow,
        elements: Vec<Rec>,
        out: &mut Output<'_, String>,
    ) -> Result<(), TaskError> {
        let mut values: Vec<i64> = elements.iter().map(|r| r.v).collect();
        values.sort();
        let values: Vec<String> = values.iter().map(i64::to_string).collect();
        out.collect(format!(
            "{key},{},{},{}",
            window.start,
            window.end,
            values.join(";")
        ))
    }
}

fn result_line<O: std::fmt::Display>(r: &WindowResult<u64, O>) -> String {
    format!("{},{},{},{}", r.key, r.window.start, r.window.end, r.value)
}

const TUMBLE: i64 = 1_000;
const SLIDE_SIZE: i64 = 3_000;
/// Does not divide [`SLIDE_SIZE`]: sliced into 600 ms slices.
const SLIDE: i64 = 1_200;
const GAP: i64 = 500;
const OUT_OF_ORDERNESS: i64 = 400;

/// 3000 records over 7 keys, out of order by up to 300 ms, with a pause of 2 s every 100
/// records (so sessions end).
fn records() -> Vec<Rec> {
    let mut seed = 42u64;
    (0..3000i64)
        .map(|i| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let jitter = ((seed >> 33) % 300) as i64;
            Rec {
                key: (seed >> 20) % 7,
                ts: 1_000_000 + i * 37 + (i / 100) * 2_000 + jitter,
                v: i,
            }
        })
        .collect()
}

/// The job: one keyed stream into tumbling `reduce` (sum), sliding `aggregate` (count) and
/// session `process` (values) windows, each to its own sink under `out`.
fn graph(records: Vec<Rec>, out: &Path) -> JobGraph {
    let job = JobBuilder::new();
    let keyed = job
        .source(
            "records",
            Script(Arc::new(records)),
            WatermarkStrategy::bounded_out_of_orderness(OUT_OF_ORDERNESS, |r: &Rec| r.ts),
        )
        .key_by(|r: &Rec| r.key);
    keyed
        .clone()
        .window(WindowAssigner::tumbling_event_time(TUMBLE))
        .reduce("sums", |a: Rec, b: Rec| Rec { v: a.v + b.v, ..a })
        .map(|r: WindowResult<u64, Rec>| {
            format!(
                "{},{},{},{}",
                r.key, r.window.start, r.window.end, r.value.v
            )
        })
        .sink(
            "sums-sink",
            FileSink::new(out.join("sums"), lines(|s: &String| s.clone())),
        );
    keyed
        .clone()
        .window(WindowAssigner::sliding_event_time(SLIDE_SIZE, SLIDE))
        .aggregate("counts", Count)
        .sink(
            "counts-sink",
            FileSink::new(out.join("counts"), lines(result_line::<u64>)),
        );
    keyed
        .window(WindowAssigner::event_time_session(GAP))
        .process("sessions", ListValues)
        .sink(
            "sessions-sink",
            FileSink::new(out.join("sessions"), lines(|s: &String| s.clone())),
        );
    job.build().expect("graph")
}

/// The same results as a batch computation.
fn reference(records: &[Rec]) -> BTreeMap<&'static str, Vec<String>> {
    let mut sums: BTreeMap<(u64, i64), i64> = BTreeMap::new();
    let mut counts: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    let mut by_key: BTreeMap<u64, Vec<(i64, i64)>> = BTreeMap::new();
    for r in records {
        *sums
            .entry((r.key, r.ts.div_euclid(TUMBLE) * TUMBLE))
            .or_default() += r.v;
        let last = r.ts.div_euclid(SLIDE) * SLIDE;
        let mut start = last;
        while start > r.ts - SLIDE_SIZE {
            *counts.entry((r.key, start)).or_default() += 1;
            start -= SLIDE;
        }
        by_key.entry(r.key).or_default().push((r.ts, r.v));
    }
    let mut sessions = Vec::new();
    for (key, mut recs) in by_key {
        recs.sort();
        let mut current: Option<(i64, i64, Vec<i64>)> = None;
        for (ts, v) in recs {
            current = match current {
                Some((start, end, mut values)) if ts <= end => {
                    values.push(v);
                    Some((start, end.max(ts + GAP), values))
                }
                other => {
                    if let Some(done) = other {
                        sessions.push((key, done));
                    }
                    Some((ts, ts + GAP, vec![v]))
                }
            };
        }
        sessions.extend(current.map(|c| (key, c)));
    }
    let mut out: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    out.insert(
        "sums",
        sums.iter()
            .map(|((k, s), v)| format!("{k},{s},{},{v}", s + TUMBLE))
            .collect(),
    );
    out.insert(
        "counts",
        counts
            .iter()
            .map(|((k, s), c)| format!("{k},{s},{},{c}", s + SLIDE_SIZE))
            .collect(),
    );
    out.insert(
        "sessions",
        sessions
            .into_iter()
            .map(|(k, (s, e, mut values))| {
                values.sort();
                let values: Vec<String> = values.iter().map(i64::to_string).collect();
                format!("{k},{s},{e},{}", values.join(";"))
            })
            .collect(),
    );
    for lines in out.values_mut() {
        lines.sort();
    }
    out
}

fn manifest(dir: &Path, parallelism: u32, backend: &str) -> weir_crds::LoadedManifest {
    weir_crds::load_manifest(&format!(
        "apiVersion: weir.dev/v1alpha1\nkind: StreamJob\nmetadata: {{name: windows}}\nspec:\n  job: {{entry: test, parallelism: {parallelism}, maxParallelism: 32}}\n  checkpointing: {{interval: 50ms, storage: 'file://{}'}}\n  stateBackend: {backend}\n",
        dir.join("checkpoints").display()
    ))
    .expect("manifest")
}

fn run(dir: &Path, parallelism: u32, backend: &str, graph: JobGraph) -> RunSummary {
    let options = RunOptions {
        local_state_dir: Some(dir.join("local")),
        ..RunOptions::default()
    };
    run_job(&manifest(dir, parallelism, backend), graph, &options).expect("run")
}

fn read_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).expect("output directory").flatten() {
        if e.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(String::from),
            );
        }
    }
    lines.sort();
    lines
}

fn windows_equal_the_batch_computation(backend: &str, parallelism: u32) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let records = records();
    let summary = run(
        dir.path(),
        parallelism,
        backend,
        graph(records.clone(), &out),
    );
    let reference = reference(&records);
    for (name, expected) in &reference {
        assert!(expected.len() > 20, "{name}: {}", expected.len());
        let actual = read_lines(&out.join(name));
        assert_eq!(
            actual.len(),
            expected.len(),
            "{name} on {backend} at {parallelism}"
        );
        assert_eq!(&actual, expected, "{name} on {backend} at {parallelism}");
    }
    assert!(summary.operators.iter().all(|o| o.late_records == 0));
}

#[test]
fn tumbling_sliding_and_session_windows_equal_a_batch_computation_on_heap() {
    windows_equal_the_batch_computation("heap", 1);
    windows_equal_the_batch_computation("heap", 3);
}

#[test]
fn tumbling_sliding_and_session_windows_equal_a_batch_computation_on_rocksdb() {
    windows_equal_the_batch_computation("rocksdb", 1);
    windows_equal_the_batch_computation("rocksdb", 3);
}

const LATE: OutputTag<Rec> = OutputTag::new("late");

#[test]
fn allowed_lateness_fires_again_and_later_records_reach_the_late_side_output() {
    let rec = |ts: i64, v: i64| Rec { key: 1, ts, v };
    // Watermark = largest timestamp - 1 (no out-of-orderness); windows of 10 ms kept 5 ms.
    let script = vec![
        rec(1, 1),
        rec(5, 2),
        rec(12, 3), // watermark 11: [0, 10) fires with 3
        rec(7, 4),  // within lateness: [0, 10) fires again with 7
        rec(20, 5), // watermark 19: [10, 20) fires with 3; [0, 10) is cleaned up (9 + 5 <= 19)
        rec(8, 6),  // later than the lateness: side output
        rec(16, 7), // within lateness: [10, 20) fires again with 10
    ];
    for backend in ["heap", "rocksdb"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let job = JobBuilder::new();
        let keyed = job
            .source(
                "records",
                Script(Arc::new(script.clone())),
                WatermarkStrategy::bounded_out_of_orderness(0, |r: &Rec| r.ts),
            )
            .key_by(|r: &Rec| r.key);
        let sums = keyed
            .clone()
            .window(WindowAssigner::tumbling_event_time(10))
            .allowed_lateness(5)
            .side_output_late_data(&LATE)
            .reduce("sums", |a: Rec, b: Rec| Rec { v: a.v + b.v, ..a });
        sums.side_output(&LATE).sink(
            "late-sink",
            FileSink::new(
                out.join("late"),
                lines(|r: &Rec| format!("{},{}", r.ts, r.v)),
            ),
        );
        sums.sink(
            "sums-sink",
            FileSink::new(
                out.join("sums"),
                lines(|r: &WindowResult<u64, Rec>| {
                    format!("{},{},{}", r.window.start, r.window.end, r.value.v)
                }),
            ),
        );
        // Without lateness or side output, the late records are dropped and counted.
        keyed
            .window(WindowAssigner::tumbling_event_time(10).with_offset(0))
            .aggregate("counts", Count)
            .sink(
                "counts-sink",
                FileSink::new(out.join("counts"), lines(result_line::<u64>)),
            );
        // Parallelism 1: with idle source subtasks the watermark would wait for them, and which
        // records are late would depend on timing.
        let summary = run(dir.path(), 1, backend, job.build().unwrap());
        let mut sums = read_lines(&out.join("sums"));
        sums.sort();
        assert_eq!(
            sums,
            ["0,10,3", "0,10,7", "10,20,10", "10,20,3", "20,30,5"],
            "{backend}"
        );
        assert_eq!(read_lines(&out.join("late")), ["8,6"], "{backend}");
        assert_eq!(
            read_lines(&out.join("counts")),
            ["1,0,10,2", "1,10,20,1", "1,20,30,1"],
            "{backend}"
        );
        let late = |uid: &str| {
            summary
                .operators
                .iter()
                .find(|o| o.uid == uid)
                .map(|o| o.late_records)
        };
        assert_eq!(late("sums"), Some(0), "side output, not dropped");
        assert_eq!(late("counts"), Some(3), "7, 8 and 16 dropped");
    }
}

#[test]
fn a_late_record_within_the_lateness_merges_two_fired_sessions() {
    let rec = |ts: i64, v: i64| Rec { key: 3, ts, v };
    // Sessions with a gap of 10: [0, 10) and [15, 25) fire by watermark 29 and are kept 25 ms
    // more; the record at 8 bridges them into [0, 25), which fires at once.
    let script = vec![rec(0, 1), rec(15, 2), rec(30, 3), rec(8, 4), rec(100, 5)];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let job = JobBuilder::new();
    job.source(
        "records",
        Script(Arc::new(script)),
        WatermarkStrategy::bounded_out_of_orderness(0, |r: &Rec| r.ts),
    )
    .key_by(|r: &Rec| r.key)
    .window(WindowAssigner::event_time_session(10))
    .allowed_lateness(25)
    .process("sessions", ListValues)
    .sink(
        "sessions-sink",
        FileSink::new(out.join("sessions"), lines(|s: &String| s.clone())),
    );
    run(dir.path(), 1, "heap", job.build().unwrap());
    assert_eq!(
        read_lines(&out.join("sessions")),
        [
            "3,0,10,1",
            "3,0,25,1;2;4",
            "3,100,110,5",
            "3,15,25,2",
            "3,30,40,3"
        ]
    );
}

#[test]
fn processing_time_windows_count_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let records = records();
    let job = JobBuilder::new();
    job.source(
        "records",
        Script(Arc::new(records.clone())),
        WatermarkStrategy::bounded_out_of_orderness(0, |r: &Rec| r.ts),
    )
    .key_by(|r: &Rec| r.key)
    .window(WindowAssigner::tumbling_processing_time(20))
    .aggregate("counts", Count)
    .sink(
        "counts-sink",
        FileSink::new(out.join("counts"), lines(result_line::<u64>)),
    );
    run(dir.path(), 2, "rocksdb", job.build().unwrap());
    let mut per_key: BTreeMap<u64, u64> = BTreeMap::new();
    for line in read_lines(&out.join("counts")) {
        let f: Vec<&str> = line.split(',').collect();
        let (start, end): (i64, i64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        assert_eq!(end - start, 20, "{line}");
        assert!(start > 1_600_000_000_000, "processing time: {line}");
        *per_key.entry(f[0].parse().unwrap()).or_default() += f[3].parse::<u64>().unwrap();
    }
    let mut expected: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &records {
        *expected.entry(r.key).or_default() += 1;
    }
    assert_eq!(per_key, expected);
}

#[test]
fn a_window_without_a_positive_size_is_refused_when_the_job_is_built() {
    let job = JobBuilder::new();
    job.source(
        "records",
        Script(Arc::new(Vec::new())),
        WatermarkStrategy::bounded_out_of_orderness(0, |r: &Rec| r.ts),
    )
    .key_by(|r: &Rec| r.key)
    .window(WindowAssigner::sliding_event_time(1_000, 0))
    .aggregate("counts", Count)
    .sink(
        "counts-sink",
        FileSink::new(
            std::path::Path::new("/nonexistent"),
            lines(result_line::<u64>),
        ),
    );
    let err = job.build().err().expect("refused").to_string();
    assert!(err.contains("slide must be positive"), "{err}");
}

/// Persons (by id) and auctions (by seller) for the joins: the same generator, two keys'
/// worth of streams.
fn two_streams() -> (Vec<Rec>, Vec<Rec>) {
    let all = records();
    let (a, b): (Vec<Rec>, Vec<Rec>) = all.into_iter().partition(|r| r.v % 3 == 0);
    (a, b)
}

/// The two streams keyed by `key`, each from its own source.
fn join_inputs(
    job: &JobBuilder,
    first: Vec<Rec>,
    second: Vec<Rec>,
) -> (
    weir_runtime::api::KeyedStream<u64, Rec>,
    weir_runtime::api::KeyedStream<u64, Rec>,
) {
    let wm = || WatermarkStrategy::bounded_out_of_orderness(OUT_OF_ORDERNESS, |r: &Rec| r.ts);
    let a = job
        .source("first", Script(Arc::new(first)), wm())
        .key_by(|r: &Rec| r.key);
    let b = job
        .source("second", Script(Arc::new(second)), wm())
        .key_by(|r: &Rec| r.key);
    (a, b)
}

fn pair(k: &u64, a: &Rec, b: &Rec) -> String {
    format!("{k},{},{}", a.v, b.v)
}

/// The entries of operator `uid`'s keyed state in the job's last checkpoint (taken after the
/// input ended).
fn entries_at_the_end(summary: &RunSummary, uid: &str) -> u64 {
    let location = summary
        .last_checkpoint_location
        .as_deref()
        .expect("a final checkpoint");
    let path = location.strip_prefix("file://").expect("local checkpoint");
    let bytes = std::fs::read(Path::new(path).join("_metadata")).expect("_metadata");
    let metadata = weir_runtime::checkpoint::metadata::CheckpointMetadata::decode(&bytes).unwrap();
    metadata.operators[uid]
        .subtasks
        .iter()
        .filter_map(|s| s.keyed_state.as_ref())
        .map(|k| k.entries)
        .sum()
}

#[test]
fn window_and_interval_joins_equal_a_batch_computation_and_end_with_empty_state() {
    let (first, second) = two_streams();
    let mut window_pairs = Vec::new();
    let mut interval_pairs = Vec::new();
    for a in &first {
        for b in second.iter().filter(|b| b.key == a.key) {
            if a.ts.div_euclid(TUMBLE) == b.ts.div_euclid(TUMBLE) {
                window_pairs.push(pair(&a.key, a, b));
            }
            if a.ts - 200 <= b.ts && b.ts <= a.ts + 300 {
                interval_pairs.push(pair(&a.key, a, b));
            }
        }
    }
    window_pairs.sort();
    interval_pairs.sort();
    assert!(window_pairs.len() > 100 && interval_pairs.len() > 100);
    for (backend, parallelism) in [("heap", 1), ("rocksdb", 3), ("heap", 3)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let job = JobBuilder::new();
        let (a, b) = join_inputs(&job, first.clone(), second.clone());
        a.window_join(&b, WindowAssigner::tumbling_event_time(TUMBLE))
            .apply("window-pairs", pair)
            .sink(
                "window-sink",
                FileSink::new(out.join("window"), lines(|s: &String| s.clone())),
            );
        a.interval_join(&b, -200, 300)
            .process("interval-pairs", pair)
            .sink(
                "interval-sink",
                FileSink::new(out.join("interval"), lines(|s: &String| s.clone())),
            );
        let summary = run(dir.path(), parallelism, backend, job.build().unwrap());
        let what = format!("{backend} at {parallelism}");
        assert_eq!(read_lines(&out.join("window")), window_pairs, "{what}");
        assert_eq!(read_lines(&out.join("interval")), interval_pairs, "{what}");
        // Every buffered record and its timer left state once the watermark passed them.
        assert_eq!(entries_at_the_end(&summary, "interval-pairs"), 0, "{what}");
        assert_eq!(entries_at_the_end(&summary, "window-pairs"), 0, "{what}");
    }
}

#[test]
fn an_interval_join_with_its_bounds_reversed_is_refused() {
    let job = JobBuilder::new();
    let (a, b) = join_inputs(&job, Vec::new(), Vec::new());
    a.interval_join(&b, 10, -10).process("pairs", pair).sink(
        "sink",
        FileSink::new(
            std::path::Path::new("/nonexistent"),
            lines(|s: &String| s.clone()),
        ),
    );
    let err = job.build().err().expect("refused").to_string();
    assert!(
        err.contains("lower bound (10 ms) is above the upper bound (-10 ms)"),
        "{err}"
    );
}
