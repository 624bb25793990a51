//! The orphan report behind `weir checkpoints gc --dry-run`: objects under a job's root that
//! no complete checkpoint or savepoint references. The decision is pure ([`find_orphans`]);
//! [`scan_job`] does the reading.

use std::collections::HashSet;

use super::metadata::CheckpointMetadata;
use super::restore_point::LineageRecord;
use crate::storage::paths::{join, parse_checkpoint_dir_name, LINEAGE, METADATA};
use crate::storage::{CheckpointStorage, StorageError};

/// An object nothing references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Path relative to the job root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Why it is an orphan.
    pub reason: &'static str,
}

/// The objects of `objects` (paths relative to the job root, with sizes) that no snapshot of
/// `snapshots` ((directory relative to the job root, its metadata)) references. Checkpoints
/// with ids below `first_checkpoint` (the lineage's first, see
/// [`crate::checkpoint::LineageRecord`]) belong to a predecessor, a StreamJob of the same
/// name with another UID: they reference nothing, and their files are orphans.
pub fn find_orphans(
    objects: &[(String, u64)],
    snapshots: &[(String, CheckpointMetadata)],
    first_checkpoint: u64,
) -> Vec<Orphan> {
    let mut referenced: HashSet<String> = HashSet::from([LINEAGE.to_string()]);
    let is_predecessor = |dir: &str| {
        dir.strip_prefix("checkpoints/")
            .and_then(parse_checkpoint_dir_name)
            .is_some_and(|id| id < first_checkpoint)
    };
    let dirs: HashSet<&str> = snapshots.iter().map(|(d, _)| d.as_str()).collect();
    for (dir, m) in snapshots.iter().filter(|(d, _)| !is_predecessor(d)) {
        referenced.insert(join(dir, METADATA));
        for op in m.operators.values() {
            for s in &op.subtasks {
                if let Some(k) = &s.keyed_state {
                    referenced.insert(join(dir, &k.file));
                }
                for f in s.native_state.iter().flat_map(|n| &n.files) {
                    referenced.insert(if f.shared {
                        f.path.clone()
                    } else {
                        join(dir, &f.path)
                    });
                }
            }
        }
    }
    objects
        .iter()
        .filter(|(path, _)| !referenced.contains(path))
        .map(|(path, size)| {
            let parent = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let reason = if is_predecessor(parent) {
                "checkpoint of a predecessor (a StreamJob of the same name with another UID)"
            } else if path.starts_with("shared/") {
                "shared file that no complete checkpoint references"
            } else if dirs.contains(parent) {
                "file its checkpoint's _metadata does not list"
            } else if parent.starts_with("checkpoints/") || parent.starts_with("savepoints/") {
                "part of an incomplete checkpoint or savepoint (no _metadata)"
            } else {
                "not part of any checkpoint or savepoint"
            };
            Orphan {
                path: path.clone(),
                size: *size,
                reason,
            }
        })
        .collect()
}

/// Reads every object under the job root `storage` and every complete snapshot's metadata, and
/// returns the orphans.
///
/// # Errors
/// [`StorageError`] when storage cannot be listed or read.
pub fn scan_job(storage: &dyn CheckpointStorage) -> Result<Vec<Orphan>, StorageError> {
    let objects = storage.list_objects("")?;
    let mut snapshots = Vec::new();
    for (path, _) in &objects {
        let Some(dir) = path.strip_suffix(&format!("/{METADATA}")) else {
            continue;
        };
        if let Some(bytes) = storage.read(path)? {
            if let Ok(m) = CheckpointMetadata::decode(&bytes) {
                snapshots.push((dir.to_string(), m));
            }
        }
    }
    let first = storage
        .read(LINEAGE)?
        .map_or(0, |b| LineageRecord::decode(&b).first_checkpoint);
    Ok(find_orphans(&objects, &snapshots, first))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::checkpoint::metadata::{
        NativeFile, NativeState, OperatorMetadata, SnapshotKind, SubtaskMetadata, FORMAT_VERSION,
    };
    use crate::state::KeyGroupRange;

    fn meta(shared: &[&str], private: &[&str]) -> CheckpointMetadata {
        let files = shared
            .iter()
            .map(|p| (p, true))
            .chain(private.iter().map(|p| (p, false)))
            .map(|(p, shared)| NativeFile {
                name: p.rsplit('/').next().unwrap().to_string(),
                path: p.to_string(),
                shared,
                size: 1,
                crc32c: 0,
            })
            .collect();
        let mut operators = BTreeMap::new();
        operators.insert(
            "w".to_string(),
            OperatorMetadata {
                parallelism: 1,
                subtasks: vec![SubtaskMetadata {
                    subtask: 0,
                    keyed_state: None,
                    operator_state: BTreeMap::new(),
                    native_state: Some(NativeState {
                        key_group_range: KeyGroupRange { start: 0, end: 1 },
                        states: vec![],
                        files,
                    }),
                }],
            },
        );
        CheckpointMetadata {
            format_version: FORMAT_VERSION,
            job: "j".into(),
            checkpoint_id: 1,
            kind: SnapshotKind::Checkpoint,
            timestamp_ms: 0,
            max_parallelism: 2,
            operators,
        }
    }

    #[test]
    fn unreferenced_shared_files_stray_files_and_incomplete_checkpoints_are_orphans() {
        let objects: Vec<(String, u64)> = [
            "checkpoints/chk-2/_metadata",
            "checkpoints/chk-2/w-0-MANIFEST",
            "checkpoints/chk-2/leftover",
            "checkpoints/chk-3/w-0.state",
            "shared/a.sst",
            "shared/b.sst",
        ]
        .iter()
        .map(|p| (p.to_string(), 10))
        .collect();
        let snaps = vec![(
            "checkpoints/chk-2".to_string(),
            meta(&["shared/a.sst"], &["w-0-MANIFEST"]),
        )];
        let orphans: Vec<String> = find_orphans(&objects, &snaps, 0)
            .into_iter()
            .map(|o| o.path)
            .collect();
        assert_eq!(
            orphans,
            vec![
                "checkpoints/chk-2/leftover",
                "checkpoints/chk-3/w-0.state",
                "shared/b.sst"
            ]
        );
    }

    #[test]
    fn a_predecessors_checkpoints_and_the_shared_files_only_they_use_are_orphans() {
        let objects: Vec<(String, u64)> = [
            "_lineage",
            "checkpoints/chk-4/_metadata",
            "checkpoints/chk-4/w-0-MANIFEST",
            "checkpoints/chk-9/_metadata",
            "checkpoints/chk-9/w-0-MANIFEST",
            "shared/old.sst",
            "shared/new.sst",
        ]
        .iter()
        .map(|p| (p.to_string(), 10))
        .collect();
        let snaps = vec![
            (
                "checkpoints/chk-4".to_string(),
                meta(&["shared/old.sst"], &["w-0-MANIFEST"]),
            ),
            (
                "checkpoints/chk-9".to_string(),
                meta(&["shared/new.sst"], &["w-0-MANIFEST"]),
            ),
        ];
        let orphans = find_orphans(&objects, &snaps, 9);
        let paths: Vec<&str> = orphans.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "checkpoints/chk-4/_metadata",
                "checkpoints/chk-4/w-0-MANIFEST",
                "shared/old.sst"
            ]
        );
        assert!(orphans[0].reason.contains("predecessor"));
    }
}
