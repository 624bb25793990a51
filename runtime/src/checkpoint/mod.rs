//! Checkpoints: the `_metadata` format, the checkpoint coordinator, finding and verifying the
//! latest complete checkpoint, the rule that chooses what a job restores, and the restore plan
//! that hands each new subtask its key groups and operator state.

pub mod compat;
pub mod coordinator;
pub mod gc;
pub mod incremental;
pub mod metadata;
pub mod restore;
pub mod restore_point;
pub mod writer;

pub use compat::{incompatibilities, JobShape};
pub use metadata::{
    CheckpointMetadata, KeyedStateFile, NativeFile, NativeState, OperatorMetadata, SnapshotKind,
    SubtaskMetadata,
};
pub use restore::{
    find_latest_checkpoint, load_snapshot, LoadedCheckpoint, RestorePlan, SkippedCheckpoint,
    Unrestorable,
};
pub use restore_point::{LineageRecord, RestoreChoice, RestoreDecision, RestoreRequest};
