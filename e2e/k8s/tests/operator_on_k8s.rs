//! The operator on a real control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler built from source) with the node agent running pods as processes: the chart
//! rendered with the Helm SDK and applied with kubectl; the quickstart's Kubernetes step
//! (`docs/quickstart.md`, its commands extracted from the document, the example unchanged, its
//! output in the S3 store); a worker OOMKilled under a too small memory limit, which the
//! StreamJob's `Ready` condition names; two StreamJobs of one name in two namespaces against
//! one bucket, each restoring only its own state after a worker pod is deleted; then the
//! example driven through its life with kubectl only: created again under the quickstart's
//! name (it starts empty), an argument change (savepoint, pre-flight check Job, redeploy) with
//! the operator's pod killed in each phase, `kubectl scale` (rescale 2 -> 3 through a
//! savepoint), a refused `maxParallelism` change (the CRD's CEL rule), an incompatible change
//! to the user's own image (UpgradeBlocked, the old job runs on), suspend and resume (and
//! meanwhile another StreamJob whose StatefulSet the API server refuses: Stalled, then fixed),
//! a rolling restart of the operator itself, deletion with a final savepoint, and a new job
//! restored from that savepoint (`spec.restore`) running to the end through a deleted worker
//! pod, a deleted coordinator pod and a restarted API server: its committed output is exactly
//! the reference output. On the way: the job's pods running as uid 65532 on a read-only root
//! with no_new_privs (the node agent enforces what a kubelet does), the job's admin token
//! Secret and NetworkPolicy, a 401 for a pod of another workload without the token or with
//! another, and the chart's admission policy refusing a hostPath volume and a foreign image on
//! the real API server.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weir_e2e::console_doc::steps;
use weir_e2e::doc_session::DocSession;
use weir_e2e_k8s::cluster::{
    TestCluster, BUCKET, CURL_IMAGE, OPERATOR_NAMESPACE, RUNTIME_IMAGE, USER_IMAGE,
};
use weir_e2e_k8s::control_plane;

const NAME: &str = "retail-revenue";
const STEP: Duration = Duration::from_secs(240);

