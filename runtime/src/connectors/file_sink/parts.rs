//! Where a file sink's part files live, and the I/O on them: a directory (in-progress files
//! fsynced at the barrier, committed by an atomic rename) or an object store prefix (multipart
//! uploads whose parts go up while records arrive and at the barrier, committed by completing
//! the upload; after Flink's S3 recoverable writer).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tracing::debug;
use weir_crds::{S3Spec, StorageLocation};

use super::recovery::{FoundPart, PartKind};
use super::state::UploadRecord;
use super::{in_progress_name, parse_part_name, part_name, OutputLocation};
use crate::api::TaskError;
use crate::connectors::io_err;
use crate::storage::paths::join;
use crate::storage::s3::PART_SIZE;
use crate::storage::{CheckpointStorage, S3Storage};

/// A sink's location, opened.
pub(super) enum PartStore {
    /// A local or mounted directory.
    Directory(PathBuf),
    /// An object store prefix.
    ObjectStore(S3Storage),
}

/// A part file being written.
pub(super) enum InProgress {
    /// A buffered `.inprogress` file.
    File {
        /// Its path.
        path: PathBuf,
        /// Its writer.
        file: BufWriter<File>,
    },
    /// A multipart upload: created when its first part goes up; records are buffered until
    /// a part is [`PART_SIZE`] bytes or the barrier closes it.
    Upload {
        /// The object, relative to the sink's prefix.
        path: String,
        /// The store's id, once created.
        upload_id: Option<String>,
        /// Bytes not uploaded yet.
        buffer: Vec<u8>,
        /// ETags of the uploaded parts, in order.
        etags: Vec<String>,
    },
}

impl PartStore {
    /// Opens `location`; object storage is reached with the job's `checkpointing.s3`
    /// settings `s3` and the standard AWS credential chain. Creates a missing directory.
    ///
    /// # Errors
    /// [`TaskError::Io`] when the directory cannot be created, [`TaskError::Storage`] when
    /// the S3 client cannot start, [`TaskError::Data`] for a malformed `s3://` location.
    pub fn open(location: &OutputLocation, s3: Option<&S3Spec>) -> Result<Self, TaskError> {
        match location {
            OutputLocation::Directory(dir) => {
                std::fs::create_dir_all(dir).map_err(io_err("create output directory", dir))?;
                Ok(Self::Directory(dir.clone()))
            }
            OutputLocation::ObjectStore { .. } => {
                match StorageLocation::parse_with(&location.to_string(), s3)
                    .map_err(TaskError::Data)?
                {
                    StorageLocation::S3(l) => Ok(Self::ObjectStore(S3Storage::open(&l)?)),
                    StorageLocation::Local(dir) => Ok(Self::Directory(dir)),
                }
            }
        }
    }

    /// Starts part `seq` of `owner` in `bucket` (a relative directory, `""`: the location).
    ///
    /// # Errors
    /// [`TaskError::Io`] when the bucket directory or the file cannot be created.
    pub fn start(&self, bucket: &str, owner: u32, seq: u64) -> Result<InProgress, TaskError> {
        match self {
            Self::Directory(dir) => {
                let bucket_dir = dir.join(bucket);
                std::fs::create_dir_all(&bucket_dir)
                    .map_err(io_err("create bucket directory", &bucket_dir))?;
                let path = bucket_dir.join(in_progress_name(owner, seq));
                let f = File::create(&path).map_err(io_err("create part file", &path))?;
                Ok(InProgress::File {
                    path,
                    file: BufWriter::with_capacity(1 << 16, f),
                })
            }
            Self::ObjectStore(_) => Ok(InProgress::Upload {
                path: join(bucket, &part_name(owner, seq)),
                upload_id: None,
                buffer: Vec::with_capacity(1 << 16),
                etags: Vec::new(),
            }),
        }
    }

    /// Appends `bytes` to `part`; uploads a part when [`PART_SIZE`] bytes are buffered.
    ///
    /// # Errors
    /// [`TaskError::Io`] or [`TaskError::Storage`] when the write or upload fails.
    pub fn write(&self, part: &mut InProgress, bytes: &[u8]) -> Result<(), TaskError> {
        match part {
            InProgress::File { path, file } => file
                .write_all(bytes)
                .map_err(|e| io_err("write part file", path)(e)),
            InProgress::Upload { buffer, .. } => {
                buffer.extend_from_slice(bytes);
                if buffer.len() >= PART_SIZE {
                    self.upload_buffered(part)?;
                }
                Ok(())
            }
        }
    }

    /// Uploads the buffered bytes of `part` as its next part (creating the upload first).
    fn upload_buffered(&self, part: &mut InProgress) -> Result<(), TaskError> {
        let (
            Self::ObjectStore(store),
            InProgress::Upload {
                path,
                upload_id,
                buffer,
                etags,
            },
        ) = (self, part)
        else {
            return Ok(());
        };
        let id = match upload_id {
            Some(id) => id.clone(),
            None => upload_id.insert(store.create_upload(path)?).clone(),
        };
        let bytes = std::mem::replace(buffer, Vec::with_capacity(1 << 16));
        let etag = store.upload_part(path, &id, etags.len() as i32 + 1, bytes)?;
        etags.push(etag);
        Ok(())
    }

