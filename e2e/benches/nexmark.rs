//! Nexmark side by side with Apache Flink 2.3: every query of the built-in `nexmark` job over
//! the same generated events, parallelism 2, exactly-once checkpoints every 10 s (incremental
//! on RocksDB, as on Flink's side), on the heap and RocksDB backends; when `java` is on the
//! PATH, the same queries on Flink (PyFlink `apache-flink==2.3.0` in a virtual environment
//! this benchmark creates under
//! `~/.cache/weir-tools/flink-venv`, Flink SQL, local MiniCluster) over the files
//! `weir nexmark generate` writes (`nexmark_flink.py` next to this file holds the SQL).
//!
//! ```text
//! cargo build --release -p weir-runtime && cargo bench -p weir-e2e --bench nexmark
//! ```
//!
//! Prints per query and backend: events/s (Weir from process start to finish, its generator in
//! the job; Flink from job submission to finish, reading JSON files), peak memory (Weir's
//! process; Flink's Python and JVM processes together), Weir's checkpoint durations, the ratios
//! Weir/Flink, and whether the two systems' results are equal over a smaller run of the same
//! kind (`WEIR_BENCH_CHECK_EVENTS` events at 1,000 events/s; Flink's changelog applied, Weir's
//! output read with `results::result_rows`; q12 runs on processing time, so its windows cannot
//! be compared).
//!
//! Environment: `WEIR_BENCH_EVENTS` (default 10000000), `WEIR_BENCH_EVENTS_PER_SECOND` (event
//! time rate, default 100000: 10 M events span 100 s), `WEIR_BENCH_CHECK_EVENTS` (default
//! 200000), `WEIR_BENCH_QUERIES` (comma-separated, default all), `WEIR_BENCH_BACKENDS`
//! (default `heap,rocksdb`), `WEIR_BENCH_FLINK_BACKENDS` (the backends Flink runs on, default
//! those of Weir), `WEIR_BENCH_FLINK_TIMEOUT` (s per Flink process, default 900: a run still
//! going then is stopped and reported as an upper bound `< events/(s since the job's
//! submission)`, its ratio as `> ...`),
//! `WEIR_BENCH_FLINK_CAP` (default 3: a Flink run is stopped once its job has run this many
//! times as long as Weir's run of the same query and backend, but not before 60 s, and reported
//! as an upper bound; 0: no cap), `WEIR_BENCH_CHECK_EVENTS=0` (no result comparison),
//! `WEIR_BENCH_FLINK=0` (Weir alone).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use weir_e2e::bids::env_or;
use weir_e2e::flink::{flink_python, run_watched, Limit, Watched};
use weir_e2e::{bids::bench_dir, timed_run, weir_bin};
use weir_runtime::connectors::file_sink::committed_lines;
use weir_runtime::jobs::nexmark::queries::QUERIES;
use weir_runtime::jobs::nexmark::results::result_rows;

