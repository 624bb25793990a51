//! Keyed state: the backend trait (raw bytes, scoped by state, key group, key and
//! namespace), the typed state handles users program against (value, list, map, reducing),
//! time-to-live, and the canonical snapshot format both backends write and read.
//!
//! Typed handles live in [`typed`]; they encode values with postcard and add TTL stamps, so
//! backends stay byte stores that know nothing of types or time.

pub(crate) mod expiry;
pub mod heap;
pub mod key_group;
pub mod native;
pub mod rocksdb;
mod row_cache;
pub mod snapshot;
pub mod timers;
pub mod typed;

use serde::{Deserialize, Serialize};

pub use key_group::{KeyGroup, KeyGroupRange};
pub use native::{KeyedSnapshotData, NativeSnapshot, NativeSource};
pub use snapshot::{DeferredSnapshot, KeyedSnapshot, KeyedStateInput};
pub use typed::{
    KeyedStateStore, ListState, MapState, ReducingState, StateTtl, TtlUpdate, ValueState,
};

/// Index of a registered state inside one backend (order of registration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateId(pub usize);

/// The kind of a keyed state; part of the snapshot format and checked on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateKind {
    /// One value per key and namespace.
    Value,
    /// A list of values per key and namespace.
    List,
    /// A map of user keys to values per key and namespace.
    Map,
    /// One value per key and namespace, folded with a reduce function.
    Reducing,
    /// One accumulator per key and namespace, folded with an aggregate function.
    Aggregating,
}

impl StateKind {
    /// True for kinds stored as one map per key and namespace.
    pub fn is_map(self) -> bool {
        matches!(self, StateKind::Map)
    }
}

/// Name, kind, value type and version of a registered state, as recorded in checkpoint
/// metadata and compared on every restore and by `weir check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateInfo {
    /// State name, unique within its operator.
    pub name: String,
    /// State kind.
    pub kind: StateKind,
    /// The name of the stored value type, as the state's descriptor declares it; `None` for
    /// states that declare none (the runtime's own, and snapshots written before descriptors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    /// The descriptor's version of the value encoding (0 when not declared).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u32,
    /// True when the values carry an expiry stamp: the descriptor sets a time-to-live
    /// ([`crate::state::StateTtl`]). Cleanup on read, in full snapshots and in RocksDB's
    /// compaction drops expired values.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ttl: bool,
    /// The older version the descriptor migrates values from while restoring, if any (not
    /// recorded in snapshots: what the job declares now).
    #[serde(skip)]
    pub migrates_from: Option<u32>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl StateInfo {
    /// A state of `kind` named `name`, with no declared type or version.
    pub fn new(name: &str, kind: StateKind) -> Self {
        Self {
            name: name.to_string(),
            kind,
            type_name: None,
            version: 0,
            ttl: false,
            migrates_from: None,
        }
    }

    /// `self` with values stamped with an expiry time when `ttl`.
    pub fn with_ttl(mut self, ttl: bool) -> Self {
        self.ttl = ttl;
        self
    }

    /// `self` with the declared value type `type_name` at `version`.
    pub fn with_type(mut self, type_name: &str, version: u32) -> Self {
        self.type_name = Some(type_name.to_string());
        self.version = version;
        self
    }
}

/// (user key, value) pairs of one map state entry.
pub type MapEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// A callback receiving (key group, key, namespace).
pub type KeyVisitor<'a> = &'a mut dyn FnMut(KeyGroup, &[u8], &[u8]);

/// The current key of a keyed operator: its key group and its encoded bytes.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    /// Key group of the key.
    pub key_group: KeyGroup,
    /// Encoded key bytes (see [`crate::api::Key`]).
    pub key: &'a [u8],
}

/// Failures of a state backend.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// RocksDB refused an operation.
    #[error("rocksdb {action}")]
    Rocksdb {
        /// What was attempted.
        action: &'static str,
        /// The RocksDB error.
        #[source]
        source: ::rocksdb::Error,
    },
    /// Local working directory of the RocksDB backend could not be prepared.
    #[error("prepare local state directory {path}")]
    LocalDir {
        /// The directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A value in state could not be encoded or decoded.
    #[error("state `{state}`: value codec")]
    Codec {
        /// State name.
        state: String,
        /// The codec error.
        #[source]
        source: postcard::Error,
    },
    /// A value could not be migrated from the snapshot's version to the declared one.
    #[error("state `{state}`: migration from version {from}: {message}")]
    Migration {
        /// State name.
        state: String,
        /// The version migrated from.
        from: u32,
        /// What the migration function or the codec said.
        message: String,
    },
    /// A snapshot is malformed (truncated section, unknown state index).
    #[error("malformed state snapshot: {0}")]
    MalformedSnapshot(String),
    /// A snapshot holds a state under the same name with a different kind.
    #[error("state `{name}` was {restored:?} in the snapshot but is registered as {registered:?}")]
    KindMismatch {
        /// State name.
        name: String,
        /// Kind in the snapshot.
        restored: StateKind,
        /// Kind the operator registers now.
        registered: StateKind,
    },
}

