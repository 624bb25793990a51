//! Checkpoint storage in memory: for unit tests of what drives storage (the checkpoint
//! coordinator, retention, restore), without files or servers. Nothing survives the process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{CheckpointStorage, StatsCounter, StorageError, StorageStats};

/// Objects in a map from path to bytes; safe to share between threads.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    stats: StatsCounter,
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every object's path, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while holding the lock leaves the map consistent (every operation is one
        // map call), so a poisoned lock is still usable.
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `prefix` as a directory: empty, or ending in `/`.
fn dir(prefix: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

impl CheckpointStorage for MemoryStorage {
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.stats.request(bytes.len(), 0);
        self.lock()
            .insert(path.trim_matches('/').to_string(), bytes.to_vec());
        Ok(())
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let found = self.lock().get(path.trim_matches('/')).cloned();
        self.stats.request(0, found.as_ref().map_or(0, |b| b.len()));
        Ok(found)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.stats.request(0, 0);
        let d = dir(prefix);
        let mut names: Vec<String> = self
            .lock()
            .keys()
            .filter_map(|k| k.strip_prefix(&d))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .collect();
        names.dedup();
        Ok(names)
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<(String, u64)>, StorageError> {
        self.stats.request(0, 0);
        let d = dir(prefix);
        Ok(self
            .lock()
            .iter()
            .filter(|(k, _)| k.starts_with(&d))
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect())
    }

    fn delete_all(&self, prefix: &str) -> Result<(), StorageError> {
        self.stats.request(0, 0);
        let exact = prefix.trim_matches('/').to_string();
        let d = dir(prefix);
        self.lock()
            .retain(|k, _| *k != exact && !(k.starts_with(&d) || d.is_empty()));
        Ok(())
    }

    fn uri(&self, path: &str) -> String {
        format!("memory:///{}", path.trim_matches('/'))
    }

    fn stats(&self) -> StorageStats {
        self.stats.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_direct_children_and_deletes_prefixes() {
        let s = MemoryStorage::new();
        s.write("job/checkpoints/chk-1/_metadata", b"m").unwrap();
        s.write("job/checkpoints/chk-1/a.state", b"aa").unwrap();
        s.write("job/checkpoints/chk-2/a.state", b"a").unwrap();
        s.write("job/_lineage", b"x").unwrap();
        assert_eq!(s.list("job/checkpoints").unwrap(), ["chk-1", "chk-2"]);
        assert_eq!(s.list("job").unwrap(), ["_lineage", "checkpoints"]);
        assert_eq!(s.list_objects("job/checkpoints/chk-1").unwrap().len(), 2);
        assert_eq!(s.read("job/_lineage").unwrap().as_deref(), Some(&b"x"[..]));
        s.delete_all("job/checkpoints/chk-1").unwrap();
        assert_eq!(s.list("job/checkpoints").unwrap(), ["chk-2"]);
        s.delete_all("job/_lineage").unwrap();
        assert_eq!(s.read("job/_lineage").unwrap(), None);
        assert!(s.list("nothing").unwrap().is_empty());
    }
}
