//! A shell for the operator's decide function that runs real `weir` processes instead of
//! Kubernetes objects: `Deploy` starts a coordinator (`--lineage`, `--linger`) and its
//! workers on 127.0.0.1, `DeleteCluster` kills them, `RunCheck` runs `weir check`, savepoint
//! actions (also disposal) call the coordinator's admin API with the operator's trigger ids. `observe` reads
//! the same admin API the Kubernetes shell reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_api_types::{AdminToken, CheckpointsInfo, CompatibilityReport, JobInfo, SavepointStatus};
use weir_crds::{StreamJobSpec, StreamJobStatus};
use weir_operator::build::{manifest_yaml, Target};
use weir_operator::decide::decide;
use weir_operator::model::{
    Action, CheckOutcome, Desired, Observed, ObservedCheck, ObservedJob, Restore,
};

use crate::cluster::http_as;
use crate::weir_bin;

/// The namespace of every StreamJob this shell runs: the job's storage root is
/// `<storage>/default/<name>/`.
pub const NAMESPACE: &str = "default";

/// The job's processes and checks.
pub struct ProcessShell {
    dir: PathBuf,
    /// The StreamJob as the Kubernetes shell's builders see it (namespace and UID go into the
    /// manifest: they give the storage root and the lineage's owner).
    target: Target,
    /// The job's admin token, as the operator's Secret holds it, and the file the processes
    /// read it from (the Secret's mount).
    token: AdminToken,
    token_file: PathBuf,
    cluster: Option<Running>,
    checks: BTreeMap<i64, Check>,
    deployments: usize,
    /// Events the decide function asked for: (reason, message).
    pub events: Vec<(String, String)>,
    /// True once the decide function removed the finalizer.
    pub finalizer_removed: bool,
    /// Every deployment: (lineage, coordinator log path).
    pub deployed: Vec<(String, PathBuf)>,
}

struct Running {
    lineage: String,
    coordinator: Child,
    workers: Vec<Child>,
    admin: String,
}

enum Check {
    Running(Child, PathBuf),
    Done(CheckOutcome),
}

