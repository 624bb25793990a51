//! Kafka against a real broker (Apache Kafka 4, one KRaft node started by the test), through
//! the built-in aggregate job: reading `kafka://` input, killed with SIGKILL at random points
//! and resumed, it commits exactly the output of an uninterrupted run; rescaled 2 -> 3 -> 1
//! through savepoints, no offset is lost or read twice; records that do not parse reach the
//! dead-letter topic with their partition and offset and are counted; a partition added
//! while the job runs is discovered and read. Writing `kafka://` output exactly once, killed
//! mid-checkpoint, a `read_committed` consumer sees the uninterrupted run's results and a
//! `read_uncommitted` one the aborted ones too; the broker killed during a checkpoint and
//! restarted fails that checkpoint only; a transaction timeout shorter than a checkpoint is
//! rejected before the job runs; a password from `argsFromSecrets` (the variable the operator
//! fills from a Secret) authenticates the source on a SASL listener, and a wrong or missing one
//! does not.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use weir_e2e::kafka::{Isolation, KafkaBroker, SASL_PASSWORD, SASL_USER};
use weir_e2e::{assert_success, kill_at_random_points, manifest_job, weir_bin, TestJob};

/// Event time of record 0 (2024-01-01 00:00:00 UTC), ms.
const BASE_TS: i64 = 1_704_067_200_000;
/// Event time between consecutive records, ms.
const STEP_MS: i64 = 10;
/// Distinct keys.
const KEYS: usize = 50;

/// Record `i` of the input: `auction,price,ts` on partition `i % partitions`, or, every
/// `bad_every`-th record, a line whose timestamp does not parse.
fn input_line(i: usize, bad_every: usize) -> String {
    if bad_every > 0 && i % bad_every == bad_every - 1 {
        return format!("{},{},not-a-time", i % KEYS, i % 100);
    }
    format!("{},{},{}", i % KEYS, i % 100, BASE_TS + i as i64 * STEP_MS)
}

/// Writes records `range` of the input to `topic`, record `i` on partition `i % partitions`.
fn produce(
    broker: &KafkaBroker,
    topic: &str,
    range: std::ops::Range<usize>,
    partitions: usize,
    bad_every: usize,
) {
    let lines: Vec<(i32, String, i64)> = range
        .map(|i| {
            (
                (i % partitions) as i32,
                input_line(i, bad_every),
                BASE_TS + i as i64 * STEP_MS,
            )
        })
        .collect();
    let records: Vec<(i32, Option<&str>, &str, i64)> = lines
        .iter()
        .map(|(p, l, ts)| (*p, None, l.as_str(), *ts))
        .collect();
    broker.produce(topic, &records);
}

/// Per key, the record count and price sum of the good records among `range`.
fn reference(range: std::ops::Range<usize>, bad_every: usize) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for i in range {
        if bad_every > 0 && i % bad_every == bad_every - 1 {
            continue;
        }
        let e = out.entry((i % KEYS).to_string()).or_insert((0, 0));
        e.0 += 1;
        e.1 += (i % 100) as u64;
    }
    out
}

/// Per key, the summed count and sum columns of the job's output lines
/// (`key,start,end,count,sum`).
fn totals(lines: &[String]) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let e = out.entry(f[0].to_string()).or_insert((0, 0));
        e.0 += f[3].parse::<u64>().expect("count");
        e.1 += f[4].parse::<u64>().expect("sum");
    }
    out
}

/// The aggregate job over `topic` (CSV `auction,price,ts`, epoch-ms event time), 10 s
/// windows of count and sum per auction, at `parallelism`; `args` adds or replaces job
/// arguments.
fn kafka_job(
    broker: &KafkaBroker,
    topic: &str,
    parallelism: u32,
    args: &[(&str, &str)],
) -> TestJob {
    let base = tempfile::tempdir().expect("temp dir");
    let template = base.path().join("kafka.yaml");
    std::fs::write(
        &template,
        format!(
            "apiVersion: weir.dev/v1alpha1
kind: StreamJob
metadata:
  name: kafka-{topic}
spec:
  job:
    entry: csv-window-aggregate
    parallelism: {parallelism}
    maxParallelism: 32
    args:
      input: kafka://{bootstrap}/{topic}
      columns: auction,price,ts
      timestamp: ts
      timestampFormat: epoch-ms
      key: auction
      value: price
      window: 10s
      aggregates: count,sum
      decimals: \"0\"
  checkpointing:
    interval: 300ms
  stateBackend: rocksdb
",
            bootstrap = broker.bootstrap()
        ),
    )
    .expect("write manifest");
    manifest_job(weir_bin(), &template, |doc| {
        for (k, v) in args {
            doc["spec"]["job"]["args"][*k] = (*v).into();
        }
    })
}

