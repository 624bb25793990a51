//! One coordinator and three workers as separate processes on 127.0.0.1, checkpoints on a
//! real S3-compatible server (s3s-fs): exactly-once output under SIGKILL of workers and of
//! the coordinator at random points, a worker that stops sending heartbeats, a savepoint through the admin API restored with other
//! numbers of workers and subtasks, bad admin input, the restart limit, and a worker that
//! cannot reach its coordinator.

use std::process::Command;
use std::time::{Duration, Instant};

use weir_e2e::cluster::{http, Cluster};
use weir_e2e::s3::S3Server;
use weir_e2e::{example_job_on_s3, reference_retail_revenue, weir_bin, TestJob};

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

/// Waits until the coordinator triggered a checkpoint (even rounds) or for a random time
/// (odd rounds) after the job is running.
fn wait_for_kill_point(
    cluster: &Cluster,
    round: usize,
    restarts: Option<u32>,
    rng: &mut fastrand::Rng,
) {
    cluster.wait_running_after(restarts);
    let deadline = Instant::now() + Duration::from_millis(rng.u64(300..1500));
    let seen = cluster.log().len();
    while Instant::now() < deadline
        || (round.is_multiple_of(2)
            && !cluster.log()[seen..]
                .iter()
                .any(|l| l.contains("triggering checkpoint")))
    {
        std::thread::sleep(Duration::from_millis(5));
    }
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
    let (status, stdout) = cluster.wait(LONG);
    let log = cluster.log().join("\n");
    assert!(status.success(), "{log}");
    assert!(stdout.contains("finished"), "{stdout}");
    assert!(log.contains("worker lost"), "{log}");
    assert!(log.contains("restart 3 of at most"), "{log}");
    assert!(log.contains("restoring from checkpoint"), "{log}");
    // Each worker read only the state of its own subtask (1 of the window's 3).
    let workers = cluster.worker_logs();
    assert!(
        workers.contains("restore: read the keyed state of 1 of 3 operator subtasks"),
        "{workers}"
    );
    assert!(!workers.contains("of 3 of 3"), "{workers}");
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn a_worker_that_stops_sending_heartbeats_is_replaced() {
    let server = S3Server::start();
    let job = job(&server, "silent");
    let mut cluster = Cluster::start(&job, 3, &[]);
    cluster.wait_for_log("checkpoint 1 complete", Duration::from_secs(60));
    // SIGSTOP: the connection stays open, but heartbeats stop.
    let pid = cluster.workers[1].id().to_string();
    let stop = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(stop.success());
    cluster.start_worker();
    cluster.wait_for_log("no heartbeat for", Duration::from_secs(30));
    let (status, _) = cluster.wait(LONG);
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
    let log = cluster.log().join("\n");
    assert!(status.success(), "{log}");
    assert!(log.contains("restoring from checkpoint"), "{log}");
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
    cluster.wait_for_log("checkpoint 3 complete", Duration::from_secs(60));
    cluster.kill_worker(2);
    cluster.start_worker();
    let (status, _) = cluster.wait(LONG);
    let log = cluster.log().join("\n");
    assert!(status.success(), "{log}");
    assert!(log.contains("restoring from checkpoint"), "{log}");
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
    for round in 0..3 {
        wait_for_kill_point(&cluster, round, None, &mut rng);
        cluster.kill_coordinator();
        cluster.start_coordinator();
    }
    let (status, _) = cluster.wait(LONG);
    let log = cluster.log().join("\n");
    assert!(status.success(), "{log}");
    // The restarted coordinators found the latest checkpoint in storage.
    assert!(log.contains("restoring from checkpoint"), "{log}");
    assert!(
        cluster.worker_log(1).contains("reconnecting"),
        "{}",
        cluster.worker_log(1)
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
        let (status, body) = http(
            "GET",
            &format!("{}/v1/savepoints/{trigger}", cluster.admin),
            None,
        );
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
    cluster.wait_for_log("checkpoint 2 complete", Duration::from_secs(60));
    // A savepoint while running, then a stop with savepoint.
    let directory = format!("s3://{}/savepoints", server.bucket);
    let (status, body) = http(
        "POST",
        &format!("{}/v1/savepoints", cluster.admin),
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
        http(
            "POST",
            &format!("{}/v1/savepoint-disposal", cluster.admin),
            Some(&format!(r#"{{"location":"{location}"}}"#)),
        )
    };
    for _ in 0..2 {
        let (status, body) = dispose(&first);
        assert_eq!(status, 200, "{body}");
        assert!(!on_disk(&first).join("_metadata").exists(), "{first}");
    }
    let (_, body) = http("GET", &format!("{}/v1/checkpoints", cluster.admin), None);
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
    let (status, body) = http(
        "POST",
        &format!("{}/v1/job/stop", cluster.admin),
        Some(&format!(
            r#"{{"withSavepoint":true,"directory":"{directory}"}}"#
        )),
    );
    assert_eq!(status, 202, "{body}");
    let (status, stdout) = cluster.wait(LONG);
    assert!(status.success(), "{}", cluster.log().join("\n"));
    let savepoint = stdout
        .split("stopped with savepoint ")
        .nth(1)
        .unwrap_or_else(|| panic!("no savepoint in {stdout}"))
        .trim()
        .to_string();
    assert!(savepoint.starts_with(&directory), "{savepoint}");
    drop(cluster);
    // Restore on 2 workers with 5 subtasks: the key groups are redistributed.
    job.edit(|d| d["spec"]["job"]["parallelism"] = 5.into());
    let mut cluster = Cluster::start(&job, 2, &["--from-savepoint", &savepoint]);
    let (status, _) = cluster.wait(LONG);
    let log = cluster.log().join("\n");
    assert!(status.success(), "{log}");
    assert!(log.contains("restoring from savepoint"), "{log}");
    // Workers take subtasks in registration order: one runs 0, 2, 4, the other 1, 3.
    let logs = [cluster.worker_log(1), cluster.worker_log(2)];
    // Each read only the key-group sections it owns (ranged reads), not the whole savepoint.
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
    for log in &logs {
        let read: u64 = log
            .split("operator subtasks (")
            .nth(1)
            .and_then(|r| r.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no restore line in {log}"));
        assert!(read < state_bytes, "read {read} of {state_bytes} bytes");
    }
    assert!(
        logs.iter().any(|l| l.contains("subtasks=[0, 2, 4]"))
            && logs.iter().any(|l| l.contains("subtasks=[1, 3]")),
        "{logs:?}"
    );
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn bad_admin_input_gets_a_json_error_and_the_job_keeps_running() {
    let server = S3Server::start();
    let job = job(&server, "bad-input");
    let mut cluster = Cluster::start(&job, 3, &[]);
    cluster.wait_running();
    let api = cluster.admin.clone();
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
    let (status, stdout) = cluster.wait(LONG);
    assert!(status.success(), "{}", cluster.log().join("\n"));
    assert!(stdout.contains("stopped with savepoint"), "{stdout}");
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
        let (_, body) = http("GET", &format!("{}/v1/job", cluster.admin), None);
        if body.contains("\"FAILED\"") {
            break json(&body);
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(info["restarts"], 1, "{info}");
    assert!(
        info["failure"].as_str().is_some_and(|f| f.contains("lost")),
        "{info}"
    );
    let (status, body) = http(
        "POST",
        &format!("{}/v1/job/stop", cluster.admin),
        Some(r#"{"withSavepoint":false}"#),
    );
    assert_eq!(status, 202, "{body}\n{}", cluster.log().join("\n"));
    let (status, _) = cluster.wait(LONG);
    assert_eq!(status.code(), Some(1), "a FAILED job exits with 1");
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
