//! The operator on a real Kubernetes cluster (kind, k3d, any), when KUBECONFIG is set: the
//! scenario of `operator_processes.rs` through `kubectl` against the installed chart.
//! Skipped, saying so, without KUBECONFIG.
//!
//! Prerequisites (docs/operator.md): the chart installed, the runtime image (`WEIR_E2E_IMAGE`,
//! default `weir:dev`) loadable by the nodes, an S3-compatible store and Secret `weir-s3` in
//! namespace `WEIR_E2E_NAMESPACE` (default `default`) as `examples/retail-revenue-k8s.yaml`
//! expects. Exactly-once output is shown by the process-level test; here each worker pod
//! writes its own output, so this test checks the lifecycle and the savepoints.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const NAME: &str = "retail-revenue";

struct Kubectl {
    namespace: String,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        let mut cmd = Command::new("kubectl");
        cmd.args(["-n", &self.namespace]).args(args);
        let out = if let Some(text) = stdin {
            use std::io::Write;
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("kubectl runs");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        } else {
            cmd.output().expect("kubectl runs")
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.run(args, None);
        assert!(ok, "kubectl {args:?}: {text}");
        text
    }

    fn job(&self) -> Option<Value> {
        let (ok, text) = self.run(&["get", "streamjob", NAME, "-o", "json"], None);
        ok.then(|| serde_json::from_str(&text).expect("StreamJob JSON"))
    }

    fn patch(&self, patch: &str) -> (bool, String) {
        self.run(
            &["patch", "streamjob", NAME, "--type", "merge", "-p", patch],
            None,
        )
    }

    /// Waits until `done(streamjob)` holds (10 minutes at most).
    fn wait(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(j) = self.job() {
                if done(&j) {
                    println!("{what}: after {:?}", start.elapsed());
                    return j;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(600),
                    "{what}: not reached; status {:#}",
                    j["status"]
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

fn stable_at(j: &Value, generation: i64) -> bool {
    j["status"]["observedGeneration"] == generation
        && j["status"]["lifecycleState"] == "Stable"
        && j["status"]["deployed"]["generation"] == generation
}

#[test]
fn the_operator_runs_rescales_suspends_and_deletes_on_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        // Written to the process's stderr directly: the test harness captures `eprintln!`.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: cluster e2e (set KUBECONFIG to a cluster with the weir-operator chart installed; see docs/operator.md)"
        );
        return;
    }
    let k = Kubectl {
        namespace: std::env::var("WEIR_E2E_NAMESPACE").unwrap_or_else(|_| "default".into()),
    };
    let image = std::env::var("WEIR_E2E_IMAGE").unwrap_or_else(|_| "weir:dev".into());
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/retail-revenue-k8s.yaml"
    ))
    .unwrap()
    .replace("image: weir:dev", &format!("image: {image}"));
    let _ = k.run(&["delete", "streamjob", NAME, "--wait=true"], None);
    let (ok, text) = k.run(&["apply", "-f", "-"], Some(&manifest));
    assert!(ok, "{text}");
    let first = k.wait("created and stable", |j| stable_at(j, 1));
    let job_id = first["status"]["job"]["id"].clone();
    // Rescale 2 -> 3 through a savepoint.
    assert!(k.patch(r#"{"spec":{"job":{"parallelism":3}}}"#).0);
    let j = k.wait("rescaled", |j| {
        stable_at(j, 2) && j["status"]["job"]["parallelism"] == 3
    });
    let restore = j["status"]["deployed"]["restore"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(restore.starts_with("s3://weir/savepoints"), "{restore}");
    assert_eq!(
        j["status"]["job"]["restoredFrom"].as_str(),
        Some(restore.as_str())
    );
    assert_ne!(j["status"]["job"]["id"], job_id);
    // An argument change: another savepoint.
    assert!(k.patch(r#"{"spec":{"job":{"args":{"decimals":"3"}}}}"#).0);
    let j = k.wait("arguments changed", |j| stable_at(j, 3));
    assert_ne!(
        j["status"]["deployed"]["restore"].as_str(),
        Some(restore.as_str())
    );
    // maxParallelism is immutable once the job has state: the API server refuses the edit.
    let (ok, text) = k.patch(r#"{"spec":{"job":{"maxParallelism":256}}}"#);
    assert!(!ok && text.contains("maxParallelism"), "{text}");
    // Suspend keeps the resource and deletes the pods; resume restores the suspend savepoint.
    assert!(k.patch(r#"{"spec":{"job":{"state":"suspended"}}}"#).0);
    let j = k.wait("suspended", |j| {
        j["status"]["lifecycleState"] == "Suspended"
    });
    let suspend_savepoint = j["status"]["deployed"]["restore"]
        .as_str()
        .unwrap()
        .to_string();
    let (present, _) = k.run(&["get", "deployment", "retail-revenue-coordinator"], None);
    assert!(!present, "the coordinator is gone while suspended");
    assert!(k.patch(r#"{"spec":{"job":{"state":"running"}}}"#).0);
    let j = k.wait("resumed", |j| stable_at(j, 5));
    assert_eq!(
        j["status"]["job"]["restoredFrom"].as_str(),
        Some(suspend_savepoint.as_str())
    );
    // Deletion: the finalizer lets go once the workloads are gone.
    k.ok(&["delete", "streamjob", NAME, "--wait=true", "--timeout=5m"]);
    let (present, _) = k.run(&["get", "deployment", "retail-revenue-coordinator"], None);
    assert!(!present);
}
