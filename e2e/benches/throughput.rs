//! Throughput benchmark of `csv-window-aggregate` on the Nexmark-style bid data of
//! `../shared/bench/gen_bids.py` (regenerated here bit for bit, see `weir_e2e::bids`): bids
//! counted per auction per 10-second tumbling event-time window, parallelism 2, exactly-once
//! checkpoints every 10 s to a local directory, once per state backend.
//!
//! Prints records/s over the whole input (process start to finish, like Flink's figures from
//! job submission to finish), peak memory, checkpoint durations and sizes, and ratios: against
//! Apache Flink 2.3's best run of the same query on this kind of machine
//! (`../shared/bench/README.md`), and RocksDB against heap measured in the same run.
//!
//! ```text
//! cargo build --release -p weir-runtime && cargo bench -p weir-e2e --bench throughput
//! ```
//! Environment: `WEIR_BENCH_ROWS` (default 10000000), `WEIR_BENCH_DATA` (data directory,
//! default `<target>/weir-bench/bids-<rows>`).

use std::path::PathBuf;

use weir_e2e::timed_run;

/// Flink 2.3 best-run records/s for the tumbling-window query (heap, RocksDB).
const FLINK_BEST: [(&str, f64); 2] = [("heap", 268_000.0), ("rocksdb", 104_000.0)];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = weir_e2e::bids::rows_from_env(10_000_000);
    let data = std::env::var("WEIR_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| weir_e2e::bids::bench_dir().join(format!("bids-{rows}")));
    if !data.join("part-1.csv").exists() {
        eprintln!("generating {rows} bids into {}", data.display());
        weir_e2e::bids::generate(&data, rows, 2);
    }
    println!("input: {rows} rows in {}", data.display());
    println!();
    println!("| backend | records/s | vs Flink best | vs heap (same run) | wall s | peak RSS MiB | checkpoints | ckpt mean ms | ckpt max ms | largest ckpt MiB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut heap_rps = None;
    for (backend, flink) in FLINK_BEST {
        let work = tempfile::tempdir().unwrap();
        let manifest = work.path().join("bench.yaml");
        let summary = work.path().join("summary.json");
        std::fs::write(
            &manifest,
            weir_e2e::bids::window_job_yaml(
                &format!("bench-bids-{backend}"),
                &data.display().to_string(),
                &work.path().join("out").display().to_string(),
                backend,
                &work.path().join("ckpt"),
                "      header: \"false\"\n",
            ),
        )
        .unwrap();
        let (wall, s) = timed_run(&manifest, &summary);
        let rps = rows as f64 / wall;
        assert_eq!(
            s["recordsIn"].as_u64(),
            Some(rows),
            "{backend}: not every row was read"
        );
        let vs_heap = *heap_rps.get_or_insert(rps);
        println!(
            "| {backend} | {rps:.0} | {:.2}x | {:.2}x | {wall:.2} | {} | {} | {:.0} | {:.0} | {:.1} |",
            rps / flink,
            rps / vs_heap,
            s["peakRssBytes"].as_u64().unwrap_or(0) / (1 << 20),
            s["checkpointsCompleted"],
            s["checkpointDurationMeanMs"].as_f64().unwrap_or(0.0),
            s["checkpointDurationMaxMs"].as_f64().unwrap_or(0.0),
            s["checkpointSizeMaxBytes"].as_f64().unwrap_or(0.0) / 1048576.0,
        );
    }
}
