//! Apache Flink 2.3 beside Weir in the benchmarks: PyFlink in a virtual environment under
//! `~/.cache/weir-tools/flink-venv` (created on first use), and a process tree's peak memory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the benchmarks install from PyPI.
pub const FLINK_PYPI: &str = "apache-flink==2.3.0";

/// Peak resident memory (bytes) of a process and its descendants, sampled every 100 ms.
pub struct TreeRss {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

impl TreeRss {
    pub fn watch(root: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(tree_rss(root));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        Self { stop, sampler }
    }

    pub fn peak(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().unwrap_or(0)
    }
}

/// `root` and its descendants (from `/proc`).
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// Resident memory of `root` and its descendants now, bytes (`VmRSS` from `/proc`).
pub fn tree_rss(root: u32) -> u64 {
    process_tree(root)
        .iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                })
                .unwrap_or(0)
                * 1024
        })
        .sum()
}

/// How a watched process ended.
pub enum Watched {
    /// Exited: success, stdout, stderr, peak memory of its tree (bytes).
    Exited(bool, String, String, u64),
    /// Killed (with its descendants) at its [`Limit`]; peak memory until then (bytes) and, when
    /// the limit has a measured part that had started, how long that part had run (s).
    TimedOut(u64, Option<f64>),
}

/// How long a watched process may run.
pub struct Limit {
    /// From spawn to exit.
    pub total: Duration,
    /// A line the process prints on stdout when the part it measures starts (after its
    /// startup), and how long that part may run.
    pub measured: Option<(&'static str, Duration)>,
}

impl Limit {
    /// At most `total` from spawn to exit, nothing measured apart.
    pub fn total(total: Duration) -> Self {
        Self {
            total,
            measured: None,
        }
    }
}

/// Runs `cmd` with its stdout and stderr in files under `work`, sampling its process tree's
/// memory, within `limit` (then it and its descendants get SIGKILL). The measured part of the
/// limit counts from the moment its marker line is seen (polled every 200 ms, so it may
/// start up to 200 ms late: a rate computed from it is an upper bound).
pub fn run_watched(mut cmd: Command, limit: Limit, work: &Path) -> Watched {
    let (out_path, err_path) = (work.join("stdout"), work.join("stderr"));
    let mut child = cmd
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn");
    let rss = TreeRss::watch(child.id());
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let deadline = Instant::now() + limit.total;
    let mut measured_since: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Watched::Exited(
                status.success(),
                read(&out_path),
                read(&err_path),
                rss.peak(),
            );
        }
        let now = Instant::now();
        if let (Some((marker, _)), None) = (limit.measured, measured_since) {
            if read(&out_path).lines().any(|l| l.trim() == marker) {
                measured_since = Some(now);
            }
        }
        let measured_over = match (limit.measured, measured_since) {
            (Some((_, most)), Some(since)) => now.duration_since(since) > most,
            _ => false,
        };
        if now > deadline || measured_over {
            for pid in process_tree(child.id()).iter().rev() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            let _ = child.wait();
            let measured = measured_since.map(|s| now.duration_since(s).as_secs_f64());
            return Watched::TimedOut(rss.peak(), measured);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The Python of a virtual environment with PyFlink, created when missing; `None` (and why)
/// when Flink cannot run here.
pub fn flink_python() -> Result<PathBuf, String> {
    if std::env::var("WEIR_BENCH_FLINK").as_deref() == Ok("0") {
        return Err("WEIR_BENCH_FLINK=0".into());
    }
    let java = Command::new("java").arg("-version").output();
    match java {
        Ok(o) if o.status.success() => {}
        _ => return Err("no `java` on the PATH (Flink 2.3 needs Java 17)".into()),
    }
    let home = std::env::var("HOME").map_err(|_| "HOME is not set")?;
    let venv = Path::new(&home).join(".cache/weir-tools/flink-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import pyflink"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        eprintln!("creating {} with {FLINK_PYPI}", venv.display());
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", FLINK_PYPI])
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!(
                "could not install {FLINK_PYPI} into {}",
                venv.display()
            ));
        }
    }
    Ok(python)
}
