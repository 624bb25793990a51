//! A whole test cluster: the control plane, one node agent running pods as processes, an
//! S3-compatible store reachable from the pods as Service `minio` in `weir-system`, and the
//! chart installed as a user installs it (rendered with the Helm SDK, applied with kubectl).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weir_e2e::s3::S3Server;

use crate::agent::images::{Image, Images};
use crate::control_plane::{self, ControlPlane};

/// The host's address on the pod bridge.
pub const HOST_IP: &str = "10.201.0.1";
/// Image reference of the job pods in the test cluster: the name `docs/operator.md` builds the
/// runtime image under and the examples use.
pub const RUNTIME_IMAGE: &str = "weir:dev";
/// Image reference of a user's job image in the test cluster: the fraud-detection example,
/// built as `examples/fraud-detection/Dockerfile` builds it (its binary registers the
/// `fraud-detection` job next to the built-in ones).
pub const USER_IMAGE: &str = "fraud-detection:e2e";
/// An image with `curl` (the host's), for a pod of another workload calling a job's ports.
pub const CURL_IMAGE: &str = "curlimages/curl:8.11.1";
/// Image reference of the operator in the test cluster (as `docs/operator.md` builds it).
pub const OPERATOR_IMAGE: &str = "weir-operator:dev";
/// Namespace the chart is installed into.
pub const OPERATOR_NAMESPACE: &str = "weir-system";
/// Bucket of the S3 store (the example's `s3://weir/...`).
pub const BUCKET: &str = "weir";
/// Port of the S3 store: the port of the MinIO Service in `docs/operator.md`, so that
/// `examples/retail-revenue-k8s.yaml` runs unchanged (without kube-proxy a Service name
/// resolves to its endpoints, so the store listens on the Service's port).
pub const S3_PORT: u16 = 9000;

