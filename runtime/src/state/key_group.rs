//! Key groups: Flink's arithmetic over a stable hash of the key's bytes. Pure.
//!
//! - `key_group(key) = xxh3_64(key_bytes) % max_parallelism`
//! - `subtask(kg) = kg * parallelism / max_parallelism`
//! - subtask `i` owns `[(i*M + P - 1) / P, ((i+1)*M - 1) / P]` (M = max parallelism,
//!   P = parallelism), as in Flink's `KeyGroupRangeAssignment`.
//!
//! The hash is XXH3-64 with seed 0 (the xxHash specification, stable since xxHash 0.8). It is
//! part of the checkpoint format: changing it would send restored keys to the wrong key group.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// A key group: the unit in which keyed state moves between subtasks (0 .. max parallelism).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyGroup(pub u16);

/// An inclusive range of key groups owned by one subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupRange {
    /// First key group, inclusive.
    pub start: u16,
    /// Last key group, inclusive.
    pub end: u16,
}

impl KeyGroupRange {
    /// Number of key groups in the range.
    pub fn len(&self) -> usize {
        (self.end as usize + 1).saturating_sub(self.start as usize)
    }

    /// True when the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `kg` lies in the range.
    pub fn contains(&self, kg: KeyGroup) -> bool {
        kg.0 >= self.start && kg.0 <= self.end
    }

    /// The key groups both ranges hold, if any.
    pub fn intersect(&self, other: &KeyGroupRange) -> Option<KeyGroupRange> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start <= end).then_some(KeyGroupRange { start, end })
    }

    /// Iterates the key groups of the range in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = KeyGroup> {
        (self.start..=self.end).map(KeyGroup)
    }
}

/// The key group of a key, from its encoded bytes.
///
/// `max_parallelism` must be between 1 and 32768 (validated with the manifest).
pub fn key_group_for_bytes(key_bytes: &[u8], max_parallelism: u32) -> KeyGroup {
    KeyGroup((xxh3_64(key_bytes) % max_parallelism as u64) as u16)
}

/// The subtask (0-based) that owns key group `kg` at the given parallelism.
pub fn subtask_for_key_group(kg: KeyGroup, max_parallelism: u32, parallelism: u32) -> u32 {
    (kg.0 as u32 * parallelism) / max_parallelism
}

/// The key groups subtask `subtask` owns when `max_parallelism` key groups are spread over
/// `parallelism` subtasks. Requires `subtask < parallelism <= max_parallelism`.
pub fn key_group_range(subtask: u32, max_parallelism: u32, parallelism: u32) -> KeyGroupRange {
    let (i, m, p) = (subtask as u64, max_parallelism as u64, parallelism as u64);
    let start = (i * m).div_ceil(p); // Flink: (i * M + P - 1) / P
    let end = ((i + 1) * m - 1) / p;
    KeyGroupRange {
        start: start as u16,
        end: end as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned values: if this test fails, the hash or its use changed and every existing
    /// checkpoint and savepoint would restore keys into the wrong key groups.
    #[test]
    fn hash_is_pinned() {
        assert_eq!(xxh3_64(b""), 0x2d06800538d394c2);
        assert_eq!(
            key_group_for_bytes(b"", 128),
            KeyGroup(0x2d06800538d394c2u64 as u16 % 128)
        );
        assert_eq!(
            [
                b"85123A".as_slice(),
                b"22423",
                b"auction-1",
                b"\x00\x00\x00\x01"
            ]
            .map(|k| key_group_for_bytes(k, 128).0),
            PINNED_128
        );
        assert_eq!(
            [
                b"85123A".as_slice(),
                b"22423",
                b"auction-1",
                b"\x00\x00\x00\x01"
            ]
            .map(|k| key_group_for_bytes(k, 32768).0),
            PINNED_32768
        );
    }

    const PINNED_128: [u16; 4] = [113, 22, 93, 15];
    const PINNED_32768: [u16; 4] = [19313, 14998, 8413, 21775];

    #[test]
    fn ranges_match_flink() {
        // Flink: computeKeyGroupRangeForOperatorIndex(128, 3, i)
        assert_eq!(
            key_group_range(0, 128, 3),
            KeyGroupRange { start: 0, end: 42 }
        );
        assert_eq!(
            key_group_range(1, 128, 3),
            KeyGroupRange { start: 43, end: 85 }
        );
        assert_eq!(
            key_group_range(2, 128, 3),
            KeyGroupRange {
                start: 86,
                end: 127
            }
        );
    }

    #[test]
    fn ranges_partition_and_agree_with_subtask_assignment() {
        for m in [1u32, 7, 128, 1000, 32768] {
            for p in [1u32, 2, 3, 4, 5, 7] {
                if p > m {
                    continue;
                }
                let mut next = 0u32;
                for i in 0..p {
                    let r = key_group_range(i, m, p);
                    assert_eq!(r.start as u32, next, "m={m} p={p} i={i}");
                    for kg in r.iter() {
                        assert_eq!(subtask_for_key_group(kg, m, p), i, "m={m} p={p} kg={kg:?}");
                    }
                    next = r.end as u32 + 1;
                }
                assert_eq!(next, m);
            }
        }
    }
}
