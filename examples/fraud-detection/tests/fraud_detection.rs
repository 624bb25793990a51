//! The fraud-detection example through its own binary (`weir run` of a user's crate): its
//! alerts and rejected transactions equal a reference computed here, after SIGKILLs at random
//! points, and across rescales 2 -> 3 -> 1 that switch the state backend (keyed state and
//! event-time timers redistributed by key group). Reading its transactions from a Kafka topic
//! and writing its alerts to another through the job API's `KafkaSource` and `KafkaSink`,
//! killed and resumed, a `read_committed` consumer sees exactly the reference alerts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_e2e::kafka::{Isolation, KafkaBroker};
use weir_e2e::{
    assert_success, kill_at_random_points, manifest_job, read_output, test_seed, TestJob,
};
use weir_example_fraud_detection::{
    alert_line, reference_alerts, rejected_line, transaction, Alert, Transaction,
};

const TRANSACTIONS: u64 = 120_000;

fn job(edit: impl FnOnce(&mut serde_yaml::Value)) -> TestJob {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("job.yaml");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_fraud-detection"));
    let job = manifest_job(bin, &manifest, |d| {
        d["spec"]["job"]["args"]["transactions"] = TRANSACTIONS.to_string().into();
        edit(d);
    });
    let rejected = job.dir.path().join("rejected");
    job.edit(|d| {
        d["spec"]["job"]["args"]["rejectedOutput"] = rejected.display().to_string().into()
    });
    job
}

fn rejected_lines(job: &TestJob) -> Vec<String> {
    read_output(&job.dir.path().join("rejected"))
}

/// The reference: alerts and rejected transactions, as sorted output lines.
fn reference() -> (Vec<String>, Vec<String>) {
    let txs: Vec<Transaction> = (0..TRANSACTIONS).map(|n| transaction(42, 100, n)).collect();
    reference_of(&txs)
}

/// Alerts and rejected transactions of `txs`, as sorted output lines.
fn reference_of(txs: &[Transaction]) -> (Vec<String>, Vec<String>) {
    let mut alerts: Vec<String> = reference_alerts(txs).iter().map(alert_line).collect();
    alerts.sort();
    let mut rejected: Vec<String> = txs
        .iter()
        .filter(|t| t.amount <= 0)
        .map(rejected_line)
        .collect();
    rejected.sort();
    (alerts, rejected)
}

#[test]
fn alerts_and_rejected_transactions_equal_the_reference_after_sigkills() {
    let (alerts, rejected) = reference();
    assert!(alerts.len() > 100, "only {} reference alerts", alerts.len());

    let clean = job(|_| {});
    assert_success(&clean.run(&[]));
    assert_eq!(clean.output_lines(), alerts, "uninterrupted alerts differ");
    assert_eq!(
        rejected_lines(&clean),
        rejected,
        "uninterrupted rejected differ"
    );

    let killed = job(|d| {
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "6000".into();
    });
    let kills = kill_at_random_points(&killed, 6, test_seed());
    eprintln!("{kills:?}");
    assert!(kills.total >= 5, "only {} kills landed", kills.total);
    assert!(
        kills.during_checkpoint >= 2,
        "only {} mid-checkpoint",
        kills.during_checkpoint
    );
    assert_success(&killed.run(&[]));
    assert_eq!(
        killed.output_lines(),
        alerts,
        "killed-and-resumed alerts differ"
    );
    assert_eq!(
        rejected_lines(&killed),
        rejected,
        "killed-and-resumed rejected differ"
    );
}

#[test]
fn state_and_timers_survive_rescales_that_switch_the_backend() {
    let (alerts, rejected) = reference();
    let job = job(|d| {
        d["spec"]["checkpointing"]["interval"] = "200ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "20000".into();
    });
    let mut rng = fastrand::Rng::with_seed(test_seed());
    for (parallelism, backend) in [(2, "rocksdb"), (3, "heap")] {
        job.edit(|d| {
            d["spec"]["job"]["parallelism"] = parallelism.into();
            d["spec"]["stateBackend"] = backend.into();
        });
        job.kill_after_a_new_checkpoint(Duration::from_millis(rng.u64(0..300)));
    }
    job.edit(|d| {
        d["spec"]["job"]["parallelism"] = 1.into();
        d["spec"]["stateBackend"] = "rocksdb".into();
        d["spec"]["job"]["args"]
            .as_mapping_mut()
            .unwrap()
            .remove("maxRecordsPerSecond");
    });
    assert_success(&job.run(&[]));
    assert_eq!(job.output_lines(), alerts, "rescaled alerts differ");
    assert_eq!(rejected_lines(&job), rejected, "rescaled rejected differ");
}

#[test]
fn transactions_from_kafka_give_the_reference_alerts_in_kafka_exactly_once_after_sigkills() {
    const N: u64 = 40_000;
    const PARTITIONS: u64 = 3;
    let broker = KafkaBroker::start();
    broker.create_topic("transactions", PARTITIONS as i32);
    broker.create_topic("alerts", 2);
    // Keyed by account: each account's transactions stay in order on one partition.
    let txs: Vec<Transaction> = (0..N).map(|n| transaction(42, 100, n)).collect();
    let encoded: Vec<(i32, String, String, i64)> = txs
        .iter()
        .map(|t| {
            (
                (t.account % PARTITIONS) as i32,
                t.account.to_string(),
                serde_json::to_string(t).unwrap(),
                t.timestamp,
            )
        })
        .collect();
    let records: Vec<(i32, Option<&str>, &str, i64)> = encoded
        .iter()
        .map(|(p, k, v, ts)| (*p, Some(k.as_str()), v.as_str(), *ts))
        .collect();
    broker.produce("transactions", &records);
    let (expected, rejected) = reference_of(&txs);
    assert!(
        expected.len() > 20,
        "only {} reference alerts",
        expected.len()
    );

    let job = job(|d| {
        let args = &mut d["spec"]["job"]["args"];
        args["input"] = format!("kafka://{}/transactions", broker.bootstrap()).into();
        args["output"] = format!("kafka://{}/alerts", broker.bootstrap()).into();
        args["stoppingOffsets"] = "latest".into();
        args["maxRecordsPerSecond"] = "4000".into();
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
    });
    let seed = test_seed();
    let kills = kill_at_random_points(&job, 4, seed);
    assert!(kills.total >= 3, "only {} kills landed", kills.total);
    job.kill_after_a_new_checkpoint(Duration::from_millis(seed % 300));
    job.edit(|d| {
        d["spec"]["job"]["args"]
            .as_mapping_mut()
            .unwrap()
            .remove("maxRecordsPerSecond");
    });
    let summary = job.run_summarized(&[]);
    assert_eq!(summary["restoredKind"], "checkpoint", "{summary}");

    let alerts = |isolation| -> Vec<String> {
        let mut lines: Vec<String> = broker
            .read_all("alerts", isolation)
            .iter()
            .map(|r| {
                let a: Alert = serde_json::from_str(r.value.as_deref().unwrap()).unwrap();
                assert_eq!(r.key.as_deref(), Some(a.account.to_string().as_str()));
                alert_line(&a)
            })
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(alerts(Isolation::ReadCommitted), expected);
    assert_eq!(rejected_lines(&job), rejected);
}

#[test]
fn both_manifests_validate_against_the_binary_that_registers_the_job() {
    for manifest in ["job.yaml", "streamjob-k8s.yaml"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fraud-detection"))
            .arg("validate")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest))
            .output()
            .expect("spawn");
        assert_success(&out);
    }
}
