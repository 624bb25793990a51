//! The heap state backend: one hash map per state and key group, holding encoded bytes (a
//! map state's entries in a hash map of their own per key and namespace: a lookup hashes the
//! user key once instead of comparing it along a tree path, which over a million user keys
//! was most of a distinct count's time; [`KeyedStateBackend::map_entries`] sorts what it
//! returns). In-memory, no I/O.
//!
//! Snapshots are copy-on-write, so that a checkpoint does not stop the task while its state
//! is serialized (Flink's heap backend snapshots its copy-on-write state maps asynchronously
//! too). [`KeyedStateBackend::snapshot_deferred`] freezes the maps, shared with the returned
//! [`DeferredSnapshot`], which serializes them later on the uploader thread; until it has,
//! writes go to a delta (per state and key group: the new value, or `None` for removed) that
//! reads consult first, and the first access after the serializer let go of the maps merges
//! the delta into them. A second snapshot, a restore or a new state waits for the first
//! serialization to finish.

use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;

use super::snapshot::{DeferredSnapshot, SnapshotWriter};
use super::{
    encode_composite, find_registered, KeyGroup, KeyGroupRange, KeyRef, KeyVisitor, KeyedSnapshot,
    KeyedStateBackend, KeyedStateInput, MapEntries, StateError, StateId, StateInfo,
};

type Values = AHashMap<Vec<u8>, Vec<u8>>;
type Maps = AHashMap<Vec<u8>, Values>;

/// One state's entries, per key group slot.
enum Store {
    Values(Vec<Values>),
    Maps(Vec<Maps>),
}

/// Changes to one value map while it is frozen: composite -> new value (`None`: removed).
type ValueChanges = AHashMap<Vec<u8>, Option<Vec<u8>>>;

/// Changes to one map state's map of one (key, namespace) while it is frozen.
#[derive(Default)]
struct MapChanges {
    /// The whole map was removed first (entries below apply to an empty map).
    cleared: bool,
    /// User key -> new value (`None`: removed).
    entries: ValueChanges,
}

/// One state's changes, per key group slot.
enum Delta {
    Values(Vec<ValueChanges>),
    Maps(Vec<AHashMap<Vec<u8>, MapChanges>>),
}

impl Delta {
    fn empty_for(store: &Store, slots: usize) -> Self {
        match store {
            Store::Values(_) => Delta::Values((0..slots).map(|_| Default::default()).collect()),
            Store::Maps(_) => Delta::Maps((0..slots).map(|_| Default::default()).collect()),
        }
    }
}

/// The stores, owned, or frozen for a snapshot that still reads them.
enum Tables {
    Owned(Vec<Store>),
    Frozen {
        base: Arc<Vec<Store>>,
        delta: Vec<Delta>,
    },
}

/// Keyed state in memory, per key group of one subtask's range.
pub struct HeapBackend {
    range: KeyGroupRange,
    states: Vec<StateInfo>,
    tables: Tables,
    scratch: Vec<u8>,
}

impl HeapBackend {
    /// An empty backend for the key groups of `range`.
    pub fn new(range: KeyGroupRange) -> Self {
        Self {
            range,
            states: Vec::new(),
            tables: Tables::Owned(Vec::new()),
            scratch: Vec::with_capacity(64),
        }
    }

    fn slot(&self, kg: KeyGroup) -> usize {
        debug_assert!(
            self.range.contains(kg),
            "key group {kg:?} outside {:?}",
            self.range
        );
        (kg.0 - self.range.start) as usize
    }

    /// Encodes `key`'s composite with `ns` into the scratch buffer and returns the key's slot,
    /// after merging the delta if the snapshot that froze the stores is done with them.
    fn locate(&mut self, key: KeyRef<'_>, ns: &[u8]) -> usize {
        self.thaw(false);
        self.scratch.clear();
        encode_composite(key.key, ns, &mut self.scratch);
        self.slot(key.key_group)
    }

