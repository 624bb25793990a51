//! State descriptors (what a function declares in `open`) and the accessors it reads and
//! writes its keyed state through (Flink's `ValueStateDescriptor`, `ValueState`, ...).
//!
//! A descriptor names a state, its kind, its value type and the version of that type's
//! encoding, and optionally a time-to-live. Values are encoded with serde (postcard): the
//! encoding is part of the savepoint format, so a change to a state's type is a new
//! [`version`](ValueStateDescriptor::with_version), which `weir check` and every restore
//! compare with the snapshot's.
//!
//! Descriptors are `const`-constructible, so a function usually declares them as constants:
//!
//! ```
//! use weir_runtime::api::ValueStateDescriptor;
//! const FLAG: ValueStateDescriptor<bool> = ValueStateDescriptor::new("flag");
//! ```

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::TaskError;
use crate::state::timers::RESERVED_PREFIX;
use crate::state::typed::{ListState, MapState, ReducingState, ValueState};
use crate::state::{KeyedStateStore, StateError, StateInfo, StateKind, StateTtl};

/// What every descriptor kind has.
#[derive(Debug, Clone, Copy)]
struct Common {
    name: &'static str,
    version: u32,
    type_name: Option<&'static str>,
    ttl: Option<StateTtl>,
}

impl Common {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            version: 1,
            type_name: None,
            ttl: None,
        }
    }

    fn info<T: ?Sized>(&self, kind: StateKind) -> StateInfo {
        StateInfo::new(self.name, kind)
            .with_type(
                self.type_name.unwrap_or_else(|| std::any::type_name::<T>()),
                self.version,
            )
            .with_ttl(self.ttl.is_some())
    }
}

/// A declared state: the part of a descriptor the runtime reads without knowing its types.
pub trait StateDescriptor {
    /// The state's name, unique within its operator.
    fn name(&self) -> &'static str;
    /// Name, kind, value type name and version, as recorded in snapshots.
    fn info(&self) -> StateInfo;
    /// Registers the state in `store` and returns its typed handle.
    ///
    /// # Errors
    /// [`StateError::KindMismatch`] when the name exists with another kind.
    #[doc(hidden)]
    fn register_in(&self, store: &mut KeyedStateStore) -> Result<Box<dyn Any + Send>, StateError>;
}

/// Turns a value of an older version (postcard bytes) into the current version's bytes.
type MigrationFn = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// A declared migration from an older version of a state's values.
#[derive(Clone)]
struct Migration {
    from: u32,
    apply: MigrationFn,
}

macro_rules! descriptor_builders {
    () => {
        /// The version of the value encoding (default 1): raise it when the value type
        /// changes, so a restore of the old encoding is refused instead of misread.
        pub const fn with_version(mut self, version: u32) -> Self {
            self.common.version = version;
            self
        }

        /// The name recorded for the value type (default: Rust's `std::any::type_name`).
        /// Set it to keep a savepoint restorable when the type moves to another module.
        pub const fn with_type_name(mut self, type_name: &'static str) -> Self {
            self.common.type_name = Some(type_name);
            self
        }

        /// Values expire `ttl.ttl_ms` ms of processing time after they were created or last
        /// written (or read, with [`StateTtl::update_on_read_and_write`]); an expired value
        /// is never returned, and a read that finds one removes it.
        pub const fn with_ttl(mut self, ttl: StateTtl) -> Self {
            self.common.ttl = Some(ttl);
            self
        }
    };
}

/// Declares a value state: one value of `T` per key (Flink's `ValueStateDescriptor`).
pub struct ValueStateDescriptor<T> {
    common: Common,
    migration: Option<Migration>,
    _t: PhantomData<fn() -> T>,
}

impl<T> ValueStateDescriptor<T> {
    /// A value state named `name`, version 1, without TTL.
    pub const fn new(name: &'static str) -> Self {
        Self {
            common: Common::new(name),
            migration: None,
            _t: PhantomData,
        }
    }
    descriptor_builders!();
}

