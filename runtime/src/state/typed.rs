//! Typed keyed state handles (value, list, map, reducing, aggregating) over a
//! [`KeyedStateBackend`], with optional time-to-live. Pure apart from the injected clock.
//!
//! Values are encoded with postcard (a stable, documented format). With TTL, every stored
//! value is prefixed by its expiry time (i64 big endian, ms since the epoch, processing
//! time); it is set when the value is created or written (Flink's `OnCreateAndWrite`), and
//! also when it is read with [`TtlUpdate::OnReadAndWrite`]. An expired value is never returned
//! (Flink's `NeverReturnExpired`) and a read that finds one removes it (Flink's cleanup on
//! read); values nobody reads again stay until their key is cleared.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    KeyGroup, KeyRef, KeyedSnapshotData, KeyedStateBackend, StateError, StateId, StateInfo,
    StateKind,
};
use crate::api::AggregateFunction;

/// Time-to-live of a state's values (Flink's `StateTtlConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTtl {
    /// Lifetime of a value after its last update, in milliseconds of processing time.
    pub ttl_ms: i64,
    /// What restarts the lifetime.
    pub update: TtlUpdate,
}

/// What restarts a value's time-to-live (Flink's `StateTtlConfig.UpdateType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TtlUpdate {
    /// Creating or writing the value.
    #[default]
    OnCreateAndWrite,
    /// Also reading it.
    OnReadAndWrite,
}

impl StateTtl {
    /// Values live `ttl_ms` ms of processing time after they were created or written.
    pub const fn new(ttl_ms: i64) -> Self {
        Self {
            ttl_ms,
            update: TtlUpdate::OnCreateAndWrite,
        }
    }

    /// Reading a value also restarts its lifetime.
    pub const fn update_on_read_and_write(mut self) -> Self {
        self.update = TtlUpdate::OnReadAndWrite;
        self
    }
}

/// What a read found in one stored value (with its TTL stamp, if any).
enum Stamp {
    /// No TTL, or not expired and not to be refreshed.
    Live,
    /// Not expired; its stamp must be restarted (read-and-write TTL).
    Refresh,
    /// Expired: never returned, removed.
    Expired,
}

/// Turns one stored value (without its TTL stamp) into another, or says why it cannot.
pub(crate) type ValueRewrite = dyn Fn(&[u8]) -> Result<Vec<u8>, String>;

/// Processing-time clock in ms since the epoch; injected so tests control time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// A keyed operator's view of its state backend: the backend plus the current key.
pub struct KeyedStateStore {
    backend: Box<dyn KeyedStateBackend>,
    key_group: KeyGroup,
    key: Vec<u8>,
    clock: Clock,
    raw: Vec<u8>,
    enc: Vec<u8>,
    native_dir: Option<std::path::PathBuf>,
}

impl KeyedStateStore {
    /// Wraps a backend; `clock` gives processing time for TTL.
    pub fn new(backend: Box<dyn KeyedStateBackend>, clock: Clock) -> Self {
        Self {
            backend,
            key_group: KeyGroup(0),
            key: Vec::new(),
            clock,
            raw: Vec::with_capacity(64),
            enc: Vec::with_capacity(64),
            native_dir: None,
        }
    }

    /// Takes checkpoints (not savepoints) in the backend's native format under `dir`, when
    /// the backend has one (incremental RocksDB checkpoints).
    pub fn with_native_snapshots(mut self, dir: std::path::PathBuf) -> Self {
        self.native_dir = Some(dir);
        self
    }

    /// Snapshots the state for checkpoint `id`: natively when enabled and `native` (a
    /// checkpoint, not a savepoint), otherwise in the canonical format, deferred when the
    /// backend can (heap: copy-on-write, serialized by the uploader thread).
    ///
    /// # Errors
    /// Backend failures.
    pub fn snapshot(&mut self, id: u64, native: bool) -> Result<KeyedSnapshotData, StateError> {
        if let (true, Some(base)) = (native, &self.native_dir) {
            if let Some(n) = self
                .backend
                .native_snapshot(&base.join(format!("chk-{id}")))?
            {
                return Ok(KeyedSnapshotData::Native(n));
            }
        }
        let now = (self.clock)();
        Ok(match self.backend.snapshot_deferred(now)? {
            Some(deferred) => KeyedSnapshotData::Deferred(deferred),
            None => KeyedSnapshotData::Canonical(self.backend.snapshot(now)?),
        })
    }

