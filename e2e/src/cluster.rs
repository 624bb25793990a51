//! A distributed job under test: one `weir coordinator` and its `weir worker`s as separate
//! processes on 127.0.0.1, which the test can SIGKILL and start again.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{weir_bin, TestJob};

/// A coordinator and its workers.
pub struct Cluster {
    manifest: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    coordinator_args: Vec<String>,
    coordinator: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    /// Running workers (killed ones are removed).
    pub workers: Vec<Child>,
    worker_args: Vec<String>,
    started_workers: usize,
    /// The coordinator's control address (fixed across its restarts).
    pub control: String,
    /// Base URL of the admin API (fixed across restarts).
    pub admin: String,
}

impl Cluster {
    /// Starts a coordinator of `job` waiting for `workers` workers (extra flags in
    /// `coordinator_args`) and `workers` workers.
    pub fn start(job: &TestJob, workers: usize, coordinator_args: &[&str]) -> Self {
        let [control_port, admin_port] = crate::free_ports();
        let control = format!("127.0.0.1:{control_port}");
        let mut args: Vec<String> = vec![
            "--bind".into(),
            control.clone(),
            "--admin-bind".into(),
            format!("127.0.0.1:{admin_port}"),
            "--workers".into(),
            workers.to_string(),
            "--progress-interval".into(),
            "0s".into(),
            "--heartbeat-timeout".into(),
            "3s".into(),
            "--restart-backoff".into(),
            "100ms".into(),
            "--restart-max-backoff".into(),
            "1s".into(),
        ];
        args.extend(coordinator_args.iter().map(|a| a.to_string()));
        let mut c = Cluster {
            manifest: job.manifest.clone(),
            env: job.env.clone(),
            dir: job.dir.path().to_path_buf(),
            coordinator_args: args,
            coordinator: None,
            log: Arc::default(),
            workers: Vec::new(),
            worker_args: vec![
                "--connect-backoff".into(),
                "100ms".into(),
                "--heartbeat-interval".into(),
                "200ms".into(),
            ],
            started_workers: 0,
            control,
            admin: format!("http://127.0.0.1:{admin_port}"),
        };
        c.start_coordinator();
        for _ in 0..workers {
            c.start_worker();
        }
        c
    }

    /// Starts (or restarts) the coordinator with the same addresses and flags.
    pub fn start_coordinator(&mut self) {
        let mut child = Command::new(weir_bin())
            .arg("coordinator")
            .arg(&self.manifest)
            .args(&self.coordinator_args)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir coordinator");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
        self.coordinator = Some(child);
    }

    /// Starts one more worker; its log goes to `worker-<n>.log` in the job's directory.
    pub fn start_worker(&mut self) {
        self.started_workers += 1;
        let log = std::fs::File::create(
            self.dir
                .join(format!("worker-{}.log", self.started_workers)),
        )
        .expect("worker log");
        let child = Command::new(weir_bin())
            .arg("worker")
            .args(["--coordinator", &self.control])
            .args(&self.worker_args)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn weir worker");
        self.workers.push(child);
    }

    /// SIGKILLs worker `i` (of the running ones) and forgets it.
    pub fn kill_worker(&mut self, i: usize) {
        let mut w = self.workers.remove(i);
        w.kill().expect("SIGKILL");
        let _ = w.wait();
    }

    /// SIGKILLs the coordinator.
    pub fn kill_coordinator(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            c.kill().expect("SIGKILL");
            let _ = c.wait();
        }
    }

    /// The coordinator's log lines so far (all its runs).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a coordinator log line contains `text` (at most `timeout`).
    pub fn wait_for_log(&self, text: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.log().iter().any(|l| l.contains(text)) {
            assert!(
                start.elapsed() < timeout,
                "no coordinator log line with {text:?} within {timeout:?}:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the admin API reports the job RUNNING.
    pub fn wait_running(&self) {
        self.wait_running_after(None);
    }

    /// Waits until the admin API reports the job RUNNING after exactly `restarts` restarts
    /// (any number with `None`).
    pub fn wait_running_after(&self, restarts: Option<u32>) {
        let start = Instant::now();
        loop {
            let (status, body) = http("GET", &format!("{}/v1/job", self.admin), None);
            let restarts_ok = restarts.is_none_or(|n| body.contains(&format!("\"restarts\":{n},")));
            if status == 200 && body.contains("\"state\":\"RUNNING\"") && restarts_ok {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "job not RUNNING: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the coordinator to exit (at most `timeout`) and returns its status and
    /// stdout; then waits for the workers.
    pub fn wait(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut c = self.coordinator.take().expect("coordinator running");
        let start = Instant::now();
        let status = loop {
            if let Some(s) = c.try_wait().expect("wait") {
                break s;
            }
            if start.elapsed() > timeout {
                let _ = c.kill();
                panic!(
                    "the coordinator did not exit within {timeout:?}:\n{}",
                    self.log().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut o) = c.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        for w in &mut self.workers {
            let deadline = Instant::now() + Duration::from_secs(10);
            while w.try_wait().expect("wait").is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        (status, out)
    }

    /// Logs of every worker started so far, concatenated.
    pub fn worker_logs(&self) -> String {
        (1..=self.started_workers)
            .map(|n| self.worker_log(n))
            .collect()
    }

    /// Log of worker `n` (1-based, in start order).
    pub fn worker_log(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("worker-{n}.log"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(c) = &mut self.coordinator {
            let _ = c.kill();
            let _ = c.wait();
        }
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// (status, body) of an HTTP request, whatever the status.
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let resp = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        (_, Some(b)) => agent
            .post(url)
            .header("content-type", "application/json")
            .send(b),
        (_, None) => agent.post(url).send_empty(),
    };
    match resp {
        Ok(mut resp) => {
            let mut text = String::new();
            let _ = resp.body_mut().as_reader().read_to_string(&mut text);
            (resp.status().as_u16(), text)
        }
        Err(e) => (0, e.to_string()),
    }
}
