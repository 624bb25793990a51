//! The `_metadata` object: versioned JSON behind a header line carrying its own CRC-32C, so a
//! damaged `_metadata` is detected rather than misread. Pure.
//!
//! ```text
//! weir-checkpoint-metadata v1 crc32c=1a2b3c4d
//! {"formatVersion":1,"job":"retail-revenue","checkpointId":7,...}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::OperatorListState;
use crate::state::{KeyGroupRange, StateInfo};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: &str = "weir-checkpoint-metadata";

/// Everything needed to restore a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointMetadata {
    /// Format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Job name.
    pub job: String,
    /// Checkpoint id.
    pub checkpoint_id: u64,
    /// Checkpoint (retained by count, restored automatically) or savepoint (kept until a
    /// user deletes it, restored on request).
    #[serde(default)]
    pub kind: SnapshotKind,
    /// Completion time, ms since the epoch.
    pub timestamp_ms: i64,
    /// Number of key groups; fixed for the life of the state.
    pub max_parallelism: u32,
    /// Per operator uid.
    pub operators: BTreeMap<String, OperatorMetadata>,
}

/// What a snapshot is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    /// A periodic checkpoint.
    #[default]
    Checkpoint,
    /// A savepoint.
    Savepoint,
}

/// State of one operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorMetadata {
    /// Parallelism when the checkpoint was taken.
    pub parallelism: u32,
    /// One entry per subtask, by subtask index.
    pub subtasks: Vec<SubtaskMetadata>,
}

/// State of one operator subtask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubtaskMetadata {
    /// Subtask index.
    pub subtask: u32,
    /// Keyed state file, for keyed operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyed_state: Option<KeyedStateFile>,
    /// Named lists of operator state.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operator_state: BTreeMap<String, OperatorListState>,
    /// Keyed state as RocksDB files (incremental checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_state: Option<NativeState>,
}

/// Keyed state of one subtask as a RocksDB checkpoint (incremental checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NativeState {
    /// Key groups the files hold.
    pub key_group_range: KeyGroupRange,
    /// States (column families).
    pub states: Vec<StateInfo>,
    /// The files of the RocksDB checkpoint.
    pub files: Vec<NativeFile>,
}

/// One file of a RocksDB checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NativeFile {
    /// File name inside the RocksDB directory.
    pub name: String,
    /// Object path: relative to the job root for shared files (`shared/...`), else relative
    /// to the checkpoint directory.
    pub path: String,
    /// True for SST files in `<job>/shared/`, which later checkpoints may reference.
    pub shared: bool,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32C of the file.
    pub crc32c: u32,
}

/// A keyed state file in the canonical format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyedStateFile {
    /// File name inside the checkpoint directory.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32C of the whole file.
    pub crc32c: u32,
    /// Key groups the file covers.
    pub key_group_range: KeyGroupRange,
    /// Byte offset of each key group's section; the last element is the file size.
    pub key_group_offsets: Vec<u64>,
    /// CRC-32C of each key group's section.
    #[serde(default)]
    pub key_group_crc32c: Vec<u32>,
    /// State table referenced by the file's entries.
    pub states: Vec<StateInfo>,
    /// Number of entries.
    pub entries: u64,
}

/// A `_metadata` object could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The header line is missing or malformed.
    #[error("not a weir checkpoint metadata file")]
    Header,
    /// The content does not match its checksum.
    #[error("checksum mismatch (expected {expected:08x}, got {actual:08x})")]
    Checksum {
        /// Checksum in the header.
        expected: u32,
        /// Checksum of the content.
        actual: u32,
    },
    /// Written by a newer Weir.
    #[error("format version {0} is newer than this build supports ({FORMAT_VERSION})")]
    Version(u32),
    /// The JSON does not have the expected shape.
    #[error("malformed metadata")]
    Json(#[source] serde_json::Error),
}

impl CheckpointMetadata {
    /// Encodes the metadata with its header line.
    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec_pretty(self).expect("invariant: metadata serializes");
        let mut out = format!(
            "{HEADER} v{FORMAT_VERSION} crc32c={:08x}\n",
            crc32c::crc32c(&body)
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }

    /// Decodes and verifies a `_metadata` object.
    ///
    /// # Errors
    /// [`MetadataError`] for a bad header, a checksum mismatch, a newer version or bad JSON.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetadataError> {
        let nl = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(MetadataError::Header)?;
        let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| MetadataError::Header)?;
        let mut parts = header.split(' ');
        if parts.next() != Some(HEADER) {
            return Err(MetadataError::Header);
        }
        let version: u32 = parts
            .next()
            .and_then(|v| v.strip_prefix('v'))
            .and_then(|v| v.parse().ok())
            .ok_or(MetadataError::Header)?;
        if version > FORMAT_VERSION {
            return Err(MetadataError::Version(version));
        }
        let expected = parts
            .next()
            .and_then(|c| c.strip_prefix("crc32c="))
            .and_then(|c| u32::from_str_radix(c, 16).ok())
            .ok_or(MetadataError::Header)?;
        let body = &bytes[nl + 1..];
        let actual = crc32c::crc32c(body);
        if actual != expected {
            return Err(MetadataError::Checksum { expected, actual });
        }
        serde_json::from_slice(body).map_err(MetadataError::Json)
    }

    /// Total size of the checkpoint's state files in bytes (shared files included).
    pub fn state_size(&self) -> u64 {
        let subtasks = self.operators.values().flat_map(|o| &o.subtasks);
        subtasks
            .clone()
            .filter_map(|s| s.keyed_state.as_ref())
            .map(|f| f.size)
            .chain(self.native_files().map(|f| f.size))
            .sum()
    }

    /// Object paths (relative to the job root) of the shared files the checkpoint references.
    pub fn shared_paths(&self) -> Vec<String> {
        self.native_files()
            .filter(|f| f.shared)
            .map(|f| f.path.clone())
            .collect()
    }

    /// Every native (RocksDB) file the checkpoint references.
    pub fn native_files(&self) -> impl Iterator<Item = &NativeFile> {
        self.operators
            .values()
            .flat_map(|o| &o.subtasks)
            .filter_map(|s| s.native_state.as_ref())
            .flat_map(|n| &n.files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CheckpointMetadata {
        CheckpointMetadata {
            format_version: FORMAT_VERSION,
            job: "j".into(),
            checkpoint_id: 3,
            kind: SnapshotKind::Checkpoint,
            timestamp_ms: 1,
            max_parallelism: 128,
            operators: BTreeMap::new(),
        }
    }

    #[test]
    fn roundtrips_and_detects_damage() {
        let bytes = sample().encode();
        assert_eq!(CheckpointMetadata::decode(&bytes).unwrap(), sample());
        let mut bad = bytes.clone();
        let last = bad.len() - 3;
        bad[last] ^= 1;
        assert!(matches!(
            CheckpointMetadata::decode(&bad),
            Err(MetadataError::Checksum { .. })
        ));
        assert!(matches!(
            CheckpointMetadata::decode(b"{}"),
            Err(MetadataError::Header)
        ));
    }
}