/// The (partition, offset) each dead letter in `topic` names, sorted; checks the other
/// headers and that the value is the bad record's.
fn dead_letter_positions(broker: &KafkaBroker, topic: &str) -> Vec<(i32, i64)> {
    let mut out: Vec<(i32, i64)> = broker
        .read_all(topic, Isolation::ReadCommitted)
        .iter()
        .map(|r| {
            let h = |k: &str| {
                r.headers
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("dead letter without {k}: {r:?}"))
            };
            assert_eq!(h("weir.source.topic"), "bids");
            assert!(h("weir.error").contains("timestamp"), "{r:?}");
            let (partition, offset): (i32, i64) = (
                h("weir.source.partition").parse().unwrap(),
                h("weir.source.offset").parse().unwrap(),
            );
            let i = offset as usize * 2 + partition as usize;
            assert_eq!(r.value.as_deref(), Some(input_line(i, 1_000).as_str()));
            (partition, offset)
        })
        .collect();
    out.sort();
    out
}

fn summary_of(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("summary")).expect("summary JSON")
}

#[test]
fn killed_and_resumed_kafka_input_gives_exactly_once_output_and_bad_records_reach_the_dead_letter_topic(
) {
    const RECORDS: usize = 30_000;
    const BAD_EVERY: usize = 1_000;
    let broker = KafkaBroker::start();
    broker.create_topic("bids", 2);
    broker.create_topic("bids-dead", 1);
    broker.create_topic("bids-dead-killed", 1);
    produce(&broker, "bids", 0..RECORDS, 2, BAD_EVERY);
    let expected = reference(0..RECORDS, BAD_EVERY);

    // Uninterrupted, bounded at the end offsets it starts with.
    let clean = kafka_job(
        &broker,
        "bids",
        2,
        &[
            ("stoppingOffsets", "latest"),
            ("deadLetterTopic", "bids-dead"),
        ],
    );
    let summary_path = clean.dir.path().join("summary.json");
    assert_success(&clean.run(&["--summary-json", summary_path.to_str().unwrap()]));
    let uninterrupted = clean.output_lines();
    assert_eq!(totals(&uninterrupted), expected, "uninterrupted run");
    let s = summary_of(&summary_path);
    let bad = RECORDS / BAD_EVERY;
    assert_eq!(s["invalidRecords"].as_u64(), Some(bad as u64), "{s}");
    assert_eq!(s["recordsIn"].as_u64(), Some((RECORDS - bad) as u64), "{s}");

    // Every bad record is in the dead-letter topic, once, with its partition and offset.
    let bad_positions: Vec<(i32, i64)> = (0..RECORDS)
        .filter(|i| i % BAD_EVERY == BAD_EVERY - 1)
        .map(|i| ((i % 2) as i32, (i / 2) as i64))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(dead_letter_positions(&broker, "bids-dead"), bad_positions);

    // Killed at random points (some right after a checkpoint was triggered) and resumed.
    let job = kafka_job(
        &broker,
        "bids",
        2,
        &[
            ("stoppingOffsets", "latest"),
            ("deadLetterTopic", "bids-dead-killed"),
            ("maxRecordsPerSecond", "1500"),
        ],
    );
    let kills = kill_at_random_points(&job, 6, weir_e2e::test_seed());
    assert!(
        kills.total >= 5,
        "only {} kills landed: {kills:?}",
        kills.total
    );
    assert!(kills.during_checkpoint >= 2, "{kills:?}");
    job.kill_after_a_new_checkpoint(std::time::Duration::from_millis(fastrand::u64(0..300)));
    assert_success(&job.run(&[]));
    assert_eq!(
        job.output_lines(),
        uninterrupted,
        "killed-and-resumed output differs from the uninterrupted run"
    );
    // Dead letters are at least once: each bad record is there, maybe more than once.
    let mut dead = dead_letter_positions(&broker, "bids-dead-killed");
    dead.dedup();
    assert_eq!(dead, bad_positions);
}

