//! Operators, one file per operator, each implementing the [`Collector`](crate::api::Collector)
//! hooks and passing its output to the next operator of its chain.

pub mod broadcast;
pub mod keyed_process;
pub mod stateless;
pub mod window;

use crate::api::{CheckpointBarrier, OperatorSnapshot, TaskError};
use crate::checkpoint::SnapshotKind;
use crate::state::KeyedStateStore;

/// The keyed state of operator `uid` at `barrier`: natively (incremental RocksDB) for a
/// checkpoint when the store is set up for it, canonical for a savepoint.
///
/// # Errors
/// [`TaskError::State`] when the backend cannot snapshot.
pub(crate) fn keyed_snapshot(
    uid: &str,
    store: &mut KeyedStateStore,
    barrier: CheckpointBarrier,
) -> Result<OperatorSnapshot, TaskError> {
    let keyed = store
        .snapshot(barrier.id, barrier.kind == SnapshotKind::Checkpoint)
        .map_err(|source| TaskError::State {
            uid: uid.to_string(),
            source,
        })?;
    Ok(OperatorSnapshot {
        uid: uid.to_string(),
        keyed: Some(keyed),
        operator_state: Default::default(),
    })
}
