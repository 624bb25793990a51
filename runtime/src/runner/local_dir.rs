//! The run's local working directory (RocksDB files) and the lock that keeps two runs of the
//! same job on the same storage apart. File system I/O.

use std::path::PathBuf;

use super::{RunError, RunOptions};

/// The local working directory of this job and storage, `<dir>/weir-<job>-<hash of the
/// storage URI>`, emptied, with an exclusive lock held on `<that>.lock` for the run so that
/// two runs of the same job on the same storage cannot interleave.
pub(super) fn lock_local_dir(
    options: &RunOptions,
    job: &str,
    storage_uri: &str,
) -> Result<(PathBuf, std::fs::File), RunError> {
    let base = options
        .local_state_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let tag = xxhash_rust::xxh3::xxh3_64(storage_uri.as_bytes()) as u32;
    let dir = base.join(format!("weir-{job}-{tag:08x}"));
    let lock_path = dir.with_extension("lock");
    let io = |source| RunError::LocalDir {
        path: lock_path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&base).map_err(io)?;
    let lock = std::fs::File::create(&lock_path).map_err(io)?;
    if lock.try_lock().is_err() {
        return Err(RunError::AlreadyRunning {
            job: job.to_string(),
            storage: storage_uri.to_string(),
        });
    }
    // Working files of an earlier run of this job (killed before it could clean up).
    let _ = std::fs::remove_dir_all(&dir);
    Ok((dir, lock))
}