    /// Merges the delta into the stores once no snapshot reads them any more; with `wait`,
    /// waits for that (polling every millisecond) and returns the owned stores.
    fn thaw(&mut self, wait: bool) -> Option<&mut Vec<Store>> {
        if let Tables::Frozen { base, .. } = &self.tables {
            while Arc::strong_count(base) > 1 {
                if !wait {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let Tables::Frozen { base, delta } =
                std::mem::replace(&mut self.tables, Tables::Owned(Vec::new()))
            else {
                unreachable!("matched above")
            };
            let mut stores = Arc::try_unwrap(base)
                .ok()
                .expect("invariant: the only reference (no weak ones are made)");
            merge(&mut stores, delta);
            self.tables = Tables::Owned(stores);
        }
        match &mut self.tables {
            Tables::Owned(stores) => Some(stores),
            Tables::Frozen { .. } => None,
        }
    }

    /// The owned stores, after any snapshot reading them has finished.
    fn owned(&mut self) -> &mut Vec<Store> {
        self.thaw(true)
            .expect("invariant: thaw(true) always returns the stores")
    }
}

/// Applies the changes made while the stores were frozen.
fn merge(stores: &mut [Store], delta: Vec<Delta>) {
    for (store, delta) in stores.iter_mut().zip(delta) {
        match (store, delta) {
            (Store::Values(maps), Delta::Values(changes)) => {
                for (map, changes) in maps.iter_mut().zip(changes) {
                    for (c, v) in changes {
                        match v {
                            Some(v) => map.insert(c, v),
                            None => map.remove(&c),
                        };
                    }
                }
            }
            (Store::Maps(maps), Delta::Maps(changes)) => {
                for (maps, changes) in maps.iter_mut().zip(changes) {
                    for (c, changes) in changes {
                        if changes.cleared {
                            maps.remove(&c);
                        }
                        if changes.entries.is_empty() {
                            continue;
                        }
                        let m = match maps.get_mut(&c) {
                            Some(m) => m,
                            None => maps.entry(c.clone()).or_default(),
                        };
                        for (uk, v) in changes.entries {
                            match v {
                                Some(v) => m.insert(uk, v),
                                None => m.remove(&uk),
                            };
                        }
                        if m.is_empty() {
                            maps.remove(&c);
                        }
                    }
                }
            }
            _ => unreachable!("invariant: a delta has its store's kind"),
        }
    }
}

/// Writes every entry of `stores` in the canonical format (see [`KeyedSnapshot`]).
fn serialize(
    range: KeyGroupRange,
    states: Vec<StateInfo>,
    stores: &[Store],
    now: i64,
) -> KeyedSnapshot {
    let mut w = SnapshotWriter::new(range, states);
    for (slot, kg) in range.iter().enumerate() {
        w.begin_key_group(kg);
        for (idx, store) in stores.iter().enumerate() {
            match store {
                Store::Values(v) => {
                    for (c, val) in &v[slot] {
                        w.live_entry(idx as u16, c, None, val, now);
                    }
                }
                Store::Maps(v) => {
                    for (c, m) in &v[slot] {
                        for (uk, val) in m {
                            w.live_entry(idx as u16, c, Some(uk), val, now);
                        }
                    }
                }
            }
        }
    }
    w.finish()
}

/// Sets `key` to `value` in `map`, reusing the old value's allocation (and allocating the key
/// only when it is new).
fn set(map: &mut Values, key: &[u8], value: &[u8]) {
    match map.get_mut(key) {
        Some(v) => {
            v.clear();
            v.extend_from_slice(value);
        }
        None => {
            map.insert(key.to_vec(), value.to_vec());
        }
    }
}

/// [`set`] into a change map.
fn set_change(changes: &mut ValueChanges, key: &[u8], value: &[u8]) {
    match changes.get_mut(key) {
        Some(Some(v)) => {
            v.clear();
            v.extend_from_slice(value);
        }
        Some(slot) => *slot = Some(value.to_vec()),
        None => {
            changes.insert(key.to_vec(), Some(value.to_vec()));
        }
    }
}

/// Records the removal of `key`: a tombstone when `base_has` it, else just no change.
fn remove_change<V>(changes: &mut AHashMap<Vec<u8>, V>, key: &[u8], base_has: bool, gone: V) {
    if base_has {
        match changes.get_mut(key) {
            Some(v) => *v = gone,
            None => {
                changes.insert(key.to_vec(), gone);
            }
        }
    } else {
        changes.remove(key);
    }
}

/// The changes recorded for `key`'s map, new and empty when there are none.
fn changes_of<'d>(d: &'d mut AHashMap<Vec<u8>, MapChanges>, key: &[u8]) -> &'d mut MapChanges {
    if !d.contains_key(key) {
        d.insert(key.to_vec(), MapChanges::default());
    }
    d.get_mut(key).expect("inserted above")
}

/// Copies `value` into `out`; false when there is none.
fn copy_out(value: Option<&Vec<u8>>, out: &mut Vec<u8>) -> bool {
    match value {
        Some(v) => {
            out.clear();
            out.extend_from_slice(v);
            true
        }
        None => false,
    }
}

fn values(store: &Store) -> &[Values] {
    match store {
        Store::Values(v) => v,
        Store::Maps(_) => panic!("invariant: value operation on a map state"),
    }
}

fn maps(store: &Store) -> &[Maps] {
    match store {
        Store::Maps(v) => v,
        Store::Values(_) => panic!("invariant: map operation on a value state"),
    }
}