    /// Sets the key that subsequent state accesses apply to.
    pub fn set_current_key(&mut self, key_group: KeyGroup, key: &[u8]) {
        self.key_group = key_group;
        self.key.clear();
        self.key.extend_from_slice(key);
    }

    /// The backend, for snapshots, restores and iteration.
    pub fn backend(&mut self) -> &mut dyn KeyedStateBackend {
        self.backend.as_mut()
    }

    fn register(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<StateTtl>,
    ) -> Result<StateId, StateError> {
        self.backend
            .register(&StateInfo::new(name, kind).with_ttl(ttl.is_some()))
    }

    /// Registers (or finds, after a restore) the state `info` with `ttl` and returns its typed
    /// handle `H`; the declared type and version of `info` are what the next snapshot records.
    ///
    /// # Errors
    /// [`StateError::KindMismatch`] if the name exists with another kind.
    pub(crate) fn register_typed<H: FromCell>(
        &mut self,
        info: &StateInfo,
        ttl: Option<StateTtl>,
    ) -> Result<H, StateError> {
        debug_assert_eq!(
            info.ttl,
            ttl.is_some(),
            "the descriptor's info records its TTL"
        );
        let id = self.backend.register(info)?;
        Ok(H::from_cell(Cell::new(id, &info.name, ttl)))
    }

    /// Rewrites every value of state `id` (all key groups, keys and namespaces of this
    /// backend) with `migrate`, keeping each value's TTL stamp when `ttl` is set; returns the
    /// number of values rewritten. Used to migrate restored state to a new version.
    ///
    /// # Errors
    /// Backend failures; [`StateError::Migration`] with `migrate`'s message.
    pub(crate) fn rewrite_values(
        &mut self,
        id: StateId,
        ttl: bool,
        from: u32,
        migrate: &ValueRewrite,
    ) -> Result<u64, StateError> {
        let mut rows: Vec<(KeyGroup, Vec<u8>, Vec<u8>)> = Vec::new();
        self.backend.for_each_key(id, &mut |kg, key, ns| {
            rows.push((kg, key.to_vec(), ns.to_vec()));
        })?;
        let name = self.backend.registered()[id.0].name.clone();
        let mut raw = Vec::new();
        for (kg, key, ns) in &rows {
            let key = KeyRef {
                key_group: *kg,
                key,
            };
            if !self.backend.get(id, key, ns, &mut raw)? {
                continue;
            }
            let split = if ttl {
                super::expiry::STAMP_LEN.min(raw.len())
            } else {
                0
            };
            let mut value = raw[..split].to_vec();
            value.extend(
                migrate(&raw[split..]).map_err(|message| StateError::Migration {
                    state: name.clone(),
                    from,
                    message,
                })?,
            );
            self.backend.put(id, key, ns, &value)?;
        }
        Ok(rows.len() as u64)
    }

    /// Registers (or finds, after a restore) a value state.
    ///
    /// # Errors
    /// [`StateError::KindMismatch`] if `name` exists with another kind.
    pub fn value_state<T>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
    ) -> Result<ValueState<T>, StateError> {
        Ok(ValueState {
            cell: Cell::new(self.register(name, StateKind::Value, ttl)?, name, ttl),
            _t: PhantomData,
        })
    }

    /// Registers (or finds) a list state.
    ///
    /// # Errors
    /// [`StateError::KindMismatch`] if `name` exists with another kind.
    pub fn list_state<T>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
    ) -> Result<ListState<T>, StateError> {
        Ok(ListState {
            cell: Cell::new(self.register(name, StateKind::List, ttl)?, name, ttl),
            _t: PhantomData,
        })
    }

    /// Registers (or finds) a map state.
    ///
    /// # Errors
    /// [`StateError::KindMismatch`] if `name` exists with another kind.
    pub fn map_state<K, V>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
    ) -> Result<MapState<K, V>, StateError> {
        Ok(MapState {
            cell: Cell::new(self.register(name, StateKind::Map, ttl)?, name, ttl),
            _t: PhantomData,
        })
    }

    /// Registers (or finds) a reducing state folding values with `reduce`.
    ///
    /// # Errors
    /// [`StateError::KindMismatch`] if `name` exists with another kind.
    pub fn reducing_state<T>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
        reduce: impl Fn(T, T) -> T + Send + Sync + 'static,
    ) -> Result<ReducingState<T>, StateError> {
        Ok(ReducingState {
            cell: Cell::new(self.register(name, StateKind::Reducing, ttl)?, name, ttl),
            reduce: Arc::new(reduce),
        })
    }

    /// Registers (or finds) an aggregating state folding inputs into `A::Acc`.
    ///
    /// # Errors
    /// [`StateError::KindMismatch`] if `name` exists with another kind.
    pub fn aggregating_state<A: AggregateFunction>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
        function: Arc<A>,
    ) -> Result<AggregatingState<A>, StateError> {
        Ok(AggregatingState {
            cell: Cell::new(self.register(name, StateKind::Aggregating, ttl)?, name, ttl),
            function,
        })
    }
}

