//! The RocksDB state backend: one RocksDB instance per operator subtask on local disk, one
//! column family per state. Row key = key group (2 bytes, big endian) + composite
//! (`u32 key length | key | u32 namespace length | namespace`) [+ map user key], so a key
//! group is a contiguous key range. Does local disk I/O through RocksDB.
//!
//! Durability comes from checkpoints, not from RocksDB: the write-ahead log is off, as in
//! Flink's RocksDB backend, and the local directory is wiped when the backend opens.
//!
//! The column family of a state with TTL has a compaction filter that drops entries whose
//! values have all expired by the backend's clock (Flink's `cleanupInRocksdbCompactFilter`), so
//! expired state leaves the disk and the incremental checkpoints without being read.

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};

use super::expiry::{purge, Purge};
use super::native::NativeSnapshot;
use super::snapshot::SnapshotWriter;
use super::{
    encode_composite, find_registered, split_composite, KeyGroup, KeyGroupRange, KeyRef,
    KeyVisitor, KeyedSnapshot, KeyedStateBackend, KeyedStateInput, MapEntries, StateError, StateId,
    StateInfo, StateKind,
};
use crate::state::typed::Clock;

/// Keyed state of one subtask in a local RocksDB instance.
pub struct RocksDbBackend {
    // Fields drop in declaration order: the database closes before its directory goes.
    db: DB,
    _dir: RemoveOnDrop,
    range: KeyGroupRange,
    states: Vec<StateInfo>,
    cf_opts: Options,
    /// The options of the column families created after opening, which RocksDB references
    /// (their compaction filters) until it closes: dropped after `db`.
    created_cf_opts: Vec<Options>,
    write_opts: WriteOptions,
    /// Options of point reads, made once (each `ReadOptions` is a C++ allocation).
    read_opts: ReadOptions,
    scratch: Vec<u8>,
    /// Processing time for the TTL compaction filter.
    clock: Clock,
}

fn rerr(action: &'static str) -> impl FnOnce(rocksdb::Error) -> StateError {
    move |source| StateError::Rocksdb { action, source }
}

impl RocksDbBackend {
    /// Opens a fresh instance in `dir` (anything already there is deleted) for `range`;
    /// `clock` (processing time, ms) decides which TTL values compaction drops.
    ///
    /// # Errors
    /// [`StateError::LocalDir`] when the directory cannot be prepared,
    /// [`StateError::Rocksdb`] when RocksDB cannot open it.
    pub fn open(dir: &Path, range: KeyGroupRange, clock: Clock) -> Result<Self, StateError> {
        let local = |source| StateError::LocalDir {
            path: dir.display().to_string(),
            source,
        };
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(local)?;
        }
        std::fs::create_dir_all(dir).map_err(local)?;
        let opts = db_options();
        let cf_opts = column_family_options();
        let db = DB::open(&opts, dir).map_err(rerr("open"))?;
        Ok(Self::with_db(db, dir, range, Vec::new(), cf_opts, clock))
    }

    fn with_db(
        db: DB,
        dir: &Path,
        range: KeyGroupRange,
        states: Vec<StateInfo>,
        cf_opts: Options,
        clock: Clock,
    ) -> Self {
        let mut write_opts = WriteOptions::default();
        write_opts.disable_wal(true);
        Self {
            db,
            _dir: RemoveOnDrop(dir.to_path_buf()),
            range,
            states,
            cf_opts,
            created_cf_opts: Vec::new(),
            write_opts,
            read_opts: ReadOptions::default(),
            scratch: Vec::with_capacity(64),
            clock,
        }
    }

    /// Opens the RocksDB checkpoint restored into `dir` (the files of one old subtask with the
    /// same key-group range) as this subtask's working instance; `clock` as for
    /// [`RocksDbBackend::open`].
    ///
    /// # Errors
    /// [`StateError::Rocksdb`] when the files do not open as a RocksDB database with `states`.
    pub fn open_restored(
        dir: &Path,
        range: KeyGroupRange,
        states: &[StateInfo],
        clock: Clock,
    ) -> Result<Self, StateError> {
        let mut opts = db_options();
        opts.create_missing_column_families(true);
        let cf_opts = column_family_options();
        let descriptors = std::iter::once(rocksdb::ColumnFamilyDescriptor::new(
            "default",
            cf_opts.clone(),
        ))
        .chain(states.iter().map(|s| {
            rocksdb::ColumnFamilyDescriptor::new(
                s.name.as_str(),
                state_options(&cf_opts, s, &clock),
            )
        }));
        let db = DB::open_cf_descriptors(&opts, dir, descriptors).map_err(rerr("open restored"))?;
        Ok(Self::with_db(
            db,
            dir,
            range,
            states.to_vec(),
            cf_opts,
            clock,
        ))
    }

    /// Compacts every column family now (compaction filters run: expired TTL values go).
    ///
    /// # Errors
    /// [`StateError::Rocksdb`] when a compaction fails.
    pub fn compact(&self) -> Result<(), StateError> {
        for s in &self.states {
            let cf = self
                .db
                .cf_handle(&s.name)
                .expect("invariant: registered states have a column family");
            self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    fn row_key(&mut self, key: KeyRef<'_>, ns: &[u8], user_key: Option<&[u8]>) {
        self.scratch.clear();
        self.scratch
            .extend_from_slice(&key.key_group.0.to_be_bytes());
        encode_composite(key.key, ns, &mut self.scratch);
        if let Some(uk) = user_key {
            self.scratch.extend_from_slice(uk);
        }
    }

    fn cf(&self, state: StateId) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(&self.states[state.0].name)
            .expect("invariant: registered states have a column family")
    }

    fn get_row(&mut self, state: StateId, out: &mut Vec<u8>) -> Result<bool, StateError> {
        let cf = self.cf(state);
        match self
            .db
            .get_pinned_cf_opt(cf, &self.scratch, &self.read_opts)
            .map_err(rerr("get"))?
        {
            Some(v) => {
                out.clear();
                out.extend_from_slice(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn put_row(&mut self, state: StateId, value: &[u8]) -> Result<(), StateError> {
        let cf = self.cf(state);
        self.db
            .put_cf_opt(cf, &self.scratch, value, &self.write_opts)
            .map_err(rerr("put"))
    }

    fn delete_row(&mut self, state: StateId) -> Result<(), StateError> {
        let cf = self.cf(state);
        self.db
            .delete_cf_opt(cf, &self.scratch, &self.write_opts)
            .map_err(rerr("delete"))
    }

    /// All rows starting with `prefix` in `state`, as (row key, value). The iterator is
    /// bounded above by the prefix's successor, so a seek never walks past the prefix over
    /// tombstones of deleted rows.
    fn scan(&self, state: StateId, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8])) {
        let mut opts = ReadOptions::default();
        if let Some(bound) = prefix_successor(prefix) {
            opts.set_iterate_upper_bound(bound);
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(state), opts);
        it.seek(prefix);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(prefix) {
                break;
            }
            f(k, v);
            it.next();
        }
    }

    fn delete_prefix(&mut self, state: StateId, prefix: &[u8]) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        let cf = self.cf(state);
        self.scan(state, prefix, &mut |k, _| batch.delete_cf(cf, k));
        self.db
            .write_opt(batch, &self.write_opts)
            .map_err(rerr("delete"))
    }
}