impl<T: Serialize + 'static> ValueStateDescriptor<T> {
    /// Values restored at version `from_version` (of type `O`) are turned into `T` by
    /// `migrate` while the job restores, so a savepoint of the old version restores into
    /// this one (raise the version with [`with_version`](Self::with_version)). Every value of
    /// the subtask's key groups is rewritten once, before the first record; a value that does
    /// not decode as `O` fails the restore with the state's name.
    pub fn with_migration<O: DeserializeOwned + 'static>(
        mut self,
        from_version: u32,
        migrate: impl Fn(O) -> T + Send + Sync + 'static,
    ) -> Self {
        self.migration = Some(Migration {
            from: from_version,
            apply: Arc::new(move |bytes: &[u8]| {
                let old: O = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
                postcard::to_stdvec(&migrate(old)).map_err(|e| e.to_string())
            }),
        });
        self
    }
}

impl<T: Serialize + DeserializeOwned + 'static> StateDescriptor for ValueStateDescriptor<T> {
    fn name(&self) -> &'static str {
        self.common.name
    }
    fn info(&self) -> StateInfo {
        let mut info = self.common.info::<T>(StateKind::Value);
        info.migrates_from = self.migration.as_ref().map(|m| m.from);
        info
    }
    fn register_in(&self, store: &mut KeyedStateStore) -> Result<Box<dyn Any + Send>, StateError> {
        let info = self.info();
        let restored = store
            .backend()
            .registered()
            .iter()
            .find(|s| s.name == info.name)
            .map(|s| s.version);
        let handle = store.register_typed::<ValueState<T>>(&info, self.common.ttl)?;
        if let (Some(m), Some(v)) = (&self.migration, restored) {
            if v == m.from && v != info.version {
                let n = store.rewrite_values(
                    handle.id(),
                    self.common.ttl.is_some(),
                    m.from,
                    m.apply.as_ref(),
                )?;
                tracing::info!(
                    state = info.name,
                    from = v,
                    to = info.version,
                    values = n,
                    "migrated restored state"
                );
            }
        }
        Ok(Box::new(handle))
    }
}

/// Declares a list state: a list of `T` per key (Flink's `ListStateDescriptor`).
pub struct ListStateDescriptor<T> {
    common: Common,
    _t: PhantomData<fn() -> T>,
}

impl<T> ListStateDescriptor<T> {
    /// A list state named `name`, version 1, without TTL.
    pub const fn new(name: &'static str) -> Self {
        Self {
            common: Common::new(name),
            _t: PhantomData,
        }
    }
    descriptor_builders!();
}

impl<T: Serialize + DeserializeOwned + 'static> StateDescriptor for ListStateDescriptor<T> {
    fn name(&self) -> &'static str {
        self.common.name
    }
    fn info(&self) -> StateInfo {
        self.common.info::<T>(StateKind::List)
    }
    fn register_in(&self, store: &mut KeyedStateStore) -> Result<Box<dyn Any + Send>, StateError> {
        let info = self.info();
        Ok(Box::new(
            store.register_typed::<ListState<T>>(&info, self.common.ttl)?,
        ))
    }
}

/// Declares a map state: a map from `K` to `V` per key (Flink's `MapStateDescriptor`).
/// Entries iterate in the order of their keys' encoded bytes.
pub struct MapStateDescriptor<K, V> {
    common: Common,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> MapStateDescriptor<K, V> {
    /// A map state named `name`, version 1, without TTL.
    pub const fn new(name: &'static str) -> Self {
        Self {
            common: Common::new(name),
            _t: PhantomData,
        }
    }
    descriptor_builders!();
}

impl<K, V> StateDescriptor for MapStateDescriptor<K, V>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    fn name(&self) -> &'static str {
        self.common.name
    }
    fn info(&self) -> StateInfo {
        self.common.info::<(K, V)>(StateKind::Map)
    }
    fn register_in(&self, store: &mut KeyedStateStore) -> Result<Box<dyn Any + Send>, StateError> {
        let info = self.info();
        Ok(Box::new(store.register_typed::<MapState<K, V>>(
            &info,
            self.common.ttl,
        )?))
    }
}

/// Declares a reducing state: one `T` per key, folded with `reduce` as values are added
/// (Flink's `ReducingStateDescriptor`).
pub struct ReducingStateDescriptor<T> {
    common: Common,
    reduce: fn(T, T) -> T,
}