/// A typed handle made from a registered state.
pub(crate) trait FromCell: Sized {
    fn from_cell(cell: Cell) -> Self;
}

impl<T> FromCell for ValueState<T> {
    fn from_cell(cell: Cell) -> Self {
        ValueState {
            cell,
            _t: PhantomData,
        }
    }
}

impl<T> FromCell for ListState<T> {
    fn from_cell(cell: Cell) -> Self {
        ListState {
            cell,
            _t: PhantomData,
        }
    }
}

impl<K, V> FromCell for MapState<K, V> {
    fn from_cell(cell: Cell) -> Self {
        MapState {
            cell,
            _t: PhantomData,
        }
    }
}

impl<T: 'static> FromCell for ReducingState<T> {
    fn from_cell(cell: Cell) -> Self {
        ReducingState {
            cell,
            reduce: Arc::new(|_, latest| latest),
        }
    }
}

/// What every typed handle shares: the state id, its name (for errors) and its TTL.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    id: StateId,
    name: Arc<str>,
    ttl: Option<StateTtl>,
}

impl Cell {
    fn new(id: StateId, name: &str, ttl: Option<StateTtl>) -> Self {
        Self {
            id,
            name: name.into(),
            ttl,
        }
    }

    fn codec(&self, source: postcard::Error) -> StateError {
        StateError::Codec {
            state: self.name.to_string(),
            source,
        }
    }

    /// Appends the TTL stamp (if any) and `value` to `out`.
    fn encode<T: Serialize>(
        &self,
        now: i64,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        if let Some(ttl) = self.ttl {
            out.extend_from_slice(&(now.saturating_add(ttl.ttl_ms)).to_be_bytes());
        }
        let enc = postcard::to_extend(value, std::mem::take(out)).map_err(|e| self.codec(e))?;
        *out = enc;
        Ok(())
    }

    /// What a read at `now` does with `bytes` (a stored value with its stamp).
    fn stamp(&self, now: i64, bytes: &[u8]) -> Stamp {
        let Some(ttl) = self.ttl else {
            return Stamp::Live;
        };
        if super::expiry::expiry(bytes) <= now {
            Stamp::Expired
        } else if ttl.update == TtlUpdate::OnReadAndWrite {
            Stamp::Refresh
        } else {
            Stamp::Live
        }
    }

    /// Restarts the lifetime of the stored value `bytes` at `now`.
    fn restamp(&self, now: i64, bytes: &mut [u8]) {
        if let (Some(ttl), Some(stamp)) = (self.ttl, bytes.get_mut(..8)) {
            stamp.copy_from_slice(&now.saturating_add(ttl.ttl_ms).to_be_bytes());
        }
    }

    /// Decodes a stored value; `None` when it has expired.
    fn decode<T: DeserializeOwned>(&self, now: i64, bytes: &[u8]) -> Result<Option<T>, StateError> {
        let body = match self.ttl {
            Some(_) => {
                if super::expiry::expiry(bytes) <= now {
                    return Ok(None);
                }
                &bytes[super::expiry::STAMP_LEN..]
            }
            None => bytes,
        };
        postcard::from_bytes(body)
            .map(Some)
            .map_err(|e| self.codec(e))
    }

