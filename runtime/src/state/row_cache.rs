//! A write-back cache of rows in front of one RocksDB instance (pure, no I/O): the rows read
//! or written lately, per state, by row key, each clean (as in RocksDB) or dirty (written
//! here only; `None` is a delete). The backend answers reads of cached rows from here and
//! keeps writes here, and writes the dirty rows to RocksDB in one batch when the cache
//! outgrows its budget, before anything iterates RocksDB (a map's entries, prefix deletes,
//! key visits) and before every snapshot, so RocksDB alone is always complete where it is
//! read in order. Hot keys (a day's statistics, Nexmark's hot bidders and auctions) are then
//! read-modify-written in memory, and RocksDB sees one write per row per flush instead of
//! one per record.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Bytes counted per cached row beyond its key and value (tree node share, lengths).
const ROW_OVERHEAD: usize = 64;

/// One cached row.
struct Row {
    /// `None`: absent (deleted, or read and not found).
    value: Option<Vec<u8>>,
    /// Not yet written to RocksDB.
    dirty: bool,
}

/// What the cache knows of a row.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup<'a> {
    /// Not cached: ask RocksDB.
    Miss,
    /// Known to be absent.
    Absent,
    /// Its current value.
    Present(&'a [u8]),
}

/// Called with (state id, row key, value; `None`: deleted) for each dirty row taken.
pub(crate) type RowVisitor<'a> = &'a mut dyn FnMut(usize, &[u8], Option<&[u8]>);

/// Cached rows per state id, with their size against a budget (bytes).
pub(crate) struct RowCache {
    states: Vec<BTreeMap<Vec<u8>, Row>>,
    bytes: usize,
    budget: usize,
    dirty: usize,
}

