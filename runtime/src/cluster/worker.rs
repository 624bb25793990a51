//! `weir worker`: registers with the coordinator, sends heartbeats, runs the subtasks it is
//! given (state restored from the checkpoint the deployment names), writes their snapshots
//! and reports their events. Losing the coordinator cancels the tasks and reconnects; a
//! coordinator that cannot be reached within the retry limit ends the worker with an error.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{unbounded, Sender};
use tracing::{error, info, warn};
use weir_api_types::AdminToken;

use super::protocol::{
    receive, send, Deployment, RestoreSource, ToCoordinator, ToWorker, WireControl, WireEvent,
    PROTOCOL_VERSION,
};
use super::summary::RestoreShare;
use crate::api::CheckpointBarrier;
use crate::checkpoint::restore::load_snapshot_for;
use crate::checkpoint::writer::{SnapshotTarget, SnapshotWriter};
use crate::checkpoint::{LoadedCheckpoint, RestorePlan};
use crate::jobs::Registry;
use crate::metrics::JobMetrics;
use crate::net::{DataServer, NetworkContext};
use crate::runner::{
    error_chain, instantiate, load_savepoint_for, open_storage, run_tag, seed_writer, JobEvent,
    Placement, RunningTasks, UploadCommand,
};
use crate::state::key_group::key_group_range;
use crate::state::KeyGroupRange;
use crate::storage::paths::JobPaths;
use crate::storage::CheckpointStorage;
use crate::task::Control;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The coordinator's control address, `host:port`.
    pub coordinator: String,
    /// Where the data server listens (port 0: any free port).
    pub data_bind: SocketAddr,
    /// Directory for RocksDB working files (default: the system temp directory).
    pub local_state_dir: Option<PathBuf>,
    /// Connection attempts before giving up on the coordinator.
    pub connect_attempts: u32,
    /// Delay between connection attempts (doubles each time, at most 10 s).
    pub connect_backoff: Duration,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// The job's admin token (`--admin-token-file`): presented to the coordinator and to
    /// peers, required of peers that open channels to this worker.
    pub token: Option<AdminToken>,
}

