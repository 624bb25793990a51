//! Helpers for the process-level end-to-end tests: find the `weir` binary and the shared
//! data, write manifests derived from the example, run and kill real `weir` processes, and
//! read the committed output of a job.

pub mod bids;
pub mod cluster;
pub mod console_doc;
pub mod doc_session;
pub mod flink;
pub mod garage;
pub mod kafka;
pub mod processes;
pub mod s3;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `weir` binary built by the same `cargo test` run (next to the test executable's
/// `deps/` directory), or `$WEIR_BIN`.
pub fn weir_bin() -> PathBuf {
    if let Ok(p) = std::env::var("WEIR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = dir.join("weir");
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build --release -p weir-runtime` or set WEIR_BIN",
        bin.display()
    );
    bin
}

/// The repository root: the nearest directory holding `Cargo.lock` at or above the running
/// test's crate (`CARGO_MANIFEST_DIR` at run time, which `cargo test` and `cargo bench` set to
/// the crate whose test runs), else above the path this crate was compiled at. Reading it at run
/// time matters because a shared `CARGO_TARGET_DIR` reuses a test binary built from another
/// checkout of the same sources.
pub fn repo_root() -> PathBuf {
    let workspace_of = |dir: PathBuf| {
        dir.ancestors()
            .find(|d| d.join("Cargo.lock").exists())
            .map(Path::to_path_buf)
    };
    std::env::var_os("CARGO_MANIFEST_DIR")
        .and_then(|d| workspace_of(PathBuf::from(d)))
        .or_else(|| workspace_of(PathBuf::from(env!("CARGO_MANIFEST_DIR"))))
        .expect("a Cargo.lock above the crate: the repository root")
}

/// `N` distinct free TCP ports on 127.0.0.1. All `N` listeners are held until every port is
/// chosen, so the kernel cannot hand the same port out twice within one call (it may after the
/// call returns, which is why a process should get all its ports from one call).
///
/// # Panics
/// When no port can be bound.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("free port").port())
}

/// The shared retail data file: `$WEIR_RETAIL_CSV`, or `../shared/data/` next to the
/// repository, or `/work/shared/data/`.
pub fn retail_data() -> PathBuf {
    const NAME: &str = "online_retail_uci_2010-2011.csv.gz";
    if let Ok(p) = std::env::var("WEIR_RETAIL_CSV") {
        return PathBuf::from(p);
    }
    let candidates = [
        repo_root().join("../shared/data").join(NAME),
        PathBuf::from("/work/shared/data").join(NAME),
    ];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| panic!("retail data not found in {candidates:?}; set WEIR_RETAIL_CSV"))
}

/// A job under test: a temporary directory holding its manifest, checkpoints and output.
pub struct TestJob {
    /// The temporary directory (deleted on drop).
    pub dir: tempfile::TempDir,
    /// Path of the manifest.
    pub manifest: PathBuf,
    /// Output directory of the sink.
    pub output: PathBuf,
    /// Checkpoint storage root.
    pub storage: PathBuf,
    /// Job name.
    pub name: String,
    /// Extra environment of the `weir` processes (S3 credentials).
    pub env: Vec<(String, String)>,
    /// The binary that runs the job: `weir`, or a user's binary built on the runtime's CLI.
    pub bin: PathBuf,
}

/// The example manifest with its input pointed at the shared data and its output and
/// checkpoints inside a fresh temporary directory; `edit` changes it further.
pub fn example_job(edit: impl FnOnce(&mut serde_yaml::Value)) -> TestJob {
    manifest_job(
        weir_bin(),
        &repo_root().join("examples/retail-revenue.yaml"),
        |doc| {
            doc["spec"]["job"]["args"]["input"] = retail_data().display().to_string().into();
            edit(doc);
        },
    )
}

/// The manifest at `path`, run by `bin`, with its `output` argument and its checkpoints
/// inside a fresh temporary directory; `edit` changes it further.
pub fn manifest_job(
    bin: PathBuf,
    path: &Path,
    edit: impl FnOnce(&mut serde_yaml::Value),
) -> TestJob {
    let text = std::fs::read_to_string(path).expect("manifest");
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("manifest parses");
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("output");
    let storage = dir.path().join("checkpoints");
    doc["spec"]["job"]["args"]["output"] = output.display().to_string().into();
    doc["spec"]["checkpointing"]["storage"] = format!("file://{}", storage.display()).into();
    edit(&mut doc);
    let manifest = dir.path().join("job.yaml");
    std::fs::write(&manifest, serde_yaml::to_string(&doc).expect("yaml")).expect("write manifest");
    let name = doc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    TestJob {
        dir,
        manifest,
        output,
        storage,
        name,
        env: Vec::new(),
        bin,
    }
}

/// [`example_job`] with its checkpoints in `server`'s bucket under the job's own prefix.
pub fn example_job_on_s3(
    server: &s3::S3Server,
    prefix: &str,
    edit: impl FnOnce(&mut serde_yaml::Value),
) -> TestJob {
    let mut job = example_job_on_endpoint(
        &server.endpoint(),
        &server.bucket,
        prefix,
        server.env(),
        edit,
    );
    job.storage = server.root.path().join(&server.bucket).join(prefix);
    job
}

/// [`example_job`] with its checkpoints at `s3://<bucket>/<prefix>` on the S3-compatible
/// store at `endpoint` (path-style), reached with the credentials in `env`.
pub fn example_job_on_endpoint(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    env: Vec<(String, String)>,
    edit: impl FnOnce(&mut serde_yaml::Value),
) -> TestJob {
    let storage = format!("s3://{bucket}/{prefix}");
    let mut job = example_job(|d| {
        d["spec"]["checkpointing"]["storage"] = storage.into();
        let mut s3 = serde_yaml::Mapping::new();
        s3.insert("endpoint".into(), endpoint.into());
        s3.insert("pathStyle".into(), true.into());
        d["spec"]["checkpointing"]["s3"] = s3.into();
        edit(d);
    });
    job.env = env;
    job
}

/// The environment a `weir` process needs to reach an S3-compatible store through the
/// standard AWS chain with these credentials (instance metadata lookups off).
pub fn aws_env(access_key: &str, secret_key: &str, region: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), access_key.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), secret_key.into()),
        ("AWS_REGION".into(), region.into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

/// The seed of a randomized test: `$WEIR_TEST_SEED`, or a random one; printed so that a
/// failure can be replayed.
pub fn test_seed() -> u64 {
    let seed = std::env::var("WEIR_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("kill schedule seed: {seed} (set WEIR_TEST_SEED to replay)");
    seed
}

/// How a series of killed runs went.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kills {
    /// Runs killed with SIGKILL.
    pub total: usize,
    /// Of those, killed right after a checkpoint was triggered.
    pub during_checkpoint: usize,
}

/// Runs `job` `rounds` times, killing each run with SIGKILL: even rounds right after a
/// checkpoint trigger at least 300 ms into the run, odd rounds at a random time between
/// 300 ms and 1.5 s. The schedule derives from `seed`.
pub fn kill_at_random_points(job: &TestJob, rounds: usize, seed: u64) -> Kills {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kills = Kills::default();
    for round in 0..rounds {
        let (mut child, lines) = job.spawn();
        let during_checkpoint = round % 2 == 0;
        let deadline = Instant::now() + Duration::from_millis(rng.u64(300..1500));
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            let line = lines.recv_timeout(Duration::from_millis(5));
            let due = Instant::now() >= deadline;
            let hit = match line {
                Ok(l) => during_checkpoint && due && l.contains("triggering checkpoint"),
                Err(_) => !during_checkpoint && due,
            } || (!during_checkpoint && due);
            if hit {
                child.kill().expect("SIGKILL");
                kills.total += 1;
                kills.during_checkpoint += during_checkpoint as usize;
                break;
            }
        }
        let _ = child.wait();
    }
    kills
}

impl TestJob {
    /// [`TestJob::run`] with `--summary-json`: the run's summary (`restoredFrom`, `skippedCheckpoints`, `recordsIn`, ...; see `RunSummary`).
    /// Panics, with weir's stderr, when the run fails.
    pub fn run_summarized(&self, extra: &[&str]) -> serde_json::Value {
        let path = self.dir.path().join("summary.json");
        let _ = std::fs::remove_file(&path);
        let mut args = vec!["--summary-json", path.to_str().expect("UTF-8 path")];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert_success(&out);
        let json = std::fs::read(&path).expect("summary file");
        serde_json::from_slice(&json).expect("summary JSON")
    }

    /// `weir validate <manifest>` (with the job's environment): exit code 2 and the invalid
    /// fields on stderr when the manifest or its arguments are refused.
    pub fn validate(&self) -> Output {
        Command::new(&self.bin)
            .arg("validate")
            .arg(&self.manifest)
            .envs(self.env.iter().cloned())
            .output()
            .expect("weir validate")
    }

    /// `weir run <manifest> <extra>` to completion.
    pub fn run(&self, extra: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("run")
            .arg(&self.manifest)
            .args(["--progress-interval", "0s"])
            .args(extra)
            .envs(self.env.iter().cloned())
            .output()
            .expect("spawn weir")
    }

    /// Starts `weir run` and returns the child and a channel of its stderr lines.
    pub fn spawn(&self) -> (Child, mpsc::Receiver<String>) {
        let mut child = Command::new(&self.bin)
            .arg("run")
            .arg(&self.manifest)
            .args(["--progress-interval", "0s"])
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }

    /// `weir savepoint create <manifest> [--dir <dir>]` against the running job; returns the
    /// savepoint's location.
    pub fn savepoint(&self, dir: Option<&str>) -> String {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["savepoint", "create"])
            .arg(&self.manifest)
            .envs(self.env.iter().cloned());
        if let Some(d) = dir {
            cmd.args(["--dir", d]);
        }
        let out = cmd.output().expect("spawn weir savepoint create");
        assert_success(&out);
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    }

    /// Changes the manifest with `edit`.
    pub fn edit(&self, edit: impl FnOnce(&mut serde_yaml::Value)) {
        let mut doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&self.manifest).expect("manifest"))
                .expect("yaml");
        edit(&mut doc);
        std::fs::write(&self.manifest, serde_yaml::to_string(&doc).expect("yaml"))
            .expect("write manifest");
    }

    /// Waits until at least `n` checkpoints are complete (at most 30 s).
    pub fn wait_for_checkpoints(&self, n: usize) {
        let start = Instant::now();
        while self.complete_checkpoints().len() < n {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "fewer than {n} checkpoints completed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until a checkpoint newer than the newest at the call completes (at most 30 s);
    /// unlike [`TestJob::wait_for_checkpoints`] it holds across a restore from a savepoint,
    /// which deletes the older checkpoints.
    pub fn wait_for_a_new_checkpoint(&self) {
        let newest = || self.complete_checkpoints().last().copied().unwrap_or(0);
        let before = newest();
        let start = Instant::now();
        while newest() <= before {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no checkpoint after {before} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// One more killed run that leaves a checkpoint to restore from: spawns `weir run`,
    /// waits (up to 30 s) until a checkpoint newer than the newest one completes, sleeps
    /// `delay`, then kills the run with SIGKILL. Random kill schedules can all land before a
    /// slow start (a Kafka producer fencing old transactions) completes a checkpoint; a
    /// test that asserts a restore runs this after them.
    pub fn kill_after_a_new_checkpoint(&self, delay: Duration) {
        let (mut child, _lines) = self.spawn();
        self.wait_for_a_new_checkpoint();
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    /// Committed output lines (all `part-*` files), sorted.
    pub fn output_lines(&self) -> Vec<String> {
        read_output(&self.output)
    }

    /// Ids of checkpoints with a `_metadata`, ascending.
    pub fn complete_checkpoints(&self) -> Vec<u64> {
        let dir = self.storage.join(&self.name).join("checkpoints");
        let mut ids: Vec<u64> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("_metadata").exists())
                    .filter_map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .strip_prefix("chk-")?
                            .parse()
                            .ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// Directory of checkpoint `id`.
    pub fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.storage
            .join(&self.name)
            .join("checkpoints")
            .join(format!("chk-{id}"))
    }
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create target");
    for e in std::fs::read_dir(from)
        .expect("read source")
        .filter_map(|e| e.ok())
    {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy file");
        }
    }
}

/// The committed lines of a file sink's directory `dir`, sorted; lines of part files in
/// bucket subdirectories are prefixed with their bucket and `|` (`dt=2020-01-01/hm=00:00|...`),
/// as `weir_runtime::connectors::file_sink::committed_lines` reads them (this crate's library
/// does not link the runtime).
pub fn read_output(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, bucket: &str, lines: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let sub = if bucket.is_empty() {
                    name
                } else {
                    format!("{bucket}/{name}")
                };
                walk(&e.path(), &sub, lines);
            } else if name.starts_with("part-") {
                let text = std::fs::read_to_string(e.path()).expect("read part file");
                lines.extend(text.lines().map(|l| {
                    if bucket.is_empty() {
                        l.to_string()
                    } else {
                        format!("{bucket}|{l}")
                    }
                }));
            }
        }
    }
    let mut lines = Vec::new();
    walk(dir, "", &mut lines);
    lines.sort();
    lines
}

