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
//!
//! Point reads and writes go through a write-back [`RowCache`] of 4 MiB per instance: a row
//! read or written lately is answered from memory, and RocksDB gets the dirty rows in one
//! batch when the cache is full, before every iteration (map entries, prefix deletes, key
//! visits) and before every snapshot, so what a checkpoint holds is what the job wrote.
//!
//! Memory: at most two 32 MiB memtables per column family, and one 128 MiB block cache shared
//! by every instance of the process.

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};

use super::expiry::{purge, Purge};
use super::native::NativeSnapshot;
use super::row_cache::{Lookup, RowCache};
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
    /// Rows read or written lately; RocksDB gets the dirty ones at flushes.
    cache: RowCache,
}

/// The budget of each backend's [`RowCache`], bytes.
const ROW_CACHE_BYTES: usize = 4 << 20;

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
            cache: RowCache::new(ROW_CACHE_BYTES),
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
    pub fn compact(&mut self) -> Result<(), StateError> {
        self.flush_cache(None, &[])?;
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

    /// Reads the row in `scratch`: from the cache, else from RocksDB (then cached).
    fn get_row(&mut self, state: StateId, out: &mut Vec<u8>) -> Result<bool, StateError> {
        match self.cache.lookup(state.0, &self.scratch) {
            Lookup::Present(v) => {
                out.clear();
                out.extend_from_slice(v);
                return Ok(true);
            }
            Lookup::Absent => return Ok(false),
            Lookup::Miss => {}
        }
        let cf = self.cf(state);
        let found = match self
            .db
            .get_pinned_cf_opt(cf, &self.scratch, &self.read_opts)
            .map_err(rerr("get"))?
        {
            Some(v) => {
                out.clear();
                out.extend_from_slice(&v);
                true
            }
            None => false,
        };
        self.cache
            .fill(state.0, &self.scratch, found.then_some(out.as_slice()));
        self.check_cache_budget()?;
        Ok(found)
    }

    /// Writes the row in `scratch` (`None`: deletes it) into the cache.
    fn write_row(&mut self, state: StateId, value: Option<&[u8]>) -> Result<(), StateError> {
        self.cache.write(state.0, &self.scratch, value);
        self.check_cache_budget()
    }

    /// Flushes and empties the cache once it is over its budget.
    fn check_cache_budget(&mut self) -> Result<(), StateError> {
        if self.cache.over_budget() {
            self.flush_cache(None, &[])?;
            self.cache.clear();
        }
        Ok(())
    }

    /// Writes the cache's dirty rows of `state` (all states when `None`) under `prefix` to
    /// RocksDB in one batch; they stay cached, clean.
    fn flush_cache(&mut self, state: Option<StateId>, prefix: &[u8]) -> Result<(), StateError> {
        if !self.cache.has_dirty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        let (db, states) = (&self.db, &self.states);
        self.cache
            .take_dirty(state.map(|s| s.0), prefix, &mut |s, row, value| {
                let cf = db
                    .cf_handle(&states[s].name)
                    .expect("invariant: registered states have a column family");
                match value {
                    Some(v) => batch.put_cf(cf, row, v),
                    None => batch.delete_cf(cf, row),
                }
            });
        self.db
            .write_opt(batch, &self.write_opts)
            .map_err(rerr("write cached rows"))
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
        self.cache.discard(state.0, prefix);
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

/// The write buffer (memtable) size of each column family, bytes (Flink's default is 64 MiB
/// with its managed memory sharing them; smaller ones here flush sooner and bound memory per
/// state, measured with Nexmark q4, q9, q16, q19 and q20).
const WRITE_BUFFER_BYTES: usize = 32 << 20;
/// Memtables per column family: the one written and one being flushed.
const WRITE_BUFFERS: i32 = 2;
/// The block cache all RocksDB instances of a process share, bytes.
const BLOCK_CACHE_BYTES: usize = 128 << 20;

/// The process's block cache, made on first use: shared by every instance and column family,
/// so the memory it takes does not grow with the number of stateful subtasks.
fn shared_block_cache() -> &'static Cache {
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| Cache::new_lru_cache(BLOCK_CACHE_BYTES))
}

fn column_family_options() -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::None);
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    opts.set_max_write_buffer_number(WRITE_BUFFERS);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(shared_block_cache());
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
        self.flush_cache(None, &[])?;
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
        self.write_row(state, Some(value))
    }

    fn remove(&mut self, state: StateId, key: KeyRef<'_>, ns: &[u8]) -> Result<(), StateError> {
        self.row_key(key, ns, None);
        if self.states[state.0].kind.is_map() {
            let prefix = self.scratch.clone();
            return self.delete_prefix(state, &prefix);
        }
        self.write_row(state, None)
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
        self.write_row(state, Some(value))
    }

    fn map_remove(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        user_key: &[u8],
    ) -> Result<(), StateError> {
        self.row_key(key, ns, Some(user_key));
        self.write_row(state, None)
    }

    fn map_entries(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
    ) -> Result<MapEntries, StateError> {
        self.row_key(key, ns, None);
        let prefix = self.scratch.clone();
        self.flush_cache(Some(state), &prefix)?;
        let mut out = Vec::new();
        self.scan(state, &prefix, &mut |k, v| {
            out.push((k[prefix.len()..].to_vec(), v.to_vec()))
        });
        Ok(out)
    }

    fn for_each_key(&mut self, state: StateId, f: KeyVisitor<'_>) -> Result<(), StateError> {
        self.flush_cache(Some(state), &[])?;
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
        self.flush_cache(None, &[])?;
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
        self.flush_cache(None, &[])?;
        self.cache.clear();
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
