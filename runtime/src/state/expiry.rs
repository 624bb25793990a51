//! How values with a time-to-live are laid out, and which of them have expired. Pure; read by
//! the typed state handles (never return an expired value), by both backends' full snapshots
//! (never write one) and by RocksDB's compaction filter (drop them from disk), as Flink's TTL
//! cleanup on read, in full snapshots and in compaction.
//!
//! A value of a state with TTL starts with its expiry time, `i64` big endian, ms of processing
//! time; a list state holds `u32 BE length | element` per element, each element stamped.

use super::StateKind;

/// Bytes of the expiry stamp in front of a value.
pub(crate) const STAMP_LEN: usize = 8;

/// The expiry time (ms) stamped on `value`; `i64::MIN` (expired) when too short to hold one.
pub(crate) fn expiry(value: &[u8]) -> i64 {
    value
        .get(..STAMP_LEN)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes)
        .unwrap_or(i64::MIN)
}

/// The elements of a stored list, each with its stamp.
pub(crate) fn list_elements(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let el = bytes.get(4..4 + len)?;
        bytes = &bytes[4 + len..];
        Some(el)
    })
}

/// What cleanup does with one stored entry of a state with TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purge {
    /// Nothing has expired.
    Keep,
    /// Everything has expired: drop the entry.
    Drop,
    /// Some elements of a list have expired: the entry without them.
    Rewrite(Vec<u8>),
}

/// Cleanup of `value`, an entry of a state of `kind` with TTL, at processing time `now` (ms).
pub(crate) fn purge(kind: StateKind, now: i64, value: &[u8]) -> Purge {
    if kind != StateKind::List {
        return if expiry(value) <= now {
            Purge::Drop
        } else {
            Purge::Keep
        };
    }
    let mut kept = Vec::new();
    let mut dropped = false;
    for el in list_elements(value) {
        if expiry(el) <= now {
            dropped = true;
        } else {
            kept.extend_from_slice(&(el.len() as u32).to_be_bytes());
            kept.extend_from_slice(el);
        }
    }
    match (dropped, kept.is_empty()) {
        (false, _) => Purge::Keep,
        (true, true) => Purge::Drop,
        (true, false) => Purge::Rewrite(kept),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(expiry: i64, body: &[u8]) -> Vec<u8> {
        let mut v = expiry.to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    fn list(elements: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in elements {
            out.extend_from_slice(&(e.len() as u32).to_be_bytes());
            out.extend_from_slice(e);
        }
        out
    }

    #[test]
    fn values_expire_at_their_stamp() {
        let v = stamped(100, b"x");
        assert_eq!(purge(StateKind::Value, 99, &v), Purge::Keep);
        assert_eq!(purge(StateKind::Map, 100, &v), Purge::Drop);
        assert_eq!(purge(StateKind::Value, 0, b"short"), Purge::Drop);
    }

    #[test]
    fn a_list_loses_its_expired_elements_and_goes_when_all_have() {
        let l = list(&[stamped(10, b"a"), stamped(30, b"b"), stamped(20, b"c")]);
        assert_eq!(purge(StateKind::List, 5, &l), Purge::Keep);
        assert_eq!(
            purge(StateKind::List, 20, &l),
            Purge::Rewrite(list(&[stamped(30, b"b")]))
        );
        assert_eq!(purge(StateKind::List, 30, &l), Purge::Drop);
        assert_eq!(list_elements(&l).count(), 3);
    }
}
