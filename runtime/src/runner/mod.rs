//! `weir run`: runs a job in this process. One thread per task; the calling thread is the
//! checkpoint coordinator ([`crate::checkpoint::coordinator`]) and prints progress.
//!
//! The run: lock the job's local directory, prepare checkpoint storage (`--fresh`, remove
//! incomplete checkpoints, find the latest restorable one and check it fits the job),
//! instantiate the job graph with its restore plan, start the tasks, coordinate checkpoints
//! until the input ends, and report a [`RunSummary`].

mod local_dir;
pub(crate) mod summary;
mod tasks;
pub(crate) mod taskset;
mod uploader;

pub(crate) use crate::checkpoint::coordinator::{JobEvent, TaskSet};
pub(crate) use tasks::RunningTasks;
pub(crate) use uploader::{spawn_uploader, UploadCommand};

pub use local_dir::local_dir_path;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use weir_crds::{LoadedManifest, StorageLocation};

use crate::api::{Instantiation, JobGraph, TaskContext, TaskError, TaskSpec};
pub(crate) use crate::checkpoint::coordinator::{Coordinator, History, RunInfo};
use crate::checkpoint::restore::list_checkpoint_ids;
use crate::checkpoint::writer::SnapshotWriter;
use crate::checkpoint::{
    find_latest_checkpoint, LineageRecord, LoadedCheckpoint, RestoreChoice, RestorePlan,
    RestoreRequest, SkippedCheckpoint, SnapshotKind, Unrestorable,
};
use crate::metrics::JobMetrics;
use crate::net::NetworkContext;
use crate::state::key_group::key_group_range;
use crate::state::typed::system_clock;
use crate::storage::paths::JobPaths;
use crate::storage::{CheckpointStorage, LocalStorage, S3Storage, StorageError};
pub use summary::{peak_rss_bytes, OperatorSummary, RunSummary};
use taskset::LocalTasks;

