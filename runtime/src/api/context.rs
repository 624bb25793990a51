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
use crate::state::typed::Clock;
use crate::state::{KeyGroupRange, KeyedStateBackend, KeyedStateStore};

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
        let mut backend: Box<dyn KeyedStateBackend> = match self.state_backend {
            StateBackend::Heap => Box::new(HeapBackend::new(self.key_group_range)),
            StateBackend::Rocksdb => {
                let dir = self.local_dir.join(format!("{uid}-{}", self.subtask));
                Box::new(RocksDbBackend::open(&dir, self.key_group_range).map_err(state_err)?)
            }
        };
        if let Some(plan) = &self.restore {
            let input = plan.keyed_input(uid, self.key_group_range);
            backend.restore(&input).map_err(state_err)?;
        }
        Ok(KeyedStateStore::new(backend, self.clock.clone()))
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