/// Condition `type_` of a StreamJob's JSON (`null` when absent).
fn find_condition(j: &Value, type_: &str) -> Value {
    j["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or_default()
}

/// The status (`True`, `False`) of condition `type_`; empty when absent.
fn condition(j: &Value, type_: &str) -> String {
    find_condition(j, type_)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The reason and message of condition `type_`.
fn condition_reason(j: &Value, type_: &str) -> (String, String) {
    let c = find_condition(j, type_);
    (
        c["reason"].as_str().unwrap_or_default().to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// Events of `reason` about StreamJob `name`.
fn events(c: &TestCluster, name: &str, reason: &str) -> Vec<Value> {
    let text = c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("reason={reason},involvedObject.name={name}"),
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&text).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Follows the upgrade of StreamJob `sj` to `generation` and force-deletes the operator's
/// pod (no grace: the process is killed) the first time it sees each phase (`Checking`,
/// `Savepointing`, `Stopping`, then `Deploying`), until the new generation is stable. Returns
/// the phases it killed the operator in.
fn kill_operator_in_each_phase(c: &TestCluster, sj: &str, generation: i64) -> Vec<String> {
    let start = Instant::now();
    let mut killed: Vec<String> = Vec::new();
    loop {
        let (ok, text) = c.kubectl(&["get", sj, "-o", "json"], None);
        if ok {
            let j: Value = serde_json::from_str(&text).unwrap();
            if stable_at(&j, generation) {
                return killed;
            }
            let phase = match (
                j["status"]["upgrade"]["phase"].as_str(),
                j["status"]["lifecycleState"].as_str(),
            ) {
                (Some(p), _) => Some(p.to_string()),
                (None, Some("Deploying"))
                    if j["status"]["deployed"]["generation"] == generation =>
                {
                    Some("Deploying".to_string())
                }
                _ => None,
            };
            if let Some(phase) = phase.filter(|p| !killed.contains(p)) {
                c.kubectl_ok(&[
                    "delete",
                    "pod",
                    "-n",
                    OPERATOR_NAMESPACE,
                    "-l",
                    "app.kubernetes.io/name=weir-operator",
                    "--grace-period=0",
                    "--force",
                    "--wait=false",
                ]);
                killed.push(phase);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(400),
            "generation {generation} not stable; operator killed in {killed:?}\n{}",
            c.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stable_at(j: &Value, generation: i64) -> bool {
    j["status"]["observedGeneration"] == generation
        && j["status"]["lifecycleState"] == "Stable"
        && j["status"]["deployed"]["generation"] == generation
}

/// The example manifest on the test cluster's images and S3 store, where its output goes too
/// (`s3://weir/output/retail-revenue`, as in the example).
fn example(c: &TestCluster) -> serde_yaml::Value {
    let text =
        std::fs::read_to_string(weir_e2e::repo_root().join("examples/retail-revenue-k8s.yaml"))
            .unwrap();
    let mut m: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    m["spec"]["image"] = RUNTIME_IMAGE.into();
    m["spec"]["checkpointing"]["s3"]["endpoint"] = c.s3_endpoint().into();
    m["spec"]["checkpointing"]["interval"] = "1s".into();
    m["spec"]["job"]["args"]["maxRecordsPerSecond"] = "2500".into();
    m["spec"]["savepoints"]["onDeletion"] = true.into();
    m
}

/// Where the S3 store keeps the objects under `prefix` of bucket `weir` (s3s-fs stores an
/// object as a file).
fn store_dir(c: &TestCluster, prefix: &str) -> std::path::PathBuf {
    c.s3.root.path().join(BUCKET).join(prefix)
}

fn savepoints(c: &TestCluster) -> Vec<String> {
    let mut out: Vec<String> =
        c.s3.objects("savepoints")
            .into_iter()
            .filter_map(|k| k.strip_suffix("/_metadata").map(str::to_string))
            .collect();
    out.sort();
    out
}

/// Step 6 of `docs/quickstart.md`: the commands of its ```` ```console kubernetes ```` block,
/// extracted from the document, run in one bash session from the repository root with this
/// cluster's kubectl and kubeconfig, and checked against the output the document shows. The
/// cluster has what the document's setup gives (the chart, images `weir:dev` and
/// `weir-operator:dev`, Secret `weir-s3`, bucket `weir` at `minio.weir-system.svc:9000`), so
/// `examples/retail-revenue-k8s.yaml` is applied unchanged. Ends with its savepoints and
/// output removed from the store, its checkpoints left in its root.
fn quickstart_kubernetes_step(c: &TestCluster) {
    let doc_path = weir_e2e::repo_root().join("docs/quickstart.md");
    let doc = std::fs::read_to_string(&doc_path).expect("read docs/quickstart.md");
    let steps = steps(&doc, "console kubernetes");
    for command in ["kubectl apply", "kubectl scale", "kubectl delete"] {
        assert!(
            steps.iter().any(|s| s.command.starts_with(command)),
            "docs/quickstart.md's Kubernetes block has no `{command}`"
        );
    }
    let kubectl_dir = control_plane::bin("kubectl")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let env = [
        (
            "PATH".to_string(),
            format!(
                "{}:{}",
                kubectl_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        ),
        (
            "KUBECONFIG".to_string(),
            c.control_plane.kubeconfig.display().to_string(),
        ),
    ];
    // The example's output, in the S3 store.
    let output = store_dir(c, EXAMPLE_OUTPUT);
    let _ = std::fs::remove_dir_all(&output);
    let mut session = DocSession::start(
        &weir_e2e::repo_root(),
        &env,
        &c.dir.path().join("quickstart-stderr.log"),
        STEP,
    );
    session.run(&doc_path, &steps, &|| c.diagnostics());
    drop(session);
    // The StreamJob is gone; its pods go with it (garbage collection), then its files.
    let start = Instant::now();
    while !c
        .kubectl_ok(&["get", "pods", "-o", "name"])
        .trim()
        .is_empty()
    {
        assert!(
            start.elapsed() < STEP,
            "the quickstart's pods outlived their StreamJob\n{}",
            c.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        !weir_e2e::read_output(&output).is_empty(),
        "the quickstart's job committed nothing to s3://{BUCKET}/{EXAMPLE_OUTPUT}"
    );
    // Its checkpoints stay: the next StreamJob of this name must start empty all the same.
    for prefix in ["savepoints", EXAMPLE_OUTPUT] {
        let _ = std::fs::remove_dir_all(store_dir(c, prefix));
    }
}

/// Runs a pod of another workload in the job's namespace that calls `path` of the job's admin
/// API through its Service, sending `token` as a bearer token (none: no header); returns the
/// JSON answer (curl writes the body to the pod's termination message).
fn call_from_another_pod(c: &TestCluster, pod: &str, path: &str, token: Option<&str>) -> Value {
    let url = format!("http://{NAME}-coordinator.default.svc:8081{path}");
    let mut args = vec!["-s", "-o", "/dev/termination-log", "--max-time", "10"];
    let header = token.map(|t| format!("Authorization: Bearer {t}"));
    if let Some(h) = &header {
        args.extend(["-H", h.as_str()]);
    }
    args.push(&url);
    c.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "namespace": "default"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "curl", "image": CURL_IMAGE, "args": args,
        }]},
    }));
    let done = c.wait_json(&[&format!("pod/{pod}")], STEP, |p| {
        p["status"]["phase"] == "Succeeded" || p["status"]["phase"] == "Failed"
    });
    let message = done["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    c.kubectl_ok(&["delete", &format!("pod/{pod}"), "--wait=false"]);
    serde_json::from_str(&message).unwrap_or_else(|e| panic!("{pod}: not JSON ({e}): {message}"))
}

/// What a shared cluster needs of the running example: its own admin token Secret, a
/// NetworkPolicy that admits the operator to the admin port and the job's pods to its other
/// ports, and a 401 for any pod without the token or with another.
fn another_workload_cannot_reach_the_job(c: &TestCluster) {
    let secret: Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "secret",
        &format!("{NAME}-admin-token"),
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["kind"],
        "StreamJob"
    );
    let policy: Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "networkpolicy",
        &format!("{NAME}-job"),
        "-o",
        "json",
    ]))
    .unwrap();
    let ports = |rule: &Value| -> Vec<i64> {
        rule["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64())
            .collect()
    };
    assert_eq!(ports(&policy["spec"]["ingress"][0]), [8081]);
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]
            ["kubernetes.io/metadata.name"],
        OPERATOR_NAMESPACE
    );
    assert_eq!(ports(&policy["spec"]["ingress"][1]), [6123, 6124]);
    // The test cluster enforces no NetworkPolicy: the token alone keeps the other pod out.
    let wrong = "another-jobs-token-0123456789abcdef0123456789abcdef";
    for (pod, token) in [
        ("intruder-no-token", None),
        ("intruder-wrong-token", Some(wrong)),
    ] {
        for (i, path) in ["/v1/job", "/metrics"].into_iter().enumerate() {
            let answer = call_from_another_pod(c, &format!("{pod}-{i}"), path, token);
            assert_eq!(answer["code"], "unauthorized", "{pod} {path}: {answer}");
        }
    }
}

