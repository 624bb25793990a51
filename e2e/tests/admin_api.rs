//! The admin API of a running job: bad input gets a 4xx JSON error with a stable code while
//! the job keeps running; a second concurrent stop is refused; stop with savepoint ends the
//! run with a savepoint that restores exactly once; metrics are in the Prometheus format;
//! cancel ends the run without a savepoint; without the run's token (or with another) every
//! request but the probes is refused 401 and changes nothing.

use std::time::{Duration, Instant};

use weir_e2e::cluster::http_as;
use weir_e2e::{assert_success, example_job, reference_retail_revenue, TestJob};

/// The admin API of `weir run` of `job`: its URL and token, as the run publishes them next to
/// its local state directory.
struct Admin {
    url: String,
    token: String,
}

impl Admin {
    /// Waits until the run of `job` is ready.
    fn of(job: &TestJob) -> Admin {
        let uri = format!("file://{}/{}", job.storage.display(), job.name);
        let local = weir_runtime::runner::local_dir_path(None, &job.name, &uri);
        let file = weir_runtime::admin::discovery_file(&local);
        let start = Instant::now();
        loop {
            if let Ok(url) = std::fs::read_to_string(&file) {
                let url = url.trim().to_string();
                if ureq::get(&format!("{url}/readyz")).call().is_ok() {
                    let token_file = weir_runtime::admin::token_file(&local);
                    let mode = std::os::unix::fs::PermissionsExt::mode(
                        &std::fs::metadata(&token_file).unwrap().permissions(),
                    );
                    assert_eq!(mode & 0o777, 0o600, "only the run's user reads its token");
                    let token = std::fs::read_to_string(token_file).unwrap();
                    return Admin { url, token };
                }
            }
            assert!(start.elapsed() < Duration::from_secs(20), "job not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A request with the run's token.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http_as(
            Some(&self.token),
            method,
            &format!("{}{path}", self.url),
            body,
        )
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
    let admin = Admin::of(&job);

    // Without the run's token, or with another, nothing is answered and nothing changes; the
    // probes carry nothing and answer anyone.
    let wrong = weir_api_types::AdminToken::generate();
    for token in [None, Some(wrong.expose())] {
        for (method, path, body) in [
            ("GET", "/v1/job", None),
            ("GET", "/metrics", None),
            ("POST", "/v1/savepoints", Some("{}")),
            ("POST", "/v1/job/stop", Some(r#"{"withSavepoint": false}"#)),
            (
                "POST",
                "/v1/savepoint-disposal",
                Some(r#"{"location": "file:///tmp"}"#),
            ),
        ] {
            let (s, b) = http_as(token, method, &format!("{}{path}", admin.url), body);
            assert_eq!(
                (s, code(&b)),
                (401, "unauthorized".to_string()),
                "{method} {path}"
            );
        }
    }
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            http_as(None, "GET", &format!("{}{probe}", admin.url), None).0,
            200
        );
    }
    let (_, metrics) = admin.call("GET", "/metrics", None);
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"weir_refused_connections_total{port="admin"} 10"#),
        "{metrics}"
    );

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
        let (s, b) = admin.call(method, path, body);
        assert_eq!(s, status, "{method} {path}: {b}");
        assert_eq!(code(&b), expected, "{method} {path}: {b}");
    }
    let (s, b) = admin.call("GET", "/v1/job", None);
    assert_eq!(s, 200);
    let info: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        info["state"], "RUNNING",
        "the job keeps running after bad requests: {b}"
    );
    let (s, metrics) = admin.call("GET", "/metrics", None);
    assert_eq!(s, 200);
    assert!(
        metrics.contains("weir_records_in_total")
            && metrics.contains("weir_storage_requests_total"),
        "{metrics}"
    );

    // Two stops back to back: the second is refused while the first is in progress.
    let (s1, b1) = admin.call("POST", "/v1/job/stop", Some("{}"));
    let (s2, b2) = admin.call("POST", "/v1/job/stop", Some("{}"));
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
    let admin = Admin::of(&job);
    // Drain once records flow (a drain before the first record fires nothing).
    let start = Instant::now();
    while admin
        .call("GET", "/v1/job", None)
        .1
        .parse::<serde_json::Value>()
        .map_or(0, |j| j["recordsIn"].as_u64().unwrap_or(0))
        == 0
    {
        assert!(start.elapsed() < Duration::from_secs(20), "no records read");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (s, b) = admin.call("POST", "/v1/job/stop", Some(r#"{"drain": true}"#));
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
    let admin = Admin::of(&job);
    let (s, b) = admin.call("POST", "/v1/job/stop", Some(r#"{"withSavepoint": false}"#));
    assert_eq!(s, 202, "{b}");
    let end = run_end(child, &job);
    assert_eq!(end["state"], "cancelled", "{end}");
}
