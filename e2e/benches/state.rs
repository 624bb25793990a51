//! State benchmark: about 1 GiB of RocksDB keyed state in two subtasks, checkpointed to a real
//! S3-compatible server (s3s-fs, started here): a full (canonical) checkpoint against an
//! incremental one after 1% of the keys changed (duration and bytes uploaded), the restore of
//! the incremental checkpoint from S3, and a rescale from 2 to 4 subtasks. Ratios are measured
//! in the same run. Targets: the incremental checkpoint uploads under 10% of the full one;
//! restore and rescale of 1 GiB take under 30 s.
//!
//! ```text
//! cargo bench -p weir-e2e --bench state          # WEIR_BENCH_STATE_MB=1024 by default
//! ```

use std::time::Instant;

use weir_crds::S3Location;
use weir_e2e::s3::S3Server;
use weir_runtime::checkpoint::incremental::{known_files, upload_native, UploadTarget};
use weir_runtime::checkpoint::{
    load_snapshot, CheckpointMetadata, NativeState, OperatorMetadata, RestorePlan, SnapshotKind,
    SubtaskMetadata,
};
use weir_runtime::state::key_group::{key_group_for_bytes, key_group_range};
use weir_runtime::state::rocksdb::RocksDbBackend;
use weir_runtime::state::snapshot::SnapshotSection;
use weir_runtime::state::typed::system_clock;
use weir_runtime::state::{
    KeyRef, KeyedStateBackend, KeyedStateInput, StateId, StateInfo, StateKind,
};
use weir_runtime::storage::{CheckpointStorage, S3Storage};

const MAX_PARALLELISM: u32 = 128;
const VALUE_BYTES: usize = 100;
const UID: &str = "window";

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:012}").into_bytes()
}

fn value(i: u64, round: u64) -> Vec<u8> {
    let mut v = vec![0u8; VALUE_BYTES];
    let mut x = i.wrapping_mul(0x9E3779B97F4A7C15) ^ round;
    for b in v.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    v
}

