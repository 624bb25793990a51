//! The Nexmark-style bid data of `../shared/bench/gen_bids.py`, regenerated bit for bit, for
//! the benchmarks: `auction,bidder,price,ts` rows, 100,000 events per second of event time.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Where benchmarks keep generated data: `<target>/weir-bench`.
pub fn bench_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir")
        .join("weir-bench")
}

/// Rows of bids a benchmark uses: `WEIR_BENCH_ROWS`, else `default`.
pub fn rows_from_env(default: u64) -> u64 {
    env_or("WEIR_BENCH_ROWS", default)
}

/// Environment variable `name` parsed as a `T`, or `default` when it is unset or does not
/// parse (the benchmarks' settings).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// `rows` bids striped over `files` files in `<target>/weir-bench/bids-<rows>-<files>`
/// (generated once).
pub fn cached(rows: u64, files: u64) -> PathBuf {
    let dir = bench_dir().join(format!("bids-{rows}-{files}"));
    if !dir.join(format!("part-{}.csv", files - 1)).exists() {
        eprintln!("generating {rows} bids into {}", dir.display());
        generate(&dir, rows, files);
    }
    dir
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

/// Writes `rows` bids striped over `files` files exactly as `gen_bids.py` does with its
/// defaults (seed 42, 1,000,000 auctions, 100,000 bidders, 100,000 events per second).
pub fn generate(dir: &Path, rows: u64, files: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let base = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .timestamp();
    let seed_off: u64 = 42u64 << 32;
    let mut outs: Vec<BufWriter<std::fs::File>> = (0..files)
        .map(|k| {
            BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(dir.join(format!("part-{k}.csv"))).unwrap(),
            )
        })
        .collect();
    let mut prefix_cache: (i64, String) = (-1, String::new());
    for i in 0..rows {
        let b = i.wrapping_mul(4).wrapping_add(seed_off);
        let auction = splitmix64(b) % 1_000_000;
        let bidder = splitmix64(b + 1) % 100_000;
        let price = 1 + splitmix64(b + 2) % 1_000_000;
        let jitter = (splitmix64(b + 3) % 2000) as i64;
        let off = 2000 + (i as i64 * 1000) / 100_000 - jitter;
        let (sec, ms) = (off / 1000, off % 1000);
        if prefix_cache.0 != sec {
            let t = chrono::DateTime::from_timestamp(base + sec, 0).unwrap();
            prefix_cache = (sec, t.format("%Y-%m-%d %H:%M:%S").to_string());
        }
        writeln!(
            outs[(i % files) as usize],
            "{auction},{bidder},{price},{}.{ms:03}",
            prefix_cache.1
        )
        .unwrap();
    }
    for mut o in outs {
        o.flush().unwrap();
    }
}

/// The benchmarks' window job over bids as a manifest: `csv-window-aggregate` counting bids per
/// auction per 10 s tumbling event-time window (5 s out-of-orderness), parallelism 2,
/// exactly-once checkpoints every 10 s into `checkpoints`, on `backend`; `input` and `output`
/// as the job takes them (paths or `kafka://` addresses), `extra_args` further argument lines
/// (`      name: value\n` each).
pub fn window_job_yaml(
    name: &str,
    input: &str,
    output: &str,
    backend: &str,
    checkpoints: &Path,
    extra_args: &str,
) -> String {
    format!(
        r#"apiVersion: weir.dev/v1alpha1
kind: StreamJob
metadata:
  name: {name}
spec:
  job:
    entry: csv-window-aggregate
    parallelism: 2
    args:
      input: {input}
      columns: auction,bidder,price,ts
      timestamp: ts
      key: auction
      window: 10s
      aggregates: count
      outOfOrderness: 5s
      output: {output}
{extra_args}  checkpointing:
    interval: 10s
    mode: exactly-once
    storage: file://{checkpoints}
  stateBackend: {backend}
"#,
        checkpoints = checkpoints.display()
    )
}