    /// Closes `part` at a checkpoint barrier: a file is flushed and fsynced; an upload gets its
    /// last part and is returned as the record to keep in the checkpoint.
    ///
    /// # Errors
    /// [`TaskError::Io`] or [`TaskError::Storage`] when flushing or uploading fails.
    pub fn close(&self, seq: u64, mut part: InProgress) -> Result<Option<UploadRecord>, TaskError> {
        if let InProgress::Upload { buffer, etags, .. } = &part {
            if !buffer.is_empty() || etags.is_empty() {
                self.upload_buffered(&mut part)?;
            }
        }
        match part {
            InProgress::File { path, file } => {
                let f = file
                    .into_inner()
                    .map_err(|e| io_err("flush part file", &path)(e.into_error()))?;
                f.sync_all().map_err(io_err("sync part file", &path))?;
                Ok(None)
            }
            InProgress::Upload {
                path,
                upload_id,
                etags,
                ..
            } => Ok(Some(UploadRecord {
                seq,
                path,
                upload_id: upload_id.expect("invariant: close uploads at least one part"),
                etags,
            })),
        }
    }

    /// Drops an empty `part` (the input ended after the final barrier).
    pub fn discard(&self, part: InProgress) {
        match (self, part) {
            (_, InProgress::File { path, file }) => {
                drop(file);
                let _ = std::fs::remove_file(path);
            }
            (
                Self::ObjectStore(store),
                InProgress::Upload {
                    path,
                    upload_id: Some(id),
                    ..
                },
            ) => {
                let _ = store.abort_upload(&path, &id);
            }
            (_, InProgress::Upload { .. }) => {}
        }
    }

    /// Makes pending part `seq` of `owner` visible, idempotently: renames its in-progress file
    /// in `bucket`, or completes its recorded `upload`.
    ///
    /// # Errors
    /// [`TaskError::Io`] when the in-progress file is gone and no committed one exists,
    /// [`TaskError::Storage`] when the upload cannot be completed and the object does not
    /// exist, [`TaskError::Restore`] when a pending part on object storage has no record (the
    /// location changed since the checkpoint).
    pub fn commit(
        &self,
        owner: u32,
        seq: u64,
        bucket: &str,
        upload: Option<&UploadRecord>,
    ) -> Result<(), TaskError> {
        match self {
            Self::Directory(dir) => {
                let from = dir.join(bucket).join(in_progress_name(owner, seq));
                let to = dir.join(bucket).join(part_name(owner, seq));
                match std::fs::rename(&from, &to) {
                    Ok(()) => Ok(()),
                    Err(_) if to.exists() => Ok(()), // committed before a failure
                    Err(e) => Err(io_err("commit part file", &from)(e)),
                }
            }
            Self::ObjectStore(store) => {
                let Some(u) = upload else {
                    return Err(TaskError::Restore(format!(
                        "pending part {seq} of subtask {owner} has no upload in the checkpoint: \
                         the sink's location changed since it was taken"
                    )));
                };
                match store.complete_upload(&u.path, &u.upload_id, &u.etags) {
                    Ok(()) => Ok(()),
                    // Completed before a failure: the upload is gone, its object is there.
                    Err(e) => match store.exists(&u.path) {
                        Ok(true) => Ok(()),
                        _ => Err(e.into()),
                    },
                }
            }
        }
    }

    /// Every part file under the location: committed files and objects, in-progress files,
    /// and (where the store lists them) multipart uploads in progress.
    ///
    /// # Errors
    /// [`TaskError::Io`] or [`TaskError::Storage`] when listing fails.
    pub fn scan(&self) -> Result<Vec<FoundPart>, TaskError> {
        let mut found = Vec::new();
        let mut add = |path: String, upload_id: Option<String>| {
            let name = path.rsplit('/').next().unwrap_or_default();
            if let Some((owner, seq)) = parse_part_name(name) {
                let kind = match upload_id {
                    Some(upload_id) => PartKind::Upload { upload_id },
                    None if name.starts_with('.') => PartKind::InProgressFile,
                    None => PartKind::Committed,
                };
                found.push(FoundPart {
                    owner,
                    seq,
                    path,
                    kind,
                });
            }
        };
        match self {
            Self::Directory(dir) => scan_dir(dir, "", &mut |p| add(p, None))?,
            Self::ObjectStore(store) => {
                for (path, _) in store.list_objects("")? {
                    add(path, None);
                }
                match store.list_uploads("")? {
                    Some(uploads) => {
                        for u in uploads {
                            add(u.path, Some(u.upload_id));
                        }
                    }
                    None => debug!(
                        location = %store.uri(""),
                        "the store does not list multipart uploads; uploads begun after the restored checkpoint stay invisible until its lifecycle rule aborts them"
                    ),
                }
            }
        }
        Ok(found)
    }

    /// Removes a part the restored state does not account for: deletes a file or object,
    /// aborts an upload.
    ///
    /// # Errors
    /// [`TaskError::Io`] or [`TaskError::Storage`] when the removal fails.
    pub fn remove(&self, part: &FoundPart) -> Result<(), TaskError> {
        debug!(part = %part.path, "removing output written after the restored checkpoint");
        match (self, &part.kind) {
            (Self::Directory(dir), _) => {
                let path = dir.join(&part.path);
                std::fs::remove_file(&path).map_err(io_err("remove stale part file", &path))
            }
            (Self::ObjectStore(store), PartKind::Upload { upload_id }) => {
                Ok(store.abort_upload(&part.path, upload_id)?)
            }
            (Self::ObjectStore(store), _) => Ok(store.delete_all(&part.path)?),
        }
    }
}

/// Calls `visit` with the path (relative to `root`, `/`-separated) of every file below
/// `root.join(rel)`.
fn scan_dir(root: &Path, rel: &str, visit: &mut dyn FnMut(String)) -> Result<(), TaskError> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(io_err("list output directory", &dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list output directory", &dir))?;
        let name = join(rel, &entry.file_name().to_string_lossy());
        let is_dir = entry
            .file_type()
            .map_err(io_err("list output directory", &entry.path()))?
            .is_dir();
        if is_dir {
            scan_dir(root, &name, visit)?;
        } else {
            visit(name);
        }
    }
    Ok(())
}
