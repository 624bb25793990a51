//! Benchmark of a keyed process function on the Nexmark-style bid data (`weir_e2e::bids`):
//! per auction, a `ValueState` read and updated on every record and one event-time timer
//! registered per record (at the end of the record's 10-second window, so most registrations
//! hit an existing timer and every auction's timers fire as event time passes), parallelism 2,
//! exactly-once checkpoints every 10 s to a local directory, once per state backend.
//!
//! Each backend runs in a child process (this binary with `--child <backend>`), so peak
//! memory is the run's own. Prints records/s, peak RSS, checkpoint durations and the RocksDB
//! to heap ratio measured in the same run.
//!
//! ```text
//! cargo bench -p weir-e2e --bench process_function
//! ```
//! Environment: `WEIR_BENCH_ROWS` (default 10000000).

use std::process::Command;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_runtime::api::{
    Context, JobBuilder, KeyedProcessFunction, OpenContext, Output, TaskError, Timestamp,
    ValueStateDescriptor, WatermarkStrategy,
};
use weir_runtime::connectors::csv_source::{CsvSourceConfig, RecordParser};
use weir_runtime::connectors::file_sink::LineEncoder;
use weir_runtime::connectors::{CsvSource, FileSink};
use weir_runtime::jobs::csv_window_aggregate::parse_default_timestamp;
use weir_runtime::runner::{peak_rss_bytes, run_job, RunOptions};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bid {
    auction: u64,
    price: u64,
    ts: i64,
}

const STATS: ValueStateDescriptor<(u64, u64)> = ValueStateDescriptor::new("count-and-max");

/// Per auction and 10 s window: the count and the highest price, emitted when the window's
/// timer fires.
#[derive(Clone)]
struct WindowStats;

impl KeyedProcessFunction for WindowStats {
    type Key = u64;
    type In = Bid;
    type Out = (u64, i64, u64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&STATS)
    }

    fn process_element(
        &mut self,
        bid: Bid,
        ctx: &mut Context<'_, u64>,
        _out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        let (count, max) = ctx.value(&STATS).get()?.unwrap_or((0, 0));
        ctx.value(&STATS).update(&(count + 1, max.max(bid.price)))?;
        let end = bid.ts - bid.ts.rem_euclid(10_000) + 10_000;
        ctx.timer_service().register_event_time_timer(end)
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut Context<'_, u64>,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        let (count, max) = ctx.value(&STATS).get()?.unwrap_or((0, 0));
        ctx.value(&STATS).clear()?;
        out.collect((*ctx.key(), timestamp, count, max))
    }
}

fn child(backend: &str, data: &std::path::Path) {
    let work = tempfile::tempdir().unwrap();
    let yaml = format!(
        "apiVersion: weir.dev/v1alpha1\nkind: StreamJob\nmetadata: {{name: bench-process-{backend}}}\nspec:\n  job: {{entry: bench, parallelism: 2}}\n  checkpointing: {{interval: 10s, storage: 'file://{}'}}\n  stateBackend: {backend}\n",
        work.path().join("ckpt").display()
    );
    let manifest = weir_crds::load_manifest(&yaml).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let parse: RecordParser<Bid> = Arc::new(|r: &csv::ByteRecord| {
        let num = |i: usize| -> Result<u64, String> {
            std::str::from_utf8(r.get(i).unwrap_or_default())
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("field {i} is not a number"))
        };
        Ok(Bid {
            auction: num(0)?,
            price: num(2)?,
            ts: parse_default_timestamp(r.get(3).unwrap_or_default()).ok_or("bad timestamp")?,
        })
    });
    let source = CsvSource::new(
        CsvSourceConfig {
            files,
            has_header: false,
            delimiter: b',',
            max_records_per_second: None,
            dead_letter: None,
        },
        parse,
    );
    let encode: LineEncoder<(u64, i64, u64, u64)> = Arc::new(|r, out| {
        out.extend_from_slice(format!("{},{},{},{}", r.0, r.1, r.2, r.3).as_bytes())
    });
    let job = JobBuilder::new();
    job.source(
        "bids",
        source,
        WatermarkStrategy::bounded_out_of_orderness(5_000, |b: &Bid| b.ts),
    )
    .key_by(|b: &Bid| b.auction)
    .process("window-stats", WindowStats)
    .sink("out", FileSink::new(work.path().join("out"), encode));
    let options = RunOptions {
        local_state_dir: Some(work.path().join("local")),
        ..RunOptions::default()
    };
    let summary = run_job(&manifest, job.build().unwrap(), &options).unwrap();
    println!(
        "{}",
        serde_json::json!({
            "recordsPerSecond": summary.records_in as f64 / summary.elapsed_seconds,
            "elapsedSeconds": summary.elapsed_seconds,
            "peakRssMiB": peak_rss_bytes() as f64 / (1 << 20) as f64,
            "checkpoints": summary.checkpoints_completed,
            "checkpointMeanMs": summary.checkpoint_duration_mean_ms,
            "checkpointMaxMs": summary.checkpoint_duration_max_ms,
            "recordsOut": summary.records_out,
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let rows = weir_e2e::bids::rows_from_env(10_000_000);
    let data = weir_e2e::bids::cached(rows, 2);
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], &data);
        return;
    }
    println!("input: {rows} bids in {}", data.display());
    println!();
    println!("| backend | records/s | vs heap (same run) | wall s | peak RSS MiB | checkpoints | ckpt mean ms | ckpt max ms | results |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut heap = None;
    for backend in ["heap", "rocksdb"] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--child", backend])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value =
            serde_json::from_str(line.trim().lines().last().unwrap()).unwrap();
        let rps = v["recordsPerSecond"].as_f64().unwrap();
        let ratio = heap.map_or("1.00".to_string(), |h: f64| format!("{:.2}", rps / h));
        heap.get_or_insert(rps);
        println!(
            "| {backend} | {rps:.0} | {ratio} | {:.1} | {:.0} | {} | {:.0} | {:.0} | {} |",
            v["elapsedSeconds"].as_f64().unwrap(),
            v["peakRssMiB"].as_f64().unwrap(),
            v["checkpoints"],
            v["checkpointMeanMs"].as_f64().unwrap(),
            v["checkpointMaxMs"].as_f64().unwrap(),
            v["recordsOut"],
        );
    }
}