/// The smallest key greater than every key starting with `prefix`; `None` when there is none
/// (empty prefix or all bytes 0xFF).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_max_background_jobs(2);
    opts.set_compression_type(DBCompressionType::None);
    opts
}

fn column_family_options() -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::None);
    opts.set_write_buffer_size(128 << 20);
    opts.set_max_write_buffer_number(4);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&Cache::new_lru_cache(64 << 20));
    table.set_bloom_filter(10.0, false);
    opts.set_block_based_table_factory(&table);
    opts
}

/// The column family options of state `info`: `base`, with a compaction filter dropping
/// expired entries (by `clock`) when the state has TTL. A list whose elements have partly
/// expired stays as it is (its next read or full snapshot drops them).
fn state_options(base: &Options, info: &StateInfo, clock: &Clock) -> Options {
    let mut opts = base.clone();
    if info.ttl {
        let kind: StateKind = info.kind;
        let clock = clock.clone();
        opts.set_compaction_filter("weir-ttl", move |_level: u32, _key: &[u8], value: &[u8]| {
            match purge(kind, clock(), value) {
                Purge::Drop => rocksdb::compaction_filter::Decision::Remove,
                Purge::Keep | Purge::Rewrite(_) => rocksdb::compaction_filter::Decision::Keep,
            }
        });
    }
    opts
}

