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
use weir_api_types::{ApiError, CheckpointsInfo, JobInfo};
use weir_crds::LoadedManifest;

use super::members::Members;
use super::protocol::{Deployment, RestoreSource, ToWorker, WireControl};
use super::restart::RestartStrategy;
use crate::admin::AdminRequest;
use crate::api::{CheckpointBarrier, JobGraph};
use crate::checkpoint::restore::list_checkpoint_ids;
use crate::checkpoint::writer::SnapshotTarget;
use crate::checkpoint::{find_latest_checkpoint, LoadedCheckpoint, RestorePlan, SnapshotKind};
use crate::metrics::JobMetrics;
use crate::runner::{
    error_chain, load_savepoint, log_restore, new_job_id, open_storage, prepare_storage,
    Coordinator, History, JobEvent, RunEnd, RunError, RunInfo, TaskSet,
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
    /// Restore from this savepoint unless a newer checkpoint of the job exists.
    pub from_savepoint: Option<String>,
    /// Delete the job's checkpoints first.
    pub fresh: bool,
    /// The deployment this coordinator belongs to (any string; the operator uses the
    /// StreamJob's uid and generation). Stored at `<job>/_lineage`: a coordinator whose lineage
    /// differs from the stored one starts a new deployment and applies `fresh` and
    /// `from_savepoint` as given; one with the same lineage is a restart and resumes from the
    /// latest checkpoint. `None`: `fresh` always applies, a savepoint only without newer
    /// checkpoints.
    pub lineage: Option<String>,
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

/// What the first attempt restores: the latest checkpoint unless a savepoint was given that
/// is newer than it (checkpoints after restoring a savepoint have larger ids), else the
/// savepoint, else nothing. Pure.
fn choose_restore(latest_checkpoint: Option<u64>, savepoint: Option<u64>) -> Choice {
    match (latest_checkpoint, savepoint) {
        (Some(c), Some(s)) if c > s => Choice::Checkpoint,
        (_, Some(_)) => Choice::Savepoint,
        (Some(_), None) => Choice::Checkpoint,
        (None, None) => Choice::Nothing,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Choice {
    Checkpoint,
    Savepoint,
    Nothing,
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
}

/// The state the admin API reports between attempts.
struct Idle<'a> {
    state: &'a str,
    info: JobInfo,
    history: &'a History,
}

enum IdleEnd {
    Ready,
    Cancelled,
}

/// Runs the job of `manifest` (`yaml` is its text, for the workers) on workers until it
/// ends: input exhausted, stopped with a savepoint, cancelled, or failed beyond the restart
/// strategy (then the admin API keeps reporting FAILED until the job is cancelled).
///
/// # Errors
/// [`RunError`] when storage or the listening sockets cannot be set up, the restored
/// snapshot does not fit the job, or the job failed and the restart strategy is exhausted.
pub fn run_coordinator(
    manifest: &LoadedManifest,
    yaml: &str,
    graph: JobGraph,
    options: &CoordinatorOptions,
) -> Result<RunEnd, RunError> {
    let spec = &manifest.spec;
    let storage = open_storage(&spec.checkpointing.storage)?;
    let paths = JobPaths::new(&manifest.name);
    let listen = |what: &'static str, address: SocketAddr| {
        move |source| RunError::Listen {
            what,
            address,
            source,
        }
    };
    let (admin_tx, admin_rx) = unbounded();
    let admin = crate::admin::serve(
        options.admin_bind,
        None,
        admin_tx,
        manifest.spec.spec.checkpointing.s3.clone(),
    )
    .map_err(listen("admin API", options.admin_bind))?;
    let (members, control) = Members::serve(options.bind, options.heartbeat_timeout)
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
    };
    let result = job.run(&admin, &admin_rx);
    job.members.shutdown();
    job.members.wait_disconnected(Duration::from_secs(5));
    result
}