    fn get<T: DeserializeOwned>(
        &self,
        s: &mut KeyedStateStore,
        ns: &[u8],
    ) -> Result<Option<T>, StateError> {
        let key = KeyRef {
            key_group: s.key_group,
            key: &s.key,
        };
        if !s.backend.get(self.id, key, ns, &mut s.raw)? {
            return Ok(None);
        }
        let now = (s.clock)();
        match self.stamp(now, &s.raw) {
            Stamp::Live => {}
            Stamp::Refresh => {
                self.restamp(now, &mut s.raw);
                s.backend.put(self.id, key, ns, &s.raw)?;
            }
            Stamp::Expired => {
                s.backend.remove(self.id, key, ns)?;
                return Ok(None);
            }
        }
        self.decode(now, &s.raw)
    }

    fn put<T: Serialize>(
        &self,
        s: &mut KeyedStateStore,
        ns: &[u8],
        value: &T,
    ) -> Result<(), StateError> {
        s.enc.clear();
        let mut enc = std::mem::take(&mut s.enc);
        self.encode((s.clock)(), value, &mut enc)?;
        let key = KeyRef {
            key_group: s.key_group,
            key: &s.key,
        };
        let r = s.backend.put(self.id, key, ns, &enc);
        s.enc = enc;
        r
    }