/// Deletes the backend's working directory when dropped (after the database closed).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl KeyedStateBackend for RocksDbBackend {
    fn native_snapshot(&mut self, dir: &Path) -> Result<Option<NativeSnapshot>, StateError> {
        let local = |source| StateError::LocalDir {
            path: dir.display().to_string(),
            source,
        };
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(local)?;
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(local)?;
        }
        // Flushes the memtables and hard-links every live file into `dir`.
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(rerr("create checkpoint"))?;
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir).map_err(local)? {
            files.push(e.map_err(local)?.file_name().to_string_lossy().into_owned());
        }
        files.sort();
        Ok(Some(NativeSnapshot {
            dir: dir.to_path_buf(),
            files,
            range: self.range,
            states: self.states.clone(),
        }))
    }

    fn registered(&self) -> &[StateInfo] {
        &self.states
    }

    fn register(&mut self, info: &StateInfo) -> Result<StateId, StateError> {
        if let Some(id) = find_registered(&mut self.states, info)? {
            return Ok(id);
        }
        let opts = state_options(&self.cf_opts, info, &self.clock);
        self.db
            .create_cf(&info.name, &opts)
            .map_err(rerr("create column family"))?;
        self.created_cf_opts.push(opts);
        self.states.push(StateInfo {
            migrates_from: None,
            ..info.clone()
        });
        Ok(StateId(self.states.len() - 1))
    }

    fn get(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, StateError> {
        self.row_key(key, ns, None);
        self.get_row(state, out)
    }

    fn put(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        self.row_key(key, ns, None);
        self.put_row(state, value)
    }

    fn remove(&mut self, state: StateId, key: KeyRef<'_>, ns: &[u8]) -> Result<(), StateError> {
        self.row_key(key, ns, None);
        if self.states[state.0].kind.is_map() {
            let prefix = self.scratch.clone();
            return self.delete_prefix(state, &prefix);
        }
        self.delete_row(state)
    }

    fn map_get(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        user_key: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, StateError> {
        self.row_key(key, ns, Some(user_key));
        self.get_row(state, out)
    }

    fn map_put(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        user_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        self.row_key(key, ns, Some(user_key));
        self.put_row(state, value)
    }

    fn map_remove(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        user_key: &[u8],
    ) -> Result<(), StateError> {
        self.row_key(key, ns, Some(user_key));
        self.delete_row(state)
    }

    fn map_entries(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
    ) -> Result<MapEntries, StateError> {
        self.row_key(key, ns, None);
        let prefix = self.scratch.clone();
        let mut out = Vec::new();
        self.scan(state, &prefix, &mut |k, v| {
            out.push((k[prefix.len()..].to_vec(), v.to_vec()))
        });
        Ok(out)
    }

    fn for_each_key(&mut self, state: StateId, f: KeyVisitor<'_>) -> Result<(), StateError> {
        let is_map = self.states[state.0].kind.is_map();
        let mut last: Vec<u8> = Vec::new();
        self.scan(state, &[], &mut |k, _| {
            let kg = KeyGroup(u16::from_be_bytes([k[0], k[1]]));
            if let Some((key, ns, rest)) = split_composite(&k[2..]) {
                let composite = &k[..k.len() - rest.len()];
                // a map state has one row per user key; report each (key, namespace) once
                if is_map && composite == last.as_slice() {
                    return;
                }
                last.clear();
                last.extend_from_slice(composite);
                f(kg, key, ns);
            }
        });
        Ok(())
    }

    fn snapshot(&mut self, now: i64) -> Result<KeyedSnapshot, StateError> {
        // One forward pass per column family: rows are ordered by key group, so the
        // iterators advance in lockstep, key group by key group, without seeks.
        let mut w = SnapshotWriter::new(self.range, self.states.clone());
        let mut iters: Vec<_> = (0..self.states.len())
            .map(|i| {
                let mut it = self.db.raw_iterator_cf(self.cf(StateId(i)));
                it.seek_to_first();
                it
            })
            .collect();
        for kg in self.range.iter() {
            w.begin_key_group(kg);
            for (idx, it) in iters.iter_mut().enumerate() {
                let is_map = self.states[idx].kind.is_map();
                while let (Some(k), Some(v)) = (it.key(), it.value()) {
                    let row_kg = u16::from_be_bytes([k[0], k[1]]);
                    if row_kg > kg.0 {
                        break;
                    }
                    let body = &k[2..];
                    if row_kg < kg.0 {
                        // outside the range: cannot happen, rows are written for owned groups
                    } else if is_map {
                        if let Some((_, _, uk)) = split_composite(body) {
                            let composite = &body[..body.len() - uk.len()];
                            w.live_entry(idx as u16, composite, Some(uk), v, now);
                        }
                    } else {
                        w.live_entry(idx as u16, body, None, v, now);
                    }
                    it.next();
                }
                it.status().map_err(rerr("snapshot iterate"))?;
            }
        }
        Ok(w.finish())
    }

    fn restore(&mut self, input: &KeyedStateInput<'_>) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        let mut pending: Vec<(StateId, Vec<u8>, Vec<u8>)> = Vec::new();
        input.for_each_entry(&mut |e| {
            let id = self.register(e.state)?;
            let mut row = Vec::with_capacity(2 + e.composite.len() + 8);
            row.extend_from_slice(&e.key_group.0.to_be_bytes());
            row.extend_from_slice(e.composite);
            if let Some(uk) = e.user_key {
                row.extend_from_slice(uk);
            }
            pending.push((id, row, e.value.to_vec()));
            Ok(())
        })?;
        for (chunk_no, chunk) in pending.chunks(100_000).enumerate() {
            for (id, k, v) in chunk {
                batch.put_cf(self.cf(*id), k, v);
            }
            self.db
                .write_opt(std::mem::take(&mut batch), &self.write_opts)
                .map_err(rerr("restore write"))?;
            tracing::trace!(chunk_no, "restored rows into rocksdb");
        }
        Ok(())
    }
}
