//! The run's local working directory (RocksDB files) and the lock that keeps two runs of the
//! same job on the same storage apart. File system I/O.

use std::path::{Path, PathBuf};

use super::{RunError, RunOptions};

/// The local working directory of job `job` with checkpoint storage `storage_uri`:
/// `<base>/weir-<job>-<8 hex digits of XXH3 of the URI>`, `base` defaulting to the system
/// temp directory. Its admin API URL is published next to it (see
/// [`crate::admin::discovery_file`]).
pub fn local_dir_path(base: Option<&Path>, job: &str, storage_uri: &str) -> PathBuf {
    let base = base
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let tag = xxhash_rust::xxh3::xxh3_64(storage_uri.as_bytes()) as u32;
    base.join(format!("weir-{job}-{tag:08x}"))
}

/// The local working directory of this job and storage, `<dir>/weir-<job>-<hash of the
/// storage URI>`, emptied, with an exclusive lock held on `<that>.lock` for the run so that
/// two runs of the same job on the same storage cannot interleave.
pub(super) fn lock_local_dir(
    options: &RunOptions,
    job: &str,
    storage_uri: &str,
) -> Result<(PathBuf, std::fs::File), RunError> {
    let dir = local_dir_path(options.local_state_dir.as_deref(), job, storage_uri);
    let base = dir
        .parent()
        .expect("invariant: the local dir has a parent")
        .to_path_buf();
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