/// Why a worker ended.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator could not be reached within the retry limit.
    #[error("cannot reach the coordinator at {address} after {attempts} attempts: {cause}; check --coordinator (or WEIR_COORDINATOR) and that the coordinator runs")]
    Unreachable {
        /// The address tried.
        address: String,
        /// Attempts made.
        attempts: u32,
        /// The last connection error.
        cause: String,
    },
    /// The coordinator closed the connection right after registration, again and again (a
    /// coordinator of another protocol version refuses workers that way, and one whose job
    /// token this worker does not present).
    #[error("the coordinator at {address} closed the connection right after registration {sessions} times; is it the same Weir version as this worker (protocol {protocol}), and does this worker have the job's admin token (--admin-token-file, WEIR_ADMIN_TOKEN_FILE)?")]
    Refused {
        /// The coordinator's address.
        address: String,
        /// Sessions that ended before any message.
        sessions: u32,
        /// This worker's protocol version.
        protocol: u32,
    },
    /// The data server could not start.
    #[error("start the data server on {address}")]
    DataServer {
        /// The bind address.
        address: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The write half of the connection to the coordinator, shared by the threads that report.
#[derive(Clone)]
struct Link(Arc<Mutex<TcpStream>>);

impl Link {
    fn send(&self, msg: &ToCoordinator) -> bool {
        let mut s = self.0.lock().expect("invariant: not poisoned");
        send(&mut *s, msg).is_ok()
    }
}

/// The counters of the current attempt's subtasks, for the heartbeats.
type Figures = Arc<Mutex<Option<(Arc<JobMetrics>, Vec<u32>)>>>;

/// The subtasks of one deployment attempt running in this worker.
struct WorkerJob {
    attempt: u64,
    running: RunningTasks,
    uploads: Sender<UploadCommand>,
    storage: Arc<dyn CheckpointStorage>,
    paths: JobPaths,
    s3: Option<weir_crds::S3Spec>,
    local_dir: PathBuf,
    data: Arc<crate::net::Inlets>,
}

impl WorkerJob {
    fn cancel(self) {
        self.data.cancel(self.attempt);
        self.running.cancel(Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&self.local_dir);
    }
}

/// Runs a worker until the coordinator says the job ended.
///
/// # Errors
/// [`WorkerError`] when the coordinator cannot be reached within the retry limit, refuses
/// the worker, or the data server cannot start.
pub fn run_worker(registry: &Registry, options: &WorkerOptions) -> Result<(), WorkerError> {
    let data = DataServer::start(options.data_bind, options.token.clone()).map_err(|source| {
        WorkerError::DataServer {
            address: options.data_bind,
            source,
        }
    })?;
    let worker_id = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
        std::process::id()
    );
    let base_dir = options
        .local_state_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("weir-worker-{}", std::process::id()));
    info!(worker = %worker_id, data = %data.addr, "worker started");
    // Sessions in a row that ended before the coordinator said anything.
    let mut silent_sessions = 0u32;
    let mut registrations = 0u32;
    loop {
        let stream = connect(&options.coordinator, options)?;
        let advertised = SocketAddr::new(
            stream
                .local_addr()
                .map(|a| a.ip())
                .unwrap_or(data.addr.ip()),
            data.addr.port(),
        );
        let link = Link(Arc::new(Mutex::new(
            stream.try_clone().expect("invariant: sockets clone"),
        )));
        registrations += 1;
        link.send(&ToCoordinator::Register {
            protocol: PROTOCOL_VERSION,
            worker: worker_id.clone(),
            data_addr: advertised,
            registrations,
            token: options.token.clone(),
        });
        info!(coordinator = %options.coordinator, "registered with the coordinator");
        let figures: Figures = Arc::default();
        let connected = Arc::new(AtomicBool::new(true));
        spawn_heartbeats(
            link.clone(),
            figures.clone(),
            connected.clone(),
            options.heartbeat_interval,
        );
        let mut reader = std::io::BufReader::new(stream);
        let mut job: Option<WorkerJob> = None;
        let mut heard = false;
        let end = loop {
            let msg = match receive::<ToWorker>(&mut reader) {
                Ok(Some(m)) => {
                    heard = true;
                    m
                }
                Ok(None) => break Err("the coordinator closed the connection".to_string()),
                Err(e) => break Err(e.to_string()),
            };
            match msg {
                ToWorker::Deploy(d) => {
                    if let Some(old) = job.take() {
                        old.cancel();
                    }
                    let attempt = d.attempt;
                    let dir = base_dir.join(format!("attempt-{attempt}"));
                    match deploy(registry, d, &link, &data, dir, options.token.as_ref()) {
                        Ok((j, metrics, subtasks)) => {
                            *figures.lock().expect("invariant: not poisoned") =
                                Some((metrics, subtasks));
                            job = Some(j);
                        }
                        Err((category, cause)) => {
                            error!("deployment {attempt} failed: {cause}");
                            link.send(&ToCoordinator::Event {
                                attempt,
                                event: WireEvent::Failed {
                                    task: "(deployment)".into(),
                                    category,
                                    cause,
                                },
                            });
                        }
                    }
                }
                ToWorker::Trigger {
                    attempt,
                    id,
                    kind,
                    target,
                } => {
                    if let Some(j) = job.as_ref().filter(|j| j.attempt == attempt) {
                        trigger(j, id, kind, target.as_deref(), &link);
                    }
                }
                ToWorker::Control { attempt, control } => {
                    if let Some(j) = job.as_ref().filter(|j| j.attempt == attempt) {
                        let control = match control {
                            WireControl::CheckpointComplete(id) => {
                                let _ = j.uploads.send(UploadCommand::Complete(id));
                                Control::CheckpointComplete(id)
                            }
                            WireControl::AbortCheckpoint(id) => {
                                let _ = j.uploads.send(UploadCommand::Abort(id));
                                Control::AbortCheckpoint(id)
                            }
                            WireControl::Finish => Control::Finish,
                            WireControl::Drain => Control::Drain,
                        };
                        j.running
                            .broadcast(control, matches!(control, Control::Drain));
                    }
                }
                ToWorker::Cancel { attempt } => {
                    if let Some(j) = job.take_if(|j| j.attempt <= attempt) {
                        info!(attempt, "cancelling the tasks of attempt {attempt}");
                        j.cancel();
                        *figures.lock().expect("invariant: not poisoned") = None;
                    }
                }
                ToWorker::Shutdown => break Ok(()),
            }
        };
        connected.store(false, Ordering::Relaxed);
        if let Some(j) = job.take() {
            j.cancel();
        }
        let _ = std::fs::remove_dir_all(&base_dir);
        match end {
            Ok(()) => {
                info!("the job ended; worker exits");
                return Ok(());
            }
            Err(_) if !heard && silent_sessions + 1 >= options.connect_attempts.max(1) => {
                return Err(WorkerError::Refused {
                    address: options.coordinator.clone(),
                    sessions: silent_sessions + 1,
                    protocol: PROTOCOL_VERSION,
                });
            }
            Err(cause) => {
                silent_sessions = if heard { 0 } else { silent_sessions + 1 };
                warn!("lost the coordinator ({cause}); tasks cancelled, reconnecting");
            }
        }
    }
}