/// Every container of the job's pods runs as the node agent made it, as a kubelet would: uid
/// and gid 65532 with fsGroup 65532 among its groups, no_new_privs, and a read-only root.
fn the_jobs_pods_run_confined(c: &TestCluster) {
    let pods: Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        &format!("weir.dev/job={NAME}"),
        "-o",
        "json",
    ]))
    .unwrap();
    let items = pods["items"].as_array().unwrap();
    assert!(items.len() >= 3, "coordinator and 2 workers: {pods}");
    for pod in items {
        let status = &pod["status"]["containerStatuses"][0];
        let pid = status["containerID"]
            .as_str()
            .and_then(|id| id.strip_prefix("process://"))
            .unwrap_or_else(|| panic!("no process: {status}"));
        let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| -> Vec<String> {
            proc_status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        assert_eq!(field("Uid"), ["65532"; 4], "{}", pod["metadata"]["name"]);
        assert_eq!(field("Gid"), ["65532"; 4], "{}", pod["metadata"]["name"]);
        assert!(field("Groups").contains(&"65532".to_string()));
        assert_eq!(field("NoNewPrivs"), ["1"]);
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let root = mounts
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.len() > 5 && f[4] == "/")
            .expect("a root mount");
        assert!(root[5].starts_with("ro"), "root mounted {}", root[5]);
    }
}