/// Writes key `i` with its value of `round` into the subtask owning its key group.
fn put(backends: &mut [(RocksDbBackend, StateId)], i: u64, round: u64) {
    let k = key(i);
    let kg = key_group_for_bytes(&k, MAX_PARALLELISM);
    let (b, id) = &mut backends[(kg.0 as u32 * 2 / MAX_PARALLELISM) as usize];
    b.put(
        *id,
        KeyRef {
            key_group: kg,
            key: &k,
        },
        b"",
        &value(i, round),
    )
    .unwrap();
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

/// The benchmark job's shape: one keyed operator, no declared state kinds to compare.
fn shape<'a>(
    uids: &'a [String],
    keyed_states: &'a std::collections::BTreeMap<String, Vec<weir_runtime::state::StateInfo>>,
) -> weir_runtime::checkpoint::JobShape<'a> {
    weir_runtime::checkpoint::JobShape {
        uids,
        keyed_states,
        fixed_states: &[],
        max_parallelism: MAX_PARALLELISM,
        allow_non_restored_state: false,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mb: u64 = std::env::var("WEIR_BENCH_STATE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let keys = mb * 1048576 / (VALUE_BYTES as u64 + 30);
    let server = S3Server::start();
    for (k, v) in server.env() {
        std::env::set_var(k, v);
    }
    let storage = S3Storage::open(&S3Location {
        bucket: server.bucket.clone(),
        prefix: "bench".into(),
        endpoint: Some(server.endpoint()),
        region: Some(weir_e2e::s3::REGION.into()),
        path_style: true,
    })
    .expect("S3 client");
    let work = tempfile::tempdir().unwrap();
    let info = StateInfo::new("v", StateKind::Value);
    println!("state: {keys} keys x {VALUE_BYTES} B values (~{mb} MiB), 2 subtasks, S3 = s3s-fs on 127.0.0.1");

    // Fill.
    let t = Instant::now();
    let mut backends: Vec<(RocksDbBackend, StateId)> = (0..2)
        .map(|s| {
            let mut b = RocksDbBackend::open(
                &work.path().join(format!("db-{s}")),
                key_group_range(s, MAX_PARALLELISM, 2),
                system_clock(),
            )
            .unwrap();
            let id = b.register(&info).unwrap();
            (b, id)
        })
        .collect();
    for i in 0..keys {
        put(&mut backends, i, 0);
    }
    println!("fill: {:.1} s", t.elapsed().as_secs_f64());

    // Full checkpoint: the canonical format, everything uploaded.
    let before = storage.stats();
    let t = Instant::now();
    for (s, (b, _)) in backends.iter_mut().enumerate() {
        let snap = b.snapshot(0).unwrap();
        storage
            .write(&format!("full/window-{s}.state"), &snap.bytes)
            .unwrap();
    }
    let full_s = t.elapsed().as_secs_f64();
    let full_bytes = storage.stats().since(&before).bytes_written;

    // Incremental checkpoint 1 (nothing uploaded before), 1% of the keys changed, checkpoint 2.
    let run_tag = "bench";
    let incremental =
        |backends: &mut Vec<(RocksDbBackend, StateId)>, id: u64, known: &[Option<NativeState>]| {
            let before = storage.stats();
            let t = Instant::now();
            let dir = format!("inc/checkpoints/chk-{id}");
            let mut states = Vec::new();
            for (s, (b, _)) in backends.iter_mut().enumerate() {
                let local = work.path().join(format!("native-{s}-{id}"));
                let snap = b.native_snapshot(&local).unwrap().unwrap();
                let target = UploadTarget {
                    job_root: "inc",
                    checkpoint_dir: &dir,
                    uid: UID,
                    subtask: s as u32,
                    run_tag,
                };
                let k = known[s].as_ref().map(known_files);
                let (state, _) = upload_native(&storage, target, &snap, k.as_ref()).unwrap();
                std::fs::remove_dir_all(&local).unwrap();
                states.push(state);
            }
            let secs = t.elapsed().as_secs_f64();
            let metadata = CheckpointMetadata {
                format_version: 1,
                job: "bench".into(),
                checkpoint_id: id,
                kind: SnapshotKind::Checkpoint,
                timestamp_ms: 0,
                max_parallelism: MAX_PARALLELISM,
                operators: [(
                    UID.to_string(),
                    OperatorMetadata {
                        parallelism: 2,
                        subtasks: states
                            .iter()
                            .enumerate()
                            .map(|(s, n)| SubtaskMetadata {
                                subtask: s as u32,
                                keyed_state: None,
                                operator_state: Default::default(),
                                native_state: Some(n.clone()),
                            })
                            .collect(),
                    },
                )]
                .into_iter()
                .collect(),
            };
            storage
                .write(&format!("{dir}/_metadata"), &metadata.encode())
                .unwrap();
            (states, secs, storage.stats().since(&before).bytes_written)
        };
    let (first, first_s, first_bytes) = incremental(&mut backends, 1, &[None, None]);
    let changed = keys / 100;
    for j in 0..changed {
        put(&mut backends, j * 100, 1);
    }
    let known: Vec<Option<NativeState>> = first.into_iter().map(Some).collect();
    let (_, inc_s, inc_bytes) = incremental(&mut backends, 2, &known);
    drop(backends);

    // Restore checkpoint 2 from S3 into the same two subtasks (files reopened as they are).
    let check =
        |b: &mut dyn KeyedStateBackend, id: StateId, range: weir_runtime::state::KeyGroupRange| {
            let mut out = Vec::new();
            let mut found = 0;
            for i in (0..keys).step_by(997) {
                let k = key(i);
                let kg = key_group_for_bytes(&k, MAX_PARALLELISM);
                if range.contains(kg) {
                    assert!(
                        b.get(
                            id,
                            KeyRef {
                                key_group: kg,
                                key: &k
                            },
                            b"",
                            &mut out
                        )
                        .unwrap(),
                        "key {i} lost"
                    );
                    let round = if i % 100 == 0 { 1 } else { 0 };
                    assert_eq!(out, value(i, round), "key {i} has a wrong value");
                    found += 1;
                }
            }
            found
        };
    let t = Instant::now();
    let loaded = load_snapshot(&storage, "inc/checkpoints/chk-2")
        .unwrap()
        .expect("checkpoint 2 restorable");
    let (uids, no_states) = ([UID.to_string()], Default::default());
    let plan = RestorePlan::new(loaded, shape(&uids, &no_states)).unwrap();
    let mut checked = 0;
    for s in 0..2 {
        let range = key_group_range(s, MAX_PARALLELISM, 2);
        let sources = plan.native_sources(UID, range);
        let dir = work.path().join(format!("restore-{s}"));
        sources[0].materialize(&dir).unwrap();
        let mut b =
            RocksDbBackend::open_restored(&dir, range, sources[0].states, system_clock()).unwrap();
        let id = b.register(&info).unwrap();
        checked += check(&mut b, id, range);
    }
    let restore_s = t.elapsed().as_secs_f64();
    drop(plan);

    // Rescale 2 -> 4: each new subtask reads its key groups from the old files it overlaps.
    let t = Instant::now();
    let loaded = load_snapshot(&storage, "inc/checkpoints/chk-2")
        .unwrap()
        .expect("checkpoint 2 restorable");
    let (uids, no_states) = ([UID.to_string()], Default::default());
    let plan = RestorePlan::new(loaded, shape(&uids, &no_states)).unwrap();
    let mut rescaled = 0;
    for s in 0..4 {
        let range = key_group_range(s, MAX_PARALLELISM, 4);
        let mut b = RocksDbBackend::open(
            &work.path().join(format!("rescaled-{s}")),
            range,
            system_clock(),
        )
        .unwrap();
        let converted: Vec<_> = plan
            .native_sources(UID, range)
            .iter()
            .map(|n| {
                n.to_canonical(
                    n.range.intersect(&range).unwrap(),
                    &work.path().join(format!("scratch-{s}")),
                )
                .unwrap()
            })
            .collect();
        let sections = converted
            .iter()
            .map(|k| SnapshotSection {
                base: 0,
                bytes: &k.bytes,
                range: k.range,
                key_group_offsets: &k.key_group_offsets,
                key_group_crc32c: &k.key_group_crc32c,
                states: &k.states,
            })
            .collect();
        b.restore(&KeyedStateInput { range, sections }).unwrap();
        let id = b.register(&info).unwrap();
        rescaled += check(&mut b, id, range);
    }
    let rescale_s = t.elapsed().as_secs_f64();
    assert_eq!(checked, rescaled);

    println!();
    println!("| step | seconds | MiB uploaded | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| full checkpoint (canonical) | {full_s:.2} | {:.1} | 1.00 |",
        mib(full_bytes)
    );
    println!(
        "| first incremental (all files new) | {first_s:.2} | {:.1} | {:.2} of full |",
        mib(first_bytes),
        first_bytes as f64 / full_bytes as f64
    );
    println!("| incremental after 1% of keys changed | {inc_s:.2} | {:.1} | {:.3} of full (target < 0.10) |", mib(inc_bytes), inc_bytes as f64 / full_bytes as f64);
    println!("| restore from S3, 2 subtasks | {restore_s:.2} | | target < 30 s |");
    println!(
        "| rescale 2 -> 4 from S3 | {rescale_s:.2} | | {:.2}x the restore |",
        rescale_s / restore_s
    );
    println!("({checked} sampled keys verified after restore and after rescale)");
}
