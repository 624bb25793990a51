//! `weir coordinator`: the job loop around the checkpoint coordinator. Waits for workers,
//! chooses what to restore, deploys, runs until the job ends or fails, and restarts after a
//! failure by the [`RestartStrategy`]. Between attempts it keeps answering the admin API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use tracing::{error, info, warn};
use weir_api_types::{ApiError, CheckpointsInfo, JobInfo, JobRunState};
use weir_crds::LoadedManifest;

use super::members::Members;
use super::protocol::{Deployment, RestoreSource, ToWorker, WireControl};
use super::restart::RestartStrategy;
use super::summary::{
    AttemptFailure, AttemptSummary, CoordinatorSummary, RestoreShare, RestoredSnapshot,
    WorkerAssignment,
};
use crate::admin::AdminRequest;
use crate::api::{CheckpointBarrier, JobGraph};
use crate::checkpoint::writer::SnapshotTarget;
use crate::checkpoint::{RestorePlan, RestoreRequest, SnapshotKind};
use crate::metrics::JobMetrics;
use crate::runner::{
    choose_restore, error_chain, legacy_checkpoint, log_restore, new_job_id, open_storage,
    read_lineage, restart_restore, ChosenRestore, Coordinator, History, JobEvent, RunEnd, RunError,
    RunInfo, TaskSet,
};
use crate::storage::paths::JobPaths;
use crate::task::Control;

/// How a coordinator runs.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    /// Where workers connect (port 0: any free port).
    pub bind: SocketAddr,
    /// Where the admin API listens (port 0: any free port).
    pub admin_bind: SocketAddr,
    /// Workers to wait for before deploying; subtask i runs on worker `i % workers`.
    pub workers: u32,
    /// A worker silent for this long is lost.
    pub heartbeat_timeout: Duration,
    /// Restarts after failures.
    pub restart: RestartStrategy,
    /// Restore from this savepoint when it starts a new lineage (see
    /// [`crate::checkpoint::restore_point`]).
    pub from_savepoint: Option<String>,
    /// Delete the job's checkpoints first.
    pub fresh: bool,
    /// The deployment this coordinator belongs to (any string; the operator uses the
    /// StreamJob's generation and a time). Stored at `<job>/_lineage`: a coordinator whose
    /// lineage differs from the stored one starts a new deployment and applies `fresh` and
    /// `from_savepoint` as given; one with the same lineage is a restart and resumes from the
    /// latest checkpoint. `None`: `from_savepoint` names the lineage, as for `weir run`
    /// ([`crate::checkpoint::restore_point`]).
    pub lineage: Option<String>,
    /// The deployment whose lineage the legacy root (`<name>/`, before roots were per
    /// namespace) holds: restored from while the job's own root has no checkpoint yet
    /// (`weir coordinator --migrate-lineage`; see `runner::legacy_checkpoint`).
    pub migrate_lineage: Option<String>,
    /// The job's admin token (`--admin-token-file`): required of every admin request and of
    /// every worker that registers. `None`: both admit anyone (a warning says so).
    pub admin_token: Option<weir_api_types::AdminToken>,
    /// After the job ends (finished, stopped with a savepoint, cancelled), go on serving the
    /// admin API (state `FINISHED`, `STOPPED`, `CANCELED`) until the process is terminated,
    /// so that an operator can read the final savepoint; as Flink's
    /// `execution.shutdown-on-application-finish: false`.
    pub linger: bool,
    /// Time between progress lines (zero: none).
    pub progress_interval: Duration,
    /// Write `{"admin": "http://...", "control": "host:port"}` here once listening.
    pub address_file: Option<PathBuf>,
}

/// The coordinator's tasks: subtasks of one attempt on the workers.
struct RemoteTasks {
    names: Vec<String>,
    sources: usize,
    members: Members,
    attempt: u64,
    events: Receiver<JobEvent>,
}

impl RemoteTasks {
    fn send_all(&self, make: impl Fn() -> ToWorker) {
        for m in self
            .members
            .lock()
            .members
            .iter()
            .filter(|m| !m.subtasks.is_empty())
        {
            m.send(make());
        }
    }
}

