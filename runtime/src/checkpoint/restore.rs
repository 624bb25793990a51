//! Finding the checkpoint to restore (I/O through [`CheckpointStorage`]) and planning the
//! restore of each new subtask (pure).
//!
//! A checkpoint is restorable only if its `_metadata` exists and verifies, and every state
//! file it names exists with the recorded size and CRC-32C. Otherwise the next older one is
//! tried, and the log says why.

use std::collections::{BTreeMap, HashMap};

use tracing::warn;

use super::metadata::CheckpointMetadata;
use crate::api::{OperatorStateMap, RedistributionMode};
use crate::state::snapshot::SnapshotSection;
use crate::state::{KeyGroupRange, KeyedStateInput, NativeSource};
use crate::storage::paths::{join, parse_checkpoint_dir_name, JobPaths, METADATA};
use crate::storage::{CheckpointStorage, StorageError};

/// A verified checkpoint with its state files in memory.
#[derive(Debug, Clone)]
pub struct LoadedCheckpoint {
    /// Its metadata.
    pub metadata: CheckpointMetadata,
    /// URI of its directory.
    pub location: String,
    /// State file contents by file name.
    pub files: HashMap<String, Vec<u8>>,
}

/// Ids of all checkpoint directories of the job, complete or not, ascending.
///
/// # Errors
/// [`StorageError`] when the storage cannot be listed.
pub fn list_checkpoint_ids(
    storage: &dyn CheckpointStorage,
    paths: &JobPaths,
) -> Result<Vec<u64>, StorageError> {
    let mut ids: Vec<u64> = storage
        .list(&paths.checkpoints())?
        .iter()
        .filter_map(|n| parse_checkpoint_dir_name(n))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The newest checkpoint that is complete and intact, loaded; `None` when there is none.
/// Incomplete (no `_metadata`) and corrupt checkpoints are skipped with a warning naming the
/// reason, falling back to the previous one.
///
/// # Errors
/// [`StorageError`] when storage cannot be read at all.
pub fn find_latest_checkpoint(
    storage: &dyn CheckpointStorage,
    paths: &JobPaths,
) -> Result<Option<LoadedCheckpoint>, StorageError> {
    for id in list_checkpoint_ids(storage, paths)?.into_iter().rev() {
        match load_snapshot(storage, &paths.checkpoint(id))? {
            Ok(c) => return Ok(Some(c)),
            Err(reason) => warn!(
                checkpoint = id,
                location = %storage.uri(&paths.checkpoint(id)),
                "checkpoint {id} is not restorable: {reason}; falling back to an earlier checkpoint"
            ),
        }
    }
    Ok(None)
}

/// Loads and verifies the checkpoint or savepoint in directory `dir` of `storage` (`""` = the
/// storage root). The inner `Err` says why it is not restorable.
///
/// # Errors
/// [`StorageError`] when storage cannot be read.
pub fn load_snapshot(
    storage: &dyn CheckpointStorage,
    dir: &str,
) -> Result<Result<LoadedCheckpoint, String>, StorageError> {
    load_snapshot_for(storage, dir, &[])
}

/// [`load_snapshot`] for a process that runs only the subtasks owning the key groups in
/// `ranges` (empty: all): state files whose key-group range meets none of them are neither
/// read nor verified (a worker of a distributed job reads its share only).
///
/// # Errors
/// [`StorageError`] when storage cannot be read.
pub fn load_snapshot_for(
    storage: &dyn CheckpointStorage,
    dir: &str,
    ranges: &[KeyGroupRange],
) -> Result<Result<LoadedCheckpoint, String>, StorageError> {
    let needed =
        |r: &KeyGroupRange| ranges.is_empty() || ranges.iter().any(|o| o.intersect(r).is_some());
    let Some(bytes) = storage.read(&join(dir, METADATA))? else {
        return Ok(Err("it has no _metadata (incomplete)".into()));
    };
    let metadata = match CheckpointMetadata::decode(&bytes) {
        Ok(m) => m,
        Err(e) => return Ok(Err(format!("_metadata is corrupt: {e}"))),
    };
    let mut files = HashMap::new();
    for file in metadata
        .operators
        .values()
        .flat_map(|o| &o.subtasks)
        .filter_map(|s| s.keyed_state.as_ref())
        .filter(|f| needed(&f.key_group_range))
    {
        let Some(bytes) = storage.read(&join(dir, &file.file))? else {
            return Ok(Err(format!("state file {} is missing", file.file)));
        };
        if bytes.len() as u64 != file.size {
            return Ok(Err(format!(
                "state file {} has {} bytes, expected {}",
                file.file,
                bytes.len(),
                file.size
            )));
        }
        let crc = crc32c::crc32c(&bytes);
        if crc != file.crc32c {
            return Ok(Err(format!(
                "state file {} is corrupt: checksum mismatch (expected {:08x}, got {crc:08x})",
                file.file, file.crc32c
            )));
        }
        files.insert(file.file.clone(), bytes);
    }
    let shared_root = checkpoint_job_root(dir);
    let native_files: Vec<&crate::checkpoint::NativeFile> = metadata
        .operators
        .values()
        .flat_map(|o| &o.subtasks)
        .filter_map(|s| s.native_state.as_ref())
        .filter(|n| needed(&n.key_group_range))
        .flat_map(|n| &n.files)
        .collect();
    for file in native_files {
        let object = match (file.shared, shared_root) {
            (false, _) => join(dir, &file.path),
            (true, Some(root)) => join(root, &file.path),
            (true, None) => {
                return Ok(Err(format!(
                    "{} references shared file {} but is not in a job's checkpoints directory",
                    dir, file.path
                )))
            }
        };
        let Some(bytes) = storage.read(&object)? else {
            return Ok(Err(format!("state file {} is missing", file.path)));
        };
        let crc = crc32c::crc32c(&bytes);
        if bytes.len() as u64 != file.size || crc != file.crc32c {
            return Ok(Err(format!(
                "state file {} is corrupt: checksum mismatch (expected {:08x}, got {crc:08x})",
                file.path, file.crc32c
            )));
        }
        files.insert(file.path.clone(), bytes);
    }
    Ok(Ok(LoadedCheckpoint {
        location: storage.uri(dir),
        metadata,
        files,
    }))
}

/// The job root of a checkpoint directory `<root>/checkpoints/chk-<n>`, where its shared
/// files live (`<root>/shared/`).
pub fn checkpoint_job_root(dir: &str) -> Option<&str> {
    let (parent, name) = dir.rsplit_once('/')?;
    parse_checkpoint_dir_name(name)?;
    parent
        .strip_suffix("/checkpoints")
        .or((parent == "checkpoints").then_some(""))
}

/// How a loaded checkpoint maps onto the subtasks of the job being started.
#[derive(Debug)]
pub struct RestorePlan {
    checkpoint: LoadedCheckpoint,
}

impl RestorePlan {
    /// Checks that `checkpoint` can restore a job with operator `uids` and `max_parallelism`.
    ///
    /// # Errors
    /// A message naming the problem: a different max parallelism (both values), or state of
    /// a uid the job does not have (unless `allow_non_restored_state`).
    pub fn new(
        checkpoint: LoadedCheckpoint,
        uids: &[String],
        max_parallelism: u32,
        allow_non_restored_state: bool,
    ) -> Result<Self, String> {
        let m = &checkpoint.metadata;
        if m.max_parallelism != max_parallelism {
            return Err(format!(
                "checkpoint {} has max parallelism {} but spec.job.maxParallelism is {}; max parallelism is fixed for the life of the state",
                m.checkpoint_id, m.max_parallelism, max_parallelism
            ));
        }
        let unknown: Vec<&String> = m.operators.keys().filter(|u| !uids.contains(u)).collect();
        if !unknown.is_empty() && !allow_non_restored_state {
            return Err(format!(
                "checkpoint {} holds state of operator uid(s) {unknown:?} that the job does not have; set spec.job.allowNonRestoredState: true to drop it",
                m.checkpoint_id
            ));
        }
        Ok(Self { checkpoint })
    }

    /// The restored checkpoint's id.
    pub fn checkpoint_id(&self) -> u64 {
        self.checkpoint.metadata.checkpoint_id
    }

    /// Checkpoint or savepoint.
    pub fn kind(&self) -> crate::checkpoint::SnapshotKind {
        self.checkpoint.metadata.kind
    }

    /// The restored checkpoint's location.
    pub fn location(&self) -> &str {
        &self.checkpoint.location
    }

    /// The old state files of `uid` whose key groups intersect `range`.
    pub fn keyed_input(&self, uid: &str, range: KeyGroupRange) -> KeyedStateInput<'_> {
        let mut sections = Vec::new();
        if let Some(op) = self.checkpoint.metadata.operators.get(uid) {
            for f in op.subtasks.iter().filter_map(|s| s.keyed_state.as_ref()) {
                if f.key_group_range.intersect(&range).is_none() {
                    continue;
                }
                if let Some(bytes) = self.checkpoint.files.get(&f.file) {
                    sections.push(SnapshotSection {
                        bytes,
                        range: f.key_group_range,
                        key_group_offsets: &f.key_group_offsets,
                        key_group_crc32c: &f.key_group_crc32c,
                        states: &f.states,
                    });
                }
            }
        }
        KeyedStateInput { range, sections }
    }

    /// The native (RocksDB) state of `uid`'s old subtasks whose key groups intersect `range`.
    pub fn native_sources(&self, uid: &str, range: KeyGroupRange) -> Vec<NativeSource<'_>> {
        let Some(op) = self.checkpoint.metadata.operators.get(uid) else {
            return Vec::new();
        };
        op.subtasks
            .iter()
            .filter_map(|s| s.native_state.as_ref())
            .filter(|n| n.key_group_range.intersect(&range).is_some())
            .map(|n| NativeSource {
                range: n.key_group_range,
                states: &n.states,
                files: n
                    .files
                    .iter()
                    .filter_map(|f| {
                        Some((
                            f.name.as_str(),
                            self.checkpoint.files.get(&f.path)?.as_slice(),
                        ))
                    })
                    .collect(),
            })
            .collect()
    }

    /// Shared files of every subtask of the restored checkpoint: (uid, old subtask, key-group
    /// range, files), for the coordinator to reuse instead of uploading again.
    pub fn native_states(
        &self,
    ) -> impl Iterator<Item = (&str, u32, &crate::checkpoint::NativeState)> {
        self.checkpoint
            .metadata
            .operators
            .iter()
            .flat_map(|(uid, op)| {
                op.subtasks
                    .iter()
                    .filter_map(move |s| Some((uid.as_str(), s.subtask, s.native_state.as_ref()?)))
            })
    }

    /// Operator state of `uid` for new subtask `subtask` of `parallelism`: unchanged
    /// parallelism keeps each subtask's lists; otherwise `Split` lists are dealt round-robin
    /// and `Union` lists go whole to every subtask (Flink's redistribution).
    pub fn operator_state(&self, uid: &str, subtask: u32, parallelism: u32) -> OperatorStateMap {
        let mut out: OperatorStateMap = BTreeMap::new();
        let Some(op) = self.checkpoint.metadata.operators.get(uid) else {
            return out;
        };
        let same = op.parallelism == parallelism;
        let mut split_index: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &op.subtasks {
            for (name, list) in &s.operator_state {
                let entries = out.entry(name.clone()).or_default();
                match list.mode {
                    _ if same => {
                        if s.subtask == subtask {
                            entries.extend(list.entries.iter().cloned());
                        }
                    }
                    RedistributionMode::Union => entries.extend(list.entries.iter().cloned()),
                    RedistributionMode::Split => {
                        let next = split_index.entry(name.as_str()).or_default();
                        for e in &list.entries {
                            if *next % parallelism as usize == subtask as usize {
                                entries.push(e.clone());
                            }
                            *next += 1;
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::{OperatorMetadata, SnapshotKind, FORMAT_VERSION};

    fn loaded(uids: &[&str]) -> LoadedCheckpoint {
        LoadedCheckpoint {
            metadata: CheckpointMetadata {
                format_version: FORMAT_VERSION,
                job: "j".into(),
                checkpoint_id: 4,
                kind: SnapshotKind::Savepoint,
                timestamp_ms: 0,
                max_parallelism: 128,
                operators: uids
                    .iter()
                    .map(|u| {
                        (
                            u.to_string(),
                            OperatorMetadata {
                                parallelism: 1,
                                subtasks: vec![],
                            },
                        )
                    })
                    .collect(),
            },
            location: "file:///x".into(),
            files: HashMap::new(),
        }
    }

    #[test]
    fn state_of_a_missing_uid_is_refused_unless_allowed() {
        let job = vec!["source".to_string()];
        let err = RestorePlan::new(loaded(&["source", "gone"]), &job, 128, false).unwrap_err();
        assert!(
            err.contains("gone") && err.contains("allowNonRestoredState"),
            "{err}"
        );
        assert!(RestorePlan::new(loaded(&["source", "gone"]), &job, 128, true).is_ok());
    }

    #[test]
    fn another_max_parallelism_is_refused_naming_both() {
        let err =
            RestorePlan::new(loaded(&["source"]), &["source".to_string()], 256, false).unwrap_err();
        assert!(err.contains("128") && err.contains("256"), "{err}");
    }
}
