//! Distributed execution benchmark: `weir coordinator` with 1, 2 and 3 `weir worker`
//! processes against `weir run` (one process) in the same run, on
//!
//! - the shuffle-heavy job: bids counted per auction (1,000,000 keys) per 10 s window, every
//!   record shuffled by key (with 3 workers, two thirds of the records cross TCP);
//! - the example: revenue per product per hour over the UCI retail data.
//!
//! Then the cost of aligned checkpoints (every 1 s against none) on 3 workers, and the memory
//! of workers whose consumer is throttled (the sink writes 20,000 records/s per subtask, 100 ms
//! windows so that output about equals input): with credit-based flow control the sources read
//! only as fast as the sink writes and the workers' memory stays flat.
//!
//! All jobs run 3 subtasks per operator on the heap backend; figures are records/s over the
//! whole input (process start to finish) and ratios against the single process measured in
//! the same run (the machine is shared: compare ratios, not absolute figures).
//!
//! ```text
//! cargo build --release -p weir-runtime && cargo bench -p weir-e2e --bench distributed
//! ```
//! Environment: `WEIR_BENCH_ROWS` (bids, default 3000000).

use std::process::Command;
use std::time::{Duration, Instant};

use weir_e2e::cluster::Cluster;
use weir_e2e::{retail_data, weir_bin, TestJob};

/// A job in a fresh directory: bids (`Some(dir)`) or the retail example (`None`).
fn job(bids: Option<&std::path::Path>, interval: &str, sink_rate: Option<u64>) -> TestJob {
    // Throttled runs use 100 ms windows: output about equals input, so the slow sink
    // limits the whole pipeline instead of only the firing of one large window.
    let window = if sink_rate.is_some() { "100ms" } else { "10s" };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let storage = dir.path().join("ckpt");
    let args = match bids {
        Some(data) => format!(
            r#"      input: {}
      header: "false"
      columns: auction,bidder,price,ts
      timestamp: ts
      key: auction
      window: {window}
      aggregates: count
      outOfOrderness: 5s"#,
            data.display()
        ),
        None => format!(
            r#"      input: {}
      timestamp: InvoiceDate
      key: StockCode
      value: Quantity * UnitPrice
      window: 1h
      aggregates: count,sum
      decimals: "2""#,
            retail_data().display()
        ),
    };
    let throttle = sink_rate
        .map(|r| format!("\n      sinkMaxRecordsPerSecond: \"{r}\""))
        .unwrap_or_default();
    let manifest = dir.path().join("job.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"apiVersion: weir.dev/v1alpha1
kind: StreamJob
metadata:
  name: bench
spec:
  job:
    entry: csv-window-aggregate
    parallelism: 3
    args:
{args}
      output: {out}{throttle}
  checkpointing:
    interval: {interval}
    mode: exactly-once
    storage: file://{ckpt}
  stateBackend: heap
"#,
            out = output.display(),
            ckpt = storage.display(),
        ),
    )
    .unwrap();
    TestJob {
        dir,
        manifest,
        output,
        storage,
        name: "bench".into(),
        env: Vec::new(),
        bin: weir_e2e::weir_bin(),
    }
}

/// Wall seconds of `weir run`.
fn single_process(job: &TestJob) -> f64 {
    let started = Instant::now();
    let out = Command::new(weir_bin())
        .args(["run", "--progress-interval", "0s"])
        .arg(&job.manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed().as_secs_f64()
}

/// Wall seconds of a coordinator and `workers` workers, from start to the coordinator's exit.
fn distributed(job: &TestJob, workers: usize) -> f64 {
    let started = Instant::now();
    let mut cluster = Cluster::start(job, workers, &[]);
    let (status, _) = cluster.wait(Duration::from_secs(1800));
    assert!(status.success(), "{}", cluster.log().join("\n"));
    started.elapsed().as_secs_f64()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = weir_e2e::bids::rows_from_env(3_000_000);
    let bids = weir_e2e::bids::cached(rows, 3);
    let retail_rows = 541_909f64;
    println!("## Throughput: 3 subtasks, heap state, no checkpoints before the final one\n");
    println!("| job | processes | records/s | vs one process |");
    println!("| --- | --- | ---: | ---: |");
    for (name, data, n) in [
        (
            "bids per auction (shuffle-heavy)",
            Some(bids.as_path()),
            rows as f64,
        ),
        ("retail example", None, retail_rows),
    ] {
        let base = n / single_process(&job(data, "1h", None));
        println!("| {name} | `weir run` | {base:.0} | 1.00x |");
        for workers in 1..=3 {
            let rps = n / distributed(&job(data, "1h", None), workers);
            println!(
                "| {name} | coordinator + {workers} worker{} | {rps:.0} | {:.2}x |",
                if workers > 1 { "s" } else { "" },
                rps / base
            );
        }
    }

    println!("\n## Aligned checkpoints on 3 workers (bids)\n");
    println!("| checkpoints | records/s | vs none |");
    println!("| --- | ---: | ---: |");
    let none = rows as f64 / distributed(&job(Some(&bids), "1h", None), 3);
    println!("| none | {none:.0} | 1.00x |");
    let every = rows as f64 / distributed(&job(Some(&bids), "1s", None), 3);
    println!("| every 1 s | {every:.0} | {:.2}x |", every / none);

    println!("\n## Workers behind a throttled sink (20,000 records/s per subtask), 3 workers\n");
    let throttled = job(Some(&bids), "1h", Some(20_000));
    let mut cluster = Cluster::start(&throttled, 3, &[]);
    cluster.wait_running();
    let pids: Vec<u32> = cluster.workers.iter().map(|w| w.id()).collect();
    println!(
        "| seconds | records read | records written | backpressure s | worker RSS MiB (max of 3) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: |");
    let started = Instant::now();
    let mut samples = Vec::new();
    for t in 1..=20u64 {
        std::thread::sleep(
            Duration::from_secs(1)
                .saturating_sub(started.elapsed().saturating_sub(Duration::from_secs(t - 1))),
        );
        let (_, m) = cluster.admin_call("GET", "/metrics", None);
        let rss = pids.iter().map(|p| rss_kib(*p)).max().unwrap_or(0) / 1024;
        samples.push(rss);
        if t % 4 == 0 {
            println!(
                "| {t} | {:.0} | {:.0} | {:.1} | {rss} |",
                metric(&m, "weir_operator_records_in_total"),
                metric(&m, "weir_operator_records_out_total"),
                metric(&m, "weir_backpressure_seconds_total"),
            );
        }
    }
    let (status, _) =
        cluster.admin_call("POST", "/v1/job/stop", Some(r#"{"withSavepoint":false}"#));
    assert_eq!(status, 202);
    let _ = cluster.wait(Duration::from_secs(60));
    let (first, last) = (samples[4], *samples.last().unwrap());
    println!(
        "\nworker RSS after 5 s: {first} MiB, after 20 s: {last} MiB ({:.2}x): bounded while the sources wait for credits",
        last as f64 / first.max(1) as f64
    );
}
