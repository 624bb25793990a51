//! Checkpoint storage: a small trait over an object store or a directory, and where every
//! object of a job lives (paths are formatted only in [`paths`]).

pub mod local;
pub mod memory;
pub mod paths;
pub mod s3;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use local::LocalStorage;
pub use memory::MemoryStorage;
pub use s3::{PendingMultipartUpload, S3Storage};

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {location}")]
pub struct StorageError {
    /// What was attempted (`write`, `read`, `list`, `delete`).
    pub action: &'static str,
    /// The object or prefix, as a URI.
    pub location: String,
    /// The underlying error (I/O, or the S3 client's after its retries).
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Requests and bytes a storage has served since it was opened; the coordinator reports the
/// difference per checkpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageStats {
    /// Requests sent (S3 API calls; file operations for local storage).
    pub requests: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

impl StorageStats {
    /// The counts since `earlier`.
    pub fn since(&self, earlier: &StorageStats) -> StorageStats {
        StorageStats {
            requests: self.requests - earlier.requests,
            bytes_written: self.bytes_written - earlier.bytes_written,
            bytes_read: self.bytes_read - earlier.bytes_read,
        }
    }
}

/// Thread-safe counters behind [`StorageStats`].
#[derive(Debug, Default)]
pub(crate) struct StatsCounter {
    requests: AtomicU64,
    bytes_written: AtomicU64,
    bytes_read: AtomicU64,
}

impl StatsCounter {
    pub fn request(&self, written: usize, read: usize) {
        self.requests.fetch_add(1, Relaxed);
        self.bytes_written.fetch_add(written as u64, Relaxed);
        self.bytes_read.fetch_add(read as u64, Relaxed);
    }

    pub fn get(&self) -> StorageStats {
        StorageStats {
            requests: self.requests.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
        }
    }
}

/// Object storage for checkpoints. Paths are `/`-separated and relative to the storage root.
pub trait CheckpointStorage: Send + Sync {
    /// Writes an object; it becomes visible complete or not at all.
    ///
    /// # Errors
    /// [`StorageError`] on I/O failure.
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Reads an object; `None` when it does not exist.
    ///
    /// # Errors
    /// [`StorageError`] on I/O failure other than absence.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Reads `len` bytes of an object from byte `offset` on (fewer when the object ends
    /// before); `None` when it does not exist. The default reads the whole object;
    /// implementations fetch only the range (an HTTP range request on S3).
    ///
    /// # Errors
    /// [`StorageError`] on I/O failure other than absence.
    fn read_range(
        &self,
        path: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read(path)?.map(|b| {
            let from = (offset as usize).min(b.len());
            let to = (offset.saturating_add(len) as usize).min(b.len());
            b[from..to].to_vec()
        }))
    }
    /// Names of the direct children of `prefix` (empty when it does not exist).
    ///
    /// # Errors
    /// [`StorageError`] on I/O failure.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// Every object below `prefix`, recursively: (path relative to the storage root, size in
    /// bytes), sorted by path.
    ///
    /// # Errors
    /// [`StorageError`] on I/O failure.
    fn list_objects(&self, prefix: &str) -> Result<Vec<(String, u64)>, StorageError>;
    /// Deletes `prefix` and everything under it (nothing when absent).
    ///
    /// # Errors
    /// [`StorageError`] on I/O failure.
    fn delete_all(&self, prefix: &str) -> Result<(), StorageError>;
    /// The URI of `path`, for logs and summaries.
    fn uri(&self, path: &str) -> String;
    /// Requests and bytes served so far.
    fn stats(&self) -> StorageStats;
}