/// Asserts a process succeeded, showing its stderr otherwise.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "weir failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `weir run --fresh` on `manifest` in one process (no progress lines), writing its
/// summary to `summary`; returns the wall time (s) and the summary JSON (the shape of
/// `weir run --summary-json`: `recordsIn`, `peakRssBytes`, `checkpointsCompleted`,
/// `checkpointDurationMeanMs`, ...). Panics, with weir's stderr, when the run fails.
pub fn timed_run(manifest: &Path, summary: &Path) -> (f64, serde_json::Value) {
    let started = Instant::now();
    let out = Command::new(weir_bin())
        .args([
            "run",
            "--fresh",
            "--progress-interval",
            "0s",
            "--summary-json",
        ])
        .arg(summary)
        .arg(manifest)
        .output()
        .expect("weir run");
    let wall = started.elapsed().as_secs_f64();
    assert_success(&out);
    let json = std::fs::read(summary).expect("summary file");
    (wall, serde_json::from_slice(&json).expect("summary JSON"))
}

/// The example's expected output computed directly: per StockCode and UTC hour of
/// InvoiceDate, the line count and the sum of Quantity * UnitPrice (summed in file order,
/// printed with two decimals), as `key,start,end,count,sum`, sorted.
pub fn reference_retail_revenue() -> Vec<String> {
    use std::collections::HashMap;
    let file = std::fs::File::open(retail_data()).expect("retail data");
    let mut reader =
        csv::Reader::from_reader(flate2::read::MultiGzDecoder::new(BufReader::new(file)));
    let headers = reader.headers().expect("header").clone();
    let col = |n: &str| headers.iter().position(|h| h == n).expect("column");
    let (code, qty, price, date) = (
        col("StockCode"),
        col("Quantity"),
        col("UnitPrice"),
        col("InvoiceDate"),
    );
    let mut groups: HashMap<(String, i64), (u64, f64)> = HashMap::new();
    for rec in reader.records() {
        let rec = rec.expect("record");
        let t = chrono::NaiveDateTime::parse_from_str(&rec[date], "%Y-%m-%d %H:%M:%S")
            .expect("timestamp")
            .and_utc()
            .timestamp_millis();
        let hour = t - t.rem_euclid(3_600_000);
        let v: f64 =
            rec[qty].parse::<f64>().expect("qty") * rec[price].parse::<f64>().expect("price");
        let g = groups
            .entry((rec[code].to_string(), hour))
            .or_insert((0, 0.0));
        g.0 += 1;
        g.1 += v;
    }
    let fmt = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .expect("time")
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let mut lines: Vec<String> = groups
        .into_iter()
        .map(|((k, h), (n, s))| {
            let mut sum = format!("{s:.2}");
            if sum == "-0.00" {
                sum = "0.00".into();
            }
            format!("{k},{},{},{n},{sum}", fmt(h), fmt(h + 3_600_000))
        })
        .collect();
    lines.sort();
    lines
}
