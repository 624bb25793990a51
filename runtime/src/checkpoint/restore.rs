//! Finding the checkpoint to restore (I/O through [`CheckpointStorage`]) and planning the
//! restore of each new subtask (pure).
//!
//! A checkpoint is restorable only if its `_metadata` exists and verifies, and every state
//! file it names exists with the recorded size and CRC-32C. Otherwise the next older one is
//! tried, and the log says why.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use tracing::warn;

use super::compat::{incompatibilities, JobShape};
use super::metadata::CheckpointMetadata;
use crate::api::{OperatorStateMap, RedistributionMode};
use crate::checkpoint::KeyedStateFile;
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
    /// State file contents by file name: the whole file, or from byte
    /// `file_bases[name]` on when only some key groups were read.
    pub files: HashMap<String, Vec<u8>>,
    /// File offset of the first byte in `files` of the files read in part.
    pub file_bases: HashMap<String, u64>,
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

/// Why a checkpoint or savepoint cannot be restored. Serialized (in the run summary's
/// `skippedCheckpoints`) as `{"kind": "checksumMismatch", "file": ..., ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Unrestorable {
    /// No `_metadata`: the checkpoint never completed.
    #[error("it has no _metadata (incomplete)")]
    NoMetadata,
    /// `_metadata` exists but does not decode or verify.
    #[error("_metadata is corrupt: {reason}")]
    CorruptMetadata {
        /// The decoder's error.
        reason: String,
    },
    /// A state file the metadata names is not in storage.
    #[error("state file {file} is missing")]
    MissingFile {
        /// File name (or path under the job's shared directory).
        file: String,
    },
    /// A state file is not as long as the metadata records.
    #[error("state file {file} has {actual} bytes, expected {expected}")]
    WrongSize {
        /// File name.
        file: String,
        /// Bytes found.
        actual: u64,
        /// Bytes recorded.
        expected: u64,
    },
    /// A state file (or one key group's section of it) does not match its CRC-32C.
    #[error("state file {file} is corrupt: checksum mismatch{} (expected {expected:08x}, got {actual:08x})", key_group.map(|kg| format!(" in key group {kg}")).unwrap_or_default())]
    ChecksumMismatch {
        /// File name.
        file: String,
        /// The key group whose section was read, when only some were.
        key_group: Option<u16>,
        /// Recorded CRC-32C.
        expected: u32,
        /// CRC-32C of the bytes read.
        actual: u32,
    },
    /// A keyed state file's offset table does not cover the key groups asked for.
    #[error("state file {file}: bad offset table")]
    BadOffsetTable {
        /// File name.
        file: String,
    },
    /// A snapshot outside a job's `checkpoints/` directory references the job's shared files.
    #[error("{dir} references shared file {file} but is not in a job's checkpoints directory")]
    SharedOutsideJob {
        /// The snapshot's directory.
        dir: String,
        /// The shared file.
        file: String,
    },
}

/// A checkpoint a run did not restore because it is damaged or incomplete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedCheckpoint {
    /// Checkpoint id.
    pub id: u64,
    /// Why.
    pub reason: Unrestorable,
}

/// The newest checkpoint that is complete and intact, loaded (`None` when there is none), and
/// the newer ones skipped on the way. Incomplete (no `_metadata`) and corrupt checkpoints are
/// skipped with a warning naming the reason, falling back to the previous one. Only ids from
/// `since` on are considered: the history of the job's lineage
/// ([`crate::checkpoint::LineageRecord::first_checkpoint`]); lower ids belong to a predecessor.
///
/// # Errors
/// [`StorageError`] when storage cannot be read at all.
pub fn find_latest_checkpoint(
    storage: &dyn CheckpointStorage,
    paths: &JobPaths,
    since: u64,
) -> Result<(Option<LoadedCheckpoint>, Vec<SkippedCheckpoint>), StorageError> {
    let mut skipped = Vec::new();
    for id in list_checkpoint_ids(storage, paths)?
        .into_iter()
        .rev()
        .take_while(|&id| id >= since)
    {
        match load_snapshot(storage, &paths.checkpoint(id))? {
            Ok(c) => return Ok((Some(c), skipped)),
            Err(reason) => {
                warn!(
                    checkpoint = id,
                    location = %storage.uri(&paths.checkpoint(id)),
                    "checkpoint {id} is not restorable: {reason}; falling back to an earlier checkpoint"
                );
                skipped.push(SkippedCheckpoint { id, reason });
            }
        }
    }
    Ok((None, skipped))
}

