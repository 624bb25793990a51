//! One coordinator and three workers as separate processes on 127.0.0.1, checkpoints on a
//! real S3-compatible server (s3s-fs): exactly-once output under SIGKILL of workers and of
//! the coordinator at random points, a worker that stops sending heartbeats, a savepoint through the admin API restored with other
//! numbers of workers and subtasks, bad admin input, the restart limit, a worker without the
//! job's token (refused, the job runs on), and a worker that cannot reach its coordinator.

use std::process::Command;
use std::time::{Duration, Instant};

use weir_api_types::JobRunState;
use weir_e2e::cluster::{http_as, Cluster};
use weir_e2e::s3::S3Server;
use weir_e2e::{example_job_on_s3, reference_retail_revenue, weir_bin, TestJob};
use weir_runtime::checkpoint::SnapshotKind;
use weir_runtime::cluster::summary::{AttemptFailure, CoordinatorSummary, WorkerLoss};
use weir_runtime::runner::RunEnd;

const LONG: Duration = Duration::from_secs(240);

/// The example with 3 subtasks, throttled so that it runs for several seconds, with
/// checkpoints every 300 ms in the bucket.
fn job(server: &S3Server, prefix: &str) -> TestJob {
    example_job_on_s3(server, prefix, |d| {
        d["spec"]["job"]["parallelism"] = 3.into();
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "30000".into();
    })
}