/// Connects to the coordinator, retrying with exponential backoff.
fn connect(address: &str, options: &WorkerOptions) -> Result<TcpStream, WorkerError> {
    let mut delay = options.connect_backoff;
    let mut cause = String::new();
    for attempt in 1..=options.connect_attempts.max(1) {
        let result = address
            .to_socket_addrs()
            .map_err(|e| format!("resolve {address}: {e}"))
            .and_then(|mut addrs| {
                addrs
                    .next()
                    .ok_or_else(|| format!("{address} resolves to no address"))
            })
            .and_then(|addr| {
                TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())
            });
        match result {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => {
                cause = e;
                if attempt < options.connect_attempts {
                    warn!(
                        attempt,
                        "cannot reach the coordinator at {address}: {cause}; retrying in {delay:?}"
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    Err(WorkerError::Unreachable {
        address: address.to_string(),
        attempts: options.connect_attempts.max(1),
        cause,
    })
}

fn spawn_heartbeats(link: Link, figures: Figures, connected: Arc<AtomicBool>, interval: Duration) {
    std::thread::Builder::new()
        .name("heartbeats".into())
        .spawn(move || {
            while connected.load(Ordering::Relaxed) {
                let figures = figures
                    .lock()
                    .expect("invariant: not poisoned")
                    .as_ref()
                    .map(|(m, s)| m.figures(s))
                    .unwrap_or_default();
                if !link.send(&ToCoordinator::Heartbeat { figures }) {
                    return;
                }
                std::thread::sleep(interval);
            }
        })
        .expect("invariant: threads can be spawned");
}

/// Starts the subtasks of deployment `d`.
#[allow(clippy::type_complexity)]
fn deploy(
    registry: &Registry,
    d: Deployment,
    link: &Link,
    data: &DataServer,
    local_dir: PathBuf,
    token: Option<&AdminToken>,
) -> Result<(WorkerJob, Arc<JobMetrics>, Vec<u32>), (String, String)> {
    let fail = |category: &str, cause: String| (category.to_string(), cause);
    let (manifest, graph) = registry
        .load(&d.manifest)
        .map_err(|e| fail("manifest", e))?;
    let spec = &manifest.spec;
    let s3 = spec.spec.checkpointing.s3.clone();
    let storage =
        open_storage(&spec.checkpointing.storage).map_err(|e| fail("storage", error_chain(&e)))?;
    let paths = JobPaths::of_job(&manifest.name, manifest.namespace.as_deref());
    // Only the state files of the key groups this worker's subtasks own.
    let ranges: Vec<KeyGroupRange> = d
        .subtasks
        .iter()
        .map(|&s| key_group_range(s, spec.max_parallelism, spec.parallelism))
        .collect();
    let loaded = match &d.restore {
        None => None,
        Some(RestoreSource::Checkpoint { id }) => Some(
            load_snapshot_for(storage.as_ref(), &paths.checkpoint(*id), &ranges)
                .map_err(|e| fail("storage", error_chain(&e)))?
                .map_err(|e| fail("restore", format!("checkpoint {id}: {e}")))?,
        ),
        Some(RestoreSource::Savepoint { uri }) => Some(
            load_savepoint_for(uri, s3.as_ref(), &ranges)
                .map_err(|e| fail("restore", error_chain(&e)))?,
        ),
    };
    if let Some(l) = &loaded {
        let share = restore_share(l, &ranges);
        info!(
            checkpoint = l.metadata.checkpoint_id,
            "restore: read the keyed state of {} of {} operator subtasks ({} bytes)",
            share.keyed_subtasks_read,
            share.keyed_subtasks,
            share.bytes
        );
        link.send(&ToCoordinator::Event {
            attempt: d.attempt,
            event: WireEvent::Restored(share),
        });
    }
    let restore = loaded
        .map(|l| {
            RestorePlan::new(
                l,
                graph.shape(spec.max_parallelism, spec.spec.job.allow_non_restored_state),
            )
            .map(Arc::new)
            .map_err(|e| fail("restore", e))
        })
        .transpose()?;
    let _ = std::fs::remove_dir_all(&local_dir);
    std::fs::create_dir_all(&local_dir)
        .map_err(|e| fail("io", format!("create {}: {e}", local_dir.display())))?;
    let metrics = Arc::new(JobMetrics::new(
        spec.parallelism as usize,
        &graph.operator_uids(),
    ));
    let specs = instantiate(
        &manifest,
        graph,
        Placement {
            subtasks: d.subtasks.clone(),
            network: Some(NetworkContext {
                attempt: d.attempt,
                inlets: data.inlets.clone(),
                peers: d.peers.clone(),
                token: token.cloned(),
            }),
        },
        restore.clone(),
        &local_dir,
        metrics.clone(),
    )
    .map_err(|e| fail(e.category(), error_chain(&e)))?;
    let mut writer = SnapshotWriter::new(paths.job_root(), run_tag());
    if let Some(plan) = &restore {
        seed_writer(
            &mut writer,
            plan,
            spec,
            d.subtasks.iter().copied(),
            &storage.uri(&paths.job_root()),
        );
    }
    drop(restore);
    let (running, events) = RunningTasks::spawn(specs);
    let names: Vec<String> = (0..running.len())
        .map(|i| running.name(i).to_string())
        .collect();
    let (uploads, commands) = unbounded();
    let out = link.clone();
    let attempt = d.attempt;
    crate::runner::spawn_uploader(
        events,
        commands,
        writer,
        running.subtasks.clone(),
        move |e| {
            let event = match e {
                JobEvent::Ack {
                    task,
                    checkpoint,
                    metas,
                } => WireEvent::Ack {
                    task: names[task].clone(),
                    checkpoint,
                    metas,
                },
                JobEvent::Declined { checkpoint, cause } => {
                    WireEvent::Declined { checkpoint, cause }
                }
                JobEvent::SourceExhausted => WireEvent::SourceExhausted,
                JobEvent::Finished => WireEvent::Finished,
                JobEvent::Failed {
                    task,
                    category,
                    cause,
                } => WireEvent::Failed {
                    task: names[task].clone(),
                    category,
                    cause,
                },
                JobEvent::WorkerLost { .. } => return,
            };
            out.send(&ToCoordinator::Event { attempt, event });
        },
    );
    info!(
        attempt = d.attempt,
        subtasks = ?d.subtasks,
        tasks = running.len(),
        "deployed"
    );
    Ok((
        WorkerJob {
            attempt: d.attempt,
            running,
            uploads,
            storage,
            paths,
            s3,
            local_dir,
            data: data.inlets.clone(),
        },
        metrics,
        d.subtasks,
    ))
}

/// Which share of the snapshot's keyed state this worker read (a worker reads only the
/// state files of operator subtasks whose key groups meet its own).
fn restore_share(loaded: &LoadedCheckpoint, ranges: &[KeyGroupRange]) -> RestoreShare {
    let keyed: Vec<KeyGroupRange> = loaded
        .metadata
        .operators
        .values()
        .flat_map(|o| &o.subtasks)
        .filter_map(|s| {
            s.keyed_state
                .as_ref()
                .map(|k| k.key_group_range)
                .or(s.native_state.as_ref().map(|n| n.key_group_range))
        })
        .collect();
    let read = keyed
        .iter()
        .filter(|r| ranges.iter().any(|o| o.intersect(r).is_some()))
        .count();
    RestoreShare {
        keyed_subtasks_read: read as u32,
        keyed_subtasks: keyed.len() as u32,
        bytes: loaded.files.values().map(|f| f.len() as u64).sum(),
    }
}

/// Starts snapshot `id`: registers its target with the uploader, then tells the sources.
fn trigger(
    j: &WorkerJob,
    id: u64,
    kind: crate::checkpoint::SnapshotKind,
    target: Option<&str>,
    link: &Link,
) {
    let target = match target {
        None => SnapshotTarget {
            storage: j.storage.clone(),
            dir: j.paths.checkpoint(id),
        },
        Some(uri) => {
            let opened = weir_crds::StorageLocation::parse_with(uri, j.s3.as_ref())
                .map_err(|e| e.to_string())
                .and_then(|l| open_storage(&l).map_err(|e| error_chain(&e)));
            match opened {
                Ok(storage) => SnapshotTarget {
                    storage,
                    dir: String::new(),
                },
                Err(e) => {
                    // Nothing can be written: decline, so that the coordinator aborts it now.
                    warn!(checkpoint = id, "cannot open savepoint target {uri}: {e}");
                    link.send(&ToCoordinator::Event {
                        attempt: j.attempt,
                        event: WireEvent::Declined {
                            checkpoint: id,
                            cause: format!("cannot open {uri}: {e}"),
                        },
                    });
                    return;
                }
            }
        }
    };
    let _ = j.uploads.send(UploadCommand::Target { id, target });
    j.running.broadcast(
        Control::TriggerCheckpoint(CheckpointBarrier { id, kind }),
        true,
    );
}
