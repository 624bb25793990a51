//! The heap state backend: one hash map per state and key group, holding encoded bytes (a
//! map state's entries in a hash map of their own per key and namespace: a lookup hashes the
//! user key once instead of comparing it along a tree path, which over a million user keys
//! was most of a distinct count's time; [`KeyedStateBackend::map_entries`] sorts what it
//! returns). In-memory, no I/O; snapshots copy the maps into the canonical format.

use ahash::AHashMap;

use super::snapshot::SnapshotWriter;
use super::{
    encode_composite, find_registered, KeyGroup, KeyGroupRange, KeyRef, KeyVisitor, KeyedSnapshot,
    KeyedStateBackend, KeyedStateInput, MapEntries, StateError, StateId, StateInfo,
};

type Values = AHashMap<Vec<u8>, Vec<u8>>;
type Maps = AHashMap<Vec<u8>, Values>;

enum Store {
    Values(Vec<Values>),
    Maps(Vec<Maps>),
}

/// Keyed state in memory, per key group of one subtask's range.
pub struct HeapBackend {
    range: KeyGroupRange,
    states: Vec<StateInfo>,
    stores: Vec<Store>,
    scratch: Vec<u8>,
}

impl HeapBackend {
    /// An empty backend for the key groups of `range`.
    pub fn new(range: KeyGroupRange) -> Self {
        Self {
            range,
            states: Vec::new(),
            stores: Vec::new(),
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

    /// The value map of `state` for `key`'s key group, and `key`'s composite with `ns`.
    fn values(&mut self, state: StateId, key: KeyRef<'_>, ns: &[u8]) -> (&mut Values, &[u8]) {
        let slot = self.slot(key.key_group);
        self.scratch.clear();
        encode_composite(key.key, ns, &mut self.scratch);
        match &mut self.stores[state.0] {
            Store::Values(v) => (&mut v[slot], &self.scratch),
            Store::Maps(_) => panic!("invariant: value operation on a map state"),
        }
    }

    /// The map-state map of `state` for `key`'s key group, and `key`'s composite with `ns`.
    fn maps(&mut self, state: StateId, key: KeyRef<'_>, ns: &[u8]) -> (&mut Maps, &[u8]) {
        let slot = self.slot(key.key_group);
        self.scratch.clear();
        encode_composite(key.key, ns, &mut self.scratch);
        match &mut self.stores[state.0] {
            Store::Maps(v) => (&mut v[slot], &self.scratch),
            Store::Values(_) => panic!("invariant: map operation on a value state"),
        }
    }
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

impl KeyedStateBackend for HeapBackend {
    fn registered(&self) -> &[StateInfo] {
        &self.states
    }

    fn register(&mut self, info: &StateInfo) -> Result<StateId, StateError> {
        if let Some(id) = find_registered(&mut self.states, info)? {
            return Ok(id);
        }
        let n = self.range.len();
        self.stores.push(if info.kind.is_map() {
            Store::Maps((0..n).map(|_| Maps::default()).collect())
        } else {
            Store::Values((0..n).map(|_| Values::default()).collect())
        });
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
        let (map, c) = self.values(state, key, ns);
        Ok(copy_out(map.get(c), out))
    }

    fn put(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        let (map, c) = self.values(state, key, ns);
        set(map, c, value);
        Ok(())
    }

    fn remove(&mut self, state: StateId, key: KeyRef<'_>, ns: &[u8]) -> Result<(), StateError> {
        if self.states[state.0].kind.is_map() {
            let (maps, c) = self.maps(state, key, ns);
            maps.remove(c);
        } else {
            let (map, c) = self.values(state, key, ns);
            map.remove(c);
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
        let (maps, c) = self.maps(state, key, ns);
        Ok(copy_out(maps.get(c).and_then(|m| m.get(user_key)), out))
    }

    fn map_put(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        user_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        let (maps, c) = self.maps(state, key, ns);
        let m = match maps.get_mut(c) {
            Some(m) => m,
            None => maps.entry(c.to_vec()).or_default(),
        };
        set(m, user_key, value);
        Ok(())
    }

    fn map_remove(
        &mut self,
        state: StateId,
        key: KeyRef<'_>,
        ns: &[u8],
        user_key: &[u8],
    ) -> Result<(), StateError> {
        let (maps, c) = self.maps(state, key, ns);
        if let Some(m) = maps.get_mut(c) {
            m.remove(user_key);
            if m.is_empty() {
                maps.remove(c);
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
        let (maps, c) = self.maps(state, key, ns);
        let mut entries: MapEntries = maps
            .get(c)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
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
        match &self.stores[state.0] {
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
        let mut w = SnapshotWriter::new(self.range, self.states.clone());
        for (slot, kg) in self.range.iter().enumerate() {
            w.begin_key_group(kg);
            for (idx, store) in self.stores.iter().enumerate() {
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
        Ok(w.finish())
    }

    fn restore(&mut self, input: &KeyedStateInput<'_>) -> Result<(), StateError> {
        input.for_each_entry(&mut |e| {
            let id = self.register(e.state)?;
            let slot = self.slot(e.key_group);
            match (&mut self.stores[id.0], e.user_key) {
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