/// A binary built by this cargo run (next to `weir`), or `$WEIR_<NAME>` if set.
pub fn target_bin(name: &str) -> PathBuf {
    let var = format!("WEIR_{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    let p = weir_e2e::weir_bin().with_file_name(name);
    assert!(
        p.exists(),
        "{} not found: build it with cargo build --release -p <its crate>",
        p.display()
    );
    p
}

/// The image table: the runtime image runs `weir` from this tree and holds the example's
/// input at the path the Dockerfile puts it; the user image runs the fraud-detection
/// example's binary; the operator image runs `weir-operator`; the curl image the host's curl.
pub fn images() -> Images {
    let weir = weir_e2e::weir_bin();
    let operator = target_bin("weir-operator");
    let user = target_bin("fraud-detection");
    let mut table = Images::default();
    table.0.insert(
        RUNTIME_IMAGE.into(),
        Image {
            entrypoint: vec!["/usr/local/bin/weir".into()],
            binaries: [
                ("/usr/local/bin/weir".to_string(), weir.clone()),
                ("weir".to_string(), weir),
            ]
            .into(),
            files: [(
                "/opt/weir/data/online_retail_uci_2010-2011.csv.gz".to_string(),
                weir_e2e::retail_data(),
            )]
            .into(),
            ..Default::default()
        },
    );
    table.0.insert(
        USER_IMAGE.into(),
        Image {
            entrypoint: vec!["/usr/local/bin/weir".into()],
            binaries: [("/usr/local/bin/weir".to_string(), user)].into(),
            ..Default::default()
        },
    );
    table.0.insert(
        CURL_IMAGE.into(),
        Image {
            entrypoint: vec!["/usr/bin/curl".into()],
            binaries: [
                ("/usr/bin/curl".to_string(), PathBuf::from("/usr/bin/curl")),
                ("curl".to_string(), PathBuf::from("/usr/bin/curl")),
            ]
            .into(),
            ..Default::default()
        },
    );
    table.0.insert(
        OPERATOR_IMAGE.into(),
        Image {
            entrypoint: vec!["/usr/local/bin/weir-operator".into()],
            binaries: [("/usr/local/bin/weir-operator".to_string(), operator)].into(),
            ..Default::default()
        },
    );
    table
}

/// The running cluster.
pub struct TestCluster {
    /// Its working directory (the control plane's files, the agent's state and log).
    pub dir: tempfile::TempDir,
    /// The S3 store, listening on every address of the host.
    pub s3: S3Server,
    agent: Option<Child>,
    agent_bin: PathBuf,
    /// The control plane (last field: dropped after the agent).
    pub control_plane: ControlPlane,
}

impl TestCluster {
    /// Starts the control plane, the node agent (`agent_bin`) and the S3 store, waits until
    /// the node is Ready, and creates Service `minio` in `weir-system` for the store.
    pub fn start(agent_bin: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let control_plane = ControlPlane::start(&dir.path().join("control-plane"), HOST_IP);
        let s3 = S3Server::start_at("0.0.0.0", S3_PORT, BUCKET);
        let mut c = TestCluster {
            dir,
            s3,
            agent: None,
            agent_bin: agent_bin.to_path_buf(),
            control_plane,
        };
        c.start_agent();
        // `kubectl wait` fails at once on a Node not registered yet: wait for it to exist.
        let start = Instant::now();
        while !c.kubectl(&["get", "node/weir-node"], None).0 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the node agent registered no Node\n{}",
                c.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        c.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            "node/weir-node",
            "--timeout=60s",
        ]);
        c.kubectl_ok(&["create", "namespace", OPERATOR_NAMESPACE]);
        let port = c.s3.port;
        c.apply(&json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "minio", "namespace": OPERATOR_NAMESPACE},
            "spec": {"ports": [{"name": "s3", "port": port, "targetPort": port}]},
        }));
        c.apply(&json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "minio-host", "namespace": OPERATOR_NAMESPACE, "labels": {
                "kubernetes.io/service-name": "minio",
                "endpointslice.kubernetes.io/managed-by": "weir-e2e",
            }},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [HOST_IP], "conditions": {"ready": true}}],
            "ports": [{"name": "s3", "port": port}],
        }));
        c
    }

    /// The S3 endpoint as pods name it.
    pub fn s3_endpoint(&self) -> String {
        format!("http://minio.{OPERATOR_NAMESPACE}.svc:{}", self.s3.port)
    }

    /// The agent's state directory: outside /tmp, which pods mount over (their scratch
    /// volume), unique per cluster.
    pub fn node_dir(&self) -> PathBuf {
        let id = self
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        PathBuf::from("/var/lib/weir-node-agent").join(id.trim_start_matches('.'))
    }

    /// A host directory for a pod's hostPath volume: outside /tmp (the pods' scratch mount),
    /// removed with the cluster.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        let p = self.node_dir().join("host").join(name);
        std::fs::create_dir_all(&p).expect("host dir");
        p
    }

    /// Starts the node agent (again).
    pub fn start_agent(&mut self) {
        let state = self.node_dir();
        std::fs::create_dir_all(&state).expect("agent dir");
        let images_path = state.join("images.yaml");
        std::fs::write(&images_path, serde_yaml::to_string(&images()).unwrap()).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("node-agent.log"))
            .expect("agent log");
        let child = Command::new(&self.agent_bin)
            .arg(format!(
                "--apiserver-port={}",
                self.control_plane.addresses.apiserver_port
            ))
            .arg(format!("--host-ip={HOST_IP}"))
            .arg("--state-dir")
            .arg(&state)
            .arg("--images")
            .arg(&images_path)
            .env("KUBECONFIG", &self.control_plane.kubeconfig)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weir-node-agent");
        self.agent = Some(child);
    }

    /// `kubectl` with the admin kubeconfig: (success, stdout + stderr).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        let mut cmd = Command::new(control_plane::bin("kubectl"));
        cmd.arg(format!(
            "--kubeconfig={}",
            self.control_plane.kubeconfig.display()
        ))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `kubectl` that must succeed; its output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.kubectl(args, None);
        assert!(
            ok,
            "kubectl {}: {text}\n{}",
            args.join(" "),
            self.diagnostics()
        );
        text
    }

    /// `kubectl apply -f -` of one object.
    pub fn apply(&self, object: &Value) {
        let (ok, text) = self.kubectl(&["apply", "-f", "-"], Some(&object.to_string()));
        assert!(ok, "kubectl apply: {text}");
    }

    /// Renders the chart with `values` (the Helm SDK, as `helm template`) and applies it with
    /// kubectl into [`OPERATOR_NAMESPACE`], the operator image being [`OPERATOR_IMAGE`] and
    /// the default job image [`RUNTIME_IMAGE`]; waits until the operator's rollout completes.
    pub fn install_chart(&self, mut values: Value) {
        let (repo, tag) = OPERATOR_IMAGE.split_once(':').unwrap();
        values["image"] = json!({"repository": repo, "tag": tag, "pullPolicy": "Never"});
        values["defaultJobImage"] = json!(RUNTIME_IMAGE);
        let values_path = self.dir.path().join("values.json");
        std::fs::write(&values_path, values.to_string()).unwrap();
        let rendered = self.dir.path().join("chart.yaml");
        let out = Command::new("python3")
            .arg(weir_e2e::repo_root().join("scripts/chart.py"))
            .arg("--values")
            .arg(&values_path)
            .args(["--namespace", OPERATOR_NAMESPACE])
            .arg(&rendered)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "chart render: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = rendered.display().to_string();
        self.kubectl_ok(&["apply", "-n", OPERATOR_NAMESPACE, "-f", &path]);
        self.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd/streamjobs.weir.dev",
            "--timeout=60s",
        ]);
        self.kubectl_ok(&[
            "rollout",
            "status",
            "-n",
            OPERATOR_NAMESPACE,
            "deployment/weir-weir-operator",
            "--timeout=120s",
        ]);
    }

    /// What to look at when something fails: pods, events, the agent's log tail.
    pub fn diagnostics(&self) -> String {
        let (_, pods) = self.kubectl(&["get", "pods", "-A", "-o", "wide"], None);
        let (_, events) = self.kubectl(&["get", "events", "-A", "--sort-by=.lastTimestamp"], None);
        let (_, waiting) = self.kubectl(
            &[
                "get", "pods", "-A", "-o",
                "custom-columns=NAME:.metadata.name,WAITING:.status.containerStatuses[*].state.waiting.message,MESSAGE:.status.message",
            ],
            None,
        );
        let pods = format!("{pods}\n{waiting}");
        let agent =
            std::fs::read_to_string(self.dir.path().join("node-agent.log")).unwrap_or_default();
        let lines: Vec<&str> = agent.lines().collect();
        let mut logs = String::new();
        for pod in std::fs::read_dir(self.node_dir().join("pods"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(pod.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.ends_with(".log") {
                    let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                    let l: Vec<&str> = text.lines().collect();
                    logs += &format!(
                        "--- {}/{name}\n{}\n",
                        pod.file_name().to_string_lossy(),
                        l[l.len().saturating_sub(15)..].join("\n")
                    );
                }
            }
        }
        format!(
            "--- pods\n{pods}\n--- events\n{events}\n--- node agent\n{}\n{logs}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// Waits until `done(object)` holds for `kubectl get <what> -o json`, at most `timeout`.
    pub fn wait_json(
        &self,
        what: &[&str],
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json"]);
        loop {
            let (ok, text) = self.kubectl(&args, None);
            if ok {
                let v: Value = serde_json::from_str(&text).expect("kubectl JSON");
                if done(&v) {
                    return v;
                }
                assert!(
                    start.elapsed() < timeout,
                    "{what:?} not as expected within {timeout:?}: {:#}\n{}",
                    v["status"],
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(agent.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(40);
            while agent.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = agent.kill();
            let _ = agent.wait();
        }
        let _ = std::fs::remove_dir_all(self.node_dir());
    }
}