impl<T> ReducingStateDescriptor<T> {
    /// A reducing state named `name` folding with `reduce`, version 1, without TTL.
    pub const fn new(name: &'static str, reduce: fn(T, T) -> T) -> Self {
        Self {
            common: Common::new(name),
            reduce,
        }
    }
    descriptor_builders!();
}

impl<T: Serialize + DeserializeOwned + 'static> StateDescriptor for ReducingStateDescriptor<T> {
    fn name(&self) -> &'static str {
        self.common.name
    }
    fn info(&self) -> StateInfo {
        self.common.info::<T>(StateKind::Reducing)
    }
    fn register_in(&self, store: &mut KeyedStateStore) -> Result<Box<dyn Any + Send>, StateError> {
        let info = self.info();
        let mut handle = store.register_typed::<ReducingState<T>>(&info, self.common.ttl)?;
        handle.set_reduce(self.reduce);
        Ok(Box::new(handle))
    }
}

/// The states an operator subtask declared, with their typed handles.
#[derive(Default)]
pub(crate) struct DeclaredStates {
    states: Vec<(&'static str, Box<dyn Any + Send>)>,
    /// What was declared, in order (the graph's record of the operator's states).
    pub infos: Vec<StateInfo>,
}

impl DeclaredStates {
    /// Registers `d` in `store` (idempotent by name).
    ///
    /// # Errors
    /// A reserved name, a name declared twice with different kinds, or a kind that differs
    /// from the restored state's.
    pub fn declare(
        &mut self,
        uid: &str,
        store: &mut KeyedStateStore,
        d: &dyn StateDescriptor,
    ) -> Result<(), TaskError> {
        let name = d.name();
        if name.starts_with(RESERVED_PREFIX) || name.is_empty() {
            return Err(TaskError::Graph(format!(
                "operator `{uid}`: state name `{name}` is reserved or empty; choose a name that does not start with `{RESERVED_PREFIX}`"
            )));
        }
        let info = d.info();
        if let Some(old) = self.infos.iter().find(|i| i.name == name) {
            if *old != info {
                return Err(TaskError::Graph(format!(
                    "operator `{uid}`: state `{name}` is declared twice, as {old:?} and as {info:?}; give each state its own name"
                )));
            }
            return Ok(());
        }
        let handle = d.register_in(store).map_err(|source| TaskError::State {
            uid: uid.to_string(),
            source,
        })?;
        self.states.push((name, handle));
        self.infos.push(info);
        Ok(())
    }

    /// The typed handle of state `name`.
    ///
    /// # Errors
    /// [`TaskError::Graph`] when the state was not declared in `open` (or with another type).
    pub fn get<H: 'static>(&self, uid: &str, name: &str) -> Result<&H, TaskError> {
        self.states
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, h)| h.downcast_ref::<H>())
            .ok_or_else(|| {
                TaskError::Graph(format!(
                    "operator `{uid}`: state `{name}` is used but was not declared in `open` with this descriptor; declare it with `ctx.declare(&DESCRIPTOR)`"
                ))
            })
    }
}

fn state_err(uid: &str) -> impl Fn(StateError) -> TaskError + '_ {
    move |source| TaskError::State {
        uid: uid.to_string(),
        source,
    }
}

/// The current key's value of a value state.
pub struct ValueAccess<'a, T> {
    pub(crate) handle: Result<&'a ValueState<T>, TaskError>,
    pub(crate) store: &'a mut KeyedStateStore,
    pub(crate) uid: &'a str,
}

impl<T: Serialize + DeserializeOwned + 'static> ValueAccess<'_, T> {
    /// The value, if set and not expired.
    ///
    /// # Errors
    /// [`TaskError::State`] on backend or codec failures; [`TaskError::Graph`] when the state
    /// was not declared.
    pub fn get(self) -> Result<Option<T>, TaskError> {
        self.handle?
            .get(self.store, &[])
            .map_err(state_err(self.uid))
    }

    /// Sets the value (and restarts its TTL).
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    pub fn update(self, value: &T) -> Result<(), TaskError> {
        self.handle?
            .update(self.store, &[], value)
            .map_err(state_err(self.uid))
    }