/// Waits a random time after the job is running, then (even rounds) until the admin API
/// reports a checkpoint in flight (at most 5 s more).
fn wait_for_kill_point(
    cluster: &Cluster,
    round: usize,
    restarts: Option<u32>,
    rng: &mut fastrand::Rng,
) {
    cluster.wait_running_after(restarts);
    std::thread::sleep(Duration::from_millis(rng.u64(300..1500)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while round.is_multiple_of(2)
        && Instant::now() < deadline
        && cluster
            .checkpoints()
            .is_none_or(|c| c.in_progress.is_none())
    {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether an attempt of `summary` restored a snapshot of `kind`.
fn restored(summary: &CoordinatorSummary, kind: SnapshotKind) -> bool {
    summary
        .attempts
        .iter()
        .any(|a| a.restored.as_ref().is_some_and(|r| r.kind == kind))
}

#[test]
fn sigkill_of_workers_at_random_points_gives_exactly_once_output() {
    let server = S3Server::start();
    let job = job(&server, "workers");
    let mut cluster = Cluster::start(&job, 3, &[]);
    let seed = fastrand::u64(..);
    eprintln!("kill schedule seed: {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..3 {
        wait_for_kill_point(&cluster, round, Some(round as u32), &mut rng);
        let victim = rng.usize(..cluster.workers.len());
        cluster.kill_worker(victim);
        cluster.start_worker();
    }
    let (status, _) = cluster.wait(LONG);
    assert!(status.success(), "{}", cluster.log().join("\n"));
    let summary = cluster.summary();
    assert_eq!(summary.end, Some(RunEnd::Finished), "{summary:#?}");
    assert!(summary.restarts >= 3, "{summary:#?}");
    assert!(
        summary
            .workers_lost
            .iter()
            .any(|l| l.had_subtasks && l.reason == WorkerLoss::ConnectionClosed),
        "{summary:#?}"
    );
    assert!(restored(&summary, SnapshotKind::Checkpoint), "{summary:#?}");
    // Each worker read only the state of its own subtask (1 of the window's 3).
    let shares: Vec<_> = summary
        .attempts
        .iter()
        .flat_map(|a| &a.workers)
        .filter_map(|w| w.restore)
        .collect();
    assert!(!shares.is_empty(), "{summary:#?}");
    assert!(
        shares
            .iter()
            .all(|s| (s.keyed_subtasks_read, s.keyed_subtasks) == (1, 3)),
        "{summary:#?}"
    );
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn a_worker_that_stops_sending_heartbeats_is_replaced() {
    let server = S3Server::start();
    let job = job(&server, "silent");
    let mut cluster = Cluster::start(&job, 3, &[]);
    cluster.wait_checkpoints(1, Duration::from_secs(60));
    // SIGSTOP: the connection stays open, but heartbeats stop.
    let pid = cluster.workers[1].id().to_string();
    let stop = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(stop.success());
    cluster.start_worker();
    let (status, _) = cluster.wait(LONG);
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
    assert!(status.success(), "{}", cluster.log().join("\n"));
    let summary = cluster.summary();
    // Lost for its silence (the cluster's --heartbeat-timeout is 3 s), not a closed
    // connection; the job went on from a checkpoint.
    assert!(
        summary.workers_lost.iter().any(|l| l.had_subtasks
            && matches!(l.reason, WorkerLoss::HeartbeatTimeout { silent_ms } if silent_ms >= 3000)),
        "{summary:#?}"
    );
    assert!(restored(&summary, SnapshotKind::Checkpoint), "{summary:#?}");
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn incremental_checkpoints_from_workers_restore_exactly_once_and_leave_no_orphans() {
    let server = S3Server::start();
    let job = example_job_on_s3(&server, "incremental", |d| {
        d["spec"]["job"]["parallelism"] = 3.into();
        d["spec"]["stateBackend"] = "rocksdb".into();
        d["spec"]["checkpointing"]["incremental"] = true.into();
        d["spec"]["checkpointing"]["interval"] = "200ms".into();
        d["spec"]["checkpointing"]["retained"] = 2.into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "30000".into();
    });
    let mut cluster = Cluster::start(&job, 3, &[]);
    cluster.wait_checkpoints(3, Duration::from_secs(60));
    cluster.kill_worker(2);
    cluster.start_worker();
    let (status, _) = cluster.wait(LONG);
    assert!(status.success(), "{}", cluster.log().join("\n"));
    let summary = cluster.summary();
    assert!(restored(&summary, SnapshotKind::Checkpoint), "{summary:#?}");
    assert!(
        !server
            .objects("incremental/retail-revenue/shared")
            .is_empty(),
        "workers uploaded shared files"
    );
    let report = server.gc_report(&job, "incremental");
    assert!(report.contains("0 orphaned objects"), "{report}");
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn sigkill_of_the_coordinator_at_random_points_gives_exactly_once_output() {
    let server = S3Server::start();
    let job = job(&server, "coordinator");
    let mut cluster = Cluster::start(&job, 3, &[]);
    let seed = fastrand::u64(..);
    eprintln!("kill schedule seed: {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    // What each coordinator restored, as its admin API reports it.
    let mut restored_from = Vec::new();
    for round in 0..3 {
        wait_for_kill_point(&cluster, round, None, &mut rng);
        restored_from.push(cluster.job_info().and_then(|i| i.restored_from));
        cluster.kill_coordinator();
        cluster.start_coordinator();
    }
    let (status, _) = cluster.wait(LONG);
    assert!(status.success(), "{}", cluster.log().join("\n"));
    let summary = cluster.summary();
    assert_eq!(summary.end, Some(RunEnd::Finished), "{summary:#?}");
    // The restarted coordinators found the latest checkpoint in storage.
    assert!(
        restored_from.iter().any(Option::is_some) || restored(&summary, SnapshotKind::Checkpoint),
        "{restored_from:?} {summary:#?}"
    );
    // The same worker processes served the last coordinator: they reconnected.
    let first = &summary.attempts[0];
    assert_eq!(first.workers.len(), 3, "{summary:#?}");
    assert!(
        first.workers.iter().all(|w| w.registrations >= 2),
        "{summary:#?}"
    );
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Polls a savepoint trigger until it completes; returns its location.
fn savepoint_location(cluster: &Cluster, trigger: &str) -> String {
    let start = Instant::now();
    loop {
        let (status, body) = cluster.admin_call("GET", &format!("/v1/savepoints/{trigger}"), None);
        assert_eq!(status, 200, "{body}");
        let v = json(&body);
        match v["status"].as_str() {
            Some("COMPLETED") => return v["location"].as_str().expect("location").into(),
            Some("IN_PROGRESS") => {}
            _ => panic!("savepoint failed: {body}"),
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_savepoint_through_the_api_restores_with_other_numbers_of_workers_and_subtasks() {
    let server = S3Server::start();
    let job = job(&server, "rescale");
    let mut cluster = Cluster::start(&job, 3, &[]);
    cluster.wait_running();
    cluster.wait_checkpoints(2, Duration::from_secs(60));
    // A savepoint while running, then a stop with savepoint.
    let directory = format!("s3://{}/savepoints", server.bucket);
    let (status, body) = cluster.admin_call(
        "POST",
        "/v1/savepoints",
        Some(&format!(r#"{{"directory":"{directory}"}}"#)),
    );
    assert_eq!(status, 202, "{body}");
    let first = savepoint_location(&cluster, json(&body)["triggerId"].as_str().unwrap());
    assert!(first.starts_with(&directory), "{first}");
    // Disposal through the API deletes a savepoint's objects on S3, is harmless when
    // repeated, and refuses a checkpoint (its files stay).
    let on_disk = |uri: &str| {
        let key = uri
            .strip_prefix(&format!("s3://{}/", server.bucket))
            .unwrap();
        server.root.path().join(&server.bucket).join(key)
    };
    assert!(on_disk(&first).join("_metadata").exists());
    let dispose = |location: &str| {
        cluster.admin_call(
            "POST",
            "/v1/savepoint-disposal",
            Some(&format!(r#"{{"location":"{location}"}}"#)),
        )
    };
    for _ in 0..2 {
        let (status, body) = dispose(&first);
        assert_eq!(status, 200, "{body}");
        assert!(!on_disk(&first).join("_metadata").exists(), "{first}");
    }
    let (_, body) = cluster.admin_call("GET", "/v1/checkpoints", None);
    let checkpoint = json(&body)["latest"]["location"]
        .as_str()
        .expect("a checkpoint")
        .to_string();
    let (status, body) = dispose(&checkpoint);
    assert_eq!(
        (status, json(&body)["code"].as_str()),
        (409, Some("not_a_savepoint")),
        "{body}"
    );
    assert!(
        on_disk(&checkpoint).join("_metadata").exists(),
        "{checkpoint}"
    );
    let (status, body) = cluster.admin_call(
        "POST",
        "/v1/job/stop",
        Some(&format!(
            r#"{{"withSavepoint":true,"directory":"{directory}"}}"#
        )),
    );
    assert_eq!(status, 202, "{body}");
    let (status, _) = cluster.wait(LONG);
    assert!(status.success(), "{}", cluster.log().join("\n"));
    let savepoint = match cluster.summary().end {
        Some(RunEnd::Stopped { savepoint }) => savepoint,
        end => panic!("not stopped with a savepoint: {end:?}"),
    };
    assert!(savepoint.starts_with(&directory), "{savepoint}");
    drop(cluster);
    // Restore on 2 workers with 5 subtasks: the key groups are redistributed.
    job.edit(|d| d["spec"]["job"]["parallelism"] = 5.into());
    let mut cluster = Cluster::start(&job, 2, &["--from-savepoint", &savepoint]);
    let (status, _) = cluster.wait(LONG);
    assert!(status.success(), "{}", cluster.log().join("\n"));
    let summary = cluster.summary();
    let first = &summary.attempts[0];
    assert_eq!(
        first.restored.as_ref().map(|r| r.kind),
        Some(SnapshotKind::Savepoint),
        "{summary:#?}"
    );
    // Each worker read only the key-group sections it owns (ranged reads), not the whole
    // savepoint.
    let key = savepoint
        .strip_prefix(&format!("s3://{}/", server.bucket))
        .unwrap()
        .trim_end_matches('/');
    let state_bytes: u64 = std::fs::read_dir(server.root.path().join(&server.bucket).join(key))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".state"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(state_bytes > 0);
    for w in &first.workers {
        let read = w.restore.map(|r| r.bytes);
        assert!(
            read.is_some_and(|r| r > 0 && r < state_bytes),
            "read {read:?} of {state_bytes} bytes: {summary:#?}"
        );
    }
    // Subtask i runs on worker i % 2: one runs 0, 2, 4, the other 1, 3.
    let mut subtasks: Vec<&[u32]> = first.workers.iter().map(|w| &w.subtasks[..]).collect();
    subtasks.sort();
    assert_eq!(subtasks, [&[0, 2, 4][..], &[1, 3][..]], "{summary:#?}");
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn bad_admin_input_gets_a_json_error_and_the_job_keeps_running() {
    let server = S3Server::start();
    let job = job(&server, "bad-input");
    let mut cluster = Cluster::start(&job, 3, &[]);
    cluster.wait_running();
    let api = cluster.admin.clone();
    let token = cluster.token.clone();
    let http = |method: &str, url: &str, body: Option<&str>| {
        http_as(Some(token.expose()), method, url, body)
    };
    let expect = |(status, body): (u16, String), want: u16, code: &str| {
        assert_eq!(status, want, "{body}");
        assert_eq!(json(&body)["code"], code, "{body}");
        assert!(json(&body)["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    };
    expect(
        http("GET", &format!("{api}/v1/jobs/0123456789abcdef"), None),
        404,
        "unknown_job",
    );
    expect(
        http("POST", &format!("{api}/v1/savepoints"), Some("{not json")),
        400,
        "malformed_request",
    );
    let unwritable = job.dir.path().join("job.yaml");
    expect(
        http(
            "POST",
            &format!("{api}/v1/savepoints"),
            Some(&format!(
                r#"{{"directory":"file://{}/savepoints"}}"#,
                unwritable.display()
            )),
        ),
        400,
        "unwritable_directory",
    );
    // The job's own id is known.
    let (_, body) = http("GET", &format!("{api}/v1/job"), None);
    let id = json(&body)["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    let (status, body) = http("GET", &format!("{api}/v1/jobs/{id}"), None);
    assert_eq!(
        (status, json(&body)["state"].as_str()),
        (200, Some("RUNNING")),
        "{body}"
    );
    // Per operator and subtask metrics.
    let (status, metrics) = http("GET", &format!("{api}/metrics"), None);
    assert_eq!(status, 200);
    for s in 0..3 {
        assert!(
            metrics.contains(&format!(
                "weir_operator_records_in_total{{operator=\"csv-source\",subtask=\"{s}\"}}"
            )),
            "{metrics}"
        );
    }
    assert!(metrics.contains("weir_restarts_total 0"), "{metrics}");
    // Records in and out of every operator, as the workers' heartbeats report them.
    let total = |metrics: &str, name: &str, operator: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(&format!("operator=\"{operator}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let counted = [
        ("weir_operator_records_in_total", "csv-source"),
        ("weir_operator_records_out_total", "csv-source"),
        ("weir_operator_records_in_total", "window-aggregate"),
    ];
    let start = Instant::now();
    loop {
        let (_, metrics) = http("GET", &format!("{api}/metrics"), None);
        if counted.iter().all(|(n, o)| total(&metrics, n, o) > 0.0) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Two stops: the second is refused while the first proceeds.
    let stop = format!("{api}/v1/job/stop");
    let (status, body) = http("POST", &stop, Some(r#"{"withSavepoint":true}"#));
    assert_eq!(status, 202, "{body}");
    expect(
        http("POST", &stop, Some(r#"{"withSavepoint":true}"#)),
        409,
        "stop_in_progress",
    );
    let (status, _) = cluster.wait(LONG);
    assert!(status.success(), "{}", cluster.log().join("\n"));
    let end = cluster.summary().end;
    assert!(matches!(end, Some(RunEnd::Stopped { .. })), "{end:?}");
    // Nothing the bad requests did disturbed the job: resume it to the end.
    let mut cluster = Cluster::start(&job, 3, &[]);
    let (status, _) = cluster.wait(LONG);
    assert!(status.success(), "{}", cluster.log().join("\n"));
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn a_job_that_keeps_failing_is_failed_once_the_restart_limit_is_reached() {
    let server = S3Server::start();
    let job = job(&server, "failing");
    let mut cluster = Cluster::start(&job, 1, &["--restart-attempts", "1"]);
    for restarts in 0..2 {
        // Running after `restarts` restarts: the replacement worker is deployed.
        cluster.wait_running_after(Some(restarts));
        cluster.kill_worker(0);
        cluster.start_worker();
    }
    let start = Instant::now();
    let info = loop {
        let info = cluster.job_info();
        if let Some(i) = info.as_ref().filter(|i| i.state == JobRunState::Failed) {
            break i.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{info:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(info.restarts, 1, "{info:?}");
    assert!(info.failure.is_some(), "{info:?}");
    let (status, body) =
        cluster.admin_call("POST", "/v1/job/stop", Some(r#"{"withSavepoint":false}"#));
    assert_eq!(status, 202, "{body}\n{}", cluster.log().join("\n"));
    let (status, _) = cluster.wait(LONG);
    assert_eq!(status.code(), Some(1), "a FAILED job exits with 1");
    // The summary says why: the last attempt lost its only worker, the restart limit was
    // reached.
    let summary = cluster.summary();
    assert_eq!(
        (summary.end.as_ref(), summary.restarts),
        (None, 1),
        "{summary:#?}"
    );
    assert!(
        matches!(
            summary.attempts.last().and_then(|a| a.failure.as_ref()),
            Some(AttemptFailure::WorkerLost { .. })
        ),
        "{summary:#?}"
    );
}

#[test]
fn a_worker_without_the_jobs_token_is_refused_and_the_job_runs_on() {
    let server = S3Server::start();
    let job = job(&server, "intruder");
    let mut cluster = Cluster::start(&job, 3, &[]);
    cluster.wait_checkpoints(1, Duration::from_secs(60));
    // Two processes that speak the protocol but hold no token, or another job's.
    let wrong = job.dir.path().join("wrong-token");
    std::fs::write(&wrong, weir_api_types::AdminToken::generate().expose()).unwrap();
    for token in [None, Some(&wrong)] {
        let mut cmd = Command::new(weir_bin());
        cmd.args(["worker", "--coordinator", &cluster.control])
            .args(["--connect-attempts", "2", "--connect-backoff", "50ms"]);
        if let Some(t) = token {
            cmd.arg("--admin-token-file").arg(t);
        }
        let out = cmd.output().expect("spawn weir worker");
        assert_eq!(out.status.code(), Some(1), "refused, it gives up");
    }
    let (_, metrics) = cluster.admin_call("GET", "/metrics", None);
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"weir_refused_connections_total{port="control"} "#))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(refused.is_some_and(|n| n >= 4), "{metrics}");
    // The job never noticed: no restart, no lost worker, exactly the reference output.
    let (status, _) = cluster.wait(LONG);
    assert!(status.success(), "{}", cluster.log().join("\n"));
    let summary = cluster.summary();
    assert_eq!(summary.restarts, 0, "{summary:#?}");
    assert!(summary.workers_lost.is_empty(), "{summary:#?}");
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn a_worker_that_cannot_reach_the_coordinator_exits_with_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let out = Command::new(weir_bin())
        .args(["worker", "--coordinator", &format!("127.0.0.1:{port}")])
        .args(["--connect-attempts", "3", "--connect-backoff", "50ms"])
        .output()
        .expect("spawn weir worker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach the coordinator at 127.0.0.1:{port} after 3 attempts"
        )),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_worker_refused_again_and_again_exits_with_a_clear_error() {
    // A "coordinator" that closes every connection at once, as one of another protocol
    // version does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    let out = Command::new(weir_bin())
        .args(["worker", "--coordinator", &format!("127.0.0.1:{port}")])
        .args(["--connect-attempts", "3", "--connect-backoff", "50ms"])
        .output()
        .expect("spawn weir worker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("closed the connection right after registration 3 times"),
        "{stderr}"
    );
}
