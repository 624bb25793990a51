//! The operator on a real control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler built from source) with the node agent running pods as processes: the chart
//! installed with kubectl, the example applied and driven through its lifecycle with kubectl
//! only.

use std::time::Duration;

use serde_json::{json, Value};
use weir_e2e_k8s::cluster::{TestCluster, RUNTIME_IMAGE};

const NAME: &str = "retail-revenue";

fn job(c: &TestCluster) -> Value {
    let text = c.kubectl_ok(&["get", "streamjob", NAME, "-o", "json"]);
    serde_json::from_str(&text).expect("StreamJob JSON")
}

/// The example manifest, on the test cluster's images and S3 store.
fn example(c: &TestCluster) -> String {
    let text =
        std::fs::read_to_string(weir_e2e::repo_root().join("examples/retail-revenue-k8s.yaml"))
            .unwrap();
    let mut m: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    m["spec"]["image"] = RUNTIME_IMAGE.into();
    m["spec"]["checkpointing"]["s3"]["endpoint"] = c.s3_endpoint().into();
    serde_yaml::to_string(&m).unwrap()
}

#[test]
fn the_operator_runs_a_job_through_its_lifecycle_on_a_real_control_plane() {
    let c = TestCluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_weir-node-agent")));
    c.install_chart(json!({}));
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "weir-s3",
        &format!(
            "--from-literal=AWS_ACCESS_KEY_ID={}",
            weir_e2e::s3::ACCESS_KEY
        ),
        &format!(
            "--from-literal=AWS_SECRET_ACCESS_KEY={}",
            weir_e2e::s3::SECRET_KEY
        ),
    ]);
    let (ok, text) = c.kubectl(&["apply", "-f", "-"], Some(&example(&c)));
    assert!(ok, "{text}");
    let (ok, text) = c.kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            &format!("streamjob/{NAME}"),
            "--timeout=180s",
        ],
        None,
    );
    assert!(ok, "{text}\n{:#}\n{}", job(&c)["status"], c.diagnostics());
    // Checkpoints reach the store through the pods' network.
    let start = std::time::Instant::now();
    while c
        .s3
        .objects("checkpoints")
        .iter()
        .all(|k| !k.ends_with("_metadata"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint in S3\n{}",
            c.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // `kubectl get sj` shows the printer columns.
    let table = c.kubectl_ok(&["get", "sj"]);
    assert!(table.contains(NAME), "{table}");
}
