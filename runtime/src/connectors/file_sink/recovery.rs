//! What a file sink does on start-up so that its location holds exactly the output of the
//! state it restored: a pure plan from the restored state and the part files found (I/O is in
//! `parts.rs`). After Flink's `FileSink` recovery: pending parts of the restored checkpoint are
//! committed (their checkpoint completed, or the job would not restore it), everything written
//! after that checkpoint is removed.

use std::collections::{BTreeMap, BTreeSet};

use super::state::OwnerState;

/// A part file found under the sink's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FoundPart {
    /// Index of the subtask that wrote it.
    pub owner: u32,
    /// Its sequence number among the owner's parts.
    pub seq: u64,
    /// Path relative to the sink's location, `/`-separated
    /// (`dt=2020-01-01/part-0-000003.csv`, `.part-0-000004.inprogress`).
    pub path: String,
    /// Committed, or still invisible.
    pub kind: PartKind,
}

/// The state of a found part file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PartKind {
    /// Visible to readers.
    Committed,
    /// An `.inprogress` file in a directory.
    InProgressFile,
    /// A multipart upload on object storage that was neither completed nor aborted.
    Upload {
        /// The store's upload id.
        upload_id: String,
    },
}

/// One step of the recovery, in order: all commits, then all removals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RecoveryStep {
    /// Commit pending part `seq` of `owner` from the restored state. `found`: its in-progress
    /// file or upload as found; `None` when the location does not show it (object storage
    /// that does not list uploads completes it from the recorded upload; in a directory it is
    /// lost, which fails the restore).
    Commit {
        owner: u32,
        seq: u64,
        found: Option<FoundPart>,
    },
    /// Remove a part the restored state does not account for: written after the restored
    /// checkpoint (committed or not), or by an owner no checkpoint knows.
    Remove(FoundPart),
}