/// Loads and verifies the checkpoint or savepoint in directory `dir` of `storage` (`""` = the
/// storage root). The inner `Err` says why it is not restorable.
///
/// # Errors
/// [`StorageError`] when storage cannot be read.
pub fn load_snapshot(
    storage: &dyn CheckpointStorage,
    dir: &str,
) -> Result<Result<LoadedCheckpoint, Unrestorable>, StorageError> {
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
) -> Result<Result<LoadedCheckpoint, Unrestorable>, StorageError> {
    let needed =
        |r: &KeyGroupRange| ranges.is_empty() || ranges.iter().any(|o| o.intersect(r).is_some());
    let Some(bytes) = storage.read(&join(dir, METADATA))? else {
        return Ok(Err(Unrestorable::NoMetadata));
    };
    let metadata = match CheckpointMetadata::decode(&bytes) {
        Ok(m) => m,
        Err(e) => {
            return Ok(Err(Unrestorable::CorruptMetadata {
                reason: e.to_string(),
            }))
        }
    };
    let mut files = HashMap::new();
    let mut file_bases = HashMap::new();
    for file in metadata
        .operators
        .values()
        .flat_map(|o| &o.subtasks)
        .filter_map(|s| s.keyed_state.as_ref())
        .filter(|f| needed(&f.key_group_range))
    {
        if let Some(span) = partial_span(file, ranges) {
            match read_sections(storage, dir, file, span)? {
                Ok((base, bytes)) => {
                    file_bases.insert(file.file.clone(), base);
                    files.insert(file.file.clone(), bytes);
                    continue;
                }
                Err(reason) => return Ok(Err(reason)),
            }
        }
        let bytes = match verified(
            storage.read(&join(dir, &file.file))?,
            &file.file,
            file.size,
            file.crc32c,
        ) {
            Ok(bytes) => bytes,
            Err(reason) => return Ok(Err(reason)),
        };
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
                return Ok(Err(Unrestorable::SharedOutsideJob {
                    dir: dir.to_string(),
                    file: file.path.clone(),
                }))
            }
        };
        let bytes = match verified(storage.read(&object)?, &file.path, file.size, file.crc32c) {
            Ok(bytes) => bytes,
            Err(reason) => return Ok(Err(reason)),
        };
        files.insert(file.path.clone(), bytes);
    }
    Ok(Ok(LoadedCheckpoint {
        location: storage.uri(dir),
        metadata,
        files,
        file_bases,
    }))
}

/// `bytes` read from state file `name` when they are present and match the recorded `size`
/// (bytes) and CRC-32C; else why the file cannot be restored.
fn verified(
    bytes: Option<Vec<u8>>,
    name: &str,
    size: u64,
    crc32c: u32,
) -> Result<Vec<u8>, Unrestorable> {
    let file = || name.to_string();
    let bytes = bytes.ok_or_else(|| Unrestorable::MissingFile { file: file() })?;
    if bytes.len() as u64 != size {
        return Err(Unrestorable::WrongSize {
            file: file(),
            actual: bytes.len() as u64,
            expected: size,
        });
    }
    let actual = crc32c::crc32c(&bytes);
    if actual != crc32c {
        return Err(Unrestorable::ChecksumMismatch {
            file: file(),
            key_group: None,
            expected: crc32c,
            actual,
        });
    }
    Ok(bytes)
}