/// Secret `weir-s3` in `namespace`, with the S3 store's credentials, as `docs/operator.md`
/// creates it.
fn create_s3_secret(c: &TestCluster, namespace: &str) {
    c.kubectl_ok(&[
        "-n",
        namespace,
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
}

/// Two teams, one job name, one bucket: StreamJob `orders` in namespaces `team-a` and `team-b`
/// with the same checkpoint storage. Each keeps its state under its own root
/// (`checkpoints/<namespace>/orders/`), restores only its own checkpoint after one of its
/// worker pods is deleted, and commits exactly the reference output.
fn two_teams_run_jobs_of_one_name_against_one_bucket(c: &TestCluster) {
    let teams = ["team-a", "team-b"];
    for ns in teams {
        c.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        create_s3_secret(c, ns);
        let mut m = example(c);
        m["metadata"] =
            serde_yaml::from_str(&format!("{{name: orders, namespace: {ns}}}")).unwrap();
        m["spec"]["job"]["args"]["output"] = format!("s3://{BUCKET}/output/{ns}/orders").into();
        m["spec"]["job"]["args"]["maxRecordsPerSecond"] = "12000".into();
        m["spec"]["savepoints"]["onDeletion"] = false.into();
        let (ok, text) = c.kubectl(
            &["apply", "-f", "-"],
            Some(&serde_yaml::to_string(&m).unwrap()),
        );
        assert!(ok, "{text}");
    }
    for ns in teams {
        c.wait_json(&["-n", ns, "streamjob/orders"], STEP, |j| {
            j["status"]["job"]["state"] == "RUNNING"
                && j["status"]["lastCheckpoint"]["id"]
                    .as_i64()
                    .is_some_and(|id| id >= 1)
        });
        c.kubectl_ok(&[
            "-n",
            ns,
            "delete",
            "pod",
            "orders-workers-1",
            "--wait=false",
        ]);
    }
    for ns in teams {
        let j = c.wait_json(
            &["-n", ns, "streamjob/orders"],
            Duration::from_secs(300),
            |j| j["status"]["job"]["state"] == "FINISHED",
        );
        let restored = j["status"]["job"]["restoredFrom"]
            .as_str()
            .unwrap_or_default();
        assert!(
            restored.starts_with(&format!(
                "s3://{BUCKET}/checkpoints/{ns}/orders/checkpoints/"
            )),
            "{ns} restored {restored:?}"
        );
        assert_eq!(
            weir_e2e::read_output(&store_dir(c, &format!("output/{ns}/orders"))),
            weir_e2e::reference_retail_revenue(),
            "{ns}"
        );
    }
    for ns in teams {
        c.kubectl_ok(&[
            "-n",
            ns,
            "delete",
            "streamjob/orders",
            "--wait=true",
            "--timeout=60s",
        ]);
    }
}

/// A worker whose memory limit is too small is OOMKilled, and the StreamJob says so: `Ready`
/// false with reason `OOMKilled`, naming the pod and the limit to raise.
fn a_worker_out_of_memory_shows_in_the_status(c: &TestCluster) {
    let mut tight = example(c);
    tight["metadata"]["name"] = "tight".into();
    tight["spec"]["job"]["parallelism"] = 1.into();
    tight["spec"]["job"]["args"]["output"] = format!("s3://{BUCKET}/output/tight").into();
    tight["spec"]["savepoints"]["onDeletion"] = false.into();
    tight["spec"]["workers"]["resources"] =
        serde_yaml::from_str("{limits: {memory: 8Mi}, requests: {memory: 8Mi}}").unwrap();
    let (ok, text) = c.kubectl(
        &["apply", "-f", "-"],
        Some(&serde_yaml::to_string(&tight).unwrap()),
    );
    assert!(ok, "{text}");
    let j = c.wait_json(&["streamjob/tight"], STEP, |j| {
        condition_reason(j, "Ready").0 == "OOMKilled"
    });
    let (_, message) = condition_reason(&j, "Ready");
    assert!(
        message.contains("tight-workers-0")
            && message.contains("spec.workers.resources.limits.memory"),
        "{message}"
    );
    assert_eq!(condition(&j, "Ready"), "False");
    let pod: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "pod", "tight-workers-0", "-o", "json"]))
            .unwrap();
    let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
    let now = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert!(
        last["reason"] == "OOMKilled" || now["reason"] == "OOMKilled",
        "{pod}"
    );
    c.kubectl_ok(&["delete", "streamjob/tight", "--wait=true", "--timeout=60s"]);
}