impl TaskSet for RemoteTasks {
    fn len(&self) -> usize {
        self.names.len()
    }
    fn sources(&self) -> usize {
        self.sources
    }
    fn name(&self, task: usize) -> String {
        self.names
            .get(task)
            .cloned()
            .unwrap_or_else(|| "(deployment)".into())
    }
    fn events(&self) -> &Receiver<JobEvent> {
        &self.events
    }
    fn trigger(&self, barrier: CheckpointBarrier, target: &SnapshotTarget) {
        let uri = match barrier.kind {
            SnapshotKind::Checkpoint => None,
            SnapshotKind::Savepoint => Some(target.storage.uri(&target.dir)),
        };
        self.send_all(|| ToWorker::Trigger {
            attempt: self.attempt,
            id: barrier.id,
            kind: barrier.kind,
            target: uri.clone(),
        });
    }
    fn control(&self, control: Control) {
        let attempt = self.attempt;
        let wire = match control {
            Control::CheckpointComplete(id) => WireControl::CheckpointComplete(id),
            Control::AbortCheckpoint(id) => WireControl::AbortCheckpoint(id),
            Control::Finish => WireControl::Finish,
            Control::Drain => WireControl::Drain,
            Control::Cancel => return self.send_all(|| ToWorker::Cancel { attempt }),
            Control::TriggerCheckpoint(_) => return,
        };
        self.send_all(|| ToWorker::Control {
            attempt,
            control: wire,
        });
    }
}

/// Everything a job attempt needs that does not change between attempts.
struct Job<'a> {
    manifest: &'a LoadedManifest,
    yaml: &'a str,
    graph: &'a JobGraph,
    storage: Arc<dyn crate::storage::CheckpointStorage>,
    paths: JobPaths,
    members: Members,
    options: &'a CoordinatorOptions,
    job_id: String,
    start_time: String,
    /// Where savepoints may go ([`savepoint_prefixes`]).
    savepoint_prefixes: Option<Vec<String>>,
}

/// The state the admin API reports between attempts.
struct Idle<'a> {
    state: JobRunState,
    info: JobInfo,
    history: &'a History,
}

enum IdleEnd {
    Ready,
    Cancelled,
}

/// Runs the job of `manifest` (`yaml` is its text, for the workers) on workers until it
/// ends: input exhausted, stopped with a savepoint, cancelled, or failed beyond the restart
/// strategy (then the admin API keeps reporting FAILED until the job is cancelled). Returns
/// how it ended and the [`CoordinatorSummary`] of its attempts (whatever the outcome).
///
/// # Errors
/// [`RunError`] when storage or the listening sockets cannot be set up, the restored
/// snapshot does not fit the job, or the job failed and the restart strategy is exhausted.
pub fn run_coordinator(
    manifest: &LoadedManifest,
    yaml: &str,
    graph: JobGraph,
    options: &CoordinatorOptions,
) -> (Result<RunEnd, RunError>, CoordinatorSummary) {
    let mut summary = CoordinatorSummary {
        job: manifest.name.clone(),
        end: None,
        restarts: 0,
        attempts: Vec::new(),
        workers_lost: Vec::new(),
    };
    let result = coordinate(manifest, yaml, graph, options, &mut summary);
    summary.end = result.as_ref().ok().cloned();
    (result, summary)
}

/// Where a job that belongs to a StreamJob (its manifest has a UID) may take and dispose
/// savepoints: its storage root and the manifest's `savepoints.directory`. `None` (anywhere)
/// for a manifest without an owner, as under `weir run`.
fn savepoint_prefixes(
    manifest: &LoadedManifest,
    storage: &dyn crate::storage::CheckpointStorage,
    paths: &JobPaths,
) -> Option<Vec<String>> {
    manifest.uid.as_ref()?;
    let mut prefixes = vec![storage.uri(&paths.job_root())];
    prefixes.extend(manifest.spec.spec.savepoints.directory.clone());
    Some(prefixes)
}

