//! Checkpoints: the `_metadata` format, the coordinator's bookkeeping (pure), finding and
//! verifying the latest complete checkpoint, and the restore plan that hands each new subtask
//! its key groups and operator state.

pub mod compat;
pub mod coordinator;
pub mod gc;
pub mod incremental;
pub mod metadata;
pub mod restore;
pub mod writer;

pub use compat::{incompatibilities, JobShape};
pub use metadata::{
    CheckpointMetadata, KeyedStateFile, NativeFile, NativeState, OperatorMetadata, SnapshotKind,
    SubtaskMetadata,
};
pub use restore::{find_latest_checkpoint, load_snapshot, LoadedCheckpoint, RestorePlan};
