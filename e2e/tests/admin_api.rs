//! The admin API of a running job: bad input gets a 4xx JSON error with a stable code while
//! the job keeps running; a second concurrent stop is refused; stop with savepoint ends the
//! run with a savepoint that restores exactly once; metrics are in the Prometheus format;
//! cancel ends the run without a savepoint.

use std::time::{Duration, Instant};

use weir_e2e::cluster::http as call;
use weir_e2e::{assert_success, example_job, reference_retail_revenue, TestJob};

fn admin_url(job: &TestJob) -> String {
    let uri = format!("file://{}/{}", job.storage.display(), job.name);
    let file = weir_runtime::admin::discovery_file(&weir_runtime::runner::local_dir_path(
        None, &job.name, &uri,
    ));
    let start = Instant::now();
    loop {
        if let Ok(url) = std::fs::read_to_string(&file) {
            let url = url.trim().to_string();
            if ureq::get(&format!("{url}/readyz")).call().is_ok() {
                return url;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(20), "job not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).expect("JSON error body")["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `weir run` of `job`, writing its summary to `summary.json` in the job's directory.
fn spawn_with_summary(job: &TestJob) -> std::process::Child {
    std::process::Command::new(weir_e2e::weir_bin())
        .arg("run")
        .arg(&job.manifest)
        .args(["--progress-interval", "0s", "--summary-json"])
        .arg(job.dir.path().join("summary.json"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for `child` (of [`spawn_with_summary`]) to exit successfully; returns how the run
/// ended, from its summary JSON (`{"state": ..., "savepoint": ...}`).
fn run_end(mut child: std::process::Child, job: &TestJob) -> serde_json::Value {
    assert!(child.wait().unwrap().success());
    let summary = std::fs::read(job.dir.path().join("summary.json")).expect("summary written");
    let summary: serde_json::Value = serde_json::from_slice(&summary).unwrap();
    summary["end"].clone()
}

/// Waits for a run that was stopped with a savepoint to exit successfully; returns the
/// savepoint's location from its summary.
fn stopped_with_savepoint(child: std::process::Child, job: &TestJob) -> String {
    let end = run_end(child, job);
    assert_eq!(end["state"], "stopped", "{end}");
    end["savepoint"]
        .as_str()
        .unwrap_or_else(|| panic!("no savepoint in {end}"))
        .to_string()
}

fn throttled() -> TestJob {
    example_job(|d| {
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "60000".into();
    })
}

#[test]
fn bad_requests_are_refused_and_stop_with_savepoint_restores_exactly_once() {
    let job = throttled();
    let child = spawn_with_summary(&job);
    let url = admin_url(&job);

    let cases = [
        (
            "POST",
            "/v1/savepoints",
            Some("{not json"),
            400,
            "malformed_request",
        ),
        (
            "POST",
            "/v1/savepoints",
            Some(r#"{"directory": "gs://bucket/x"}"#),
            400,
            "invalid_directory",
        ),
        (
            "POST",
            "/v1/savepoints",
            Some(r#"{"directory": "file:///proc/weir/savepoints"}"#),
            400,
            "unwritable_directory",
        ),
        (
            "POST",
            "/v1/savepoints",
            Some(r#"{"dir": "x"}"#),
            400,
            "malformed_request",
        ),
        (
            "GET",
            "/v1/savepoints/no-such-trigger",
            None,
            404,
            "unknown_trigger",
        ),
        ("GET", "/v1/no-such-endpoint", None, 404, "not_found"),
        (
            "POST",
            "/v1/job/stop",
            Some(r#"{"withSavepoint": "yes"}"#),
            400,
            "malformed_request",
        ),
    ];
    for (method, path, body, status, expected) in cases {
        let (s, b) = call(method, &format!("{url}{path}"), body);
        assert_eq!(s, status, "{method} {path}: {b}");
        assert_eq!(code(&b), expected, "{method} {path}: {b}");
    }
    let (s, b) = call("GET", &format!("{url}/v1/job"), None);
    assert_eq!(s, 200);
    let info: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        info["state"], "RUNNING",
        "the job keeps running after bad requests: {b}"
    );
    let (s, metrics) = call("GET", &format!("{url}/metrics"), None);
    assert_eq!(s, 200);
    assert!(
        metrics.contains("weir_records_in_total")
            && metrics.contains("weir_storage_requests_total"),
        "{metrics}"
    );

    // Two stops back to back: the second is refused while the first is in progress.
    let (s1, b1) = call("POST", &format!("{url}/v1/job/stop"), Some("{}"));
    let (s2, b2) = call("POST", &format!("{url}/v1/job/stop"), Some("{}"));
    assert_eq!(s1, 202, "{b1}");
    assert_eq!(
        (s2, code(&b2)),
        (409, "stop_in_progress".to_string()),
        "{b2}"
    );
    let savepoint = stopped_with_savepoint(child, &job);

    let out = job.run(&["--from-savepoint", &savepoint]);
    assert_success(&out);
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn stop_with_drain_and_cancel() {
    // Drain: event time jumps to the end, every window fires, then the savepoint.
    let job = throttled();
    let child = spawn_with_summary(&job);
    let url = admin_url(&job);
    let (s, b) = call(
        "POST",
        &format!("{url}/v1/job/stop"),
        Some(r#"{"drain": true}"#),
    );
    assert_eq!(s, 202, "{b}");
    // The drained job's final snapshot is the savepoint.
    let savepoint = stopped_with_savepoint(child, &job);
    let drained = job.output_lines();
    assert!(!drained.is_empty() && drained.len() < reference_retail_revenue().len());
    let path = savepoint.strip_prefix("file://").unwrap();
    assert!(std::path::Path::new(path).join("_metadata").exists());

    // Cancel: no savepoint, the run just ends.
    let job = throttled();
    let child = spawn_with_summary(&job);
    let url = admin_url(&job);
    let (s, b) = call(
        "POST",
        &format!("{url}/v1/job/stop"),
        Some(r#"{"withSavepoint": false}"#),
    );
    assert_eq!(s, 202, "{b}");
    let end = run_end(child, &job);
    assert_eq!(end["state"], "cancelled", "{end}");
}
