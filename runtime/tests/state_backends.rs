//! Keyed state through its public interface, on both backends: value, list, map, reducing
//! and aggregating state, TTL, and snapshots that restore across backends and key-group
//! ranges.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use weir_runtime::api::AggregateFunction;
use weir_runtime::state::heap::HeapBackend;
use weir_runtime::state::key_group::{key_group_for_bytes, key_group_range};
use weir_runtime::state::rocksdb::RocksDbBackend;
use weir_runtime::state::snapshot::SnapshotSection;
use weir_runtime::state::typed::system_clock;
use weir_runtime::state::{
    KeyGroupRange, KeyRef, KeyedSnapshot, KeyedStateBackend, KeyedStateInput, KeyedStateStore,
    StateInfo, StateKind, StateTtl,
};

const M: u32 = 16;

struct Backends {
    _dir: tempfile::TempDir,
    list: Vec<(&'static str, Box<dyn KeyedStateBackend>)>,
}

fn backends(range: KeyGroupRange) -> Backends {
    let dir = tempfile::tempdir().unwrap();
    let rocks = RocksDbBackend::open(&dir.path().join("db"), range, system_clock()).unwrap();
    Backends {
        list: vec![
            ("heap", Box::new(HeapBackend::new(range))),
            ("rocksdb", Box::new(rocks)),
        ],
        _dir: dir,
    }
}

fn full() -> KeyGroupRange {
    KeyGroupRange {
        start: 0,
        end: (M - 1) as u16,
    }
}

fn manual_clock() -> (Arc<AtomicI64>, weir_runtime::state::typed::Clock) {
    let now = Arc::new(AtomicI64::new(1_000));
    let n = now.clone();
    (now, Arc::new(move || n.load(Ordering::SeqCst)))
}

fn set_key(store: &mut KeyedStateStore, key: &str) {
    store.set_current_key(key_group_for_bytes(key.as_bytes(), M), key.as_bytes());
}

#[test]
fn value_list_map_and_reducing_state_behave_the_same_on_both_backends() {
    for (name, backend) in backends(full()).list {
        let (_now, clock) = manual_clock();
        let mut s = KeyedStateStore::new(backend, clock);
        let value = s.value_state::<u64>("v", None).unwrap();
        let list = s.list_state::<String>("l", None).unwrap();
        let map = s.map_state::<String, i32>("m", None).unwrap();
        let sum = s.reducing_state::<i64>("r", None, |a, b| a + b).unwrap();
        for key in ["a", "b"] {
            set_key(&mut s, key);
            assert_eq!(value.get(&mut s, b"").unwrap(), None, "{name}");
            value.update(&mut s, b"", &7).unwrap();
            value.update(&mut s, b"ns2", &9).unwrap();
            list.add(&mut s, b"", &format!("{key}1")).unwrap();
            list.add(&mut s, b"", &format!("{key}2")).unwrap();
            map.put(&mut s, b"", &"x".to_string(), &1).unwrap();
            map.put(&mut s, b"", &"y".to_string(), &2).unwrap();
            map.remove(&mut s, b"", &"x".to_string()).unwrap();
            sum.add(&mut s, b"", 5).unwrap();
            sum.add(&mut s, b"", 6).unwrap();
        }
        set_key(&mut s, "a");
        assert_eq!(value.get(&mut s, b"").unwrap(), Some(7), "{name}");
        assert_eq!(value.get(&mut s, b"ns2").unwrap(), Some(9), "{name}");
        assert_eq!(list.get(&mut s, b"").unwrap(), vec!["a1", "a2"], "{name}");
        assert_eq!(
            map.entries(&mut s, b"").unwrap(),
            vec![("y".to_string(), 2)],
            "{name}"
        );
        assert_eq!(
            map.get(&mut s, b"", &"x".to_string()).unwrap(),
            None,
            "{name}"
        );
        assert_eq!(sum.get(&mut s, b"").unwrap(), Some(11), "{name}");
        value.clear(&mut s, b"").unwrap();
        map.clear(&mut s, b"").unwrap();
        list.clear(&mut s, b"").unwrap();
        assert_eq!(value.get(&mut s, b"").unwrap(), None, "{name}");
        assert!(map.entries(&mut s, b"").unwrap().is_empty(), "{name}");
        assert!(list.get(&mut s, b"").unwrap().is_empty(), "{name}");
        set_key(&mut s, "b");
        assert_eq!(
            list.get(&mut s, b"").unwrap(),
            vec!["b1", "b2"],
            "{name}: other keys untouched"
        );
    }
}

#[test]
fn ttl_never_returns_expired_values_and_writes_restart_it() {
    for (name, backend) in backends(full()).list {
        let (now, clock) = manual_clock();
        let mut s = KeyedStateStore::new(backend, clock);
        let ttl = Some(StateTtl::new(100));
        let value = s.value_state::<u64>("v", ttl).unwrap();
        let list = s.list_state::<u64>("l", ttl).unwrap();
        let map = s.map_state::<u64, u64>("m", ttl).unwrap();
        set_key(&mut s, "k");
        value.update(&mut s, b"", &1).unwrap();
        list.add(&mut s, b"", &1).unwrap();
        map.put(&mut s, b"", &1, &1).unwrap();
        now.store(1_050, Ordering::SeqCst);
        list.add(&mut s, b"", &2).unwrap();
        value.update(&mut s, b"", &2).unwrap();
        now.store(1_120, Ordering::SeqCst);
        assert_eq!(
            value.get(&mut s, b"").unwrap(),
            Some(2),
            "{name}: write restarted the ttl"
        );
        assert_eq!(
            list.get(&mut s, b"").unwrap(),
            vec![2],
            "{name}: first element expired"
        );
        assert_eq!(
            map.get(&mut s, b"", &1).unwrap(),
            None,
            "{name}: map value expired"
        );
        now.store(1_200, Ordering::SeqCst);
        assert_eq!(value.get(&mut s, b"").unwrap(), None, "{name}");
    }
}

#[test]
fn ttl_read_and_write_restarts_on_read_and_an_expired_read_cleans_up() {
    for (name, backend) in backends(full()).list {
        let (now, clock) = manual_clock();
        let mut s = KeyedStateStore::new(backend, clock);
        let on_read = Some(StateTtl::new(100).update_on_read_and_write());
        let value = s.value_state::<u64>("v", on_read).unwrap();
        let list = s.list_state::<u64>("l", on_read).unwrap();
        let map = s.map_state::<u64, u64>("m", on_read).unwrap();
        let plain = s.value_state::<u64>("p", Some(StateTtl::new(100))).unwrap();
        set_key(&mut s, "k");
        value.update(&mut s, b"", &1).unwrap();
        list.add(&mut s, b"", &1).unwrap();
        map.put(&mut s, b"", &1, &1).unwrap();
        plain.update(&mut s, b"", &1).unwrap();
        // Read at 1080: the read-and-write states live until 1180 now, the other until 1100.
        now.store(1_080, Ordering::SeqCst);
        assert_eq!(value.get(&mut s, b"").unwrap(), Some(1), "{name}");
        assert_eq!(list.get(&mut s, b"").unwrap(), vec![1], "{name}");
        assert_eq!(map.entries(&mut s, b"").unwrap(), vec![(1, 1)], "{name}");
        assert_eq!(plain.get(&mut s, b"").unwrap(), Some(1), "{name}");
        now.store(1_150, Ordering::SeqCst);
        assert_eq!(
            value.get(&mut s, b"").unwrap(),
            Some(1),
            "{name}: read restarted it"
        );
        assert_eq!(list.get(&mut s, b"").unwrap(), vec![1], "{name}");
        assert_eq!(map.get(&mut s, b"", &1).unwrap(), Some(1), "{name}");
        assert_eq!(
            plain.get(&mut s, b"").unwrap(),
            None,
            "{name}: reads do not extend it"
        );
        assert_eq!(
            s.backend().snapshot(0).unwrap().entries,
            3,
            "{name}: expired read removed"
        );
        now.store(1_300, Ordering::SeqCst);
        assert_eq!(value.get(&mut s, b"").unwrap(), None, "{name}");
        assert!(list.get(&mut s, b"").unwrap().is_empty(), "{name}");
        assert!(map.entries(&mut s, b"").unwrap().is_empty(), "{name}");
        assert_eq!(
            s.backend().snapshot(0).unwrap().entries,
            0,
            "{name}: all cleaned up on read"
        );
    }
}

struct Count;
impl AggregateFunction for Count {
    type In = u32;
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, _: &u32, acc: &mut u64) {
        *acc += 1;
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

fn fill(backend: Box<dyn KeyedStateBackend>, keys: &[String]) -> KeyedSnapshot {
    let (_now, clock) = manual_clock();
    let mut s = KeyedStateStore::new(backend, clock);
    let agg = s.aggregating_state("agg", None, Arc::new(Count)).unwrap();
    let map = s.map_state::<String, String>("m", None).unwrap();
    for (i, k) in keys.iter().enumerate() {
        set_key(&mut s, k);
        for _ in 0..=(i % 3) {
            agg.add(&mut s, b"w", &0).unwrap();
        }
        map.put(&mut s, b"", &"k".to_string(), k).unwrap();
    }
    s.backend().snapshot(0).unwrap()
}

fn section(s: &KeyedSnapshot) -> SnapshotSection<'_> {
    SnapshotSection {
        base: 0,
        bytes: &s.bytes,
        range: s.range,
        key_group_offsets: &s.key_group_offsets,
        key_group_crc32c: &s.key_group_crc32c,
        states: &s.states,
    }
}

#[test]
fn snapshots_are_canonical_and_restore_across_backends_and_ranges() {
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    let snaps: Vec<KeyedSnapshot> = backends(full())
        .list
        .into_iter()
        .map(|(_, b)| fill(b, &keys))
        .collect();
    // Same entries, possibly in another order within a key group: compare entry sets.
    assert_eq!(snaps[0].entries, snaps[1].entries);
    assert_eq!(snaps[0].bytes.len(), snaps[1].bytes.len());
    assert_eq!(
        snaps[0].key_group_offsets, snaps[1].key_group_offsets,
        "same bytes per key group"
    );

    // Rescale: restore each snapshot into 3 subtasks of either backend; every key is found
    // exactly in the subtask that owns its key group.
    for snap in &snaps {
        for sub in 0..3 {
            let range = key_group_range(sub, M, 3);
            for (name, mut backend) in backends(range).list {
                backend
                    .restore(&KeyedStateInput {
                        range,
                        sections: vec![section(snap)],
                    })
                    .unwrap();
                let (_now, clock) = manual_clock();
                let mut s = KeyedStateStore::new(backend, clock);
                let agg = s.aggregating_state("agg", None, Arc::new(Count)).unwrap();
                let map = s.map_state::<String, String>("m", None).unwrap();
                for (i, k) in keys.iter().enumerate() {
                    if !range.contains(key_group_for_bytes(k.as_bytes(), M)) {
                        continue;
                    }
                    set_key(&mut s, k);
                    assert_eq!(
                        agg.get(&mut s, b"w").unwrap(),
                        Some((i % 3) as u64 + 1),
                        "{name} {k}"
                    );
                    assert_eq!(
                        map.get(&mut s, b"", &"k".to_string()).unwrap().as_deref(),
                        Some(k.as_str())
                    );
                }
                let restored = s.backend().snapshot(0).unwrap();
                let owned = keys
                    .iter()
                    .filter(|k| range.contains(key_group_for_bytes(k.as_bytes(), M)))
                    .count();
                assert_eq!(
                    restored.entries,
                    2 * owned as u64,
                    "{name}: only owned key groups restored"
                );
            }
        }
    }
}

#[test]
fn a_state_restored_with_another_kind_is_refused() {
    let snap = fill(Box::new(HeapBackend::new(full())), &["a".to_string()]);
    let mut backend = HeapBackend::new(full());
    backend
        .restore(&KeyedStateInput {
            range: full(),
            sections: vec![section(&snap)],
        })
        .unwrap();
    let (_now, clock) = manual_clock();
    let mut s = KeyedStateStore::new(Box::new(backend), clock);
    let err = s
        .value_state::<u64>("agg", None)
        .err()
        .expect("kind mismatch");
    assert!(err.to_string().contains("agg"), "{err}");
}

#[test]
fn a_damaged_key_group_section_is_refused() {
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    let mut snap = fill(Box::new(HeapBackend::new(full())), &keys);
    let start = snap.key_group_offsets[3] as usize;
    let end = snap.key_group_offsets[4] as usize;
    assert!(end > start, "key group 3 holds entries");
    snap.bytes[(start + end) / 2] ^= 0x10;
    let mut backend = HeapBackend::new(full());
    let err = backend
        .restore(&KeyedStateInput {
            range: full(),
            sections: vec![section(&snap)],
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("key group 3: checksum mismatch"),
        "{err}"
    );
    // A subtask that does not own key group 3 never reads it, and restores fine.
    let mut other = HeapBackend::new(KeyGroupRange { start: 8, end: 15 });
    other
        .restore(&KeyedStateInput {
            range: KeyGroupRange { start: 8, end: 15 },
            sections: vec![section(&snap)],
        })
        .unwrap();
}

#[test]
fn expired_values_are_left_out_of_full_snapshots() {
    for (name, backend) in backends(full()).list {
        let (now, clock) = manual_clock();
        let mut s = KeyedStateStore::new(backend, clock);
        let ttl = Some(StateTtl::new(100));
        let value = s.value_state::<u64>("v", ttl).unwrap();
        let list = s.list_state::<u64>("l", ttl).unwrap();
        let kept = s.value_state::<u64>("kept", None).unwrap();
        for k in 0..10 {
            set_key(&mut s, &format!("k{k}"));
            value.update(&mut s, b"", &k).unwrap();
            kept.update(&mut s, b"", &k).unwrap();
        }
        set_key(&mut s, "k0");
        list.add(&mut s, b"", &1).unwrap();
        now.store(1_080, Ordering::SeqCst);
        list.add(&mut s, b"", &2).unwrap();
        // At 1150 the values and the list's first element have expired, unread.
        let snap = s.backend().snapshot(1_150).unwrap();
        assert_eq!(snap.entries, 10 + 1, "{name}: the kept values and the list");
        let mut restored = KeyedStateStore::new(Box::new(HeapBackend::new(full())), {
            let (later, clock) = manual_clock();
            later.store(1_150, Ordering::SeqCst);
            clock
        });
        restored
            .backend()
            .restore(&KeyedStateInput {
                range: full(),
                sections: vec![section(&snap)],
            })
            .unwrap();
        let list = restored.list_state::<u64>("l", ttl).unwrap();
        set_key(&mut restored, "k0");
        assert_eq!(list.get(&mut restored, b"").unwrap(), vec![2], "{name}");
    }
}

#[test]
fn rocksdb_compaction_drops_expired_values_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (now, clock) = manual_clock();
    let mut b = RocksDbBackend::open(&dir.path().join("db"), full(), clock).unwrap();
    let ttl = b
        .register(&StateInfo::new("v", StateKind::Value).with_ttl(true))
        .unwrap();
    let plain = b.register(&StateInfo::new("p", StateKind::Value)).unwrap();
    let stamped = |expiry: i64| {
        let mut v = expiry.to_be_bytes().to_vec();
        v.extend_from_slice(b"value");
        v
    };
    for k in 0..100u32 {
        let key = k.to_be_bytes();
        let at = KeyRef {
            key_group: key_group_for_bytes(&key, M),
            key: &key,
        };
        b.put(ttl, at, b"", &stamped(if k < 60 { 1_100 } else { 5_000 }))
            .unwrap();
        b.put(plain, at, b"", b"value").unwrap();
    }
    let rows = |b: &mut RocksDbBackend, id| {
        let mut n = 0;
        b.for_each_key(id, &mut |_, _, _| n += 1).unwrap();
        n
    };
    b.compact().unwrap();
    assert_eq!(rows(&mut b, ttl), 100, "nothing expired yet");
    now.store(2_000, Ordering::SeqCst);
    b.compact().unwrap();
    assert_eq!(rows(&mut b, ttl), 40, "the expired values are gone");
    assert_eq!(
        rows(&mut b, plain),
        100,
        "a state without TTL keeps everything"
    );
}

/// Every entry of a snapshot as (state, key group, composite, user key, value), sorted: the
/// canonical content, whatever the order within a key group.
type Row = (String, u16, Vec<u8>, Option<Vec<u8>>, Vec<u8>);

fn rows(snap: &KeyedSnapshot) -> Vec<Row> {
    let mut rows = Vec::new();
    KeyedStateInput {
        range: snap.range,
        sections: vec![section(snap)],
    }
    .for_each_entry(&mut |e| {
        rows.push((
            e.state.name.clone(),
            e.key_group.0,
            e.composite.to_vec(),
            e.user_key.map(<[u8]>::to_vec),
            e.value.to_vec(),
        ));
        Ok(())
    })
    .unwrap();
    rows.sort();
    rows
}

#[test]
fn a_deferred_heap_snapshot_holds_its_barrier_state_while_writes_go_on() {
    // Random writes to value, list and map state on both backends; at random points the heap
    // snapshot is deferred and serialized (on another thread) only some writes later, or
    // dropped as an aborted checkpoint's. Its entries equal RocksDB's synchronous snapshot
    // at the same point, and reads during and after it equal RocksDB's.
    let seed = fastrand::u64(..);
    eprintln!("seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut backends = backends(full());
    let mut stores: Vec<KeyedStateStore> = std::mem::take(&mut backends.list)
        .into_iter()
        .map(|(_, b)| KeyedStateStore::new(b, system_clock()))
        .collect();
    let (heap, rocks) = (0, 1);
    let value = |s: &mut KeyedStateStore| s.value_state::<u64>("v", None).unwrap();
    let list = |s: &mut KeyedStateStore| s.list_state::<u32>("l", None).unwrap();
    let map = |s: &mut KeyedStateStore| s.map_state::<u8, u64>("m", None).unwrap();
    let mut pending: Option<(std::thread::JoinHandle<KeyedSnapshot>, Vec<Row>, usize)> = None;
    let (mut checked, mut aborted) = (0, 0);
    for step in 0..20_000usize {
        let key = format!("k{}", rng.u8(0..40));
        let ns: &[u8] = if rng.bool() { b"a" } else { b"b" };
        let (op, uk, n) = (rng.u8(0..8), rng.u8(0..6), rng.u64(0..1000));
        for s in &mut stores {
            set_key(s, &key);
            match op {
                0 => value(s).update(s, ns, &n).unwrap(),
                1 => value(s).clear(s, ns).unwrap(),
                2 => list(s).add(s, ns, &(n as u32)).unwrap(),
                3 => list(s).clear(s, ns).unwrap(),
                4 | 5 => map(s).put(s, ns, &uk, &n).unwrap(),
                6 => map(s).remove(s, ns, &uk).unwrap(),
                _ => map(s).clear(s, ns).unwrap(),
            }
        }
        let reads: Vec<_> = stores
            .iter_mut()
            .map(|s| {
                (
                    value(s).get(s, ns).unwrap(),
                    list(s).get(s, ns).unwrap(),
                    map(s).entries(s, ns).unwrap(),
                    map(s).get(s, ns, &uk).unwrap(),
                )
            })
            .collect();
        assert_eq!(reads[heap], reads[rocks], "step {step}, key {key}");

        if pending.as_ref().is_some_and(|p| p.2 <= step) {
            let (serializer, expected, _) = pending.take().unwrap();
            assert_eq!(rows(&serializer.join().unwrap()), expected, "step {step}");
            checked += 1;
        }
        if pending.is_none() && rng.u8(0..50) == 0 {
            let deferred = stores[heap]
                .backend()
                .snapshot_deferred(0)
                .unwrap()
                .expect("the heap backend defers");
            let expected = rows(&stores[rocks].backend().snapshot(0).unwrap());
            if rng.u8(0..4) == 0 {
                drop(deferred);
                aborted += 1;
            } else {
                let serializer = std::thread::spawn(move || deferred.serialize());
                pending = Some((serializer, expected, step + rng.usize(0..300)));
            }
        }
    }
    assert!(
        checked >= 40 && aborted >= 8,
        "{checked} checked, {aborted} aborted"
    );
    if let Some((serializer, expected, _)) = pending {
        assert_eq!(rows(&serializer.join().unwrap()), expected);
    }
    let [h, r] = [heap, rocks].map(|i| rows(&stores[i].backend().snapshot(0).unwrap()));
    assert_eq!(h, r, "after the last snapshot");
    assert!(!h.is_empty());
}

#[test]
fn rocksdb_reads_iterates_and_checkpoints_every_write_beyond_its_row_cache() {
    // 30,000 keys of values and maps are several times the RocksDB backend's 4 MiB row
    // cache, so rows go through it, are written back when it fills, and are read back from
    // RocksDB; every third key is deleted after it was written.
    let keys: Vec<String> = (0..30_000)
        .map(|i| format!("key-{i:05}-{}", "x".repeat(40)))
        .collect();
    let write = |backend: Box<dyn KeyedStateBackend>| {
        let (_now, clock) = manual_clock();
        let mut s = KeyedStateStore::new(backend, clock);
        let value = s.value_state::<u64>("v", None).unwrap();
        let map = s.map_state::<u64, String>("m", None).unwrap();
        for round in 0..2u64 {
            for (i, k) in keys.iter().enumerate() {
                set_key(&mut s, k);
                let seen = value.get(&mut s, b"").unwrap().unwrap_or(0);
                value.update(&mut s, b"", &(seen + i as u64)).unwrap();
                map.put(&mut s, b"", &round, k).unwrap();
                if round == 1 && i % 3 == 0 {
                    value.clear(&mut s, b"").unwrap();
                    map.remove(&mut s, b"", &0).unwrap();
                }
            }
        }
        set_key(&mut s, &keys[1]);
        assert_eq!(value.get(&mut s, b"").unwrap(), Some(2));
        assert_eq!(
            map.entries(&mut s, b"").unwrap(),
            vec![(0, keys[1].clone()), (1, keys[1].clone())]
        );
        set_key(&mut s, &keys[3]);
        assert_eq!(value.get(&mut s, b"").unwrap(), None, "deleted");
        assert_eq!(
            map.entries(&mut s, b"").unwrap(),
            vec![(1, keys[3].clone())]
        );
        s
    };
    let mut backends = backends(full());
    let mut stores: Vec<KeyedStateStore> = std::mem::take(&mut backends.list)
        .into_iter()
        .map(|(_, b)| write(b))
        .collect();
    let heap = stores[0].backend().snapshot(0).unwrap();
    let rocks = stores[1].backend().snapshot(0).unwrap();
    assert_eq!(heap.entries, 20_000 * 3 + 10_000);
    assert_eq!(heap.entries, rocks.entries);
    assert_eq!(heap.key_group_offsets, rocks.key_group_offsets);

    // A native checkpoint holds the cached writes too: reopened, it reads the same.
    let dir = tempfile::tempdir().unwrap();
    let mut rocks = stores.pop().unwrap();
    let key = &keys[4];
    set_key(&mut rocks, key);
    let value = rocks.value_state::<u64>("v", None).unwrap();
    value.update(&mut rocks, b"", &77).unwrap();
    let native = rocks
        .backend()
        .native_snapshot(&dir.path().join("ckpt"))
        .unwrap()
        .expect("rocksdb takes native checkpoints");
    drop(rocks);
    let reopened =
        RocksDbBackend::open_restored(&native.dir, full(), &native.states, system_clock()).unwrap();
    let mut s = KeyedStateStore::new(Box::new(reopened), system_clock());
    let value = s.value_state::<u64>("v", None).unwrap();
    set_key(&mut s, key);
    assert_eq!(value.get(&mut s, b"").unwrap(), Some(77));
    assert_eq!(s.backend().snapshot(0).unwrap().entries, heap.entries);
}
