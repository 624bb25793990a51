//! The bookkeeping of one snapshot in flight (which tasks acknowledged it, with what state),
//! and which old checkpoints retention removes. Pure.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::checkpoint::metadata::{
    CheckpointMetadata, OperatorMetadata, SnapshotKind, SubtaskMetadata, FORMAT_VERSION,
};

/// A checkpoint whose barriers are in flight.
#[derive(Debug)]
pub struct PendingCheckpoint {
    /// Checkpoint id.
    pub id: u64,
    /// Trigger time.
    pub started: Instant,
    /// True for the checkpoint taken after all input was read.
    pub is_final: bool,
    acked: Vec<bool>,
    operators: BTreeMap<String, OperatorMetadata>,
}

impl PendingCheckpoint {
    /// A checkpoint expecting acknowledgements from `tasks` tasks.
    pub fn new(id: u64, tasks: usize, started: Instant, is_final: bool) -> Self {
        Self {
            id,
            started,
            is_final,
            acked: vec![false; tasks],
            operators: BTreeMap::new(),
        }
    }

    /// Records task `task`'s acknowledgement with the metadata of its operators' state (files
    /// already written); `parallelism` is the job's. Returns true when every task has acked.
    pub fn acknowledge(
        &mut self,
        task: usize,
        parallelism: u32,
        subtasks: Vec<(String, SubtaskMetadata)>,
    ) -> bool {
        if let Some(a) = self.acked.get_mut(task) {
            *a = true;
        }
        for (uid, meta) in subtasks {
            let op = self
                .operators
                .entry(uid)
                .or_insert_with(|| OperatorMetadata {
                    parallelism,
                    subtasks: Vec::new(),
                });
            op.subtasks.push(meta);
        }
        self.is_complete()
    }

    /// True when every task has acknowledged.
    pub fn is_complete(&self) -> bool {
        self.acked.iter().all(|a| *a)
    }

    /// The `_metadata` of the completed checkpoint.
    pub fn into_metadata(
        mut self,
        job: &str,
        kind: SnapshotKind,
        max_parallelism: u32,
        timestamp_ms: i64,
    ) -> CheckpointMetadata {
        for op in self.operators.values_mut() {
            op.subtasks.sort_by_key(|s| s.subtask);
        }
        CheckpointMetadata {
            format_version: FORMAT_VERSION,
            job: job.to_string(),
            checkpoint_id: self.id,
            kind,
            timestamp_ms,
            max_parallelism,
            operators: self.operators,
        }
    }
}

/// The checkpoints retention deletes: all but the newest `retained` of `complete` (ascending
/// ids), plus every incomplete id older than the newest complete one.
pub fn checkpoints_to_delete(complete: &[u64], incomplete: &[u64], retained: usize) -> Vec<u64> {
    let keep_from = complete.len().saturating_sub(retained);
    let newest = complete.last().copied().unwrap_or(0);
    let mut out: Vec<u64> = complete[..keep_from].to_vec();
    out.extend(incomplete.iter().filter(|i| **i < newest));
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_when_every_task_acked() {
        let now = Instant::now();
        let mut p = PendingCheckpoint::new(5, 2, now, false);
        assert!(!p.acknowledge(1, 2, vec![]));
        assert!(p.acknowledge(0, 2, vec![]));
    }

    #[test]
    fn retention_keeps_newest() {
        assert_eq!(checkpoints_to_delete(&[1, 2, 3, 4], &[], 2), vec![1, 2]);
        assert_eq!(checkpoints_to_delete(&[3, 4], &[1, 5], 3), vec![1]);
        assert!(checkpoints_to_delete(&[], &[7], 1).is_empty());
    }
}