/// The key groups of `file` that `ranges` need, when that is less than the whole file: the
/// smallest span covering them (`None`: read the whole file).
fn partial_span(file: &KeyedStateFile, ranges: &[KeyGroupRange]) -> Option<KeyGroupRange> {
    let parts: Vec<KeyGroupRange> = ranges
        .iter()
        .filter_map(|r| r.intersect(&file.key_group_range))
        .collect();
    let span = KeyGroupRange {
        start: parts.iter().map(|r| r.start).min()?,
        end: parts.iter().map(|r| r.end).max()?,
    };
    (span != file.key_group_range).then_some(span)
}

/// Reads the sections of key groups `span` of `file` with one ranged read and verifies each
/// section's CRC-32C. Returns the file offset of the first byte and the bytes; the inner `Err`
/// says why the file cannot be restored.
fn read_sections(
    storage: &dyn CheckpointStorage,
    dir: &str,
    file: &KeyedStateFile,
    span: KeyGroupRange,
) -> Result<Result<(u64, Vec<u8>), Unrestorable>, StorageError> {
    let at = |kg: u16| (kg - file.key_group_range.start) as usize;
    let offsets = &file.key_group_offsets;
    let (Some(&from), Some(&to)) = (offsets.get(at(span.start)), offsets.get(at(span.end) + 1))
    else {
        return Ok(Err(Unrestorable::BadOffsetTable {
            file: file.file.clone(),
        }));
    };
    let Some(bytes) = storage.read_range(&join(dir, &file.file), from, to.saturating_sub(from))?
    else {
        return Ok(Err(Unrestorable::MissingFile {
            file: file.file.clone(),
        }));
    };
    if bytes.len() as u64 != to.saturating_sub(from) {
        return Ok(Err(Unrestorable::WrongSize {
            file: file.file.clone(),
            actual: bytes.len() as u64,
            expected: to.saturating_sub(from),
        }));
    }
    for kg in span.start..=span.end {
        let (a, b) = (offsets[at(kg)] - from, offsets[at(kg) + 1] - from);
        let actual = crc32c::crc32c(&bytes[a as usize..b as usize]);
        match file.key_group_crc32c.get(at(kg)) {
            Some(&expected) if expected != actual => {
                return Ok(Err(Unrestorable::ChecksumMismatch {
                    file: file.file.clone(),
                    key_group: Some(kg),
                    expected,
                    actual,
                }))
            }
            _ => {}
        }
    }
    Ok(Ok((from, bytes)))
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
    /// Checks that `checkpoint` can restore a job of `shape` (see
    /// [`super::compat::incompatibilities`]).
    ///
    /// # Errors
    /// The reasons it cannot, joined by `; `: a different max parallelism (both values),
    /// state of a uid the job does not have (unless `allowNonRestoredState`), a keyed state
    /// whose kind changed.
    pub fn new(checkpoint: LoadedCheckpoint, shape: JobShape<'_>) -> Result<Self, String> {
        let reasons = incompatibilities(&checkpoint.metadata, shape);
        if !reasons.is_empty() {
            return Err(reasons.join("; "));
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
                        base: self
                            .checkpoint
                            .file_bases
                            .get(&f.file)
                            .copied()
                            .unwrap_or(0),
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

    /// Operator state of `uid` for new subtask `subtask` of `parallelism`: `Union` lists go
    /// whole to every subtask, at any parallelism (Flink's `UnionListState`); `Split` lists stay
    /// with their subtask at unchanged parallelism and are otherwise dealt round-robin.
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
                    RedistributionMode::Union => entries.extend(list.entries.iter().cloned()),
                    _ if same => {
                        if s.subtask == subtask {
                            entries.extend(list.entries.iter().cloned());
                        }
                    }
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
            file_bases: HashMap::new(),
        }
    }

    #[test]
    fn state_of_a_missing_uid_is_refused_unless_allowed() {
        let job = vec!["source".to_string()];
        let err =
            RestorePlan::new(loaded(&["source", "gone"]), shape(&job, 128, false)).unwrap_err();
        assert!(
            err.contains("gone") && err.contains("allowNonRestoredState"),
            "{err}"
        );
        assert!(RestorePlan::new(loaded(&["source", "gone"]), shape(&job, 128, true)).is_ok());
    }

    fn shape(uids: &[String], max_parallelism: u32, allow: bool) -> JobShape<'_> {
        static NONE: std::sync::OnceLock<BTreeMap<String, Vec<crate::state::StateInfo>>> =
            std::sync::OnceLock::new();
        JobShape {
            uids,
            keyed_states: NONE.get_or_init(BTreeMap::new),
            fixed_states: &[],
            max_parallelism,
            allow_non_restored_state: allow,
        }
    }

    #[test]
    fn another_max_parallelism_is_refused_naming_both() {
        let job = ["source".to_string()];
        let err = RestorePlan::new(loaded(&["source"]), shape(&job, 256, false)).unwrap_err();
        assert!(err.contains("128") && err.contains("256"), "{err}");
    }

    /// A checkpoint with one keyed file of key groups 0..=3 (sections of 3, 0, 5 and 4
    /// bytes after the magic), in a local storage.
    fn four_key_groups() -> (tempfile::TempDir, crate::storage::LocalStorage, Vec<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::storage::LocalStorage::new(dir.path().to_path_buf());
        let sections: [&[u8]; 4] = [b"aaa", b"", b"bbbbb", b"cccc"];
        let mut bytes = crate::state::snapshot::MAGIC.to_vec();
        let mut offsets = vec![bytes.len() as u64];
        for s in sections {
            bytes.extend_from_slice(s);
            offsets.push(bytes.len() as u64);
        }
        let file = KeyedStateFile {
            file: "op-0.state".into(),
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
            key_group_range: KeyGroupRange { start: 0, end: 3 },
            key_group_offsets: offsets.clone(),
            key_group_crc32c: sections.iter().map(|s| crc32c::crc32c(s)).collect(),
            states: Vec::new(),
            entries: 4,
        };
        let mut meta = loaded(&["op"]).metadata;
        meta.operators.get_mut("op").unwrap().subtasks = vec![crate::checkpoint::SubtaskMetadata {
            subtask: 0,
            keyed_state: Some(file),
            operator_state: Default::default(),
            native_state: None,
        }];
        storage.write("chk-4/op-0.state", &bytes).unwrap();
        storage.write("chk-4/_metadata", &meta.encode()).unwrap();
        (dir, storage, offsets)
    }

    #[test]
    fn a_subtask_reads_only_the_sections_of_its_key_groups() {
        let (_dir, storage, offsets) = four_key_groups();
        let part = [KeyGroupRange { start: 2, end: 3 }];
        let l = load_snapshot_for(&storage, "chk-4", &part)
            .unwrap()
            .unwrap();
        assert_eq!(l.files["op-0.state"], b"bbbbbcccc");
        assert_eq!(l.file_bases["op-0.state"], offsets[2]);
        let all = load_snapshot(&storage, "chk-4").unwrap().unwrap();
        assert_eq!(all.files["op-0.state"].len() as u64, offsets[4]);
        assert!(all.file_bases.is_empty());
    }

    #[test]
    fn a_corrupt_section_is_detected_only_where_it_is_read() {
        let (dir, storage, offsets) = four_key_groups();
        let path = dir.path().join("chk-4/op-0.state");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offsets[0] as usize] ^= 1; // key group 0
        std::fs::write(&path, &bytes).unwrap();
        let part = [KeyGroupRange { start: 2, end: 3 }];
        assert!(load_snapshot_for(&storage, "chk-4", &part).unwrap().is_ok());
        let err = load_snapshot(&storage, "chk-4").unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Unrestorable::ChecksumMismatch {
                    key_group: None,
                    ..
                }
            ),
            "{err}"
        );
        bytes[offsets[3] as usize] ^= 1; // key group 3
        std::fs::write(&path, &bytes).unwrap();
        let err = load_snapshot_for(&storage, "chk-4", &part)
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(
                err,
                Unrestorable::ChecksumMismatch {
                    key_group: Some(3),
                    ..
                }
            ),
            "{err}"
        );
    }
}
