//! Uploading a native (RocksDB) checkpoint incrementally: SST files are immutable, so a file
//! an earlier checkpoint uploaded is referenced again instead of uploaded; new SST files go to
//! `<job>/shared/`, the other (small, mutable) files into the checkpoint's directory. I/O
//! through [`CheckpointStorage`].

use std::collections::HashMap;

use super::metadata::{NativeFile, NativeState};
use crate::state::NativeSnapshot;
use crate::storage::paths::join;
use crate::storage::{CheckpointStorage, StorageError};

/// Shared files uploaded before by one operator subtask: RocksDB file name -> file.
pub type KnownFiles = HashMap<String, NativeFile>;

/// Where and under which names an upload goes.
#[derive(Debug, Clone, Copy)]
pub struct UploadTarget<'a> {
    /// The job root (shared files go to `<job root>/shared/`).
    pub job_root: &'a str,
    /// The checkpoint directory (private files).
    pub checkpoint_dir: &'a str,
    /// Operator uid.
    pub uid: &'a str,
    /// Subtask index.
    pub subtask: u32,
    /// Tag that keeps this run's shared file names apart from other runs' (RocksDB file
    /// numbers restart in a fresh instance).
    pub run_tag: &'a str,
}

/// A native upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A local file of the RocksDB checkpoint could not be read.
    #[error("read {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Storage refused a write.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Uploads the files of `snapshot` not in `known`, and returns the state's metadata (every
/// file, uploaded now or before) plus the paths of the shared files uploaded now.
///
/// # Errors
/// [`UploadError`] when a local file cannot be read or storage refuses a write; files written
/// before the failure are listed in nothing and are removed by shared-file collection.
pub fn upload_native(
    storage: &dyn CheckpointStorage,
    target: UploadTarget<'_>,
    snapshot: &NativeSnapshot,
    known: Option<&KnownFiles>,
) -> Result<(NativeState, Vec<String>), UploadError> {
    let UploadTarget {
        job_root,
        checkpoint_dir,
        uid,
        subtask,
        run_tag,
    } = target;
    let mut files = Vec::with_capacity(snapshot.files.len());
    let mut uploaded_shared = Vec::new();
    for name in &snapshot.files {
        if let Some(f) = known.and_then(|k| k.get(name)) {
            files.push(f.clone());
            continue;
        }
        let local = snapshot.dir.join(name);
        let bytes = std::fs::read(&local).map_err(|source| UploadError::Read {
            path: local.display().to_string(),
            source,
        })?;
        let shared = name.ends_with(".sst");
        let (path, object) = if shared {
            let p = format!("shared/{uid}-{subtask}-{run_tag}-{name}");
            let object = join(job_root, &p);
            (p, object)
        } else {
            let p = format!("{uid}-{subtask}-{name}");
            let object = join(checkpoint_dir, &p);
            (p, object)
        };
        storage.write(&object, &bytes)?;
        if shared {
            uploaded_shared.push(path.clone());
        }
        files.push(NativeFile {
            name: name.clone(),
            path,
            shared,
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
        });
    }
    Ok((
        NativeState {
            key_group_range: snapshot.range,
            states: snapshot.states.clone(),
            files,
        },
        uploaded_shared,
    ))
}

/// The shared files of `state`, as [`KnownFiles`] for the next upload.
pub fn known_files(state: &NativeState) -> KnownFiles {
    state
        .files
        .iter()
        .filter(|f| f.shared)
        .map(|f| (f.name.clone(), f.clone()))
        .collect()
}
