//! The hooks every chained operator implements, and what a checkpoint takes from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{TaskError, Timestamp};
use crate::checkpoint::SnapshotKind;
use crate::state::KeyedSnapshotData;

/// A checkpoint barrier: which snapshot, and of which kind (a checkpoint may use a backend's
/// native incremental format; a savepoint is always canonical).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointBarrier {
    /// Checkpoint id.
    pub id: u64,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
}

/// The input side of a chained operator: records, watermarks, checkpoint barriers and the
/// end of input arrive here in stream order, from one thread. Each operator handles an event
/// and passes what it produces to the next operator of its chain.
///
/// Every method fails with a [`TaskError`] when the operator cannot go on (state backend
/// failure, sink I/O, a downstream task that is gone); the task then fails.
pub trait Collector<T>: Send {
    /// One record with its event time (ms).
    fn record(&mut self, ts: Timestamp, value: T) -> Result<(), TaskError>;
    /// Event time has advanced to `watermark` (ms): no record with `ts <= watermark` follows.
    fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError>;
    /// Checkpoint barrier: snapshot state into `out`, then forward the barrier.
    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError>;
    /// Checkpoint `id` is complete (its `_metadata` is written): commit side effects.
    fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError>;
    /// No more input will come.
    fn end_of_input(&mut self) -> Result<(), TaskError>;
    /// The input is idle: no records for now (a source with
    /// [`WatermarkStrategy::with_idleness`](super::WatermarkStrategy::with_idleness)), so
    /// exchanges stop holding their consumers' watermark back for it, until its next
    /// watermark. Operators that forward watermarks forward this; the default drops it.
    fn idle(&mut self) -> Result<(), TaskError> {
        Ok(())
    }
    /// Processing time has reached `now` (ms since the epoch): fire the timers due. Called
    /// only on the first operator of a task fed by an exchange; the default does nothing.
    fn processing_time(&mut self, now: Timestamp) -> Result<(), TaskError> {
        let _ = now;
        Ok(())
    }
    /// The earliest pending processing-time timer (ms since the epoch), if any: the task
    /// wakes up then and calls [`Collector::processing_time`].
    fn next_processing_timer(&self) -> Option<Timestamp> {
        None
    }
}

/// How a list of operator state entries is spread over subtasks when parallelism changes
/// (Flink's `ListState` and `UnionListState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedistributionMode {
    /// Entries of all old subtasks are concatenated and dealt out round-robin.
    Split,
    /// Every new subtask receives every entry and keeps what concerns it.
    Union,
}

/// One named list of non-keyed operator state of one subtask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorListState {
    /// Redistribution on rescale.
    pub mode: RedistributionMode,
    /// The entries, as JSON values (small: positions, pending file names).
    pub entries: Vec<serde_json::Value>,
}

/// What one operator subtask contributes to a checkpoint.
#[derive(Debug, Default)]
pub struct OperatorSnapshot {
    /// The operator's uid.
    pub uid: String,
    /// Keyed state, for keyed operators.
    pub keyed: Option<KeyedSnapshotData>,
    /// Named lists of operator state.
    pub operator_state: BTreeMap<String, OperatorListState>,
}