#[test]
fn rescaling_2_3_1_through_savepoints_loses_and_repeats_no_offset() {
    const RECORDS: usize = 24_000;
    let broker = KafkaBroker::start();
    broker.create_topic("orders", 5);
    produce(&broker, "orders", 0..RECORDS, 5, 0);
    let job = kafka_job(
        &broker,
        "orders",
        2,
        &[
            ("stoppingOffsets", "latest"),
            ("maxRecordsPerSecond", "2000"),
        ],
    );
    let mut savepoint: Option<String> = None;
    for parallelism in [2, 3] {
        job.edit(|d| {
            d["spec"]["job"]["parallelism"] = parallelism.into();
            if let Some(sp) = &savepoint {
                d["spec"]["job"]["initialSavepointPath"] = sp.clone().into();
            }
        });
        let (mut child, _lines) = job.spawn();
        job.wait_for_a_new_checkpoint();
        savepoint = Some(job.savepoint(None));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
    job.edit(|d| {
        d["spec"]["job"]["parallelism"] = 1.into();
        d["spec"]["job"]["initialSavepointPath"] = savepoint.clone().unwrap().into();
        d["spec"]["job"]["args"]
            .as_mapping_mut()
            .unwrap()
            .remove("maxRecordsPerSecond");
    });
    assert_success(&job.run(&[]));
    assert_eq!(
        totals(&job.output_lines()),
        reference(0..RECORDS, 0),
        "rescaled through savepoints"
    );
}

#[test]
fn a_partition_added_while_the_job_runs_is_discovered_and_read() {
    let broker = KafkaBroker::start();
    broker.create_topic("clicks", 1);
    produce(&broker, "clicks", 0..2_000, 1, 0);
    let job = kafka_job(
        &broker,
        "clicks",
        2,
        &[
            ("partitionDiscoveryInterval", "500ms"),
            ("idleTimeout", "1s"),
        ],
    );
    let (mut child, _lines) = job.spawn();
    job.wait_for_checkpoints(1);
    broker.add_partitions("clicks", 2);
    // Records of a key only the new partition has, then partition 0 far ahead in event time
    // so that their windows close.
    let late_key: Vec<(i32, Option<&str>, String, i64)> = (0..100)
        .map(|i| {
            let ts = BASE_TS + 30_000 + i * 10;
            (1, None, format!("new-partition,{i},{ts}"), ts)
        })
        .collect();
    let records: Vec<(i32, Option<&str>, &str, i64)> = late_key
        .iter()
        .map(|(p, k, v, ts)| (*p, *k, v.as_str(), *ts))
        .collect();
    broker.produce("clicks", &records);
    produce(&broker, "clicks", 8_000..9_000, 1, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let t = totals(&job.output_lines());
        if let Some(v) = t.get("new-partition") {
            break Some(*v);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_eq!(
        found,
        Some((100, (0..100).sum())),
        "the new partition's records in the committed output"
    );
}

/// The lines of a result topic as a consumer with `isolation` sees them, sorted.
fn topic_lines(broker: &KafkaBroker, topic: &str, isolation: Isolation) -> Vec<String> {
    let mut lines: Vec<String> = broker
        .read_all(topic, isolation)
        .into_iter()
        .map(|r| r.value.expect("a result line"))
        .collect();
    lines.sort();
    lines
}

#[test]
fn kafka_to_kafka_killed_and_resumed_commits_each_result_exactly_once() {
    const RECORDS: usize = 30_000;
    let broker = KafkaBroker::start();
    broker.create_topic("trades", 2);
    broker.create_topic("totals-clean", 2);
    broker.create_topic("totals", 2);
    produce(&broker, "trades", 0..RECORDS, 2, 0);

    // Uninterrupted: the reference run.
    let clean = kafka_job(
        &broker,
        "trades",
        2,
        &[
            ("stoppingOffsets", "latest"),
            ("window", "1s"),
            (
                "output",
                &format!("kafka://{}/totals-clean", broker.bootstrap()),
            ),
        ],
    );
    assert_success(&clean.run(&[]));
    let uninterrupted = topic_lines(&broker, "totals-clean", Isolation::ReadCommitted);
    assert_eq!(
        totals(&uninterrupted),
        reference(0..RECORDS, 0),
        "uninterrupted run"
    );

    // Killed at random points (some right after a checkpoint was triggered) and resumed.
    let job = kafka_job(
        &broker,
        "trades",
        2,
        &[
            ("stoppingOffsets", "latest"),
            ("window", "1s"),
            ("output", &format!("kafka://{}/totals", broker.bootstrap())),
            ("maxRecordsPerSecond", "800"),
        ],
    );
    // Each run makes progress (a checkpoint completes), then is killed mid-checkpoint: at a
    // random point after a checkpoint is triggered, or right after the first sink subtask
    // pre-committed (seen in its debug log).
    let mut job = job;
    job.env.push((
        "RUST_LOG".into(),
        "info,weir_runtime::connectors::kafka::sink=debug".into(),
    ));
    let mut rng = fastrand::Rng::with_seed(weir_e2e::test_seed());
    let mut kills = 0;
    for round in 0..6 {
        let (mut child, lines) = job.spawn();
        job.wait_for_a_new_checkpoint();
        if round % 2 == 0 {
            // Mid-checkpoint: after the barrier reached the sink (its transaction flushed,
            // pre-committed) and before the checkpoint completes, so the restored job finds
            // that transaction open and not in its checkpoint, and aborts it.
            while lines.try_recv().is_ok() {}
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match lines.recv_timeout(Duration::from_millis(5)) {
                    Ok(l) if l.contains("triggering checkpoint") => break,
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(rng.u64(150..300)));
        } else {
            // Between the pre-commits of the two sink subtasks: one transaction is flushed,
            // the checkpoint cannot complete, and the restored job must abort it.
            while lines.try_recv().is_ok() {}
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match lines.recv_timeout(Duration::from_millis(1)) {
                    Ok(l) if l.contains("kafka transaction pre-committed") => break,
                    _ => {}
                }
            }
        }
        if child.try_wait().ok().flatten().is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        let _ = child.wait();
    }
    assert!(kills >= 5, "only {kills} kills landed");
    assert_success(&job.run(&[]));
    let committed = topic_lines(&broker, "totals", Isolation::ReadCommitted);
    assert_eq!(
        committed, uninterrupted,
        "a read_committed consumer sees other results than the uninterrupted run's"
    );
    // The transactions did the work: aborted results existed.
    let everything = topic_lines(&broker, "totals", Isolation::ReadUncommitted);
    assert!(
        everything.len() > committed.len(),
        "read_uncommitted saw {} records, read_committed {}: no aborted transaction",
        everything.len(),
        committed.len()
    );
}

#[test]
fn a_transaction_timeout_shorter_than_a_checkpoint_is_rejected_before_the_job_runs() {
    let job = {
        let base = tempfile::tempdir().expect("temp dir");
        let template = base.path().join("kafka.yaml");
        std::fs::write(
            &template,
            "apiVersion: weir.dev/v1alpha1
kind: StreamJob
metadata:
  name: short-transactions
spec:
  job:
    entry: csv-window-aggregate
    args:
      input: kafka://127.0.0.1:9/in
      columns: k,ts
      timestamp: ts
      timestampFormat: epoch-ms
      key: k
      window: 10s
      output: kafka://127.0.0.1:9/out
      transactionTimeout: 1m
  checkpointing:
    interval: 30s
    timeout: 1m
",
        )
        .expect("write manifest");
        manifest_job(weir_bin(), &template, |d| {
            d["spec"]["job"]["args"]["output"] = "kafka://127.0.0.1:9/out".into();
        })
    };
    let out = job.validate();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for field in [
        "transactionTimeout",
        "spec.checkpointing.interval",
        "spec.checkpointing.timeout",
    ] {
        assert!(stderr.contains(field), "{field} not named: {stderr}");
    }
}

#[test]
fn the_broker_stopped_mid_checkpoint_and_restarted_leaves_the_output_exactly_once() {
    const RECORDS: usize = 20_000;
    let mut broker = KafkaBroker::start();
    broker.create_topic("ticks", 2);
    broker.create_topic("ticks-clean", 2);
    broker.create_topic("ticks-out", 2);
    produce(&broker, "ticks", 0..RECORDS, 2, 0);
    let out = |topic: &str| format!("kafka://{}/{topic}", broker.bootstrap());
    let clean = kafka_job(
        &broker,
        "ticks",
        2,
        &[
            ("stoppingOffsets", "latest"),
            ("window", "1s"),
            ("output", &out("ticks-clean")),
        ],
    );
    assert_success(&clean.run(&[]));
    let uninterrupted = topic_lines(&broker, "ticks-clean", Isolation::ReadCommitted);

    let job = kafka_job(
        &broker,
        "ticks",
        2,
        &[
            ("stoppingOffsets", "latest"),
            ("window", "1s"),
            ("output", &out("ticks-out")),
            ("maxRecordsPerSecond", "1000"),
        ],
    );
    // A checkpoint in flight while the broker is down times out (3 s) and is aborted; the
    // job goes on, and its next checkpoint commits what the failed one pre-committed.
    job.edit(|d| d["spec"]["checkpointing"]["timeout"] = "3s".into());
    let summary = job.dir.path().join("summary.json");
    let mut child = std::process::Command::new(weir_bin())
        .arg("run")
        .arg(&job.manifest)
        .args(["--progress-interval", "0s", "--summary-json"])
        .arg(&summary)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn weir");
    job.wait_for_a_new_checkpoint();
    std::thread::sleep(Duration::from_millis(100));
    broker.kill();
    std::thread::sleep(Duration::from_secs(6));
    broker.restart();
    let status = child.wait().expect("wait for the job");
    assert!(
        status.success(),
        "the job did not ride out the broker restart: {status}"
    );
    let s = summary_of(&summary);
    assert!(
        s["checkpointsFailed"].as_u64() >= Some(1),
        "no checkpoint failed while the broker was down: {s}"
    );
    assert_eq!(
        topic_lines(&broker, "ticks-out", Isolation::ReadCommitted),
        uninterrupted,
        "after the broker restart"
    );
}

#[test]
fn kafka_to_kafka_resumed_at_3_then_1_subtasks_commits_each_result_once() {
    const RECORDS: usize = 20_000;
    let broker = KafkaBroker::start();
    broker.create_topic("quotes", 4);
    broker.create_topic("quotes-out", 3);
    produce(&broker, "quotes", 0..RECORDS, 4, 0);
    let job = kafka_job(
        &broker,
        "quotes",
        2,
        &[
            ("stoppingOffsets", "latest"),
            ("window", "1s"),
            (
                "output",
                &format!("kafka://{}/quotes-out", broker.bootstrap()),
            ),
            ("maxRecordsPerSecond", "800"),
        ],
    );
    // 2 subtasks, killed after a checkpoint; 3 (their transactions recovered by other
    // subtasks), killed; then 1 to the end.
    for parallelism in [2, 3] {
        job.edit(|d| d["spec"]["job"]["parallelism"] = parallelism.into());
        let (mut child, _lines) = job.spawn();
        job.wait_for_a_new_checkpoint();
        job.wait_for_a_new_checkpoint();
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
    job.edit(|d| {
        d["spec"]["job"]["parallelism"] = 1.into();
        d["spec"]["job"]["args"]
            .as_mapping_mut()
            .unwrap()
            .remove("maxRecordsPerSecond");
    });
    assert_success(&job.run(&[]));
    let lines = topic_lines(&broker, "quotes-out", Isolation::ReadCommitted);
    let mut unique = lines.clone();
    unique.dedup();
    assert_eq!(unique.len(), lines.len(), "a result was committed twice");
    assert_eq!(
        totals(&lines),
        reference(0..RECORDS, 0),
        "rescaled 2 -> 3 -> 1"
    );
}

#[test]
fn a_password_from_a_secret_authenticates_the_source_and_its_absence_is_named() {
    const RECORDS: usize = 4_000;
    let broker = KafkaBroker::start();
    broker.create_topic("secured", 2);
    produce(&broker, "secured", 0..RECORDS, 2, 0);
    let input = format!("kafka://{}/secured", broker.sasl_bootstrap());
    let mut job = kafka_job(
        &broker,
        "secured",
        2,
        &[
            ("input", &input),
            ("stoppingOffsets", "latest"),
            ("kafka.security.protocol", "SASL_PLAINTEXT"),
            ("kafka.sasl.mechanism", "PLAIN"),
            ("kafka.sasl.username", SASL_USER),
        ],
    );
    job.edit(|d| {
        d["spec"]["job"]["argsFromSecrets"]["kafka.sasl.password"] =
            serde_yaml::from_str("{name: kafka-credentials, key: password}").unwrap();
    });

    // Without the variable the operator would set from the Secret: refused before it runs.
    let out = job.validate();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.job.argsFromSecrets.kafka.sasl.password")
            && stderr.contains("WEIR_ARG_KAFKA_SASL_PASSWORD"),
        "{stderr}"
    );

    // A wrong password: the broker refuses it and the job fails instead of reading.
    let var = weir_crds::secret_arg_env("kafka.sasl.password");
    job.env.push((var.clone(), "wrong".into()));
    assert!(!job.run(&[]).status.success(), "read with a wrong password");
    assert!(job.output_lines().is_empty());

    job.env.retain(|(k, _)| *k != var);
    job.env.push((var, SASL_PASSWORD.into()));
    let summary = job.run_summarized(&[]);
    assert_eq!(summary["recordsIn"], RECORDS as u64, "{summary}");
    assert_eq!(totals(&job.output_lines()), reference(0..RECORDS, 0));
}
