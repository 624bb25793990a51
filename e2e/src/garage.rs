//! A real object store for a realistic end-to-end run: a single-node Garage on 127.0.0.1
//! (after `../shared/s3/garage-up.sh`), started and stopped by the test, with its metadata and
//! data in a temporary directory. Region `garage`; Garage ignores conditional writes and
//! rejects unexpected multipart checksums, which Weir's S3 client does not send.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access key id (Garage format: `GK` + 24 hex digits).
pub const ACCESS_KEY: &str = "GK0123456789abcdef01234567";
/// Secret key (64 hex digits).
pub const SECRET_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The garage binary: `$WEIR_GARAGE`, `~/.cache/weir-tools/bin/garage` (where `.ci/run`
/// installs it), or `garage` on the PATH; `None` when there is none.
pub fn garage_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WEIR_GARAGE") {
        return Some(PathBuf::from(p));
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/weir-tools/bin/garage");
    if cached.exists() {
        return Some(cached);
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("garage"))
        .find(|p| p.exists())
}

/// A running single-node Garage with one bucket, `checkpoints`.
pub struct Garage {
    child: Child,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// S3 API port.
    pub port: u16,
    /// The bucket.
    pub bucket: String,
}

impl Garage {
    /// Starts Garage, lays out its single node, imports the test key and creates the bucket.
    pub fn start(bin: PathBuf) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let [s3, rpc, admin] = crate::free_ports();
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", fastrand::u8(..)))
            .collect();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{m}\"\ndata_dir = \"{d}\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\nroot_domain = \".s3.garage.localhost\"\n\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                m = dir.path().join("meta").display(),
                d = dir.path().join("data").display(),
            ),
        )
        .expect("garage config");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("garage.log")).expect("garage log"))
            .spawn()
            .expect("start garage");
        let mut g = Garage {
            child,
            dir,
            bin,
            port: s3,
            bucket: "checkpoints".into(),
        };
        let start = Instant::now();
        while !g.cli(&["status"]).status.success() {
            let exited = g.child.try_wait().expect("garage status");
            if exited.is_some() || start.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(g.dir.path().join("garage.log"));
                panic!(
                    "garage did not start (exit: {exited:?}); its log:\n{}",
                    log.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let id = String::from_utf8(g.cli(&["node", "id", "-q"]).stdout).expect("node id");
        let id = id.trim().split('@').next().expect("node id").to_string();
        g.ok(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        g.ok(&["layout", "apply", "--version", "1"]);
        g.ok(&[
            "key",
            "import",
            "--yes",
            "-n",
            "weir-test",
            ACCESS_KEY,
            SECRET_KEY,
        ]);
        g.ok(&["bucket", "create", "checkpoints"]);
        g.ok(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            "checkpoints",
            "--key",
            "weir-test",
        ]);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", s3)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "garage S3 API did not open"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        g
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(args)
            .output()
            .expect("garage cli")
    }

    fn ok(&self, args: &[&str]) {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "garage {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment for a `weir` process that uses this store.
    pub fn env(&self) -> Vec<(String, String)> {
        crate::aws_env(ACCESS_KEY, SECRET_KEY, "garage")
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