    fn clear(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<(), StateError> {
        let key = KeyRef {
            key_group: s.key_group,
            key: &s.key,
        };
        s.backend.remove(self.id, key, ns)
    }
}

/// One value per key and namespace (Flink's `ValueState`).
pub struct ValueState<T> {
    cell: Cell,
    _t: PhantomData<fn() -> T>,
}

impl<T> ValueState<T> {
    /// The state's id in its backend.
    pub(crate) fn id(&self) -> StateId {
        self.cell.id
    }
}

impl<T: Serialize + DeserializeOwned> ValueState<T> {
    /// The current key's value in `ns`, if set and not expired.
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn get(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<Option<T>, StateError> {
        self.cell.get(s, ns)
    }

    /// Sets the current key's value in `ns` (and restarts its TTL).
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn update(&self, s: &mut KeyedStateStore, ns: &[u8], value: &T) -> Result<(), StateError> {
        self.cell.put(s, ns, value)
    }

    /// Removes the current key's value in `ns`.
    ///
    /// # Errors
    /// Backend failures.
    pub fn clear(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<(), StateError> {
        self.cell.clear(s, ns)
    }
}

/// A list of values per key and namespace (Flink's `ListState`). Stored as a sequence of
/// `u32 BE length | element` (element = TTL stamp + postcard value), so `add` appends without
/// decoding the list; each element carries its own TTL.
pub struct ListState<T> {
    cell: Cell,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> ListState<T> {
    /// The current key's unexpired elements in `ns`, in insertion order (empty if none).
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn get(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<Vec<T>, StateError> {
        let key = KeyRef {
            key_group: s.key_group,
            key: &s.key,
        };
        if !s.backend.get(self.cell.id, key, ns, &mut s.raw)? {
            return Ok(Vec::new());
        }
        let now = (s.clock)();
        let mut out = Vec::new();
        // The list as it stays: without expired elements, with restarted stamps.
        let mut kept = Vec::new();
        let mut changed = false;
        let mut b = s.raw.as_slice();
        while b.len() >= 4 {
            let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let Some(el) = b.get(4..4 + n) else { break };
            b = &b[4 + n..];
            let mut el = el.to_vec();
            match self.cell.stamp(now, &el) {
                Stamp::Expired => {
                    changed = true;
                    continue;
                }
                Stamp::Refresh => {
                    self.cell.restamp(now, &mut el);
                    changed = true;
                }
                Stamp::Live => {}
            }
            if let Some(v) = self.cell.decode(now, &el)? {
                out.push(v);
            }
            kept.extend_from_slice(&(el.len() as u32).to_be_bytes());
            kept.extend_from_slice(&el);
        }
        if changed {
            let key = KeyRef {
                key_group: s.key_group,
                key: &s.key,
            };
            if kept.is_empty() {
                s.backend.remove(self.cell.id, key, ns)?;
            } else {
                s.backend.put(self.cell.id, key, ns, &kept)?;
            }
        }
        Ok(out)
    }

    /// Appends `value` to the current key's list in `ns`.
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn add(&self, s: &mut KeyedStateStore, ns: &[u8], value: &T) -> Result<(), StateError> {
        let key = KeyRef {
            key_group: s.key_group,
            key: &s.key,
        };
        let mut raw = std::mem::take(&mut s.raw);
        if !s.backend.get(self.cell.id, key, ns, &mut raw)? {
            raw.clear();
        }
        let mut el = Vec::new();
        self.cell.encode((s.clock)(), value, &mut el)?;
        raw.extend_from_slice(&(el.len() as u32).to_be_bytes());
        raw.extend_from_slice(&el);
        let key = KeyRef {
            key_group: s.key_group,
            key: &s.key,
        };
        let r = s.backend.put(self.cell.id, key, ns, &raw);
        s.raw = raw;
        r
    }

    /// Removes the current key's list in `ns`.
    ///
    /// # Errors
    /// Backend failures.
    pub fn clear(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<(), StateError> {
        self.cell.clear(s, ns)
    }
}

/// A map per key and namespace (Flink's `MapState`); user keys are postcard-encoded and
/// iterate in the order of their encoded bytes.
pub struct MapState<K, V> {
    cell: Cell,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<K, V> {
    fn user_key(&self, k: &K) -> Result<Vec<u8>, StateError> {
        postcard::to_stdvec(k).map_err(|e| self.cell.codec(e))
    }

    /// The value of `user_key` in the current key's map in `ns`, if present and unexpired.
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn get(
        &self,
        s: &mut KeyedStateStore,
        ns: &[u8],
        user_key: &K,
    ) -> Result<Option<V>, StateError> {
        let uk = self.user_key(user_key)?;
        let key = KeyRef {
            key_group: s.key_group,
            key: &s.key,
        };
        if !s.backend.map_get(self.cell.id, key, ns, &uk, &mut s.raw)? {
            return Ok(None);
        }
        let now = (s.clock)();
        match self.cell.stamp(now, &s.raw) {
            Stamp::Live => {}
            Stamp::Refresh => {
                self.cell.restamp(now, &mut s.raw);
                s.backend.map_put(self.cell.id, key, ns, &uk, &s.raw)?;
            }
            Stamp::Expired => {
                s.backend.map_remove(self.cell.id, key, ns, &uk)?;
                return Ok(None);
            }
        }
        self.cell.decode(now, &s.raw)
    }

    /// Sets `user_key` to `value` in the current key's map in `ns`.
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn put(
        &self,
        s: &mut KeyedStateStore,
        ns: &[u8],
        user_key: &K,
        value: &V,
    ) -> Result<(), StateError> {
        let uk = self.user_key(user_key)?;
        let mut enc = Vec::new();
        self.cell.encode((s.clock)(), value, &mut enc)?;
        let key = KeyRef {
            key_group: s.key_group,
            key: &s.key,
        };
        s.backend.map_put(self.cell.id, key, ns, &uk, &enc)
    }

    /// Removes `user_key` from the current key's map in `ns`.
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn remove(
        &self,
        s: &mut KeyedStateStore,
        ns: &[u8],
        user_key: &K,
    ) -> Result<(), StateError> {
        let uk = self.user_key(user_key)?;
        let key = KeyRef {
            key_group: s.key_group,
            key: &s.key,
        };
        s.backend.map_remove(self.cell.id, key, ns, &uk)
    }

    /// All unexpired entries of the current key's map in `ns`.
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn entries(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<Vec<(K, V)>, StateError> {
        let key = KeyRef {
            key_group: s.key_group,
            key: &s.key,
        };
        let now = (s.clock)();
        let mut out = Vec::new();
        for (uk, mut v) in s.backend.map_entries(self.cell.id, key, ns)? {
            let key = KeyRef {
                key_group: s.key_group,
                key: &s.key,
            };
            match self.cell.stamp(now, &v) {
                Stamp::Live => {}
                Stamp::Refresh => {
                    self.cell.restamp(now, &mut v);
                    s.backend.map_put(self.cell.id, key, ns, &uk, &v)?;
                }
                Stamp::Expired => {
                    s.backend.map_remove(self.cell.id, key, ns, &uk)?;
                    continue;
                }
            }
            if let Some(v) = self.cell.decode(now, &v)? {
                out.push((
                    postcard::from_bytes(&uk).map_err(|e| self.cell.codec(e))?,
                    v,
                ));
            }
        }
        Ok(out)
    }

    /// Removes the current key's whole map in `ns`.
    ///
    /// # Errors
    /// Backend failures.
    pub fn clear(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<(), StateError> {
        self.cell.clear(s, ns)
    }
}

/// One value per key and namespace, folded with a reduce function (Flink's `ReducingState`).
pub struct ReducingState<T> {
    cell: Cell,
    reduce: Arc<dyn Fn(T, T) -> T + Send + Sync>,
}

impl<T: 'static> ReducingState<T> {
    /// Folds with `reduce` from now on.
    pub(crate) fn set_reduce(&mut self, reduce: fn(T, T) -> T) {
        self.reduce = Arc::new(reduce);
    }
}

impl<T: Serialize + DeserializeOwned> ReducingState<T> {
    /// The current key's folded value in `ns`.
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn get(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<Option<T>, StateError> {
        self.cell.get(s, ns)
    }

    /// Folds `value` into the current key's value in `ns`.
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn add(&self, s: &mut KeyedStateStore, ns: &[u8], value: T) -> Result<(), StateError> {
        let next = match self.cell.get(s, ns)? {
            Some(old) => (self.reduce)(old, value),
            None => value,
        };
        self.cell.put(s, ns, &next)
    }

    /// Removes the current key's value in `ns`.
    ///
    /// # Errors
    /// Backend failures.
    pub fn clear(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<(), StateError> {
        self.cell.clear(s, ns)
    }
}

/// One accumulator per key and namespace, folded with an [`AggregateFunction`] (Flink's
/// `AggregatingState`).
pub struct AggregatingState<A: AggregateFunction> {
    cell: Cell,
    function: Arc<A>,
}

impl<A: AggregateFunction> AggregatingState<A> {
    /// The state's id in its backend, for iteration.
    pub fn id(&self) -> StateId {
        self.cell.id
    }

    /// Adds `input` to the current key's accumulator in `ns`; returns true when the
    /// accumulator was created by this call.
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn add(
        &self,
        s: &mut KeyedStateStore,
        ns: &[u8],
        input: &A::In,
    ) -> Result<bool, StateError> {
        let (mut acc, created) = match self.cell.get::<A::Acc>(s, ns)? {
            Some(acc) => (acc, false),
            None => (self.function.create_accumulator(), true),
        };
        self.function.add(input, &mut acc);
        self.cell.put(s, ns, &acc)?;
        Ok(created)
    }

    /// Creates the current key's accumulator in `ns` from `input` without reading the
    /// backend: for callers that know no accumulator exists (it would be overwritten).
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn add_to_new(
        &self,
        s: &mut KeyedStateStore,
        ns: &[u8],
        input: &A::In,
    ) -> Result<(), StateError> {
        let mut acc = self.function.create_accumulator();
        self.function.add(input, &mut acc);
        self.cell.put(s, ns, &acc)
    }

    /// The current key's result in `ns`, if it has an accumulator.
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn get(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<Option<A::Out>, StateError> {
        Ok(self
            .cell
            .get::<A::Acc>(s, ns)?
            .map(|acc| self.function.get_result(&acc)))
    }

    /// The current key's accumulator in `ns`, if it has one (to merge with others before
    /// taking a result, as sliced windows do).
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn accumulator(
        &self,
        s: &mut KeyedStateStore,
        ns: &[u8],
    ) -> Result<Option<A::Acc>, StateError> {
        self.cell.get::<A::Acc>(s, ns)
    }

    /// Removes the current key's accumulator in `ns`.
    ///
    /// # Errors
    /// Backend failures.
    pub fn clear(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<(), StateError> {
        self.cell.clear(s, ns)
    }

    /// Moves the current key's accumulator in `from` into the one in `into` (merged with
    /// [`AggregateFunction::merge`] when both exist) and removes it from `from`.
    ///
    /// # Errors
    /// Backend or codec failures.
    pub fn merge_namespaces(
        &self,
        s: &mut KeyedStateStore,
        from: &[u8],
        into: &[u8],
    ) -> Result<(), StateError> {
        let Some(moved) = self.cell.get::<A::Acc>(s, from)? else {
            return Ok(());
        };
        let merged = match self.cell.get::<A::Acc>(s, into)? {
            Some(existing) => self.function.merge(existing, moved),
            None => moved,
        };
        self.cell.put(s, into, &merged)?;
        self.cell.clear(s, from)
    }
}
