//! Checkpoint storage: a small trait over an object store or a directory, and where every
//! object of a job lives (paths are formatted only in [`paths`]).

pub mod local;
pub mod paths;

pub use local::LocalStorage;

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {location}")]
pub struct StorageError {
    /// What was attempted (`write`, `read`, `list`, `delete`).
    pub action: &'static str,
    /// The object or prefix, as a URI.
    pub location: String,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
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
    /// Names of the direct children of `prefix` (empty when it does not exist).
    ///
    /// # Errors
    /// [`StorageError`] on I/O failure.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// Deletes `prefix` and everything under it (nothing when absent).
    ///
    /// # Errors
    /// [`StorageError`] on I/O failure.
    fn delete_all(&self, prefix: &str) -> Result<(), StorageError>;
    /// The URI of `path`, for logs and summaries.
    fn uri(&self, path: &str) -> String;
}