/// The chart's admission policy (installed for namespaces labelled `weir.dev/admission: on`)
/// refuses a StreamJob with a hostPath volume or an image outside the allowed prefixes,
/// naming the rule.
fn the_admission_policy_refuses_what_it_must(c: &TestCluster, example: &serde_yaml::Value) {
    c.apply(&json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "restricted", "labels": {"weir.dev/admission": "on"}},
    }));
    let mut base: Value = serde_json::to_value(example).unwrap();
    base["metadata"] = json!({"name": "guarded", "namespace": "restricted"});
    // A hostPath volume: refused.
    base["spec"]["workers"] = json!({
        "volumes": [{"name": "data", "hostPath": {"path": "/var/lib/weir"}}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    });
    let (ok, text) = c.kubectl(&["apply", "-f", "-"], Some(&base.to_string()));
    assert!(!ok && text.contains("forbidHostPath"), "{text}");
    // Without it, but with an image from elsewhere: refused, naming the allowed prefixes.
    let mut other = base.clone();
    for part in ["coordinator", "workers"] {
        other["spec"][part] = json!({});
    }
    other["spec"]["image"] = json!("evil.example.com/miner:1");
    let (ok, text) = c.kubectl(&["apply", "-f", "-"], Some(&other.to_string()));
    assert!(!ok && text.contains("allowedImagePrefixes"), "{text}");
    // The same StreamJob on an allowed image is admitted (and deleted again at once).
    other["spec"]["image"] = json!(RUNTIME_IMAGE);
    other["spec"]["job"]["state"] = json!("suspended");
    let (ok, text) = c.kubectl(&["apply", "-f", "-"], Some(&other.to_string()));
    assert!(ok, "{text}");
    c.kubectl_ok(&[
        "-n",
        "restricted",
        "delete",
        "streamjob/guarded",
        "--wait=true",
        "--timeout=60s",
    ]);
}

/// The output prefix of `examples/retail-revenue-k8s.yaml` in bucket `weir`.
const EXAMPLE_OUTPUT: &str = "output/retail-revenue";