fn coordinate(
    manifest: &LoadedManifest,
    yaml: &str,
    graph: JobGraph,
    options: &CoordinatorOptions,
    summary: &mut CoordinatorSummary,
) -> Result<RunEnd, RunError> {
    let spec = &manifest.spec;
    let storage = open_storage(&spec.checkpointing.storage)?;
    let paths = JobPaths::of_job(&manifest.name, manifest.namespace.as_deref());
    let listen = |what: &'static str, address: SocketAddr| {
        move |source| RunError::Listen {
            what,
            address,
            source,
        }
    };
    let (admin_tx, admin_rx) = unbounded();
    let savepoint_prefixes = savepoint_prefixes(manifest, storage.as_ref(), &paths);
    let admin = crate::admin::serve(
        options.admin_bind,
        None,
        admin_tx,
        manifest.spec.spec.checkpointing.s3.clone(),
        options.admin_token.clone(),
        savepoint_prefixes.clone(),
    )
    .map_err(listen("admin API", options.admin_bind))?;
    if options.admin_token.is_none() {
        warn!("no --admin-token-file: the admin API and the control port admit anyone who reaches them");
    }
    let (members, control) = Members::serve(
        options.bind,
        options.heartbeat_timeout,
        options.admin_token.clone(),
    )
    .map_err(listen("workers", options.bind))?;
    info!(%control, admin = %admin.addr, workers = options.workers, "coordinator of job {} waiting for {} workers on {control}", manifest.name, options.workers);
    if let Some(f) = &options.address_file {
        let json = serde_json::json!({
            "admin": format!("http://{}", admin.addr),
            "control": control.to_string(),
        });
        std::fs::write(f, json.to_string()).map_err(|source| RunError::Write {
            path: f.display().to_string(),
            source,
        })?;
    }
    let job = Job {
        manifest,
        yaml,
        graph: &graph,
        storage,
        paths,
        members,
        options,
        job_id: new_job_id(&manifest.name),
        start_time: chrono::Utc::now().to_rfc3339(),
        savepoint_prefixes,
    };
    let result = job.run(&admin, &admin_rx, summary);
    summary.workers_lost = job.members.lost();
    job.members.shutdown();
    job.members.wait_disconnected(Duration::from_secs(5));
    result
}

