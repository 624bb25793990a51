//! A real S3-compatible server for tests: s3s-fs on 127.0.0.1, started and stopped by the
//! test, with its data in a temporary directory (one directory per bucket).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access key of the test server.
pub const ACCESS_KEY: &str = "weirtestkey";
/// Secret key of the test server.
pub const SECRET_KEY: &str = "weirtestsecret";
/// Region the tests use.
pub const REGION: &str = "us-east-1";

/// The s3s-fs binary: `$WEIR_S3S_FS`, `~/.cache/weir-tools/bin/s3s-fs` (where `.ci/run`
/// installs it), or `s3s-fs` on the PATH.
pub fn s3s_fs_bin() -> PathBuf {
    if let Ok(p) = std::env::var("WEIR_S3S_FS") {
        return PathBuf::from(p);
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/weir-tools/bin/s3s-fs");
    if cached.exists() {
        return cached;
    }
    let on_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("s3s-fs"))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "s3s-fs not found: install it with `cargo install --root ~/.cache/weir-tools s3s-fs@0.14.1 --features binary --locked` (bash .ci/run does) or set WEIR_S3S_FS"
        )
    })
}

/// A running s3s-fs server.
pub struct S3Server {
    child: Option<Child>,
    /// Its data directory; bucket `b` is the directory `root/b`.
    pub root: tempfile::TempDir,
    /// Its port.
    pub port: u16,
    /// The bucket created for the test.
    pub bucket: String,
    /// The address it listens on (`127.0.0.1`, or `0.0.0.0` for pods in their own network
    /// namespaces).
    host: String,
}

impl S3Server {
    /// Starts a server on 127.0.0.1 with one bucket, `checkpoints`.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1", "checkpoints")
    }

    /// Starts a server listening on `host` (an address of this machine) with one bucket, on a
    /// free port.
    pub fn start_on(host: &str, bucket: &str) -> Self {
        let port = TcpListener::bind((host, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Self::start_at(host, port, bucket)
    }

    /// Starts a server listening on `host`:`port` with one bucket.
    ///
    /// # Panics
    /// When the port is taken, naming it.
    pub fn start_at(host: &str, port: u16, bucket: &str) -> Self {
        if let Err(e) = TcpListener::bind((host, port)) {
            panic!("the S3 store's port {host}:{port} is taken ({e}): stop what listens there");
        }
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join(bucket)).expect("bucket dir");
        let mut server = S3Server {
            child: None,
            root,
            port,
            bucket: bucket.to_string(),
            host: host.to_string(),
        };
        server.restart();
        server
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment for a `weir` process that uses this server (the standard AWS chain).
    pub fn env(&self) -> Vec<(String, String)> {
        crate::aws_env(ACCESS_KEY, SECRET_KEY, REGION)
    }

    /// Kills the server (SIGKILL), as a crash or network loss would look to clients.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server (again) on the same port and data, and waits until it accepts
    /// connections.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(s3s_fs_bin())
            .args(["--host", &self.host, "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "s3s-fs did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Keys of the objects in the bucket under `prefix`, sorted (s3s-fs keeps objects as
    /// files; its `.metadata.json` sidecars are not objects).
    pub fn objects(&self, prefix: &str) -> Vec<String> {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.filter_map(|e| e.ok()) {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    let key = p
                        .strip_prefix(base)
                        .expect("under base")
                        .to_string_lossy()
                        .into_owned();
                    if !key.ends_with(".metadata.json") && !key.contains(".s3s") {
                        out.push(key);
                    }
                }
            }
        }
        let base = self.root.path().join(&self.bucket);
        let mut out = Vec::new();
        walk(&base.join(prefix), &base, &mut out);
        out.sort();
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

impl S3Server {
    /// The output of `weir checkpoints gc --dry-run` for `job` (named `retail-revenue`) under
    /// `prefix` in this server's bucket.
    pub fn gc_report(&self, job: &crate::TestJob, prefix: &str) -> String {
        let gc = std::process::Command::new(crate::weir_bin())
            .args(["checkpoints", "gc", "--dry-run", "--manifest"])
            .arg(&job.manifest)
            .arg(format!("s3://{}/{prefix}/retail-revenue", self.bucket))
            .envs(job.env.iter().cloned())
            .output()
            .expect("spawn weir checkpoints gc");
        crate::assert_success(&gc);
        String::from_utf8_lossy(&gc.stdout).into_owned()
    }
}
