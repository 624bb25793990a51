//! What a subtask knows when its operators are created: where it stands in the job, and
//! what to restore.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use weir_crds::StateBackend;

use super::TaskError;
use crate::checkpoint::RestorePlan;
use crate::metrics::JobMetrics;
use crate::state::heap::HeapBackend;
use crate::state::rocksdb::RocksDbBackend;
use crate::state::snapshot::SnapshotSection;
use crate::state::typed::Clock;
use crate::state::{
    KeyGroupRange, KeyedStateBackend, KeyedStateInput, KeyedStateStore, NativeSource,
};

/// Named lists of operator state entries restored for one subtask.
pub type OperatorStateMap = BTreeMap<String, Vec<serde_json::Value>>;

/// The context of one subtask (all operators of a job share the job's parallelism).
#[derive(Clone)]
pub struct TaskContext {
    /// `metadata.name` of the job.
    pub job_name: String,
    /// Index of this subtask, `0..parallelism`.
    pub subtask: u32,
    /// Number of subtasks per operator.
    pub parallelism: u32,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// Key groups this subtask owns.
    pub key_group_range: KeyGroupRange,
    /// Counters shared by all tasks of the job.
    pub metrics: Arc<JobMetrics>,
    pub(crate) state_backend: StateBackend,
    pub(crate) local_dir: PathBuf,
    pub(crate) restore: Option<Arc<RestorePlan>>,
    pub(crate) clock: Clock,
    /// Checkpoints in the backend's native format (incremental RocksDB checkpoints).
    pub(crate) incremental: bool,
    /// The job's S3 client settings (`checkpointing.s3`), which sinks writing to `s3://`
    /// locations use too.
    pub(crate) s3: Option<weir_crds::S3Spec>,
}

impl TaskContext {
    /// The id of the checkpoint the job restored from, if any.
    pub fn restored_checkpoint_id(&self) -> Option<u64> {
        self.restore.as_ref().map(|r| r.checkpoint_id())
    }

    /// Creates the keyed state of operator `uid` on the configured backend and loads the
    /// restored key groups of this subtask into it.
    ///
    /// # Errors
    /// [`TaskError::State`] when the backend cannot be opened or the snapshot is malformed.
    pub fn keyed_state(&self, uid: &str) -> Result<KeyedStateStore, TaskError> {
        let state_err = |source| TaskError::State {
            uid: uid.to_string(),
            source,
        };
        let range = self.key_group_range;
        let dir = self.local_dir.join(format!("{uid}-{}", self.subtask));
        let mut canonical = Vec::new();
        let mut natives = Vec::new();
        if let Some(plan) = &self.restore {
            canonical = plan.keyed_input(uid, range).sections;
            natives = plan.native_sources(uid, range);
        }
        let reopen = reopens(self.state_backend, &canonical, &natives, range);
        let backend: Box<dyn KeyedStateBackend> = if reopen {
            // The same key groups in the same format: open the restored files as they are.
            natives[0].materialize(&dir).map_err(state_err)?;
            Box::new(
                RocksDbBackend::open_restored(&dir, range, natives[0].states, self.clock.clone())
                    .map_err(state_err)?,
            )
        } else {
            let mut backend: Box<dyn KeyedStateBackend> = match self.state_backend {
                StateBackend::Heap => Box::new(HeapBackend::new(range)),
                StateBackend::Rocksdb => Box::new(
                    RocksDbBackend::open(&dir, range, self.clock.clone()).map_err(state_err)?,
                ),
            };
            // Native files of other ranges (or into heap): read exactly the key groups owned.
            let scratch = self
                .local_dir
                .join(format!("{uid}-{}-restore", self.subtask));
            let converted = natives
                .iter()
                .map(|n| {
                    let common = n
                        .range
                        .intersect(&range)
                        .expect("invariant: sources intersect the range");
                    n.to_canonical(common, &scratch)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(state_err)?;
            canonical.extend(converted.iter().map(|k| SnapshotSection {
                bytes: &k.bytes,
                base: 0,
                range: k.range,
                key_group_offsets: &k.key_group_offsets,
                key_group_crc32c: &k.key_group_crc32c,
                states: &k.states,
            }));
            if !canonical.is_empty() {
                backend
                    .restore(&KeyedStateInput {
                        range,
                        sections: canonical,
                    })
                    .map_err(state_err)?;
            }
            backend
        };
        let store = KeyedStateStore::new(backend, self.clock.clone());
        Ok(
            if self.incremental && self.state_backend == StateBackend::Rocksdb {
                store.with_native_snapshots(
                    self.local_dir
                        .join("native")
                        .join(format!("{uid}-{}", self.subtask)),
                )
            } else {
                store
            },
        )
    }

    /// True when subtask `subtask` of `uid` reopens the restored native files as they are
    /// (see [`TaskContext::keyed_state`]); the coordinator then reuses their shared files.
    pub(crate) fn reopens_native(
        plan: &RestorePlan,
        backend: StateBackend,
        uid: &str,
        range: KeyGroupRange,
    ) -> bool {
        reopens(
            backend,
            &plan.keyed_input(uid, range).sections,
            &plan.native_sources(uid, range),
            range,
        )
    }

    /// The operator state of `uid` restored for this subtask, redistributed per list mode;
    /// empty on a fresh start.
    pub fn operator_state(&self, uid: &str) -> OperatorStateMap {
        match &self.restore {
            Some(plan) => plan.operator_state(uid, self.subtask, self.parallelism),
            None => OperatorStateMap::new(),
        }
    }
}

/// True when restored state is one old subtask's native files with exactly the new key-group
/// range, on RocksDB: then the files are opened as they are instead of being re-read.
fn reopens(
    backend: StateBackend,
    canonical: &[SnapshotSection<'_>],
    natives: &[NativeSource<'_>],
    range: KeyGroupRange,
) -> bool {
    backend == StateBackend::Rocksdb
        && canonical.is_empty()
        && matches!(natives, [n] if n.range == range)
}