/// A keyed state backend: a byte store scoped by (state, key group, key, namespace), with map
/// states holding an extra user key. Implemented by [`heap::HeapBackend`] and
/// [`rocksdb::RocksDbBackend`]; both produce the same canonical [`KeyedSnapshot`].
///
/// Methods fail only on backend I/O (RocksDB); the heap backend never fails.
pub trait KeyedStateBackend: Send {
    /// Registers a state (idempotent by name) and returns its id.
    ///
    /// # Errors
    /// [`StateError::KindMismatch`] if the name was restored or registered with another kind.
    fn register(&mut self, info: &StateInfo) -> Result<StateId, StateError>;
    /// The registered (or restored and not yet re-registered) states, by id.
    fn registered(&self) -> &[StateInfo];
    /// Copies the value of (state, key, namespace) into `out`; false when absent.
    fn get(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, StateError>;
    /// Sets the value of (state, key, namespace).
    fn put(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        value: &[u8],
    ) -> Result<(), StateError>;
    /// Removes the value (or, for map states, the whole map) of (state, key, namespace).
    fn remove(&mut self, state: StateId, key: KeyRef<'_>, ns: &[u8]) -> Result<(), StateError>;
    /// Copies the value of a map state's user key into `out`; false when absent.
    fn map_get(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        user_key: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, StateError>;
    /// Sets a map state's user key.
    fn map_put(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        user_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError>;
    /// Removes a map state's user key.
    fn map_remove(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        user_key: &[u8],
    ) -> Result<(), StateError>;
    /// All (user key, value) pairs of a map state, in user-key byte order.
    fn map_entries(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
    ) -> Result<MapEntries, StateError>;
    /// Calls `f(key_group, key, namespace)` for every (key, namespace) holding a value of
    /// `state`. Used to rebuild derived structures (timers) after a restore.
    fn for_each_key(&mut self, state: StateId, f: KeyVisitor<'_>) -> Result<(), StateError>;
    /// Writes every entry of every state in the canonical format, key group by key group;
    /// entries of states with TTL that have expired at processing time `now` (ms) are left
    /// out (list elements one by one).
    fn snapshot(&mut self, now: i64) -> Result<KeyedSnapshot, StateError>;
    /// [`KeyedStateBackend::snapshot`] as of now, written later by
    /// [`DeferredSnapshot::serialize`] on another thread, while this backend goes on taking
    /// reads and writes; `None` for backends without one (RocksDB, whose canonical snapshot
    /// is a savepoint's, taken synchronously).
    ///
    /// # Errors
    /// As [`KeyedStateBackend::snapshot`].
    fn snapshot_deferred(&mut self, now: i64) -> Result<Option<DeferredSnapshot>, StateError> {
        let _ = now;
        Ok(None)
    }
    /// Takes a native (RocksDB) checkpoint into the new directory `dir`, for incremental
    /// checkpoints; `None` for backends without one (heap).
    ///
    /// # Errors
    /// [`StateError::Rocksdb`] when RocksDB cannot create the checkpoint.
    fn native_snapshot(
        &mut self,
        dir: &std::path::Path,
    ) -> Result<Option<NativeSnapshot>, StateError> {
        let _ = dir;
        Ok(None)
    }
    /// Loads the entries of the key groups this backend owns from snapshot sections.
    ///
    /// # Errors
    /// [`StateError::MalformedSnapshot`] or [`StateError::KindMismatch`].
    fn restore(&mut self, input: &KeyedStateInput<'_>) -> Result<(), StateError>;
}

/// The id of an already registered state named like `info`, if any; its recorded type and
/// version become `info`'s (a restored state is snapshotted again as the job declares it).
///
/// # Errors
/// [`StateError::KindMismatch`] when it was registered (or restored) with another kind.
pub(crate) fn find_registered(
    states: &mut [StateInfo],
    info: &StateInfo,
) -> Result<Option<StateId>, StateError> {
    match states.iter().position(|s| s.name == info.name) {
        Some(i) if states[i].kind != info.kind => Err(StateError::KindMismatch {
            name: info.name.clone(),
            restored: states[i].kind,
            registered: info.kind,
        }),
        Some(i) => {
            states[i] = StateInfo {
                migrates_from: None,
                ..info.clone()
            };
            Ok(Some(StateId(i)))
        }
        None => Ok(None),
    }
}

/// Encodes (key, namespace) as `u32 BE key length | key | u32 BE namespace length | namespace`:
/// self-delimiting, so a map user key may follow.
pub(crate) fn encode_composite(key: &[u8], ns: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(ns.len() as u32).to_be_bytes());
    out.extend_from_slice(ns);
}

/// Splits a composite made by [`encode_composite`] into (key, namespace, rest).
pub(crate) fn split_composite(bytes: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let klen = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let key = bytes.get(4..4 + klen)?;
    let rest = &bytes[4 + klen..];
    let nlen = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let ns = rest.get(4..4 + nlen)?;
    Some((key, ns, &rest[4 + nlen..]))
}