    /// Removes the value.
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    pub fn clear(self) -> Result<(), TaskError> {
        self.handle?
            .clear(self.store, &[])
            .map_err(state_err(self.uid))
    }
}

/// The current key's list of a list state.
pub struct ListAccess<'a, T> {
    pub(crate) handle: Result<&'a ListState<T>, TaskError>,
    pub(crate) store: &'a mut KeyedStateStore,
    pub(crate) uid: &'a str,
}

impl<T: Serialize + DeserializeOwned + 'static> ListAccess<'_, T> {
    /// The unexpired elements in insertion order (empty when none).
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    pub fn get(self) -> Result<Vec<T>, TaskError> {
        self.handle?
            .get(self.store, &[])
            .map_err(state_err(self.uid))
    }

    /// Appends `value`.
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    #[allow(clippy::should_implement_trait)] // Flink's name for it
    pub fn add(self, value: &T) -> Result<(), TaskError> {
        self.handle?
            .add(self.store, &[], value)
            .map_err(state_err(self.uid))
    }

    /// Replaces the list by `values`.
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    pub fn update(self, values: &[T]) -> Result<(), TaskError> {
        let handle = self.handle?;
        let err = state_err(self.uid);
        handle.clear(self.store, &[]).map_err(&err)?;
        for v in values {
            handle.add(self.store, &[], v).map_err(&err)?;
        }
        Ok(())
    }

    /// Removes the list.
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    pub fn clear(self) -> Result<(), TaskError> {
        self.handle?
            .clear(self.store, &[])
            .map_err(state_err(self.uid))
    }
}

/// The current key's map of a map state.
pub struct MapAccess<'a, K, V> {
    pub(crate) handle: Result<&'a MapState<K, V>, TaskError>,
    pub(crate) store: &'a mut KeyedStateStore,
    pub(crate) uid: &'a str,
}

impl<K, V> MapAccess<'_, K, V>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    /// The value of `key`, if present and unexpired.
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    pub fn get(self, key: &K) -> Result<Option<V>, TaskError> {
        self.handle?
            .get(self.store, &[], key)
            .map_err(state_err(self.uid))
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    pub fn put(self, key: &K, value: &V) -> Result<(), TaskError> {
        self.handle?
            .put(self.store, &[], key, value)
            .map_err(state_err(self.uid))
    }

    /// Removes `key`.
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    pub fn remove(self, key: &K) -> Result<(), TaskError> {
        self.handle?
            .remove(self.store, &[], key)
            .map_err(state_err(self.uid))
    }

    /// All unexpired entries, in the order of the keys' encoded bytes.
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    pub fn entries(self) -> Result<Vec<(K, V)>, TaskError> {
        self.handle?
            .entries(self.store, &[])
            .map_err(state_err(self.uid))
    }

    /// Removes the whole map.
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    pub fn clear(self) -> Result<(), TaskError> {
        self.handle?
            .clear(self.store, &[])
            .map_err(state_err(self.uid))
    }
}

/// The current key's folded value of a reducing state.
pub struct ReducingAccess<'a, T> {
    pub(crate) handle: Result<&'a ReducingState<T>, TaskError>,
    pub(crate) store: &'a mut KeyedStateStore,
    pub(crate) uid: &'a str,
}

impl<T: Serialize + DeserializeOwned + 'static> ReducingAccess<'_, T> {
    /// The folded value, if any.
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    pub fn get(self) -> Result<Option<T>, TaskError> {
        self.handle?
            .get(self.store, &[])
            .map_err(state_err(self.uid))
    }

    /// Folds `value` in.
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    #[allow(clippy::should_implement_trait)] // Flink's name for it
    pub fn add(self, value: T) -> Result<(), TaskError> {
        self.handle?
            .add(self.store, &[], value)
            .map_err(state_err(self.uid))
    }

    /// Removes the value.
    ///
    /// # Errors
    /// As [`ValueAccess::get`].
    pub fn clear(self) -> Result<(), TaskError> {
        self.handle?
            .clear(self.store, &[])
            .map_err(state_err(self.uid))
    }
}
