//! The canonical keyed-state snapshot format, shared by both backends. Pure.
//!
//! A state file is `WEIRKS01` followed by one section per key group of the subtask's range,
//! in ascending order. `key_group_offsets[i]` is the byte offset of the section of key group
//! `range.start + i`; the last element is the file length, so a restore reads exactly the
//! sections of the key groups it owns (rescaling never reads a whole file it does not need).
//!
//! A section is a sequence of entries:
//! `u16 state index | u8 flags (1 = has user key) | u32 composite length | composite |
//! [u32 user key length | user key] | u32 value length | value`, integers big endian,
//! composite = `u32 key length | key | u32 namespace length | namespace`.
//! The state index refers to the `states` table recorded in the checkpoint metadata. Each
//! section has its own CRC-32C in the metadata, verified by whoever reads the section.

use super::{KeyGroup, KeyGroupRange, StateError, StateInfo};

/// Magic bytes that open every keyed state file.
pub const MAGIC: &[u8; 8] = b"WEIRKS01";

/// A keyed state snapshot of one operator subtask in the canonical format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedSnapshot {
    /// The file content.
    pub bytes: Vec<u8>,
    /// Key groups the snapshot covers.
    pub range: KeyGroupRange,
    /// Byte offset of each key group's section; `range.len() + 1` elements, last = length.
    pub key_group_offsets: Vec<u64>,
    /// CRC-32C of each key group's section, so a reader of some sections verifies exactly
    /// what it read.
    pub key_group_crc32c: Vec<u32>,
    /// States by index, as referenced by entries.
    pub states: Vec<StateInfo>,
    /// Number of entries written.
    pub entries: u64,
}

impl KeyedSnapshot {
    /// The whole snapshot as one section to restore from.
    pub fn section(&self) -> SnapshotSection<'_> {
        SnapshotSection {
            bytes: &self.bytes,
            base: 0,
            range: self.range,
            key_group_offsets: &self.key_group_offsets,
            key_group_crc32c: &self.key_group_crc32c,
            states: &self.states,
        }
    }
}

/// A [`KeyedSnapshot`] taken at a barrier but serialized later, off the task thread: the
/// heap backend's copy-on-write snapshot (see [`super::heap`]). The backend keeps the state
/// it froze until [`DeferredSnapshot::serialize`] has run or the snapshot is dropped (an
/// aborted checkpoint), so both must happen, and soon: the backend's next snapshot waits.
pub struct DeferredSnapshot(Box<dyn FnOnce() -> KeyedSnapshot + Send>);

impl DeferredSnapshot {
    /// A snapshot that `serialize` writes when called.
    pub fn new(serialize: impl FnOnce() -> KeyedSnapshot + Send + 'static) -> Self {
        Self(Box::new(serialize))
    }

    /// Writes the snapshot (on the calling thread) and releases the frozen state.
    pub fn serialize(self) -> KeyedSnapshot {
        (self.0)()
    }
}

impl std::fmt::Debug for DeferredSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeferredSnapshot")
    }
}

/// Builds a [`KeyedSnapshot`]: call [`SnapshotWriter::begin_key_group`] for every key group of
/// the range in ascending order, then [`SnapshotWriter::entry`] for its entries.
pub struct SnapshotWriter {
    snap: KeyedSnapshot,
    next_kg: u32,
}

impl SnapshotWriter {
    /// Starts a snapshot of `range` with the given state table.
    pub fn new(range: KeyGroupRange, states: Vec<StateInfo>) -> Self {
        let mut bytes = Vec::with_capacity(1 << 16);
        bytes.extend_from_slice(MAGIC);
        Self {
            snap: KeyedSnapshot {
                bytes,
                range,
                key_group_offsets: Vec::with_capacity(range.len() + 1),
                key_group_crc32c: Vec::with_capacity(range.len()),
                states,
                entries: 0,
            },
            next_kg: range.start as u32,
        }
    }

    /// Writes the entry (as [`SnapshotWriter::entry`]) unless it has expired at `now`, when
    /// state `state` has TTL; a list without its expired elements.
    pub fn live_entry(
        &mut self,
        state: u16,
        composite: &[u8],
        user_key: Option<&[u8]>,
        value: &[u8],
        now: i64,
    ) {
        let info = &self.snap.states[state as usize];
        if !info.ttl {
            return self.entry(state, composite, user_key, value);
        }
        match super::expiry::purge(info.kind, now, value) {
            super::expiry::Purge::Keep => self.entry(state, composite, user_key, value),
            super::expiry::Purge::Drop => {}
            super::expiry::Purge::Rewrite(v) => self.entry(state, composite, user_key, &v),
        }
    }

    /// Opens the section of `kg`; key groups must come in ascending order without gaps.
    pub fn begin_key_group(&mut self, kg: KeyGroup) {
        debug_assert_eq!(
            kg.0 as u32, self.next_kg,
            "key groups must be written in order"
        );
        self.next_kg = kg.0 as u32 + 1;
        self.snap
            .key_group_offsets
            .push(self.snap.bytes.len() as u64);
    }

