//! `file://` checkpoint storage on a local or mounted file system. Writes go to a temporary
//! name, are fsynced, and are renamed into place, so an object is complete or absent.

use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use super::{CheckpointStorage, StatsCounter, StorageError, StorageStats};

/// Checkpoint storage in a directory.
#[derive(Debug)]
pub struct LocalStorage {
    root: PathBuf,
    stats: StatsCounter,
}

impl LocalStorage {
    /// Storage rooted at `root` (created on first write).
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            stats: StatsCounter::default(),
        }
    }

    fn err(&self, action: &'static str, path: &str) -> impl FnOnce(std::io::Error) -> StorageError {
        let location = self.uri(path);
        move |source| StorageError {
            action,
            location,
            source: Box::new(source),
        }
    }
}

impl CheckpointStorage for LocalStorage {
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.stats.request(bytes.len(), 0);
        let target = self.root.join(path);
        let dir = target
            .parent()
            .expect("invariant: object paths have a parent");
        std::fs::create_dir_all(dir).map_err(self.err("write", path))?;
        let tmp = target.with_extension(format!("tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &target)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.err("write", path)(e)
        })
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match std::fs::read(self.root.join(path)) {
            Ok(b) => {
                self.stats.request(0, b.len());
                Ok(Some(b))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("read", path)(e)),
        }
    }

    fn read_range(
        &self,
        path: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = match std::fs::File::open(self.root.join(path)) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err("read", path)(e)),
        };
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.take(len).read_to_end(&mut buf))
            .map_err(self.err("read", path))?;
        self.stats.request(0, buf.len());
        Ok(Some(buf))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let dir = match std::fs::read_dir(self.root.join(prefix)) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", prefix)(e)),
        };
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(self.err("list", prefix))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<(String, u64)>, StorageError> {
        fn walk(
            dir: &std::path::Path,
            root: &std::path::Path,
            out: &mut Vec<(String, u64)>,
        ) -> std::io::Result<()> {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for e in entries {
                let e = e?;
                let meta = e.metadata()?;
                if meta.is_dir() {
                    walk(&e.path(), root, out)?;
                } else if let Ok(rel) = e.path().strip_prefix(root) {
                    out.push((rel.to_string_lossy().into_owned(), meta.len()));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.root.join(prefix), &self.root, &mut out).map_err(self.err("list", prefix))?;
        out.sort();
        Ok(out)
    }

    fn delete_all(&self, prefix: &str) -> Result<(), StorageError> {
        let p = self.root.join(prefix);
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", prefix)(e)),
        }
    }

    fn uri(&self, path: &str) -> String {
        let uri = format!("file://{}", self.root.join(path).display());
        // A directory is named without a trailing slash, as users write it.
        uri.trim_end_matches('/').to_string()
    }

    fn stats(&self) -> StorageStats {
        self.stats.get()
    }
}