fn maps_mut(store: &mut Store) -> &mut [Maps] {
    match store {
        Store::Maps(v) => v,
        Store::Values(_) => panic!("invariant: map operation on a value state"),
    }
}

fn value_changes(delta: &mut Delta) -> &mut [ValueChanges] {
    match delta {
        Delta::Values(v) => v,
        Delta::Maps(_) => panic!("invariant: value operation on a map state"),
    }
}

fn map_changes(delta: &mut Delta) -> &mut [AHashMap<Vec<u8>, MapChanges>] {
    match delta {
        Delta::Maps(v) => v,
        Delta::Values(_) => panic!("invariant: map operation on a value state"),
    }
}

impl KeyedStateBackend for HeapBackend {
    fn registered(&self) -> &[StateInfo] {
        &self.states
    }

    fn register(&mut self, info: &StateInfo) -> Result<StateId, StateError> {
        if let Some(id) = find_registered(&mut self.states, info)? {
            return Ok(id);
        }
        let n = self.range.len();
        let store = if info.kind.is_map() {
            Store::Maps((0..n).map(|_| Maps::default()).collect())
        } else {
            Store::Values((0..n).map(|_| Values::default()).collect())
        };
        self.owned().push(store);
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
        let slot = self.locate(key, ns);
        let c = self.scratch.as_slice();
        Ok(match &self.tables {
            Tables::Owned(stores) => copy_out(values(&stores[state.0])[slot].get(c), out),
            Tables::Frozen { base, delta } => match &delta[state.0] {
                Delta::Values(d) => match d[slot].get(c) {
                    Some(v) => copy_out(v.as_ref(), out),
                    None => copy_out(values(&base[state.0])[slot].get(c), out),
                },
                Delta::Maps(_) => panic!("invariant: value operation on a map state"),
            },
        })
    }

    fn put(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        let slot = self.locate(key, ns);
        let c = self.scratch.as_slice();
        match &mut self.tables {
            Tables::Owned(stores) => match &mut stores[state.0] {
                Store::Values(v) => set(&mut v[slot], c, value),
                Store::Maps(_) => panic!("invariant: value operation on a map state"),
            },
            Tables::Frozen { delta, .. } => {
                set_change(&mut value_changes(&mut delta[state.0])[slot], c, value)
            }
        }
        Ok(())
    }

    fn remove(&mut self, state: StateId, key: KeyRef<'_>, ns: &[u8]) -> Result<(), StateError> {
        let slot = self.locate(key, ns);
        let c = self.scratch.as_slice();
        match &mut self.tables {
            Tables::Owned(stores) => match &mut stores[state.0] {
                Store::Values(v) => {
                    v[slot].remove(c);
                }
                Store::Maps(v) => {
                    v[slot].remove(c);
                }
            },
            Tables::Frozen { base, delta } => match &mut delta[state.0] {
                Delta::Values(d) => {
                    let has = values(&base[state.0])[slot].contains_key(c);
                    remove_change(&mut d[slot], c, has, None);
                }
                Delta::Maps(d) => {
                    let has = maps(&base[state.0])[slot].contains_key(c);
                    let cleared = MapChanges {
                        cleared: true,
                        entries: ValueChanges::default(),
                    };
                    remove_change(&mut d[slot], c, has, cleared);
                }
            },
        }
        Ok(())
    }