/// Options of a local run besides the manifest.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Discard the job's checkpoints and start from the beginning of the input.
    pub fresh: bool,
    /// Directory for RocksDB working files (default: the system temp directory); the run
    /// uses `<dir>/weir-<job>/` and deletes it at start and end.
    pub local_state_dir: Option<PathBuf>,
    /// Time between progress lines (zero = none).
    pub progress_interval: Duration,
    /// Restore from this savepoint (a directory URI); it starts a new lineage
    /// ([`crate::checkpoint::restore_point`]).
    pub from_savepoint: Option<String>,
    /// Port of the admin API on 127.0.0.1 (0 = any free port).
    pub admin_port: u16,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Checkpoint storage failed before the job could start.
    #[error("checkpoint storage")]
    Storage(#[from] StorageError),
    /// The local working directory cannot be prepared.
    #[error("prepare local state directory {path}")]
    LocalDir {
        /// The directory or lock file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A socket of the coordinator (admin API, control server) cannot listen.
    #[error("cannot listen for the {what} on {address}; choose another address or free the port")]
    Listen {
        /// `admin API` or `workers`.
        what: &'static str,
        /// The bind address.
        address: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file the run was asked to write cannot be written.
    #[error("write {path}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another run of the same job on the same storage holds the lock.
    #[error("another `weir run` of job {job} with checkpoint storage {storage} is running")]
    AlreadyRunning {
        /// Job name.
        job: String,
        /// Storage URI of the job.
        storage: String,
    },
    /// The savepoint to restore cannot be used.
    #[error("savepoint {uri}: {reason}")]
    Savepoint {
        /// The savepoint URI.
        uri: String,
        /// Why not.
        reason: String,
    },
    /// The latest checkpoint cannot restore this job.
    #[error("cannot restore: {0}")]
    Incompatible(String),
    /// A task failed; the job stopped. Run again to resume from the latest checkpoint.
    #[error("task {task} failed ({category}): {cause}")]
    Task {
        /// `uid#subtask` of the failed task.
        task: String,
        /// Bounded category of the error (`state`, `io`, `data`, ...).
        category: String,
        /// The task's error with its sources.
        cause: String,
    },
    /// A worker process was lost (distributed mode).
    #[error("worker {worker} lost: {cause}")]
    WorkerLost {
        /// The worker's id.
        worker: String,
        /// Connection closed, heartbeats missed, ...
        cause: String,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum RunEnd {
    /// The input ended and the final checkpoint completed.
    Finished,
    /// Stopped through the admin API after taking this savepoint.
    Stopped {
        /// Location of the savepoint.
        savepoint: String,
    },
    /// Cancelled through the admin API (no savepoint).
    Cancelled,
}

/// Opens the checkpoint storage a manifest names.
///
/// # Errors
/// [`StorageError`] when an S3 client cannot be set up.
pub fn open_storage(
    location: &StorageLocation,
) -> Result<Arc<dyn CheckpointStorage>, StorageError> {
    Ok(match location {
        StorageLocation::Local(root) => Arc::new(LocalStorage::new(root.clone())),
        StorageLocation::S3(s3) => Arc::new(S3Storage::open(s3)?),
    })
}

/// Runs `graph` as described by `manifest` until its input ends (or a task fails).
///
/// # Errors
/// [`RunError`] when storage is unreachable, another run of the job holds its lock, the
/// latest checkpoint cannot restore the job, or a task fails.
pub fn run_job(
    manifest: &LoadedManifest,
    graph: JobGraph,
    options: &RunOptions,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let spec = &manifest.spec;
    let storage = open_storage(&spec.checkpointing.storage)?;
    let paths = JobPaths::of_job(&manifest.name, manifest.namespace.as_deref());
    let (local_dir, _lock) =
        local_dir::lock_local_dir(options, &manifest.name, &storage.uri(&paths.job_root()))?;
    let (admin_tx, admin_rx) = crossbeam_channel::unbounded();
    let admin_bind = std::net::SocketAddr::from(([127, 0, 0, 1], options.admin_port));
    let admin = crate::admin::serve(
        admin_bind,
        Some(&local_dir),
        admin_tx,
        manifest.spec.spec.checkpointing.s3.clone(),
        Some(crate::admin::AdminToken::generate()),
        // One user's machine: its savepoints go wherever its credentials reach.
        None,
    )
    .map_err(|source| RunError::LocalDir {
        path: crate::admin::discovery_file(&local_dir)
            .display()
            .to_string(),
        source,
    })?;
    let s3 = spec.spec.checkpointing.s3.as_ref();
    let request = RestoreRequest {
        savepoint: options.from_savepoint.clone(),
        initial_savepoint: spec.spec.initial_savepoint().map(str::to_string),
        lineage: None,
        fresh: options.fresh,
        owner: manifest.uid.clone(),
        adopt: spec.spec.adopts_latest_checkpoint(),
    };
    let shape = graph.shape(spec.max_parallelism, spec.spec.job.allow_non_restored_state);
    let (restore, skipped, next_id) =
        choose_restore(storage.as_ref(), &paths, &request, s3, |c| {
            RestorePlan::new(c.loaded, shape)
                .map(Arc::new)
                .map_err(RunError::Incompatible)
        })?;
    log_restore(restore.as_deref());
    let restored = restore
        .as_ref()
        .map(|r| (r.checkpoint_id(), r.location().to_string(), r.kind()));
    let info = RunInfo {
        job_id: new_job_id(&manifest.name),
        start_time: chrono::Utc::now().to_rfc3339(),
        restored_from: restored.as_ref().map(|(_, location, _)| location.clone()),
        restarts: 0,
        failure: None,
    };

    let p = spec.parallelism;
    let operator_uids = graph.operator_uids();
    let metrics = Arc::new(JobMetrics::new(p as usize, &operator_uids));
    let output = graph.output().map(str::to_string);
    let specs = instantiate(
        manifest,
        graph,
        Placement {
            subtasks: (0..p).collect(),
            network: None,
        },
        restore.clone(),
        &local_dir,
        metrics.clone(),
    )
    .map_err(|source| RunError::Task {
        task: "(instantiation)".into(),
        category: source.category().into(),
        cause: error_chain(&source),
    })?;
    let mut writer = SnapshotWriter::new(paths.job_root(), run_tag());
    if let Some(plan) = &restore {
        seed_writer(
            &mut writer,
            plan,
            spec,
            0..p,
            &storage.uri(&paths.job_root()),
        );
    }
    let tasks = LocalTasks::spawn(specs, writer);

    let mut coordinator = Coordinator::new(
        storage.clone(),
        &paths,
        &manifest.name,
        &spec.checkpointing,
        spec.spec.checkpointing.s3.as_ref(),
        spec.max_parallelism,
        p,
        next_id,
        info,
    )
    .with_lineage_start(read_lineage(storage.as_ref(), &paths)?.map_or(0, |r| r.first_checkpoint));
    // The restored state now lives in the operators: release the loaded checkpoint.
    drop(restore);
    admin.set_ready();
    let result = coordinator.run(&tasks, &metrics, options.progress_interval, &admin_rx);
    match &result {
        Ok(RunEnd::Finished) => tasks.running.join(),
        _ => tasks.running.cancel(Duration::from_secs(10)),
    }
    let _ = std::fs::remove_dir_all(&local_dir);
    let end = result?;
    let stats = coordinator.history.stats;
    Ok(RunSummary::new(
        &manifest.name,
        &operator_uids,
        restored,
        skipped,
        &metrics,
        &stats,
        stats.last.map(|(id, _)| storage.uri(&paths.checkpoint(id))),
        storage.stats(),
        started.elapsed(),
        output,
        end,
    ))
}

/// Logs what a run restores (`restoring from checkpoint 7`, which tests and people look for).
pub(crate) fn log_restore(plan: Option<&RestorePlan>) {
    match plan {
        Some(plan) => info!(
            checkpoint = plan.checkpoint_id(),
            location = plan.location(),
            "restoring from {} {}",
            match plan.kind() {
                SnapshotKind::Checkpoint => "checkpoint",
                SnapshotKind::Savepoint => "savepoint",
            },
            plan.checkpoint_id()
        ),
        None => info!("no checkpoint to restore; starting from the beginning of the input"),
    }
}

/// Which subtasks of a job a process runs, and how it reaches the others.
pub(crate) struct Placement {
    /// Subtasks of this process (all operators of each).
    pub subtasks: Vec<u32>,
    /// Channels to the workers of the other subtasks; `None` in a local run.
    pub network: Option<NetworkContext>,
}

/// Builds the tasks of `placement`'s subtasks of `graph`, with their state restored from
/// `restore`; RocksDB working files go under `local_dir`.
///
/// # Errors
/// [`TaskError`] when an operator cannot be created (its state does not restore, its input
/// does not open, a peer worker cannot be reached).
pub(crate) fn instantiate(
    manifest: &LoadedManifest,
    graph: JobGraph,
    placement: Placement,
    restore: Option<Arc<RestorePlan>>,
    local_dir: &std::path::Path,
    metrics: Arc<JobMetrics>,
) -> Result<Vec<TaskSpec>, TaskError> {
    let spec = &manifest.spec;
    let p = spec.parallelism;
    let inst = Instantiation {
        contexts: placement
            .subtasks
            .iter()
            .map(|&i| TaskContext {
                job_name: manifest.name.clone(),
                subtask: i,
                parallelism: p,
                max_parallelism: spec.max_parallelism,
                key_group_range: key_group_range(i, spec.max_parallelism, p),
                metrics: metrics.clone(),
                state_backend: spec.spec.state_backend,
                local_dir: local_dir.to_path_buf(),
                restore: restore.clone(),
                clock: system_clock(),
                incremental: spec.checkpointing.incremental,
                s3: spec.spec.checkpointing.s3.clone(),
            })
            .collect(),
        parallelism: p,
        network: placement.network,
        mode: spec.spec.checkpointing.mode,
        batch_size: 1024,
        channel_capacity: 16,
    };
    crate::api::plan::plan(&graph.graph, &inst)
}

/// A job id: 32 hex digits from the job name, the time and the process.
pub(crate) fn new_job_id(job: &str) -> String {
    let seed = format!(
        "{job}/{}/{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        std::process::id()
    );
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(seed.as_bytes()))
}

/// A tag that keeps this process's shared file names apart from other runs' (RocksDB file
/// numbers restart in a fresh instance).
pub(crate) fn run_tag() -> String {
    format!(
        "{:x}{:x}",
        chrono::Utc::now().timestamp_millis(),
        std::process::id()
    )
}

/// Seeds `writer` with the shared files of the restored native states that the subtasks in
/// `subtasks` reopen as they are, so that their next incremental checkpoint reuses them.
pub(crate) fn seed_writer(
    writer: &mut SnapshotWriter,
    plan: &RestorePlan,
    spec: &weir_crds::ValidatedSpec,
    subtasks: impl Iterator<Item = u32> + Clone,
    root_uri: &str,
) {
    // Shared files are referenced by their path under the job root: those of a snapshot in
    // another root (a legacy root, another job's retained checkpoint) are uploaded again.
    if !plan.location().starts_with(&format!("{root_uri}/")) {
        return;
    }
    let p = spec.parallelism;
    for (uid, subtask, state) in plan.native_states() {
        let range = key_group_range(subtask, spec.max_parallelism, p);
        if subtasks.clone().any(|s| s == subtask)
            && TaskContext::reopens_native(plan, spec.spec.state_backend, uid, range)
        {
            writer.seed(uid, subtask, state);
        }
    }
}

/// What [`prepare_storage`] found.
struct PreparedStorage {
    /// The newest restorable checkpoint.
    latest: Option<LoadedCheckpoint>,
    /// Checkpoints passed over (incomplete or damaged), newest first.
    skipped: Vec<SkippedCheckpoint>,
    /// The highest checkpoint id found, incomplete ones included.
    highest: Option<u64>,
}

/// Prepares checkpoint storage for a run: `--fresh` deletes the job's checkpoints; incomplete
/// checkpoints (no `_metadata`), which can never complete, are deleted.
fn prepare_storage(
    storage: &dyn CheckpointStorage,
    paths: &JobPaths,
    fresh: bool,
    since: u64,
) -> Result<PreparedStorage, RunError> {
    if fresh {
        info!(location = %storage.uri(&paths.checkpoints()), "--fresh: deleting the job's checkpoints (savepoints are kept)");
        delete_lineage_checkpoints(storage, paths, since)?;
    }
    let ids = list_checkpoint_ids(storage, paths)?;
    let mut incomplete = Vec::new();
    for &id in &ids {
        if storage.read(&paths.metadata(id))?.is_none() {
            warn!(
                checkpoint = id,
                "checkpoint {id} has no _metadata (incomplete); it is never restored, deleting it"
            );
            storage.delete_all(&paths.checkpoint(id))?;
            incomplete.push(SkippedCheckpoint {
                id,
                reason: Unrestorable::NoMetadata,
            });
        }
    }
    let (latest, mut skipped) = find_latest_checkpoint(storage, paths, since)?;
    skipped.extend(incomplete);
    skipped.sort_by_key(|s| std::cmp::Reverse(s.id));
    Ok(PreparedStorage {
        latest,
        skipped,
        highest: ids.last().copied(),
    })
}

/// A snapshot chosen for restore: where it is, and its loaded metadata and state.
pub(crate) struct ChosenRestore {
    /// The snapshot, as workers are told about it.
    pub source: crate::cluster::protocol::RestoreSource,
    /// Its metadata and state files.
    pub loaded: LoadedCheckpoint,
}

impl ChosenRestore {
    fn load(
        choice: RestoreChoice,
        latest: Option<LoadedCheckpoint>,
        s3: Option<&weir_crds::S3Spec>,
    ) -> Result<Option<Self>, RunError> {
        Ok(match choice {
            RestoreChoice::LatestCheckpoint => latest.map(|l| ChosenRestore {
                source: crate::cluster::protocol::RestoreSource::Checkpoint {
                    id: l.metadata.checkpoint_id,
                },
                loaded: l,
            }),
            RestoreChoice::Savepoint(uri) => Some(ChosenRestore {
                loaded: load_savepoint(&uri, s3)?,
                source: crate::cluster::protocol::RestoreSource::Savepoint { uri },
            }),
            RestoreChoice::Nothing => None,
        })
    }
}

/// Chooses and loads what a job's first attempt restores, by the one rule of
/// [`RestoreRequest::decide`]: applies `--fresh`, deletes incomplete checkpoints, reads the
/// stored lineage, hands the chosen snapshot to `check` (which turns it into a restore plan,
/// refusing one that does not fit the job), and only then deletes the checkpoints of a
/// lineage a savepoint replaces, so a refused savepoint loses nothing. Returns `check`'s
/// result (if anything is restored), the checkpoints skipped as incomplete or damaged (newest
/// first) and the id the job's next checkpoint gets (above every id the job has used, so ids
/// never repeat).
///
/// # Errors
/// [`RunError::Storage`] when storage fails; [`RunError::Savepoint`] when the chosen savepoint
/// is missing or damaged (no fallback: the user named it); `check`'s error.
pub(crate) fn choose_restore<T>(
    storage: &dyn CheckpointStorage,
    paths: &JobPaths,
    request: &RestoreRequest,
    s3: Option<&weir_crds::S3Spec>,
    check: impl FnOnce(ChosenRestore) -> Result<T, RunError>,
) -> Result<(Option<T>, Vec<SkippedCheckpoint>, u64), RunError> {
    let mut stored = read_lineage(storage, paths)?;
    // The lineage's first checkpoint: below it, a predecessor's checkpoints, which neither
    // `--fresh` nor a savepoint restore deletes and which no lineage after it takes up.
    let since = stored.as_ref().map_or(0, |s| s.first_checkpoint);
    let wipe = request.wipes(stored.as_ref());
    if wipe && stored.is_some() {
        storage.delete_all(&paths.lineage())?;
        stored = None;
    }
    let PreparedStorage {
        latest,
        skipped,
        highest,
    } = prepare_storage(storage, paths, wipe, since)?;
    let next_id = highest.unwrap_or(0) + 1;
    let mut decision = request.decide(stored.as_ref(), latest.is_some(), next_id);
    if let Some(record) = &mut decision.store_lineage {
        record.first_checkpoint = record.first_checkpoint.max(since);
    }
    if let Some(l) = &decision.store_lineage {
        if request.is_foreign(stored.as_ref(), latest.is_some()) && !request.adopt {
            warn!(
                owner = ?l.owner,
                previous_owner = ?stored.as_ref().and_then(|s| s.owner.clone()),
                root = %storage.uri(&paths.job_root()),
                "the job's storage root holds another StreamJob's checkpoints (another UID): starting without them; they stay (weir checkpoints gc --dry-run lists them), and spec.restore: latest-checkpoint would adopt them"
            );
        }
        info!(lineage = %l.deployment, previous = ?stored, "new lineage {}", l.deployment);
    }
    let chosen = ChosenRestore::load(decision.choice, latest, s3)?;
    let restored = chosen
        .as_ref()
        .map_or(0, |c| c.loaded.metadata.checkpoint_id);
    let checked = chosen.map(check).transpose()?;
    if decision.delete_checkpoints {
        warn!(
            "restoring from a savepoint: deleting the job's checkpoints of the lineage before it ({})",
            storage.uri(&paths.checkpoints())
        );
        delete_lineage_checkpoints(storage, paths, since)?;
    }
    if let Some(l) = &decision.store_lineage {
        storage.write(&paths.lineage(), &l.encode())?;
    } else if decision.clear_lineage {
        storage.delete_all(&paths.lineage())?;
    }
    Ok((checked, skipped, (next_id - 1).max(restored) + 1))
}

/// Deletes the checkpoints of the job's lineage: those from id `since` on (its
/// `firstCheckpoint`); a predecessor's checkpoints below it stay, as they stayed when this
/// lineage began (`weir checkpoints gc --dry-run` lists them).
///
/// # Errors
/// [`RunError::Storage`] when storage cannot be listed or deleted from.
fn delete_lineage_checkpoints(
    storage: &dyn CheckpointStorage,
    paths: &JobPaths,
    since: u64,
) -> Result<(), RunError> {
    if since == 0 {
        storage.delete_all(&paths.checkpoints())?;
        return Ok(());
    }
    for id in list_checkpoint_ids(storage, paths)? {
        if id >= since {
            storage.delete_all(&paths.checkpoint(id))?;
        }
    }
    Ok(())
}

/// The lineage record stored at the job's root, if any.
///
/// # Errors
/// [`RunError::Storage`] when storage cannot be read.
pub(crate) fn read_lineage(
    storage: &dyn CheckpointStorage,
    paths: &JobPaths,
) -> Result<Option<LineageRecord>, RunError> {
    Ok(storage
        .read(&paths.lineage())?
        .map(|b| LineageRecord::decode(&b)))
}

/// What a restart after a failure restores: the latest checkpoint of the lineage, else the
/// savepoint it began with (see [`RestoreRequest::restart`]).
///
/// # Errors
/// As [`choose_restore`].
pub(crate) fn restart_restore(
    storage: &dyn CheckpointStorage,
    paths: &JobPaths,
    request: &RestoreRequest,
    s3: Option<&weir_crds::S3Spec>,
) -> Result<Option<ChosenRestore>, RunError> {
    let since = read_lineage(storage, paths)?.map_or(0, |s| s.first_checkpoint);
    let (latest, _) = find_latest_checkpoint(storage, paths, since)?;
    ChosenRestore::load(request.restart(latest.is_some()), latest, s3)
}

/// The one-time migration of a StreamJob deployed before storage roots were per namespace:
/// its state is under the legacy root `legacy` (`<name>/`) in the lineage of deployment
/// `deployment` (the operator passes the lineage of the deployment it replaces or restarts,
/// `weir coordinator --migrate-lineage`). When the legacy root's lineage is that deployment
/// (proof that the state is this StreamJob's, not another namespace's job of the same name)
/// and the job's own root has no restorable checkpoint of its lineage yet, returns the URI of
/// the legacy root's latest complete checkpoint, which the run then restores as the savepoint
/// it starts from. `None` otherwise.
///
/// # Errors
/// [`RunError::Storage`] when storage cannot be read.
pub(crate) fn legacy_checkpoint(
    storage: &dyn CheckpointStorage,
    paths: &JobPaths,
    legacy: &JobPaths,
    deployment: &str,
) -> Result<Option<String>, RunError> {
    if legacy.job_root() == paths.job_root() {
        return Ok(None);
    }
    let own_since = read_lineage(storage, paths)?.map_or(0, |s| s.first_checkpoint);
    if find_latest_checkpoint(storage, paths, own_since)?
        .0
        .is_some()
    {
        return Ok(None);
    }
    let Some(record) = read_lineage(storage, legacy)? else {
        return Ok(None);
    };
    if record.deployment != deployment {
        warn!(
            legacy_root = %storage.uri(&legacy.job_root()),
            found = %record.deployment,
            expected = deployment,
            "the legacy storage root holds another deployment's lineage; not migrating it"
        );
        return Ok(None);
    }
    let (latest, _) = find_latest_checkpoint(storage, legacy, record.first_checkpoint)?;
    Ok(latest.map(|l| {
        let uri = storage.uri(&legacy.checkpoint(l.metadata.checkpoint_id));
        info!(location = %uri, "migrating the job's state from its legacy storage root");
        uri
    }))
}

/// Loads the savepoint (or retained checkpoint) in directory `uri`; `s3` settings apply to an
/// `s3://` URI.
///
/// # Errors
/// [`RunError::Savepoint`] when the URI is malformed or the snapshot is missing or damaged
/// (no fallback: the user named this one).
pub fn load_savepoint(
    uri: &str,
    s3: Option<&weir_crds::S3Spec>,
) -> Result<LoadedCheckpoint, RunError> {
    load_savepoint_for(uri, s3, &[])
}

/// [`load_savepoint`] reading only the state files that meet `ranges` (empty: all), as
/// [`crate::checkpoint::restore::load_snapshot_for`].
///
/// # Errors
/// As [`load_savepoint`].
pub(crate) fn load_savepoint_for(
    uri: &str,
    s3: Option<&weir_crds::S3Spec>,
    ranges: &[crate::state::KeyGroupRange],
) -> Result<LoadedCheckpoint, RunError> {
    let bad = |reason: String| RunError::Savepoint {
        uri: uri.to_string(),
        reason,
    };
    let location = StorageLocation::parse_with(uri, s3).map_err(bad)?;
    let storage = open_storage(&location)?;
    crate::checkpoint::restore::load_snapshot_for(storage.as_ref(), "", ranges)?
        .map_err(|reason| bad(reason.to_string()))
}

/// Deletes the savepoint in directory `uri` (every object under it); `s3` settings apply to
/// an `s3://` URI. Savepoints are self-contained (they never reference a job's shared
/// files), so nothing else is affected. Deleting a savepoint that is already gone succeeds,
/// so a repeated request is harmless.
///
/// # Errors
/// [`RunError::Savepoint`] when the URI is malformed, or the directory holds files but no
/// readable savepoint `_metadata` (a checkpoint, or something else): nothing is deleted.
/// [`RunError::Storage`] when storage fails.
pub fn dispose_savepoint(uri: &str, s3: Option<&weir_crds::S3Spec>) -> Result<(), RunError> {
    let bad = |reason: String| RunError::Savepoint {
        uri: uri.to_string(),
        reason,
    };
    let location = StorageLocation::parse_with(uri, s3).map_err(bad)?;
    let storage = open_storage(&location)?;
    let metadata = storage.read(crate::storage::paths::METADATA)?;
    match metadata.map(|b| crate::checkpoint::CheckpointMetadata::decode(&b)) {
        Some(Ok(m)) if m.kind == SnapshotKind::Savepoint => {}
        Some(Ok(_)) => {
            return Err(bad(
                "this is a checkpoint, not a savepoint; checkpoints are deleted by retention"
                    .into(),
            ))
        }
        Some(Err(e)) => return Err(bad(format!("unreadable _metadata ({e}); nothing deleted"))),
        None if storage.list("")?.is_empty() => return Ok(()),
        None => {
            return Err(bad(
                "no _metadata: not a savepoint directory; nothing deleted".into(),
            ))
        }
    }
    storage.delete_all("")?;
    info!(savepoint = uri, "savepoint disposed");
    Ok(())
}

pub use weir_api_types::error_chain;