impl Job<'_> {
    /// Ends `attempt` with the workers and completes its summary (the last of `summary`):
    /// what each worker said it read of the restored snapshot, and `failure` when it failed.
    fn close_attempt(
        &self,
        summary: &mut CoordinatorSummary,
        attempt: u64,
        failure: Option<AttemptFailure>,
    ) {
        let shares: HashMap<String, RestoreShare> = self.members.end_attempt(attempt);
        if let Some(a) = summary.attempts.last_mut() {
            for w in &mut a.workers {
                w.restore = shares.get(&w.worker).copied();
            }
            a.failure = failure;
        }
    }

    fn run(
        &self,
        admin: &crate::admin::AdminServer,
        admin_rx: &Receiver<AdminRequest>,
        summary: &mut CoordinatorSummary,
    ) -> Result<RunEnd, RunError> {
        let mut history = History::default();
        let mut restarts = 0u32;
        let mut failure: Option<String> = None;
        let mut attempt = 0u64;
        let spec = &self.manifest.spec.spec;
        let legacy = match &self.options.migrate_lineage {
            Some(deployment) => legacy_checkpoint(
                self.storage.as_ref(),
                &self.paths,
                &JobPaths::of_job(&self.manifest.name, None),
                deployment,
            )?,
            None => None,
        };
        let request = RestoreRequest {
            savepoint: self.options.from_savepoint.clone(),
            initial_savepoint: legacy.or_else(|| spec.initial_savepoint().map(str::to_string)),
            lineage: self.options.lineage.clone(),
            fresh: self.options.fresh,
            owner: self.manifest.uid.clone(),
            adopt: spec.adopts_latest_checkpoint(),
        };
        let mut next_id = 1u64;
        loop {
            let idle = Idle {
                state: if restarts == 0 {
                    JobRunState::Created
                } else {
                    JobRunState::Restarting
                },
                info: self.idle_info(restarts, failure.clone()),
                history: &history,
            };
            let workers = self.options.workers as usize;
            if let IdleEnd::Cancelled =
                wait_idle(admin_rx, &idle, None, || self.members.count() >= workers)
            {
                return Ok(RunEnd::Cancelled);
            }
            let spec = &self.manifest.spec;
            let s3 = spec.spec.checkpointing.s3.as_ref();
            let check = |c: ChosenRestore| {
                RestorePlan::new(
                    c.loaded,
                    self.graph
                        .shape(spec.max_parallelism, spec.spec.job.allow_non_restored_state),
                )
                .map(|plan| (c.source, plan))
                .map_err(RunError::Incompatible)
            };
            let plan = if attempt == 0 {
                let (plan, _, first_id) =
                    choose_restore(self.storage.as_ref(), &self.paths, &request, s3, check)?;
                next_id = first_id;
                plan
            } else {
                restart_restore(self.storage.as_ref(), &self.paths, &request, s3)?
                    .map(check)
                    .transpose()?
            };
            attempt += 1;
            let info = RunInfo {
                job_id: self.job_id.clone(),
                start_time: self.start_time.clone(),
                restored_from: plan.as_ref().map(|(_, p)| p.location().to_string()),
                restarts,
                failure: failure.clone(),
            };
            let restored_from = info.restored_from.clone();
            info!(attempt, "deploying attempt {attempt}");
            log_restore(plan.as_ref().map(|(_, p)| p));
            let restored = plan.as_ref().map(|(_, p)| RestoredSnapshot {
                checkpoint_id: p.checkpoint_id(),
                kind: p.kind(),
                location: p.location().to_string(),
            });
            let source = plan.map(|(s, _)| s);
            let (tasks, metrics, workers) = self.deploy(attempt, source);
            summary.attempts.push(AttemptSummary {
                attempt,
                restored,
                workers,
                failure: None,
            });
            let settings = &self.manifest.spec.checkpointing;
            let mut coordinator = Coordinator::new(
                self.storage.clone(),
                &self.paths,
                &self.manifest.name,
                settings,
                self.manifest.spec.spec.checkpointing.s3.as_ref(),
                self.manifest.spec.max_parallelism,
                self.manifest.spec.parallelism,
                next_id,
                info,
            )
            .with_history(std::mem::take(&mut history))
            .confine_savepoints(self.savepoint_prefixes.clone())
            .with_lineage_start(
                read_lineage(self.storage.as_ref(), &self.paths)?.map_or(0, |r| r.first_checkpoint),
            );
            admin.set_ready();
            let result =
                coordinator.run(&tasks, &metrics, self.options.progress_interval, admin_rx);
            next_id = coordinator.next_id();
            match result {
                Ok(end) => {
                    self.close_attempt(summary, attempt, None);
                    info!(attempt, "job ended: {end:?}");
                    if self.options.linger {
                        admin.set_not_ready();
                        self.members.shutdown();
                        let history = coordinator.into_history("the job ended");
                        let mut info = self.idle_info(restarts, failure.clone());
                        info.restored_from = restored_from;
                        let idle = Idle {
                            state: match &end {
                                RunEnd::Finished => JobRunState::Finished,
                                RunEnd::Stopped { .. } => JobRunState::Stopped,
                                RunEnd::Cancelled => JobRunState::Canceled,
                            },
                            info,
                            history: &history,
                        };
                        info!("--linger: serving the admin API until terminated");
                        wait_idle(admin_rx, &idle, None, || false);
                    }
                    return Ok(end);
                }
                Err(e) => {
                    admin.set_not_ready();
                    let cause = error_chain(&e);
                    history = coordinator.into_history(&cause);
                    self.close_attempt(
                        summary,
                        attempt,
                        Some(AttemptFailure::of(&e, cause.clone())),
                    );
                    failure = Some(cause.clone());
                    match self.options.restart.delay(restarts) {
                        Some(delay) => {
                            restarts += 1;
                            summary.restarts = restarts;
                            warn!(
                                attempt,
                                restarts,
                                "job failed: {cause}; restart {restarts} of at most {} in {delay:?} from the latest complete checkpoint",
                                self.options.restart.max_restarts
                            );
                            let idle = Idle {
                                state: JobRunState::Restarting,
                                info: self.idle_info(restarts, failure.clone()),
                                history: &history,
                            };
                            let deadline = Instant::now() + delay;
                            if let IdleEnd::Cancelled =
                                wait_idle(admin_rx, &idle, Some(deadline), || false)
                            {
                                return Ok(RunEnd::Cancelled);
                            }
                        }
                        None => {
                            error!(
                                restarts,
                                "job FAILED: {cause}; the restart strategy is exhausted ({restarts} restarts). The admin API reports the failure until the job is cancelled"
                            );
                            self.members.shutdown();
                            let idle = Idle {
                                state: JobRunState::Failed,
                                info: self.idle_info(restarts, failure.clone()),
                                history: &history,
                            };
                            wait_idle(admin_rx, &idle, None, || false);
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    fn idle_info(&self, restarts: u32, failure: Option<String>) -> JobInfo {
        JobInfo {
            name: self.manifest.name.clone(),
            id: self.job_id.clone(),
            state: JobRunState::Created,
            restarts,
            failure,
            parallelism: self.manifest.spec.parallelism,
            max_parallelism: self.manifest.spec.max_parallelism,
            start_time: self.start_time.clone(),
            restored_from: None,
            records_in: 0,
            records_out: 0,
            watermark: None,
        }
    }

    /// Assigns the subtasks to the first `workers` registered workers and deploys them;
    /// returns the tasks, their metrics and the assignment.
    fn deploy(
        &self,
        attempt: u64,
        restore: Option<RestoreSource>,
    ) -> (RemoteTasks, Arc<JobMetrics>, Vec<WorkerAssignment>) {
        let p = self.manifest.spec.parallelism;
        let n = self.options.workers.max(1) as usize;
        let chains = self.graph.chains();
        let names: Vec<String> = chains
            .iter()
            .flat_map(|c| (0..p).map(move |s| format!("{c}#{s}")))
            .collect();
        let index: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let metrics = Arc::new(JobMetrics::new(p as usize, &self.graph.operator_uids()));
        let (events_tx, events) = unbounded();
        let mut state = self.members.lock();
        let workers = state.members.len().min(n);
        let peers: Vec<SocketAddr> = (0..p)
            .map(|s| state.members[s as usize % workers].data_addr)
            .collect();
        for (w, m) in state.members.iter_mut().take(workers).enumerate() {
            m.subtasks = (0..p).filter(|s| *s as usize % workers == w).collect();
        }
        drop(state);
        self.members
            .start_attempt(attempt, events_tx, index, metrics.clone());
        let state = self.members.lock();
        let mut assignment = Vec::new();
        for m in state.members.iter().filter(|m| !m.subtasks.is_empty()) {
            info!(attempt, worker = %m.id, subtasks = ?m.subtasks, "deploying");
            assignment.push(WorkerAssignment {
                worker: m.id.clone(),
                registrations: m.registrations,
                subtasks: m.subtasks.clone(),
                restore: None,
            });
            m.send(ToWorker::Deploy(Deployment {
                attempt,
                manifest: self.yaml.to_string(),
                subtasks: m.subtasks.clone(),
                peers: peers.clone(),
                restore: restore.clone(),
            }));
        }
        drop(state);
        (
            RemoteTasks {
                names,
                sources: self.graph.source_count() * p as usize,
                members: self.members.clone(),
                attempt,
                events,
            },
            metrics,
            assignment,
        )
    }
}

/// Answers the admin API while no attempt runs, until `ready()` (checked every 10 ms), the
/// deadline, or a cancel.
fn wait_idle(
    admin: &Receiver<AdminRequest>,
    idle: &Idle<'_>,
    deadline: Option<Instant>,
    ready: impl Fn() -> bool,
) -> IdleEnd {
    let not_running = || {
        ApiError::new(
            409,
            "job_not_running",
            format!(
                "the job is {}; savepoints and stops with savepoint need a running job",
                idle.state
            ),
        )
    };
    loop {
        if ready() || deadline.is_some_and(|d| Instant::now() >= d) {
            return IdleEnd::Ready;
        }
        let Ok(request) = admin.recv_timeout(Duration::from_millis(10)) else {
            continue;
        };
        match request {
            AdminRequest::Job(reply) => {
                let mut info = idle.info.clone();
                info.state = idle.state;
                let _ = reply.send(info);
            }
            AdminRequest::Checkpoints(reply) => {
                let _ = reply.send(CheckpointsInfo {
                    latest: idle.history.stats.last_info.clone(),
                    in_progress: None,
                    completed: idle.history.stats.completed,
                    failed: idle.history.stats.failed,
                    recent_failures: idle.history.recent_failures.iter().cloned().collect(),
                });
            }
            AdminRequest::TriggerSavepoint {
                trigger_id, reply, ..
            } => {
                let known = idle.history.known_trigger(trigger_id.as_deref());
                let _ = reply.send(known.ok_or_else(not_running));
            }
            AdminRequest::Stop { request, reply } => {
                if let Some(known) = idle.history.known_trigger(request.trigger_id.as_deref()) {
                    let _ = reply.send(Ok(Some(known)));
                } else if request.with_savepoint {
                    let _ = reply.send(Err(not_running()));
                } else {
                    let _ = reply.send(Ok(None));
                    warn!("cancelled through the admin API");
                    return IdleEnd::Cancelled;
                }
            }
            AdminRequest::Metrics(reply) => {
                let _ = reply.send(format!(
                    "# HELP weir_restarts Restarts after failures.\n# TYPE weir_restarts counter\nweir_restarts_total {}\n# EOF\n",
                    idle.info.restarts
                ));
            }
            AdminRequest::Savepoint { trigger_id, reply } => {
                let _ = reply.send(idle.history.savepoints.get(&trigger_id).cloned());
            }
        }
    }
}