    fn map_get(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        user_key: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, StateError> {
        let slot = self.locate(key, ns);
        let c = self.scratch.as_slice();
        let base_get = |stores: &[Store], out: &mut Vec<u8>| {
            let m = maps(&stores[state.0])[slot].get(c);
            copy_out(m.and_then(|m| m.get(user_key)), out)
        };
        Ok(match &mut self.tables {
            Tables::Owned(stores) => base_get(stores, out),
            Tables::Frozen { base, delta } => match map_changes(&mut delta[state.0])[slot].get(c) {
                Some(changes) => match changes.entries.get(user_key) {
                    Some(v) => copy_out(v.as_ref(), out),
                    None if changes.cleared => false,
                    None => base_get(base, out),
                },
                None => base_get(base, out),
            },
        })
    }

    fn map_put(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        user_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        let slot = self.locate(key, ns);
        let c = self.scratch.as_slice();
        match &mut self.tables {
            Tables::Owned(stores) => {
                let maps = &mut maps_mut(&mut stores[state.0])[slot];
                let m = match maps.get_mut(c) {
                    Some(m) => m,
                    None => maps.entry(c.to_vec()).or_default(),
                };
                set(m, user_key, value);
            }
            Tables::Frozen { delta, .. } => {
                let changes = changes_of(&mut map_changes(&mut delta[state.0])[slot], c);
                set_change(&mut changes.entries, user_key, value);
            }
        }
        Ok(())
    }

    fn map_remove(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        user_key: &[u8],
    ) -> Result<(), StateError> {
        let slot = self.locate(key, ns);
        let c = self.scratch.as_slice();
        match &mut self.tables {
            Tables::Owned(stores) => {
                let maps = &mut maps_mut(&mut stores[state.0])[slot];
                if let Some(m) = maps.get_mut(c) {
                    m.remove(user_key);
                    if m.is_empty() {
                        maps.remove(c);
                    }
                }
            }
            Tables::Frozen { base, delta } => {
                let d = &mut map_changes(&mut delta[state.0])[slot];
                let base_map = maps(&base[state.0])[slot].get(c);
                let changes = changes_of(d, c);
                let has = !changes.cleared && base_map.is_some_and(|m| m.contains_key(user_key));
                remove_change(&mut changes.entries, user_key, has, None);
            }
        }
        Ok(())
    }

    fn map_entries(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
    ) -> Result<MapEntries, StateError> {
        let slot = self.locate(key, ns);
        let c = self.scratch.as_slice();
        let copy =
            |m: &Values| -> MapEntries { m.iter().map(|(k, v)| (k.clone(), v.clone())).collect() };
        let mut entries: MapEntries = match &mut self.tables {
            Tables::Owned(stores) => maps(&stores[state.0])[slot]
                .get(c)
                .map(copy)
                .unwrap_or_default(),
            Tables::Frozen { base, delta } => {
                let base_map = maps(&base[state.0])[slot].get(c);
                match map_changes(&mut delta[state.0])[slot].get(c) {
                    None => base_map.map(copy).unwrap_or_default(),
                    Some(changes) => {
                        let mut merged: AHashMap<&[u8], &[u8]> = AHashMap::default();
                        if !changes.cleared {
                            for (k, v) in base_map.into_iter().flatten() {
                                merged.insert(k, v);
                            }
                        }
                        for (k, v) in &changes.entries {
                            match v {
                                Some(v) => merged.insert(k, v),
                                None => merged.remove(k.as_slice()),
                            };
                        }
                        merged
                            .into_iter()
                            .map(|(k, v)| (k.to_vec(), v.to_vec()))
                            .collect()
                    }
                }
            }
        };
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    fn for_each_key(&mut self, state: StateId, f: KeyVisitor<'_>) -> Result<(), StateError> {
        let start = self.range.start;
        let mut visit = |slot: usize, composite: &[u8]| {
            if let Some((k, ns, _)) = super::split_composite(composite) {
                f(KeyGroup(start + slot as u16), k, ns);
            }
        };
        match &self.owned()[state.0] {
            Store::Values(v) => v
                .iter()
                .enumerate()
                .for_each(|(i, m)| m.keys().for_each(|c| visit(i, c))),
            Store::Maps(v) => v
                .iter()
                .enumerate()
                .for_each(|(i, m)| m.keys().for_each(|c| visit(i, c))),
        }
        Ok(())
    }

    fn snapshot(&mut self, now: i64) -> Result<KeyedSnapshot, StateError> {
        let (range, states) = (self.range, self.states.clone());
        Ok(serialize(range, states, self.owned(), now))
    }

    fn snapshot_deferred(&mut self, now: i64) -> Result<Option<DeferredSnapshot>, StateError> {
        let stores = std::mem::take(self.owned());
        let slots = self.range.len();
        let delta = stores.iter().map(|s| Delta::empty_for(s, slots)).collect();
        let base = Arc::new(stores);
        let frozen = Arc::clone(&base);
        self.tables = Tables::Frozen { base, delta };
        let (range, states) = (self.range, self.states.clone());
        Ok(Some(DeferredSnapshot::new(move || {
            serialize(range, states, &frozen, now)
        })))
    }

    fn restore(&mut self, input: &KeyedStateInput<'_>) -> Result<(), StateError> {
        self.owned();
        input.for_each_entry(&mut |e| {
            let id = self.register(e.state)?;
            let slot = self.slot(e.key_group);
            match (&mut self.owned()[id.0], e.user_key) {
                (Store::Values(v), None) => {
                    v[slot].insert(e.composite.to_vec(), e.value.to_vec());
                }
                (Store::Maps(v), Some(uk)) => {
                    v[slot]
                        .entry(e.composite.to_vec())
                        .or_default()
                        .insert(uk.to_vec(), e.value.to_vec());
                }
                _ => {
                    return Err(StateError::MalformedSnapshot(format!(
                        "entry shape does not match kind of state `{}`",
                        e.state.name
                    )))
                }
            }
            Ok(())
        })
    }
}