#[test]
fn the_operator_runs_a_job_through_its_lifecycle_on_a_real_control_plane() {
    let c = TestCluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_weir-node-agent")));
    c.install_chart(json!({"admissionPolicy": {
        "enabled": true,
        "allowedImagePrefixes": ["weir:", "fraud-detection:"],
        "namespaceSelector": {"matchLabels": {"weir.dev/admission": "on"}},
    }}));
    create_s3_secret(&c, "default");
    quickstart_kubernetes_step(&c);
    a_worker_out_of_memory_shows_in_the_status(&c);
    two_teams_run_jobs_of_one_name_against_one_bucket(&c);
    // Names the API server would refuse for the job's Services or pod labels are refused
    // up front by the CRD's rule.
    for bad in ["1retail", &"a".repeat(45)] {
        let (ok, text) = c.kubectl(
            &["apply", "-f", "-"],
            Some(&json!({
                "apiVersion": "weir.dev/v1alpha1", "kind": "StreamJob",
                "metadata": {"name": bad},
                "spec": {"job": {"entry": "csv-window-aggregate"}, "checkpointing": {"storage": "file:///tmp/x"}},
            }).to_string()),
        );
        assert!(
            !ok && text.contains("at most 44 characters"),
            "{bad}: {text}"
        );
    }
    // A StreamJob whose spec stops validating before anything was deployed is still deleted.
    let never = json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "StreamJob",
        "metadata": {"name": "never-deployed"},
        "spec": {"job": {"entry": "csv-window-aggregate", "state": "suspended"},
                 "checkpointing": {"storage": "file:///tmp/never"}},
    });
    c.apply(&never);
    c.wait_json(&["streamjob/never-deployed"], STEP, |j| {
        j["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
            && j["status"]["observedGeneration"] == 1
    });
    c.kubectl_ok(&[
        "patch",
        "streamjob/never-deployed",
        "--type=merge",
        "-p",
        r#"{"spec":{"checkpointing":{"storage":"ftp://nowhere"}}}"#,
    ]);
    c.wait_json(&["streamjob/never-deployed"], STEP, |j| {
        condition(j, "Stalled") == "True"
    });
    c.kubectl_ok(&[
        "delete",
        "streamjob/never-deployed",
        "--wait=true",
        "--timeout=60s",
    ]);

    let predecessor =
        c.s3.objects(&format!("checkpoints/default/{NAME}/checkpoints"));
    let manifest = example(&c);
    let (ok, text) = c.kubectl(
        &["apply", "-f", "-"],
        Some(&serde_yaml::to_string(&manifest).unwrap()),
    );
    assert!(ok, "{text}");
    let sj = format!("streamjob/{NAME}");
    let (ok, text) = c.kubectl(
        &["wait", "--for=condition=Ready", &sj, "--timeout=180s"],
        None,
    );
    assert!(ok, "{text}\n{}", c.diagnostics());
    let first = c.wait_json(&[&sj], STEP, |j| stable_at(j, 1));
    // Deleted and created again: the quickstart's StreamJob of this name left its checkpoints
    // in this root, and the new one (another UID) started empty all the same.
    assert!(
        predecessor.iter().any(|k| k.ends_with("_metadata")),
        "{predecessor:?}"
    );
    assert!(
        first["status"]["job"]["restoredFrom"].is_null(),
        "{}",
        first["status"]
    );
    the_jobs_pods_run_confined(&c);
    another_workload_cannot_reach_the_job(&c);
    the_admission_policy_refuses_what_it_must(&c, &manifest);
    // Checkpoints reach the store through the pods' network.
    let start = Instant::now();
    while c
        .s3
        .objects("checkpoints")
        .iter()
        .all(|k| !k.ends_with("_metadata") || predecessor.contains(k))
    {
        assert!(
            start.elapsed() < STEP,
            "no checkpoint in S3\n{}",
            c.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // `kubectl get sj` shows the printer columns; `kubectl explain` reads the schema.
    let table = c.kubectl_ok(&["get", "sj"]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "STATE", "PARALLELISM"] {
        assert!(header.contains(column), "{table}");
    }
    let explain = c.kubectl_ok(&["explain", "streamjob.spec.job"]);
    assert!(
        explain.contains("maxParallelism") && explain.contains("key groups"),
        "{explain}"
    );

    // An argument change: upgrade through a savepoint, the pre-flight check as a Job pod.
    // The operator's pod is killed in each phase of the upgrade: every new operator resumes
    // from the status it wrote ahead, and one trigger never takes a second savepoint.
    let known = savepoints(&c);
    let (ok, text) = c.kubectl(
        &[
            "patch",
            &sj,
            "--type=merge",
            "-p",
            r#"{"spec":{"job":{"args":{"maxRecordsPerSecond":"3000"}}}}"#,
        ],
        None,
    );
    assert!(ok, "{text}");
    let killed = kill_operator_in_each_phase(&c, &sj, 2);
    let j = c.wait_json(&[&sj], STEP, |j| stable_at(j, 2));
    let taken: Vec<String> = savepoints(&c)
        .into_iter()
        .filter(|s| !known.contains(s))
        .collect();
    assert_eq!(
        taken.len(),
        1,
        "one savepoint for one trigger: {taken:?}; operator killed in {killed:?}"
    );
    assert!(
        killed.len() >= 2 && killed.iter().any(|p| p == "Checking"),
        "the operator was killed in too few phases: {killed:?}"
    );
    eprintln!("operator killed in phases {killed:?}");
    let upgrade = j["status"]["deployed"]["restore"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(upgrade.contains("savepoints"), "{upgrade}");
    assert_ne!(j["status"]["job"]["id"], first["status"]["job"]["id"]);
    let jobs = c.kubectl_ok(&["get", "jobs", "-o", "json"]);
    let jobs: Value = serde_json::from_str(&jobs).unwrap();
    assert!(
        jobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["status"]["succeeded"] == 1),
        "no pre-flight check Job succeeded: {jobs:#}"
    );

    // The scale subresource: rescale 2 -> 3 through a savepoint.
    c.kubectl_ok(&["scale", &sj, "--replicas=3"]);
    let j = c.wait_json(&[&sj], STEP, |j| {
        stable_at(j, 3) && j["status"]["job"]["parallelism"] == 3
    });
    let rescale = j["status"]["deployed"]["restore"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rescale, upgrade);
    assert_eq!(
        j["status"]["job"]["restoredFrom"].as_str(),
        Some(rescale.as_str())
    );

    // maxParallelism is fixed once the job has state: the API server's CEL rule refuses it.
    let (ok, text) = c.kubectl(
        &[
            "patch",
            &sj,
            "--type=merge",
            "-p",
            r#"{"spec":{"job":{"maxParallelism":256}}}"#,
        ],
        None,
    );
    assert!(!ok && text.contains("maxParallelism"), "{text}");

    // An incompatible change: the user's own image with another job. Its pre-flight check (a
    // Job running that image) finds state the new job cannot restore: UpgradeBlocked, and the
    // old job runs on. Reverting the spec clears it without a redeploy.
    let before: Value = serde_json::from_str(&c.kubectl_ok(&["get", &sj, "-o", "json"])).unwrap();
    let incompatible = json!([
        {"op": "replace", "path": "/spec/image", "value": USER_IMAGE},
        {"op": "replace", "path": "/spec/job/entry", "value": "fraud-detection"},
        {"op": "replace", "path": "/spec/job/args",
         "value": {"transactions": "1000", "output": "/tmp/alerts"}},
    ]);
    c.kubectl_ok(&["patch", &sj, "--type=json", "-p", &incompatible.to_string()]);
    let j = c.wait_json(&[&sj], STEP, |j| {
        j["status"]["observedGeneration"] == 4 && condition(j, "UpgradeBlocked") == "True"
    });
    let (reason, message) = condition_reason(&j, "UpgradeBlocked");
    assert_eq!(reason, "IncompatibleState", "{message}");
    assert!(message.contains("allowNonRestoredState"), "{message}");
    assert_eq!(condition(&j, "Stalled"), "True");
    assert_eq!(j["status"]["deployed"]["generation"], 3);
    assert_eq!(j["status"]["job"]["id"], before["status"]["job"]["id"]);
    assert!(!events(&c, NAME, "UpgradeBlocked").is_empty());
    let seen = j["status"]["lastCheckpoint"]["id"].as_i64().unwrap();
    c.wait_json(&[&sj], STEP, |j| {
        j["status"]["lastCheckpoint"]["id"]
            .as_i64()
            .is_some_and(|id| id > seen + 1)
            && j["status"]["job"]["id"] == before["status"]["job"]["id"]
    });
    let revert = json!([{"op": "replace", "path": "/spec", "value": before["spec"]}]);
    c.kubectl_ok(&["patch", &sj, "--type=json", "-p", &revert.to_string()]);
    let j = c.wait_json(&[&sj], STEP, |j| {
        stable_at(j, 5) && condition(j, "UpgradeBlocked") == "False"
    });
    assert_eq!(condition(&j, "Ready"), "True");
    assert_eq!(j["status"]["job"]["id"], before["status"]["job"]["id"]);

    // Suspend: a savepoint, no pods; resume restores it.
    c.kubectl_ok(&[
        "patch",
        &sj,
        "--type=merge",
        "-p",
        r#"{"spec":{"job":{"state":"suspended"}}}"#,
    ]);
    let j = c.wait_json(&[&sj], STEP, |j| {
        j["status"]["lifecycleState"] == "Suspended"
    });
    let suspend = j["status"]["deployed"]["restore"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !c.kubectl(&["get", "deployment", &format!("{NAME}-coordinator")], None)
            .0
    );

    // Meanwhile, a StreamJob the API server refuses to deploy: a volume with two sources
    // passes the CRD's open schema, but not the StatefulSet's validation. Stalled with the
    // server's message and a Warning Event, retried slowly; fixing the spec deploys it.
    let mut refused = example(&c);
    refused["metadata"]["name"] = "refused".into();
    refused["spec"]["job"]["args"]["output"] = format!("s3://{BUCKET}/output/refused").into();
    refused["spec"]["savepoints"]["onDeletion"] = false.into();
    refused["spec"]["coordinator"] = serde_yaml::Mapping::new().into();
    refused["spec"]["workers"] =
        serde_yaml::from_str("volumes: [{name: data, emptyDir: {}, hostPath: {path: /tmp/data}}]")
            .unwrap();
    let (ok, text) = c.kubectl(
        &["apply", "-f", "-"],
        Some(&serde_yaml::to_string(&refused).unwrap()),
    );
    assert!(ok, "{text}");
    let j = c.wait_json(&["streamjob/refused"], STEP, |j| {
        condition(j, "Stalled") == "True"
    });
    let (reason, message) = condition_reason(&j, "Stalled");
    assert_eq!(reason, "ApplyRejected", "{message}");
    assert!(
        message.contains("StatefulSet") && message.contains("volumes"),
        "{message}"
    );
    assert_eq!(j["status"]["rejected"]["generation"], 1);
    assert_eq!(condition(&j, "Ready"), "False");
    assert!(!events(&c, "refused", "ApplyRejected").is_empty());
    c.kubectl_ok(&[
        "patch",
        "streamjob/refused",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/workers/volumes"}]"#,
    ]);
    let j = c.wait_json(&["streamjob/refused"], STEP, |j| {
        j["status"]["observedGeneration"] == 2
            && j["status"]["deployed"]["generation"] == 2
            && j["status"]["job"]["state"] == "RUNNING"
    });
    assert_eq!(condition(&j, "Stalled"), "False");
    assert!(j["status"]["rejected"].is_null());
    c.kubectl_ok(&[
        "delete",
        "streamjob/refused",
        "--wait=true",
        "--timeout=120s",
    ]);

    c.kubectl_ok(&[
        "patch",
        &sj,
        "--type=merge",
        "-p",
        r#"{"spec":{"job":{"state":"running"}}}"#,
    ]);
    let j = c.wait_json(&[&sj], STEP, |j| stable_at(j, 7));
    assert_eq!(
        j["status"]["job"]["restoredFrom"].as_str(),
        Some(suspend.as_str())
    );
    assert_eq!(condition(&j, "Ready"), "True");

    // The operator's own Deployment rolled: the rollout completes (readiness does not wait
    // for the Lease the old pod holds) and the new pod takes over.
    let deployment = "deployment/weir-weir-operator";
    let before = c.kubectl_ok(&["get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "name"]);
    c.kubectl_ok(&["rollout", "restart", "-n", OPERATOR_NAMESPACE, deployment]);
    c.kubectl_ok(&[
        "rollout",
        "status",
        "-n",
        OPERATOR_NAMESPACE,
        deployment,
        "--timeout=180s",
    ]);
    let after = c.kubectl_ok(&["get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "name"]);
    assert_ne!(before, after);
    c.kubectl_ok(&[
        "patch",
        &sj,
        "--type=merge",
        "-p",
        r#"{"spec":{"job":{"savepointTriggerNonce":1}}}"#,
    ]);
    c.wait_json(&[&sj], STEP, |j| {
        j["status"]["savepoints"]["last"]["kind"] == "Manual"
            && j["status"]["observedGeneration"] == 8
    });

    // Deletion takes a final savepoint; a new job restored from it runs to the end.
    let known = savepoints(&c);
    c.kubectl_ok(&["delete", &sj, "--wait=true", "--timeout=240s"]);
    assert!(
        !c.kubectl(&["get", "deployment", &format!("{NAME}-coordinator")], None)
            .0
    );
    let last = savepoints(&c)
        .into_iter()
        .find(|s| !known.contains(s))
        .unwrap_or_else(|| panic!("no final savepoint: {known:?}"));
    // Created again (another UID) with `spec.restore` naming that savepoint: it restores
    // exactly that one.
    let last = format!("s3://{BUCKET}/{last}");
    let mut resumed = example(&c);
    resumed["spec"]["restore"] = last.clone().into();
    resumed["spec"]["job"]["args"]["maxRecordsPerSecond"] = "1500".into();
    let (ok, text) = c.kubectl(
        &["apply", "-f", "-"],
        Some(&serde_yaml::to_string(&resumed).unwrap()),
    );
    assert!(ok, "{text}");
    c.wait_json(&[&sj], STEP, |j| j["status"]["job"]["restoredFrom"] == last);

    // Faults while it runs: a worker pod deleted, the coordinator pod deleted, the API server
    // killed and restarted. Each time the job comes back from its latest checkpoint.
    let mut c = c;
    let checkpoint_after = |c: &TestCluster, id: i64| {
        c.wait_json(&[&sj], STEP, |j| {
            j["status"]["job"]["state"] == "RUNNING"
                && j["status"]["lastCheckpoint"]["id"]
                    .as_i64()
                    .is_some_and(|n| n > id)
        })["status"]["lastCheckpoint"]["id"]
            .as_i64()
            .unwrap()
    };
    let id = checkpoint_after(&c, 0);
    c.kubectl_ok(&[
        "delete",
        "pod",
        &format!("{NAME}-workers-1"),
        "--wait=false",
    ]);
    let id = checkpoint_after(&c, id + 2);
    c.kubectl_ok(&[
        "delete",
        "pod",
        "-l",
        "weir.dev/component=coordinator",
        "--wait=false",
    ]);
    let id = checkpoint_after(&c, id + 2);
    c.control_plane.kill_apiserver();
    std::thread::sleep(Duration::from_secs(3));
    c.control_plane.start_apiserver();
    let id = checkpoint_after(&c, id + 2);
    // Half of the deployment deleted by hand: the operator applies it again.
    c.kubectl_ok(&[
        "delete",
        "statefulset",
        &format!("{NAME}-workers"),
        "--wait=false",
    ]);
    checkpoint_after(&c, id + 2);
    // Then unthrottled to the end (one more upgrade through a savepoint).
    c.kubectl_ok(&[
        "patch",
        &sj,
        "--type=merge",
        "-p",
        r#"{"spec":{"job":{"args":{"maxRecordsPerSecond":"0"}}}}"#,
    ]);
    c.wait_json(&[&sj], Duration::from_secs(600), |j| {
        j["status"]["job"]["state"] == "FINISHED"
    });
    assert_eq!(
        weir_e2e::read_output(&store_dir(&c, EXAMPLE_OUTPUT)),
        weir_e2e::reference_retail_revenue()
    );
}
