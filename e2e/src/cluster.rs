//! A distributed job under test: one `weir coordinator` and its `weir worker`s as separate
//! processes on 127.0.0.1, which the test can SIGKILL and start again.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_api_types::{AdminToken, CheckpointsInfo, JobInfo, JobRunState};
use weir_runtime::cluster::CoordinatorSummary;

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
    /// The job's admin token (its file, `admin-token` in the job's directory, is handed to the
    /// coordinator and every worker with `--admin-token-file`).
    pub token: AdminToken,
    token_file: PathBuf,
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
            "--summary-json".into(),
            job.dir
                .path()
                .join("coordinator-summary.json")
                .display()
                .to_string(),
        ];
        args.extend(coordinator_args.iter().map(|a| a.to_string()));
        let token = AdminToken::generate();
        let token_file = job.dir.path().join("admin-token");
        std::fs::write(&token_file, token.expose()).expect("token file");
        args.extend([
            "--admin-token-file".into(),
            token_file.display().to_string(),
        ]);
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
            token,
            token_file,
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

    /// Starts one more worker with the job's token; its log goes to `worker-<n>.log` in the
    /// job's directory.
    pub fn start_worker(&mut self) {
        let token_file = self.token_file.clone();
        let child = self.spawn_worker(Some(&token_file));
        self.workers.push(child);
    }

    /// Spawns a worker process reading its token from `token_file` (none: no token), not
    /// counted among the cluster's workers.
    pub fn spawn_worker(&mut self, token_file: Option<&Path>) -> Child {
        self.started_workers += 1;
        let log = std::fs::File::create(
            self.dir
                .join(format!("worker-{}.log", self.started_workers)),
        )
        .expect("worker log");
        let mut cmd = Command::new(weir_bin());
        cmd.arg("worker")
            .args(["--coordinator", &self.control])
            .args(&self.worker_args);
        if let Some(f) = token_file {
            cmd.arg("--admin-token-file").arg(f);
        }
        cmd.envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn weir worker")
    }

    /// An admin API request with the job's token: (status, body).
    pub fn admin_call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http_as(
            Some(self.token.expose()),
            method,
            &format!("{}{path}", self.admin),
            body,
        )
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

    /// Waits until the admin API reports `n` checkpoints completed by the running coordinator
    /// (at most `timeout`).
    pub fn wait_checkpoints(&self, n: u64, timeout: Duration) {
        let start = Instant::now();
        while self.checkpoints().is_none_or(|c| c.completed < n) {
            assert!(
                start.elapsed() < timeout,
                "not {n} checkpoints within {timeout:?}: {:?}",
                self.checkpoints()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `GET /v1/checkpoints` of the running coordinator; `None` while it does not answer.
    pub fn checkpoints(&self) -> Option<CheckpointsInfo> {
        let (status, body) = self.admin_call("GET", "/v1/checkpoints", None);
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// `GET /v1/job` of the running coordinator; `None` while it does not answer.
    pub fn job_info(&self) -> Option<JobInfo> {
        let (status, body) = self.admin_call("GET", "/v1/job", None);
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// What the last coordinator that ended wrote with `--summary-json` (a killed one
    /// writes nothing).
    pub fn summary(&self) -> CoordinatorSummary {
        let path = self.dir.join("coordinator-summary.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), self.log().join("\n")));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
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
            let info = self.job_info();
            if info.as_ref().is_some_and(|i| {
                i.state == JobRunState::Running && restarts.is_none_or(|n| i.restarts == n)
            }) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "job not RUNNING after 60 s: {info:?}; admin answered {:?}\ncoordinator log:\n{}",
                self.admin_call("GET", "/v1/job", None),
                self.log().join("\n")
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
    http_as(None, method, url, body)
}

/// [`http`] with `Authorization: Bearer <token>` when `token` is given.
pub fn http_as(token: Option<&str>, method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    fn authorized<B>(r: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
        match token {
            Some(t) => r.header("authorization", &format!("Bearer {t}")),
            None => r,
        }
    }
    let resp = match (method, body) {
        ("GET", _) => authorized(agent.get(url), token).call(),
        (_, Some(b)) => authorized(agent.post(url), token)
            .header("content-type", "application/json")
            .send(b),
        (_, None) => authorized(agent.post(url), token).send_empty(),
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