impl Job<'_> {
    fn run(
        &self,
        admin: &crate::admin::AdminServer,
        admin_rx: &Receiver<AdminRequest>,
    ) -> Result<RunEnd, RunError> {
        let mut history = History::default();
        let mut restarts = 0u32;
        let mut failure: Option<String> = None;
        let mut attempt = 0u64;
        let mut initial: Option<String> = None;
        let mut next_id = 1u64;
        loop {
            let idle = Idle {
                state: if restarts == 0 {
                    "CREATED"
                } else {
                    "RESTARTING"
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
            let restore = match attempt {
                0 => {
                    let (restore, init) = self.first_restore()?;
                    initial = init;
                    restore
                }
                _ => self.later_restore(initial.as_deref())?,
            };
            attempt += 1;
            let loaded_id = restore.as_ref().map(|(_, l)| l.metadata.checkpoint_id);
            let existing = list_checkpoint_ids(self.storage.as_ref(), &self.paths)?;
            next_id = next_id
                .max(existing.last().copied().unwrap_or(0) + 1)
                .max(loaded_id.unwrap_or(0) + 1);
            let plan = restore
                .map(|(source, loaded)| {
                    RestorePlan::new(
                        loaded,
                        self.graph.shape(
                            self.manifest.spec.max_parallelism,
                            self.manifest.spec.spec.job.allow_non_restored_state,
                        ),
                    )
                    .map(|plan| (source, plan))
                    .map_err(RunError::Incompatible)
                })
                .transpose()?;
            let info = RunInfo {
                job_id: self.job_id.clone(),
                start_time: self.start_time.clone(),
                restored_from: plan.as_ref().map(|(_, p)| p.location().to_string()),
                restarts,
                failure: failure.clone(),
                uids: self.graph.metric_operators(),
            };
            let restored_from = info.restored_from.clone();
            info!(attempt, "deploying attempt {attempt}");
            log_restore(plan.as_ref().map(|(_, p)| p));
            let source = plan.map(|(s, _)| s);
            let (tasks, metrics) = self.deploy(attempt, source);
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
            .with_history(std::mem::take(&mut history));
            admin.set_ready();
            let result =
                coordinator.run(&tasks, &metrics, self.options.progress_interval, admin_rx);
            next_id = coordinator.next_id();
            match result {
                Ok(end) => {
                    self.members.end_attempt(attempt);
                    info!(attempt, "job ended: {end:?}");
                    if self.options.linger {
                        admin.set_not_ready();
                        self.members.shutdown();
                        let history = coordinator.into_history("the job ended");
                        let mut info = self.idle_info(restarts, failure.clone());
                        info.restored_from = restored_from;
                        let idle = Idle {
                            state: match &end {
                                RunEnd::Finished => "FINISHED",
                                RunEnd::Stopped { .. } => "STOPPED",
                                RunEnd::Cancelled => "CANCELED",
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
                    self.members.end_attempt(attempt);
                    failure = Some(cause.clone());
                    match self.options.restart.delay(restarts) {
                        Some(delay) => {
                            restarts += 1;
                            warn!(
                                attempt,
                                restarts,
                                "job failed: {cause}; restart {restarts} of at most {} in {delay:?} from the latest complete checkpoint",
                                self.options.restart.max_restarts
                            );
                            let idle = Idle {
                                state: "RESTARTING",
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
                                state: "FAILED",
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
            state: String::new(),
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

    /// The first attempt's snapshot (see [`choose_restore`]); a savepoint restore deletes the
    /// job's older checkpoints, which belong to the lineage before the savepoint.
    ///
    /// With `--lineage`, a coordinator of a new deployment (a lineage other than the one in
    /// storage) does exactly what its flags say (`--fresh` deletes the checkpoints,
    /// `--from-savepoint` restores that savepoint even if newer checkpoints exist), and a
    /// restarted coordinator of the same deployment resumes from its own latest checkpoint.
    #[allow(clippy::type_complexity)]
    fn first_restore(
        &self,
    ) -> Result<(Option<(RestoreSource, LoadedCheckpoint)>, Option<String>), RunError> {
        let spec = &self.manifest.spec.spec;
        let lineage = self.options.lineage.as_deref();
        let stored = match lineage {
            Some(_) => self
                .storage
                .read(&self.paths.lineage())?
                .map(|b| String::from_utf8_lossy(&b).trim().to_string()),
            None => None,
        };
        let same_deployment = lineage.is_some() && stored.as_deref() == lineage;
        let new_deployment = lineage.is_some() && !same_deployment;
        let fresh = self.options.fresh && !same_deployment;
        let latest = prepare_storage(self.storage.as_ref(), &self.paths, fresh)?;
        let savepoint_uri = self
            .options
            .from_savepoint
            .clone()
            .or_else(|| spec.job.initial_savepoint_path.clone());
        // A restarted deployment with checkpoints of its own never reads its savepoint again
        // (it may have been disposed of since).
        let savepoint = match &savepoint_uri {
            Some(uri) if !(same_deployment && latest.is_some()) => Some((
                uri.clone(),
                load_savepoint(uri, spec.checkpointing.s3.as_ref())?,
            )),
            _ => None,
        };
        let initial = savepoint_uri;
        let choice = match &savepoint {
            Some(_) if new_deployment => Choice::Savepoint,
            _ => choose_restore(
                latest.as_ref().map(|l| l.metadata.checkpoint_id),
                savepoint.as_ref().map(|(_, l)| l.metadata.checkpoint_id),
            ),
        };
        if let (true, Some(l)) = (new_deployment, lineage) {
            info!(lineage = l, previous = ?stored, "new deployment {l}");
            self.storage.write(&self.paths.lineage(), l.as_bytes())?;
        }
        Ok((
            match (choice, latest, savepoint) {
                (Choice::Checkpoint, Some(l), _) => Some((
                    RestoreSource::Checkpoint {
                        id: l.metadata.checkpoint_id,
                    },
                    l,
                )),
                (Choice::Savepoint, _, Some((uri, l))) => {
                    let old = list_checkpoint_ids(self.storage.as_ref(), &self.paths)?;
                    if !old.is_empty() {
                        warn!(
                            count = old.len(),
                            "restoring from savepoint {uri}: deleting the job's {} older checkpoints (the lineage before the savepoint)",
                            old.len()
                        );
                        self.storage.delete_all(&self.paths.checkpoints())?;
                    }
                    Some((RestoreSource::Savepoint { uri }, l))
                }
                _ => None,
            },
            initial,
        ))
    }

    /// A restart's snapshot: the latest complete checkpoint, else the initial savepoint.
    fn later_restore(
        &self,
        initial: Option<&str>,
    ) -> Result<Option<(RestoreSource, LoadedCheckpoint)>, RunError> {
        if let Some(l) = find_latest_checkpoint(self.storage.as_ref(), &self.paths)? {
            return Ok(Some((
                RestoreSource::Checkpoint {
                    id: l.metadata.checkpoint_id,
                },
                l,
            )));
        }
        initial
            .map(|uri| {
                let s3 = self.manifest.spec.spec.checkpointing.s3.as_ref();
                load_savepoint(uri, s3).map(|l| (RestoreSource::Savepoint { uri: uri.into() }, l))
            })
            .transpose()
    }

    /// Assigns the subtasks to the first `workers` registered workers and deploys them.
    fn deploy(
        &self,
        attempt: u64,
        restore: Option<RestoreSource>,
    ) -> (RemoteTasks, Arc<JobMetrics>) {
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
        let metrics = Arc::new(JobMetrics::new(p as usize));
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
        for m in state.members.iter().filter(|m| !m.subtasks.is_empty()) {
            info!(attempt, worker = %m.id, subtasks = ?m.subtasks, "deploying");
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
                info.state = idle.state.to_string();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_savepoint_wins_over_older_checkpoints_only() {
        assert_eq!(choose_restore(None, None), Choice::Nothing);
        assert_eq!(choose_restore(Some(4), None), Choice::Checkpoint);
        assert_eq!(choose_restore(None, Some(7)), Choice::Savepoint);
        // Checkpoints of the lineage before the savepoint have smaller ids.
        assert_eq!(choose_restore(Some(6), Some(7)), Choice::Savepoint);
        // After restoring the savepoint, the job's own checkpoints are newer.
        assert_eq!(choose_restore(Some(9), Some(7)), Choice::Checkpoint);
    }
}