    /// Appends one entry to the current key group's section.
    pub fn entry(&mut self, state: u16, composite: &[u8], user_key: Option<&[u8]>, value: &[u8]) {
        let b = &mut self.snap.bytes;
        b.extend_from_slice(&state.to_be_bytes());
        b.push(user_key.is_some() as u8);
        b.extend_from_slice(&(composite.len() as u32).to_be_bytes());
        b.extend_from_slice(composite);
        if let Some(uk) = user_key {
            b.extend_from_slice(&(uk.len() as u32).to_be_bytes());
            b.extend_from_slice(uk);
        }
        b.extend_from_slice(&(value.len() as u32).to_be_bytes());
        b.extend_from_slice(value);
        self.snap.entries += 1;
    }

    /// Closes the snapshot.
    pub fn finish(mut self) -> KeyedSnapshot {
        debug_assert_eq!(self.next_kg, self.snap.range.end as u32 + 1);
        self.snap
            .key_group_offsets
            .push(self.snap.bytes.len() as u64);
        let (o, b) = (&self.snap.key_group_offsets, &self.snap.bytes);
        self.snap.key_group_crc32c = o
            .windows(2)
            .map(|w| crc32c::crc32c(&b[w[0] as usize..w[1] as usize]))
            .collect();
        self.snap
    }
}

/// One old state file to restore from: its bytes and its index.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotSection<'a> {
    /// The file, or the part of it from byte `base` on (a ranged read).
    pub bytes: &'a [u8],
    /// File offset of `bytes[0]` (0 for a whole file).
    pub base: u64,
    /// Key groups the file covers.
    pub range: KeyGroupRange,
    /// Section offsets, as in [`KeyedSnapshot::key_group_offsets`].
    pub key_group_offsets: &'a [u64],
    /// Section checksums, as in [`KeyedSnapshot::key_group_crc32c`] (empty: not checked).
    pub key_group_crc32c: &'a [u32],
    /// The file's state table.
    pub states: &'a [StateInfo],
}

/// What a backend restores: the key groups it owns now, and every old file whose range
/// intersects them.
#[derive(Debug, Clone)]
pub struct KeyedStateInput<'a> {
    /// Key groups of the restoring subtask.
    pub range: KeyGroupRange,
    /// Old files.
    pub sections: Vec<SnapshotSection<'a>>,
}

/// One decoded entry.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The state this entry belongs to.
    pub state: &'a StateInfo,
    /// Key group of the entry.
    pub key_group: KeyGroup,
    /// `key | namespace` composite.
    pub composite: &'a [u8],
    /// Map user key, for map states.
    pub user_key: Option<&'a [u8]>,
    /// Value bytes.
    pub value: &'a [u8],
}

impl KeyedStateInput<'_> {
    /// Calls `f` for every entry of the owned key groups, reading only their sections.
    ///
    /// # Errors
    /// [`StateError::MalformedSnapshot`] when a section is truncated or names an unknown
    /// state, or `f`'s error.
    pub fn for_each_entry(
        &self,
        f: &mut dyn FnMut(Entry<'_>) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        for s in &self.sections {
            let Some(common) = s.range.intersect(&self.range) else {
                continue;
            };
            let magic_ok = s.base > 0 || s.bytes.starts_with(MAGIC);
            if !magic_ok || s.key_group_offsets.len() != s.range.len() + 1 {
                return Err(StateError::MalformedSnapshot(
                    "bad magic or offset table".into(),
                ));
            }
            for kg in common.iter() {
                let i = (kg.0 - s.range.start) as usize;
                let (from, to) = (
                    s.key_group_offsets[i].checked_sub(s.base),
                    s.key_group_offsets[i + 1].checked_sub(s.base),
                );
                let section = from
                    .zip(to)
                    .and_then(|(from, to)| s.bytes.get(from as usize..to as usize))
                    .ok_or_else(|| {
                        StateError::MalformedSnapshot(format!(
                            "section of key group {} out of bounds",
                            kg.0
                        ))
                    })?;
                if let Some(expected) = s.key_group_crc32c.get(i) {
                    let actual = crc32c::crc32c(section);
                    if actual != *expected {
                        return Err(StateError::MalformedSnapshot(format!(
                            "key group {}: checksum mismatch (expected {expected:08x}, got {actual:08x})",
                            kg.0
                        )));
                    }
                }
                parse_section(section, s.states, kg, f)?;
            }
        }
        Ok(())
    }
}

fn parse_section(
    mut b: &[u8],
    states: &[StateInfo],
    kg: KeyGroup,
    f: &mut dyn FnMut(Entry<'_>) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let bad = || StateError::MalformedSnapshot(format!("truncated entry in key group {}", kg.0));
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (h, t) = (b.get(..n)?, b.get(n..)?);
        *b = t;
        Some(h)
    }
    fn take_len<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
        let n = u32::from_be_bytes(take(b, 4)?.try_into().ok()?) as usize;
        take(b, n)
    }
    while !b.is_empty() {
        let idx = u16::from_be_bytes(
            take(&mut b, 2)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        let flags = take(&mut b, 1).ok_or_else(bad)?[0];
        let composite = take_len(&mut b).ok_or_else(bad)?;
        let user_key = if flags & 1 == 1 {
            Some(take_len(&mut b).ok_or_else(bad)?)
        } else {
            None
        };
        let value = take_len(&mut b).ok_or_else(bad)?;
        let state = states
            .get(idx as usize)
            .ok_or_else(|| StateError::MalformedSnapshot(format!("unknown state index {idx}")))?;
        f(Entry {
            state,
            key_group: kg,
            composite,
            user_key,
            value,
        })?;
    }
    Ok(())
}