impl RowCache {
    /// An empty cache that reports [`RowCache::over_budget`] past `budget` bytes.
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            states: Vec::new(),
            bytes: 0,
            budget,
            dirty: 0,
        }
    }

    fn state_mut(&mut self, state: usize) -> &mut BTreeMap<Vec<u8>, Row> {
        if self.states.len() <= state {
            self.states.resize_with(state + 1, BTreeMap::new);
        }
        &mut self.states[state]
    }

    /// The cached row `row` of `state`.
    pub(crate) fn lookup(&self, state: usize, row: &[u8]) -> Lookup<'_> {
        match self.states.get(state).and_then(|m| m.get(row)) {
            None => Lookup::Miss,
            Some(Row { value: None, .. }) => Lookup::Absent,
            Some(Row { value: Some(v), .. }) => Lookup::Present(v),
        }
    }

    /// Caches what RocksDB holds for a row that missed (clean).
    pub(crate) fn fill(&mut self, state: usize, row: &[u8], value: Option<&[u8]>) {
        let map = self.state_mut(state);
        if map.contains_key(row) {
            return;
        }
        map.insert(
            row.to_vec(),
            Row {
                value: value.map(<[u8]>::to_vec),
                dirty: false,
            },
        );
        self.bytes += row.len() + value.map_or(0, <[u8]>::len) + ROW_OVERHEAD;
    }

    /// Writes a row (`None`: deletes it) into the cache only; it is dirty until taken.
    pub(crate) fn write(&mut self, state: usize, row: &[u8], value: Option<&[u8]>) {
        let new_len = value.map_or(0, <[u8]>::len);
        let map = self.state_mut(state);
        let (freed, was_dirty) = match map.get_mut(row) {
            Some(r) => {
                let old_len = r.value.as_ref().map_or(0, Vec::len);
                match (&mut r.value, value) {
                    (Some(buf), Some(v)) => {
                        buf.clear();
                        buf.extend_from_slice(v);
                    }
                    (slot, v) => *slot = v.map(<[u8]>::to_vec),
                }
                let was_dirty = r.dirty;
                r.dirty = true;
                (old_len, was_dirty)
            }
            None => {
                map.insert(
                    row.to_vec(),
                    Row {
                        value: value.map(<[u8]>::to_vec),
                        dirty: true,
                    },
                );
                self.bytes += row.len() + ROW_OVERHEAD;
                (0, false)
            }
        };
        self.bytes = (self.bytes + new_len).saturating_sub(freed);
        if !was_dirty {
            self.dirty += 1;
        }
    }

    /// True when the cached rows take more than the budget: flush and clear.
    pub(crate) fn over_budget(&self) -> bool {
        self.bytes > self.budget
    }

    /// True when some row is dirty.
    pub(crate) fn has_dirty(&self) -> bool {
        self.dirty > 0
    }

    /// Calls `f(state, row, value)` for every dirty row of `state` whose key starts with
    /// `prefix` (every state when `state` is `None`), and marks them clean.
    pub(crate) fn take_dirty(&mut self, state: Option<usize>, prefix: &[u8], f: RowVisitor<'_>) {
        if self.dirty == 0 {
            return;
        }
        let range = match state {
            Some(s) => s..(s + 1).min(self.states.len()),
            None => 0..self.states.len(),
        };
        for s in range {
            let rows = self.states[s]
                .range_mut::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix));
            for (k, r) in rows {
                if r.dirty {
                    r.dirty = false;
                    self.dirty -= 1;
                    f(s, k, r.value.as_deref());
                }
            }
        }
    }

    /// Forgets the rows of `state` whose key starts with `prefix`, dirty ones included (the
    /// caller deletes them from RocksDB).
    pub(crate) fn discard(&mut self, state: usize, prefix: &[u8]) {
        let Some(map) = self.states.get_mut(state) else {
            return;
        };
        let keys: Vec<Vec<u8>> = map
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(r) = map.remove(&k) {
                self.bytes -=
                    (k.len() + r.value.map_or(0, |v| v.len()) + ROW_OVERHEAD).min(self.bytes);
                if r.dirty {
                    self.dirty -= 1;
                }
            }
        }
    }

    /// Forgets every row. The caller takes the dirty ones first.
    pub(crate) fn clear(&mut self) {
        debug_assert_eq!(self.dirty, 0, "clear drops dirty rows");
        self.states.clear();
        self.bytes = 0;
        self.dirty = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirty_rows(
        c: &mut RowCache,
        state: Option<usize>,
        prefix: &[u8],
    ) -> Vec<(usize, Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        c.take_dirty(state, prefix, &mut |s, k, v| {
            out.push((s, k.to_vec(), v.map(<[u8]>::to_vec)))
        });
        out
    }

    #[test]
    fn reads_see_writes_and_fills_and_writes_are_taken_once() {
        let mut c = RowCache::new(1 << 20);
        assert_eq!(c.lookup(0, b"a"), Lookup::Miss);
        c.fill(0, b"a", Some(b"1"));
        c.fill(1, b"b", None);
        assert_eq!(c.lookup(0, b"a"), Lookup::Present(b"1"));
        assert_eq!(c.lookup(1, b"b"), Lookup::Absent);
        assert!(!c.has_dirty(), "filled rows are clean");
        c.write(0, b"a", Some(b"22"));
        c.write(0, b"a", Some(b"333"));
        c.write(1, b"b", Some(b"x"));
        c.write(1, b"c", None);
        assert_eq!(c.lookup(0, b"a"), Lookup::Present(b"333"));
        assert_eq!(c.lookup(1, b"c"), Lookup::Absent);
        assert_eq!(
            dirty_rows(&mut c, None, &[]),
            vec![
                (0, b"a".to_vec(), Some(b"333".to_vec())),
                (1, b"b".to_vec(), Some(b"x".to_vec())),
                (1, b"c".to_vec(), None),
            ]
        );
        assert!(!c.has_dirty());
        assert!(
            dirty_rows(&mut c, None, &[]).is_empty(),
            "taken rows are clean"
        );
        assert_eq!(
            c.lookup(0, b"a"),
            Lookup::Present(b"333"),
            "and still cached"
        );
    }

    #[test]
    fn prefixes_select_and_discard_rows_of_one_state() {
        let mut c = RowCache::new(1 << 20);
        for k in [&b"k1a"[..], b"k1b", b"k2a"] {
            c.write(0, k, Some(k));
            c.write(1, k, Some(k));
        }
        let taken = dirty_rows(&mut c, Some(0), b"k1");
        assert_eq!(
            taken
                .iter()
                .map(|(s, k, _)| (*s, k.as_slice()))
                .collect::<Vec<_>>(),
            vec![(0, &b"k1a"[..]), (0, b"k1b")]
        );
        c.discard(1, b"k1");
        assert_eq!(c.lookup(1, b"k1a"), Lookup::Miss);
        assert_eq!(c.lookup(1, b"k2a"), Lookup::Present(b"k2a"));
        assert_eq!(c.lookup(0, b"k1a"), Lookup::Present(b"k1a"));
        assert_eq!(dirty_rows(&mut c, None, &[]).len(), 2, "k2a of both states");
    }

    #[test]
    fn the_budget_counts_keys_values_and_overhead() {
        let mut c = RowCache::new(2 * (ROW_OVERHEAD + 10));
        c.write(0, b"key", Some(&[0; 7]));
        c.fill(0, b"other", Some(&[0; 5]));
        assert!(!c.over_budget());
        c.write(0, b"key", Some(&[0; 8]));
        assert!(c.over_budget(), "a longer value counts");
        c.write(0, b"key", None);
        assert!(!c.over_budget(), "a delete frees the value");
        dirty_rows(&mut c, None, &[]);
        c.clear();
        assert_eq!(c.lookup(0, b"other"), Lookup::Miss);
    }
}