/// The recovery of subtask `subtask` of `parallelism`, which adopted `owners` (those with
/// `owner % parallelism == subtask`), given every part file `found` under the location.
pub(super) fn plan(
    owners: &BTreeMap<u32, OwnerState>,
    found: &[FoundPart],
    parallelism: u32,
    subtask: u32,
) -> Vec<RecoveryStep> {
    let committed: BTreeSet<(u32, u64)> = found
        .iter()
        .filter(|f| f.kind == PartKind::Committed)
        .map(|f| (f.owner, f.seq))
        .collect();
    // Whether `f` is the in-progress form of a pending part that recovery commits.
    let is_pending_in_progress = |o: &OwnerState, f: &FoundPart| {
        o.pending.iter().any(|(seq, _)| *seq == f.seq)
            && !committed.contains(&(f.owner, f.seq))
            && match &f.kind {
                PartKind::Committed => false,
                PartKind::InProgressFile => true,
                PartKind::Upload { upload_id } => {
                    o.upload(f.seq).is_some_and(|u| u.upload_id == *upload_id)
                }
            }
    };
    let mut steps = Vec::new();
    for o in owners.values() {
        for (seq, _) in &o.pending {
            if committed.contains(&(o.owner, *seq)) {
                continue; // committed before the failure
            }
            let in_progress = found
                .iter()
                .find(|f| f.owner == o.owner && f.seq == *seq && is_pending_in_progress(o, f));
            steps.push(RecoveryStep::Commit {
                owner: o.owner,
                seq: *seq,
                found: in_progress.cloned(),
            });
        }
    }
    for f in found {
        if f.owner % parallelism != subtask {
            continue;
        }
        let keep = owners.get(&f.owner).is_some_and(|o| {
            f.seq < o.next_seq
                && match f.kind {
                    PartKind::Committed => true,
                    _ => is_pending_in_progress(o, f),
                }
        });
        if !keep {
            steps.push(RecoveryStep::Remove(f.clone()));
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::super::state::UploadRecord;
    use super::*;

    fn part(owner: u32, seq: u64, kind: PartKind) -> FoundPart {
        FoundPart {
            owner,
            seq,
            path: format!("{owner}/{seq}"),
            kind,
        }
    }

    fn upload(id: &str) -> PartKind {
        PartKind::Upload {
            upload_id: id.into(),
        }
    }

    fn owner(owner: u32, next_seq: u64, pending: &[u64], uploads: &[(u64, &str)]) -> OwnerState {
        OwnerState {
            owner,
            next_seq,
            pending: pending.iter().map(|s| (*s, 9)).collect(),
            uploads: uploads
                .iter()
                .map(|(seq, id)| UploadRecord {
                    seq: *seq,
                    path: String::new(),
                    upload_id: id.to_string(),
                    etags: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn pending_files_are_committed_and_later_output_removed() {
        let owners = BTreeMap::from([(0, owner(0, 3, &[2], &[]))]);
        let found = vec![
            part(0, 1, PartKind::Committed),
            part(0, 2, PartKind::InProgressFile),
            part(0, 3, PartKind::Committed), // after the checkpoint
            part(0, 4, PartKind::InProgressFile),
        ];
        assert_eq!(
            plan(&owners, &found, 1, 0),
            vec![
                RecoveryStep::Commit {
                    owner: 0,
                    seq: 2,
                    found: Some(found[1].clone())
                },
                RecoveryStep::Remove(found[2].clone()),
                RecoveryStep::Remove(found[3].clone()),
            ]
        );
    }

    #[test]
    fn a_part_committed_before_the_failure_is_kept_and_its_leftover_removed() {
        let owners = BTreeMap::from([(0, owner(0, 3, &[2], &[]))]);
        let found = vec![
            part(0, 2, PartKind::Committed),
            part(0, 2, PartKind::InProgressFile),
        ];
        assert_eq!(
            plan(&owners, &found, 1, 0),
            vec![RecoveryStep::Remove(found[1].clone())]
        );
    }

    #[test]
    fn uploads_other_than_the_recorded_one_are_aborted() {
        let owners = BTreeMap::from([(0, owner(0, 3, &[2], &[(2, "a")]))]);
        let found = vec![
            part(0, 2, upload("a")),
            part(0, 2, upload("stray")),
            part(0, 3, upload("later")),
        ];
        assert_eq!(
            plan(&owners, &found, 1, 0),
            vec![
                RecoveryStep::Commit {
                    owner: 0,
                    seq: 2,
                    found: Some(found[0].clone())
                },
                RecoveryStep::Remove(found[1].clone()),
                RecoveryStep::Remove(found[2].clone()),
            ]
        );
    }

    #[test]
    fn an_unlisted_upload_is_still_committed_from_its_record() {
        let owners = BTreeMap::from([(0, owner(0, 3, &[2], &[(2, "a")]))]);
        assert_eq!(
            plan(&owners, &[], 1, 0),
            vec![RecoveryStep::Commit {
                owner: 0,
                seq: 2,
                found: None
            }]
        );
    }

    #[test]
    fn after_a_rescale_each_subtask_cleans_only_the_owners_it_adopts() {
        // Parallelism 3 -> 2: subtask 0 adopts owners 0 and 2; owner 1 is subtask 1's.
        let owners = BTreeMap::from([(0, owner(0, 1, &[], &[])), (2, owner(2, 1, &[], &[]))]);
        let found = vec![
            part(0, 0, PartKind::Committed),
            part(1, 0, PartKind::Committed),
            part(1, 5, PartKind::Committed),
            part(2, 0, PartKind::Committed),
            part(2, 1, PartKind::Committed),
            part(4, 0, PartKind::Committed), // an owner no checkpoint knows
        ];
        assert_eq!(
            plan(&owners, &found, 2, 0),
            vec![
                RecoveryStep::Remove(found[4].clone()),
                RecoveryStep::Remove(found[5].clone()),
            ]
        );
    }

    #[test]
    fn without_a_checkpoint_the_location_starts_empty() {
        let owners = BTreeMap::from([(0, OwnerState::empty(0))]);
        let found = vec![part(0, 0, PartKind::Committed), part(0, 1, upload("x"))];
        assert_eq!(
            plan(&owners, &found, 1, 0),
            found
                .iter()
                .cloned()
                .map(RecoveryStep::Remove)
                .collect::<Vec<_>>()
        );
    }
}