impl ProcessShell {
    /// A shell for StreamJob `name` of namespace [`NAMESPACE`] with UID `uid-1`, writing
    /// manifests and logs into `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        Self::with_uid(dir, name, "uid-1")
    }

    /// A shell for StreamJob `name` of namespace [`NAMESPACE`] with UID `uid` (another UID:
    /// the StreamJob deleted and created again).
    pub fn with_uid(dir: &Path, name: &str, uid: &str) -> Self {
        let token = AdminToken::generate();
        let token_file = dir.join(format!("admin-token-{uid}"));
        std::fs::write(&token_file, token.expose()).expect("token file");
        Self {
            token,
            token_file,
            dir: dir.to_path_buf(),
            target: Target {
                name: name.to_string(),
                namespace: NAMESPACE.to_string(),
                uid: uid.to_string(),
                default_image: "unused".into(),
            },
            cluster: None,
            checks: BTreeMap::new(),
            deployments: 0,
            events: Vec::new(),
            finalizer_removed: false,
            deployed: Vec::new(),
        }
    }

    /// An admin API request with the job's token.
    fn http(&self, method: &str, url: &str, body: Option<&str>) -> (u16, String) {
        http_as(Some(self.token.expose()), method, url, body)
    }

    /// A request of `path` to the running coordinator's admin API with the job's token:
    /// (status, body).
    pub fn admin_call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let admin = self.admin().expect("the coordinator runs");
        self.http(method, &format!("{admin}{path}"), body)
    }

    /// The job's admin token.
    pub fn token(&self) -> &AdminToken {
        &self.token
    }

    /// Admin API base URL of the running coordinator.
    pub fn admin(&self) -> Option<&str> {
        self.cluster.as_ref().map(|c| c.admin.as_str())
    }

    /// Number of running worker processes.
    pub fn workers(&self) -> usize {
        self.cluster.as_ref().map_or(0, |c| c.workers.len())
    }

    /// Writes the manifest the operator's ConfigMap would hold.
    fn write_manifest(&self, file: &str, spec: &StreamJobSpec) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::write(&path, manifest_yaml(&self.target, spec)).expect("manifest");
        path
    }

    /// What the Kubernetes shell would observe: workloads present, the admin API, the
    /// savepoint trigger the status names, the check of the upgrade's generation.
    pub fn observe(&mut self, status: &StreamJobStatus) -> Observed {
        let mut observed = Observed {
            pods_present: self.cluster.is_some(),
            workloads_complete: self.cluster.is_some(),
            ..Default::default()
        };
        if let Some(admin) = self.admin().map(str::to_string) {
            let (code, body) = self.http("GET", &format!("{admin}/v1/job"), None);
            let (ccode, cbody) = self.http("GET", &format!("{admin}/v1/checkpoints"), None);
            if code == 200 && ccode == 200 {
                let info: JobInfo = serde_json::from_str(&body).expect("JobInfo");
                let chk: CheckpointsInfo = serde_json::from_str(&cbody).expect("CheckpointsInfo");
                observed.job = Some(ObservedJob::from_api(info, chk));
            }
            let trigger = Observed::awaited_trigger(status);
            if let Some(id) = trigger {
                let (code, body) = self.http("GET", &format!("{admin}/v1/savepoints/{id}"), None);
                if code == 200 {
                    let s: SavepointStatus = serde_json::from_str(&body).expect("SavepointStatus");
                    observed.savepoint = Some(s.into());
                }
            }
        }
        if let Some(up) = &status.upgrade {
            let generation = up.target_generation;
            if let Some(check) = self.checks.get_mut(&generation) {
                if let Check::Running(child, err) = check {
                    if let Some(exit) = child.try_wait().expect("try_wait") {
                        let mut out = String::new();
                        use std::io::Read;
                        child
                            .stdout
                            .take()
                            .expect("stdout piped")
                            .read_to_string(&mut out)
                            .expect("read check output");
                        let outcome = match serde_json::from_str::<CompatibilityReport>(out.trim())
                        {
                            Ok(report) => CheckOutcome::Done(report),
                            Err(_) => CheckOutcome::Error(format!(
                                "weir check exited with {exit}: {}",
                                std::fs::read_to_string(&*err).unwrap_or_default()
                            )),
                        };
                        *check = Check::Done(outcome);
                    }
                }
                observed.check = Some(ObservedCheck {
                    generation,
                    outcome: match check {
                        Check::Running(..) => CheckOutcome::Running,
                        Check::Done(o) => o.clone(),
                    },
                });
            }
        }
        observed
    }

    /// Carries out `actions` in order.
    pub fn act(&mut self, actions: &[Action]) {
        for action in actions {
            match action {
                Action::Deploy {
                    spec,
                    lineage,
                    restore,
                    migrate_lineage,
                } => self.deploy(spec, lineage, restore, migrate_lineage.as_deref()),
                Action::DeleteCluster => self.delete_cluster(),
                Action::RunCheck {
                    generation,
                    spec,
                    snapshot,
                } => {
                    if self.checks.contains_key(generation) {
                        continue;
                    }
                    let manifest = self.write_manifest(&format!("check-{generation}.yaml"), spec);
                    let err = self.dir.join(format!("check-{generation}.log"));
                    let mut cmd = Command::new(weir_bin());
                    cmd.arg("check").arg(&manifest);
                    if let Some(s) = snapshot {
                        cmd.args(["--snapshot", s]);
                    }
                    let child = cmd
                        .stdout(Stdio::piped())
                        .stderr(std::fs::File::create(&err).expect("check log"))
                        .spawn()
                        .expect("spawn weir check");
                    self.checks.insert(*generation, Check::Running(child, err));
                }
                Action::TriggerSavepoint {
                    trigger_id,
                    directory,
                } => self.post("/v1/savepoints", trigger_id, directory, false),
                Action::StopWithSavepoint {
                    trigger_id,
                    directory,
                } => self.post("/v1/job/stop", trigger_id, directory, true),
                Action::DisposeSavepoint { location } => {
                    let admin = self.admin().expect("disposal while the coordinator runs");
                    let body = serde_json::json!({ "location": location }).to_string();
                    let url = format!("{admin}/v1/savepoint-disposal");
                    let (code, text) = self.http("POST", &url, Some(&body));
                    assert_eq!(code, 200, "dispose {location}: {text}");
                }
                Action::Event {
                    reason, message, ..
                } => self.events.push((reason.to_string(), message.clone())),
                Action::RemoveFinalizer => self.finalizer_removed = true,
            }
        }
    }

    fn post(&self, path: &str, trigger_id: &str, directory: &Option<String>, stop: bool) {
        let Some(admin) = self.admin() else { return };
        let mut body = serde_json::json!({ "triggerId": trigger_id, "directory": directory });
        if stop {
            body["withSavepoint"] = true.into();
        }
        let (code, text) = self.http("POST", &format!("{admin}{path}"), Some(&body.to_string()));
        assert!(
            code == 202 || code == 409 || code == 503 || code == 0,
            "{path}: {code} {text}"
        );
    }

    fn deploy(
        &mut self,
        spec: &StreamJobSpec,
        lineage: &str,
        restore: &Restore,
        migrate_lineage: Option<&str>,
    ) {
        if self.cluster.as_ref().is_some_and(|c| c.lineage == lineage) {
            return;
        }
        self.delete_cluster();
        self.deployments += 1;
        let n = self.deployments;
        let manifest = self.write_manifest(&format!("deploy-{n}.yaml"), spec);
        let [control_port, admin_port] = crate::free_ports();
        let control = format!("127.0.0.1:{control_port}");
        let workers = spec.workers.replicas.unwrap_or(spec.job.parallelism) as usize;
        let log = self.dir.join(format!("coordinator-{n}.log"));
        let mut cmd = Command::new(weir_bin());
        cmd.arg("coordinator")
            .arg(&manifest)
            .args(["--bind", &control])
            .args(["--admin-bind", &format!("127.0.0.1:{admin_port}")])
            .args(["--workers", &workers.to_string()])
            .args(["--lineage", lineage, "--linger"])
            .args(["--progress-interval", "0s", "--restart-backoff", "100ms"]);
        match restore {
            Restore::Nothing => {
                cmd.arg("--fresh");
            }
            Restore::LatestCheckpoint => {}
            Restore::Savepoint(uri) => {
                cmd.args(["--from-savepoint", uri]);
            }
        }
        if let Some(l) = migrate_lineage {
            cmd.args(["--migrate-lineage", l]);
        }
        cmd.arg("--admin-token-file").arg(&self.token_file);
        let coordinator = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("coordinator log"))
            .spawn()
            .expect("spawn weir coordinator");
        let workers = (0..workers)
            .map(|w| {
                let wlog = self.dir.join(format!("worker-{n}-{w}.log"));
                Command::new(weir_bin())
                    .arg("worker")
                    .args(["--coordinator", &control])
                    .arg("--admin-token-file")
                    .arg(&self.token_file)
                    .args([
                        "--connect-backoff",
                        "100ms",
                        "--heartbeat-interval",
                        "200ms",
                    ])
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(wlog).expect("worker log"))
                    .spawn()
                    .expect("spawn weir worker")
            })
            .collect();
        self.deployed.push((lineage.to_string(), log));
        self.cluster = Some(Running {
            lineage: lineage.to_string(),
            coordinator,
            workers,
            admin: format!("http://127.0.0.1:{admin_port}"),
        });
    }

    fn delete_cluster(&mut self) {
        if let Some(mut c) = self.cluster.take() {
            for child in std::iter::once(&mut c.coordinator).chain(c.workers.iter_mut()) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for ProcessShell {
    fn drop(&mut self) {
        self.delete_cluster();
        for check in self.checks.values_mut() {
            if let Check::Running(child, _) = check {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs observe -> decide -> act every 100 ms until `done(status, observed)` holds; the
/// status is written (kept) before the actions run, as the Kubernetes shell does. `skip`
/// returns true for a decision whose actions are dropped, as if the operator crashed right
/// after writing its status.
///
/// # Panics
/// When `done` does not hold within `timeout`, with the status and the events.
pub fn drive(
    shell: &mut ProcessShell,
    desired: &Desired,
    status: &mut StreamJobStatus,
    timeout: Duration,
    mut skip: impl FnMut(&[Action]) -> bool,
    done: impl Fn(&StreamJobStatus, &Observed) -> bool,
) -> Observed {
    let deadline = Instant::now() + timeout;
    loop {
        let observed = shell.observe(status);
        if done(status, &observed) {
            return observed;
        }
        assert!(
            Instant::now() < deadline,
            "not done after {timeout:?}: status {status:#?}\nobserved {observed:#?}\nevents {:#?}",
            shell.events
        );
        let decision = decide(
            desired,
            status,
            &observed,
            k8s_openapi::jiff::Timestamp::now(),
        );
        *status = decision.status;
        if !skip(&decision.actions) {
            shell.act(&decision.actions);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
