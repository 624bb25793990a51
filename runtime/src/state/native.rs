//! RocksDB's native checkpoint format, for incremental checkpoints: a subtask's snapshot is a
//! RocksDB checkpoint directory (hard-linked SST files plus MANIFEST, CURRENT, OPTIONS). The
//! coordinator uploads only SST files no earlier checkpoint uploaded. Restoring into the same
//! key-group range opens the files as they are; any other restore (rescale, heap backend)
//! opens them read-only and reads exactly the wanted key groups by seeking to their
//! prefixes, turning them into the canonical format.

use std::path::{Path, PathBuf};

use rocksdb::{Options, ReadOptions, DB};

use super::snapshot::SnapshotWriter;
use super::{
    split_composite, DeferredSnapshot, KeyGroupRange, KeyedSnapshot, StateError, StateInfo,
};

/// A RocksDB checkpoint of one operator subtask in a local directory.
#[derive(Debug, Clone)]
pub struct NativeSnapshot {
    /// The local checkpoint directory (deleted by whoever uploads it).
    pub dir: PathBuf,
    /// File names in `dir`.
    pub files: Vec<String>,
    /// Key groups of the subtask.
    pub range: KeyGroupRange,
    /// States (one column family each).
    pub states: Vec<StateInfo>,
}

/// What a keyed operator contributes to a checkpoint: canonical bytes, written now or later
/// (heap), or a native RocksDB checkpoint (incremental checkpoints only).
#[derive(Debug)]
pub enum KeyedSnapshotData {
    /// The canonical, backend-independent format.
    Canonical(KeyedSnapshot),
    /// The canonical format, written by the thread that stores it.
    Deferred(DeferredSnapshot),
    /// A RocksDB checkpoint directory.
    Native(NativeSnapshot),
}

/// The restored native files of one old subtask.
#[derive(Debug, Clone)]
pub struct NativeSource<'a> {
    /// Key groups of the old subtask.
    pub range: KeyGroupRange,
    /// Its states.
    pub states: &'a [StateInfo],
    /// (file name, content).
    pub files: Vec<(&'a str, &'a [u8])>,
}

fn rerr(action: &'static str) -> impl FnOnce(rocksdb::Error) -> StateError {
    move |source| StateError::Rocksdb { action, source }
}

fn local(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::LocalDir {
        path: path.display().to_string(),
        source,
    }
}

impl NativeSource<'_> {
    /// Writes the files into `dir` (created, emptied first).
    ///
    /// # Errors
    /// [`StateError::LocalDir`] on I/O failure.
    pub fn materialize(&self, dir: &Path) -> Result<(), StateError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(local(dir))?;
        }
        std::fs::create_dir_all(dir).map_err(local(dir))?;
        for (name, bytes) in &self.files {
            std::fs::write(dir.join(name), bytes).map_err(local(dir))?;
        }
        Ok(())
    }

    /// The entries of key groups `range` (within this source's range) in the canonical format,
    /// read from a read-only RocksDB over the files materialized in `scratch`.
    ///
    /// # Errors
    /// [`StateError`] when the files do not open as RocksDB or cannot be written locally.
    pub fn to_canonical(
        &self,
        range: KeyGroupRange,
        scratch: &Path,
    ) -> Result<KeyedSnapshot, StateError> {
        self.materialize(scratch)?;
        let names: Vec<&str> = self.states.iter().map(|s| s.name.as_str()).collect();
        let db = DB::open_cf_for_read_only(&Options::default(), scratch, &names, false)
            .map_err(rerr("open restored checkpoint"))?;
        let mut w = SnapshotWriter::new(range, self.states.to_vec());
        for kg in range.iter() {
            w.begin_key_group(kg);
            for (idx, state) in self.states.iter().enumerate() {
                let cf = db
                    .cf_handle(&state.name)
                    .expect("invariant: opened with this column family");
                let prefix = kg.0.to_be_bytes();
                // Key groups are below 32768, so the next prefix always exists.
                let mut opts = ReadOptions::default();
                opts.set_iterate_upper_bound((kg.0 + 1).to_be_bytes().to_vec());
                let mut it = db.raw_iterator_cf_opt(cf, opts);
                it.seek(prefix);
                while let (Some(k), Some(v)) = (it.key(), it.value()) {
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    let body = &k[2..];
                    if state.kind.is_map() {
                        if let Some((_, _, uk)) = split_composite(body) {
                            w.entry(idx as u16, &body[..body.len() - uk.len()], Some(uk), v);
                        }
                    } else {
                        w.entry(idx as u16, body, None, v);
                    }
                    it.next();
                }
                it.status().map_err(rerr("read restored checkpoint"))?;
            }
        }
        drop(db);
        let _ = std::fs::remove_dir_all(scratch);
        Ok(w.finish())
    }
}
