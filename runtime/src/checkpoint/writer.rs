//! Writing the state a subtask snapshotted at a barrier: a canonical file per keyed operator
//! into the snapshot's directory, or a native RocksDB checkpoint uploaded incrementally (new
//! SSTs to `<job>/shared/`, reused by later checkpoints). Runs next to the tasks (the
//! uploader thread of a local run or of a worker) so that the coordinator only collects the
//! resulting handles. I/O through [`CheckpointStorage`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::incremental::{known_files, upload_native, KnownFiles, UploadTarget};
use super::metadata::{KeyedStateFile, NativeState, SubtaskMetadata};
use crate::api::OperatorSnapshot;
use crate::runner::error_chain;
use crate::state::{KeyedSnapshotData, NativeSnapshot};
use crate::storage::paths::{join, state_file_name};
use crate::storage::CheckpointStorage;

/// Where one snapshot's files go.
#[derive(Clone)]
pub struct SnapshotTarget {
    /// The storage of the snapshot.
    pub storage: Arc<dyn CheckpointStorage>,
    /// The snapshot's directory in `storage`.
    pub dir: String,
}

/// Writes snapshots of the subtasks of one process and remembers which shared files each
/// operator subtask uploaded before (RocksDB file name -> file), so that an incremental
/// checkpoint uploads only new SSTs.
pub struct SnapshotWriter {
    job_root: String,
    run_tag: String,
    known: HashMap<(String, u32), KnownFiles>,
    /// Native states written for checkpoints not yet complete: promoted to `known` on
    /// completion (an aborted checkpoint's files are never referenced again).
    pending: BTreeMap<u64, Vec<(String, u32, KnownFiles)>>,
}

impl SnapshotWriter {
    /// A writer whose shared files go under `job_root` (`<job>` in the job's checkpoint
    /// storage); `run_tag` keeps this process's shared file names apart from other runs'.
    pub fn new(job_root: String, run_tag: String) -> Self {
        Self {
            job_root,
            run_tag,
            known: HashMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// Reuses the shared files of a restored checkpoint for an operator subtask that reopened
    /// them as they are (same key-group range): its RocksDB file names continue from there.
    pub fn seed(&mut self, uid: &str, subtask: u32, state: &NativeState) {
        self.known
            .insert((uid.to_string(), subtask), known_files(state));
    }

    /// Writes the snapshots subtask `subtask` took for checkpoint `id` into `target` and
    /// returns their metadata, per operator uid.
    ///
    /// # Errors
    /// A message naming the operator and the storage error when a write fails; the files
    /// written so far are deleted with the aborted checkpoint (or collected as unreferenced
    /// shared files).
    pub fn write(
        &mut self,
        id: u64,
        subtask: u32,
        target: &SnapshotTarget,
        snapshots: Vec<OperatorSnapshot>,
    ) -> Result<Vec<(String, SubtaskMetadata)>, String> {
        let mut metas = Vec::with_capacity(snapshots.len());
        for s in snapshots {
            let (keyed_state, native_state) = match s.keyed {
                None => (None, None),
                Some(data) => self
                    .write_keyed(id, target, &s.uid, subtask, data)
                    .map_err(|e| format!("operator `{}` subtask {subtask}: {e}", s.uid))?,
            };
            metas.push((
                s.uid,
                SubtaskMetadata {
                    subtask,
                    keyed_state,
                    operator_state: s.operator_state,
                    native_state,
                },
            ));
        }
        Ok(metas)
    }

    /// Checkpoint `id` completed: its native files are known to later checkpoints.
    pub fn complete(&mut self, id: u64) {
        let done: Vec<u64> = self.pending.range(..=id).map(|(k, _)| *k).collect();
        for k in done {
            let states = self.pending.remove(&k).unwrap_or_default();
            if k == id {
                for (uid, subtask, files) in states {
                    self.known.insert((uid, subtask), files);
                }
            }
        }
    }

    /// Checkpoint `id` was aborted: its files are never referenced.
    pub fn abort(&mut self, id: u64) {
        self.pending.remove(&id);
    }

    fn write_keyed(
        &mut self,
        id: u64,
        target: &SnapshotTarget,
        uid: &str,
        subtask: u32,
        data: KeyedSnapshotData,
    ) -> Result<(Option<KeyedStateFile>, Option<NativeState>), String> {
        let k = match data {
            KeyedSnapshotData::Canonical(k) => k,
            KeyedSnapshotData::Deferred(d) => d.serialize(),
            KeyedSnapshotData::Native(n) => {
                let result = self.upload_native(id, target, uid, subtask, &n);
                let _ = std::fs::remove_dir_all(&n.dir);
                return result.map(|native| (None, Some(native)));
            }
        };
        let name = state_file_name(uid, subtask);
        target
            .storage
            .write(&join(&target.dir, &name), &k.bytes)
            .map_err(|e| error_chain(&e))?;
        Ok((
            Some(KeyedStateFile {
                file: name,
                size: k.bytes.len() as u64,
                crc32c: crc32c::crc32c(&k.bytes),
                key_group_range: k.range,
                key_group_offsets: k.key_group_offsets,
                key_group_crc32c: k.key_group_crc32c,
                states: k.states,
                entries: k.entries,
            }),
            None,
        ))
    }

    fn upload_native(
        &mut self,
        id: u64,
        target: &SnapshotTarget,
        uid: &str,
        subtask: u32,
        n: &NativeSnapshot,
    ) -> Result<NativeState, String> {
        let upload = UploadTarget {
            job_root: &self.job_root,
            checkpoint_dir: &target.dir,
            uid,
            subtask,
            run_tag: &self.run_tag,
        };
        let known = self.known.get(&(uid.to_string(), subtask));
        let (state, _uploaded) = upload_native(target.storage.as_ref(), upload, n, known)
            .map_err(|e| error_chain(&e))?;
        self.pending
            .entry(id)
            .or_default()
            .push((uid.to_string(), subtask, known_files(&state)));
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::NativeFile;
    use crate::state::KeyGroupRange;

    fn state(names: &[&str]) -> NativeState {
        NativeState {
            key_group_range: KeyGroupRange { start: 0, end: 1 },
            states: Vec::new(),
            files: names
                .iter()
                .map(|n| NativeFile {
                    name: n.to_string(),
                    path: format!("shared/{n}"),
                    shared: true,
                    size: 1,
                    crc32c: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn only_completed_checkpoints_make_files_known() {
        let mut w = SnapshotWriter::new("job".into(), "t".into());
        w.pending
            .insert(3, vec![("op".into(), 0, known_files(&state(&["a.sst"])))]);
        w.pending
            .insert(4, vec![("op".into(), 0, known_files(&state(&["b.sst"])))]);
        w.abort(4);
        w.complete(3);
        let known = &w.known[&("op".to_string(), 0)];
        assert!(known.contains_key("a.sst"));
        assert!(!known.contains_key("b.sst"));
        assert!(w.pending.is_empty());
    }
}