/// The events of `events` at `rate`, written once by `weir nexmark generate`.
fn generated(events: u64, rate: u64) -> PathBuf {
    let dir = bench_dir().join(format!("nexmark-{events}-{rate}"));
    if !dir.join("events.json").exists() {
        eprintln!("generating {events} Nexmark events into {}", dir.display());
        let out = Command::new(weir_bin())
            .args(["nexmark", "generate", "--events"])
            .arg(events.to_string())
            .arg("--events-per-second")
            .arg(rate.to_string())
            .arg("--out")
            .arg(&dir)
            .output()
            .expect("weir nexmark generate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

struct WeirRun {
    events_per_second: f64,
    peak_mib: f64,
    checkpoints: u64,
    ckpt_mean_ms: f64,
    ckpt_max_ms: f64,
    output: PathBuf,
}

fn run_weir(query: &str, backend: &str, events: u64, rate: u64, work: &Path) -> WeirRun {
    let manifest = work.join("job.yaml");
    let summary = work.join("summary.json");
    let output = work.join("out");
    std::fs::write(
        &manifest,
        format!(
            r#"apiVersion: weir.dev/v1alpha1
kind: StreamJob
metadata:
  name: bench-nexmark-{query}-{backend}
spec:
  job:
    entry: nexmark
    parallelism: 2
    args:
      query: {query}
      events: "{events}"
      eventsPerSecond: "{rate}"
      output: {out}
  checkpointing:
    interval: 10s
    mode: exactly-once
    storage: file://{ckpt}
    incremental: {incremental}
  stateBackend: {backend}
"#,
            out = output.display(),
            ckpt = work.join("checkpoints").display(),
            // as the Flink side (`execution.checkpointing.incremental`); heap has no such mode
            incremental = backend == "rocksdb",
        ),
    )
    .unwrap();
    let (wall, s) = timed_run(&manifest, &summary);
    WeirRun {
        events_per_second: events as f64 / wall,
        peak_mib: s["peakRssBytes"].as_f64().unwrap_or(0.0) / 1048576.0,
        checkpoints: s["checkpointsCompleted"].as_u64().unwrap_or(0),
        ckpt_mean_ms: s["checkpointDurationMeanMs"].as_f64().unwrap_or(0.0),
        ckpt_max_ms: s["checkpointDurationMaxMs"].as_f64().unwrap_or(0.0),
        output,
    }
}

fn flink_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/nexmark_flink.py")
}

/// What a Flink run came to.
enum FlinkRun {
    /// The script's JSON report and the peak memory (MiB) of its processes.
    Done(serde_json::Value, f64),
    /// Stopped at its limit: how long its job had run (s, since the script printed
    /// [`SUBMITTED`]; `None`: not submitted yet) and its peak memory (MiB) until then.
    TimedOut(Option<f64>, f64),
}

/// The line `nexmark_flink.py` prints when it submits the job.
const SUBMITTED: &str = r#"{"submitted": true}"#;

/// Runs the Flink script, for at most `timeout` in all and `job_limit` after it submitted
/// the job.
#[allow(clippy::too_many_arguments)]
fn run_flink(
    python: &Path,
    mode: &str,
    query: &str,
    backend: &str,
    data: &Path,
    work: &Path,
    timeout: Duration,
    job_limit: Option<Duration>,
) -> Result<FlinkRun, String> {
    let mut cmd = Command::new(python);
    cmd.arg(flink_script())
        .args([
            "--mode",
            mode,
            "--query",
            query,
            "--backend",
            backend,
            "--data",
        ])
        .arg(data)
        .arg("--checkpoints")
        .arg(work.join("checkpoints"))
        .arg("--out")
        .arg(work.join("flink-out"));
    let mib = |bytes: u64| bytes as f64 / 1048576.0;
    let limit = Limit {
        total: timeout,
        measured: job_limit.map(|l| (SUBMITTED, l)),
    };
    match run_watched(cmd, limit, work) {
        Watched::TimedOut(peak, job) => Ok(FlinkRun::TimedOut(job, mib(peak))),
        Watched::Exited(false, _, err, _) => Err(err
            .lines()
            .rfind(|l| l.contains("Exception:") || l.contains("Error:"))
            .unwrap_or("failed")
            .to_string()),
        Watched::Exited(true, stdout, _, peak) => {
            let report = stdout
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str(l).ok())
                .ok_or_else(|| format!("no report in {stdout:?}"))?;
            Ok(FlinkRun::Done(report, mib(peak)))
        }
    }
}

/// Event-time rate of the result comparison, events/s: one event per ms, so that no two bids
/// share a time (q18 keeps the last of equal times in arrival order, which the two systems'
/// parallel readers do not share).
const CHECK_EVENTS_PER_SECOND: u64 = 1_000;

/// Whether Weir's and Flink's results of `query` over the same `check_events` events agree.
fn compare(python: &Path, query: &str, check_events: u64, timeout: Duration) -> String {
    if query == "q12" {
        return "n/a (processing time)".into();
    }
    let rate = CHECK_EVENTS_PER_SECOND;
    let data = generated(check_events, rate);
    let work = tempfile::tempdir().unwrap();
    let weir = run_weir(query, "heap", check_events, rate, work.path());
    let ours = result_rows(query, &committed_lines(&weir.output).unwrap_or_default());
    match run_flink(
        python,
        "result",
        query,
        "heap",
        &data,
        work.path(),
        timeout,
        None,
    ) {
        Ok(FlinkRun::Done(..)) => {}
        Ok(FlinkRun::TimedOut(..)) => {
            return format!("Flink still running after {} s", timeout.as_secs())
        }
        Err(e) => return format!("Flink failed: {e}"),
    }
    let theirs: Vec<String> = std::fs::read_to_string(work.path().join("flink-out"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    if ours == theirs {
        return format!("yes ({} rows)", ours.len());
    }
    let only_weir = ours.iter().find(|l| theirs.binary_search(l).is_err());
    let only_flink = theirs.iter().find(|l| ours.binary_search(l).is_err());
    eprintln!("{query}: only Weir {only_weir:?}; only Flink {only_flink:?}");
    format!("no ({} Weir rows, {} Flink rows)", ours.len(), theirs.len())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events: u64 = env_or("WEIR_BENCH_EVENTS", 10_000_000);
    let rate: u64 = env_or("WEIR_BENCH_EVENTS_PER_SECOND", 100_000);
    let check_events: u64 = env_or("WEIR_BENCH_CHECK_EVENTS", 200_000);
    let queries: Vec<String> = std::env::var("WEIR_BENCH_QUERIES")
        .map(|q| q.split(',').map(str::to_string).collect())
        .unwrap_or_else(|_| QUERIES.iter().map(|q| q.to_string()).collect());
    let backends: Vec<String> = std::env::var("WEIR_BENCH_BACKENDS")
        .map(|q| q.split(',').map(str::to_string).collect())
        .unwrap_or_else(|_| vec!["heap".into(), "rocksdb".into()]);
    let flink_backends: Vec<String> = std::env::var("WEIR_BENCH_FLINK_BACKENDS")
        .map(|q| q.split(',').map(str::to_string).collect())
        .unwrap_or_else(|_| backends.clone());
    let flink_timeout = Duration::from_secs(env_or("WEIR_BENCH_FLINK_TIMEOUT", 900));
    let flink_cap: f64 = env_or("WEIR_BENCH_FLINK_CAP", 3.0);
    let flink = flink_python();
    if let Err(why) = &flink {
        println!("Flink: not run ({why})");
    }
    let data = flink.as_ref().ok().map(|_| generated(events, rate));
    println!(
        "{events} events at {rate} events/s of event time, parallelism 2, checkpoints every 10 s\n"
    );
    println!("| query | backend | Weir events/s | Weir peak MiB | ckpts | ckpt mean ms | ckpt max ms | Flink events/s | Flink peak MiB | events/s Weir/Flink | memory Weir/Flink | same result |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for query in &queries {
        let same = match &flink {
            Ok(_) if check_events == 0 => "not checked".into(),
            Ok(python) => compare(python, query, check_events, flink_timeout),
            Err(_) => "—".into(),
        };
        for backend in &backends {
            let work = tempfile::tempdir().unwrap();
            let weir = run_weir(query, backend, events, rate, work.path());
            // Flink's events/s, and whether that is an upper bound (it timed out).
            let mut flink_eps: Option<(f64, bool)> = None;
            let mut flink_mib = None;
            if let (Ok(python), Some(data), true) =
                (&flink, &data, flink_backends.contains(backend))
            {
                // Past `flink_cap` times Weir's run, the ratio is known to exceed the cap.
                let weir_seconds = events as f64 / weir.events_per_second;
                let job_limit = (flink_cap > 0.0)
                    .then(|| Duration::from_secs_f64((flink_cap * weir_seconds).max(60.0)));
                let run = run_flink(
                    python,
                    "throughput",
                    query,
                    backend,
                    data,
                    work.path(),
                    flink_timeout,
                    job_limit,
                );
                match run {
                    Ok(FlinkRun::Done(report, mib)) => {
                        flink_eps = report["seconds"]
                            .as_f64()
                            .map(|s| (events as f64 / s, false));
                        flink_mib = Some(mib);
                    }
                    Ok(FlinkRun::TimedOut(Some(s), mib)) => {
                        flink_eps = Some((events as f64 / s, true));
                        flink_mib = Some(mib);
                    }
                    Ok(FlinkRun::TimedOut(None, mib)) => {
                        // no bound: the job never started, so nothing tells its rate
                        eprintln!(
                            "Flink {query} on {backend}: stopped after {flink_timeout:?} before its job was submitted"
                        );
                        flink_mib = Some(mib);
                    }
                    Err(e) => eprintln!("Flink {query} on {backend}: {e}"),
                }
            }
            let fmt = |v: Option<f64>, digits: usize| {
                v.map_or("—".to_string(), |v| format!("{v:.digits$}"))
            };
            let (flink_col, ratio_col) = match flink_eps {
                Some((f, true)) => (
                    format!("< {f:.0}"),
                    format!("> {:.2}", weir.events_per_second / f),
                ),
                Some((f, false)) => (
                    format!("{f:.0}"),
                    format!("{:.2}", weir.events_per_second / f),
                ),
                None => ("—".to_string(), "—".to_string()),
            };
            println!(
                "| {query} | {backend} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {flink_col} | {} | {ratio_col} | {} | {same} |",
                weir.events_per_second,
                weir.peak_mib,
                weir.checkpoints,
                weir.ckpt_mean_ms,
                weir.ckpt_max_ms,
                fmt(flink_mib, 0),
                fmt(flink_mib.map(|f| weir.peak_mib / f), 2),
            );
        }
    }
}
