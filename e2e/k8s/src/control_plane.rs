//! A real Kubernetes control plane for the end-to-end tests: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler, built from pinned sources by
//! `e2e/control-plane/build.sh` into `~/.cache/weir-tools/bin`, started on this machine with
//! TLS, a CA of the test's own, service-account signing keys and an admin kubeconfig, and
//! stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Directory of the control plane's binaries: `$WEIR_K8S_BIN`, or
/// `~/.cache/weir-tools/bin` (where `scripts/setup.sh --test` builds them).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("WEIR_K8S_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/weir-tools/bin")
        })
}

/// Path of one control-plane binary (`etcd`, `kube-apiserver`, `kubectl`, ...), checked to
/// exist.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: build the control plane with `bash e2e/control-plane/build.sh` \
         (scripts/setup.sh --test does) or set WEIR_K8S_BIN",
        p.display()
    );
    p
}

/// Where the cluster's pods reach the API server and the host: the node bridge's address.
#[derive(Clone, Debug)]
pub struct Addresses {
    /// The host's address on the pod network (the bridge), for example `10.201.0.1`.
    pub host_ip: String,
    /// The API server's port (on every address of the host).
    pub apiserver_port: u16,
}

/// A running control plane.
pub struct ControlPlane {
    /// Its working directory: certificates, keys, kubeconfig, etcd's data, logs.
    pub dir: PathBuf,
    /// The admin kubeconfig (user `admin` in group `system:masters`).
    pub kubeconfig: PathBuf,
    /// Addresses pods use.
    pub addresses: Addresses,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    others: Vec<Child>,
    etcd_url: String,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Writes `ca.{crt,key}`, the API server's serving certificate (`apiserver.{crt,key}`, valid
/// for 127.0.0.1, `host_ip`, the `kubernetes` Service's names and its cluster IP), the admin
/// client certificate (`admin.{crt,key}`) and the service-account signing key pair
/// (`sa.{key,pub}`) into `dir`.
fn write_pki(dir: &Path, host_ip: &str) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "weir-e2e-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    write(&dir.join("ca.crt"), &ca_cert.pem());
    write(&dir.join("ca.key"), &ca_key.serialize_pem());
    let issuer = Issuer::new(ca, ca_key);

    let sans: Vec<String> = [
        "127.0.0.1",
        host_ip,
        "10.96.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .map(String::from)
    .to_vec();
    let serving = [(DnType::CommonName, "kube-apiserver")];
    let server_auth = ExtendedKeyUsagePurpose::ServerAuth;
    write_leaf(dir, "apiserver", sans, &serving, server_auth, &issuer);
    let admin = [
        (DnType::CommonName, "admin"),
        (DnType::OrganizationName, "system:masters"),
    ];
    let client_auth = ExtendedKeyUsagePurpose::ClientAuth;
    write_leaf(dir, "admin", Vec::new(), &admin, client_auth, &issuer);

    let sa = KeyPair::generate().expect("service-account key");
    write(&dir.join("sa.key"), &sa.serialize_pem());
    write(&dir.join("sa.pub"), &sa.public_key_pem());
}

/// Writes `<name>.crt` and `<name>.key`: a certificate for `sans` with subject `subject` and
/// extended key usage `usage`, signed by `issuer`.
fn write_leaf(
    dir: &Path,
    name: &str,
    sans: Vec<String>,
    subject: &[(DnType, &str)],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) {
    let key = KeyPair::generate().expect("key pair");
    let mut params = CertificateParams::new(sans).expect("certificate params");
    params.distinguished_name = DistinguishedName::new();
    for (t, v) in subject {
        params.distinguished_name.push(t.clone(), *v);
    }
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).expect("certificate");
    write(&dir.join(format!("{name}.crt")), &cert.pem());
    write(&dir.join(format!("{name}.key")), &key.serialize_pem());
}

fn b64(path: &Path) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).expect("read PEM"))
}

/// An admin kubeconfig for `server`.
fn kubeconfig(dir: &Path, server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: weir-e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: weir-e2e\n  context:\n    cluster: weir-e2e\n    user: admin\ncurrent-context: weir-e2e\n",
        b64(&dir.join("ca.crt")),
        b64(&dir.join("admin.crt")),
        b64(&dir.join("admin.key")),
    )
}

fn spawn(dir: &Path, name: &str, program: &Path, args: &[String]) -> Child {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()))
}

impl ControlPlane {
    /// Starts etcd and the API server (serving on every address of the host at a free port,
    /// advertising `host_ip`), waits until the API server is ready, then starts the
    /// controller manager and the scheduler. Panics with the component's log when one does
    /// not come up within a minute.
    pub fn start(dir: &Path, host_ip: &str) -> Self {
        std::fs::create_dir_all(dir).expect("control-plane dir");
        write_pki(dir, host_ip);
        let [apiserver_port, client_port, peer_port] = weir_e2e::free_ports();
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let kubeconfig_path = dir.join("admin.kubeconfig");
        write(
            &kubeconfig_path,
            &kubeconfig(dir, &format!("https://127.0.0.1:{apiserver_port}")),
        );
        let mut cp = ControlPlane {
            dir: dir.to_path_buf(),
            kubeconfig: kubeconfig_path,
            addresses: Addresses {
                host_ip: host_ip.to_string(),
                apiserver_port,
            },
            etcd: None,
            apiserver: None,
            others: Vec::new(),
            etcd_url,
        };
        let peer = format!("http://127.0.0.1:{peer_port}");
        cp.etcd = Some(spawn(
            dir,
            "etcd",
            &bin("etcd"),
            &[
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={}", cp.etcd_url),
                format!("--advertise-client-urls={}", cp.etcd_url),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster=default={peer}"),
                // Test data: fsync would only slow the shared machine down.
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
        ));
        cp.start_apiserver();
        let kc = format!("--kubeconfig={}", cp.kubeconfig.display());
        cp.others.push(spawn(
            dir,
            "kube-controller-manager",
            &bin("kube-controller-manager"),
            &[
                kc.clone(),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                format!(
                    "--service-account-private-key-file={}",
                    dir.join("sa.key").display()
                ),
                format!("--root-ca-file={}", dir.join("ca.crt").display()),
                "--use-service-account-credentials=true".into(),
                "--controllers=*".into(),
                // Terminated pods are garbage collected only beyond this count.
                "--terminated-pod-gc-threshold=1000".into(),
            ],
        ));
        cp.others.push(spawn(
            dir,
            "kube-scheduler",
            &bin("kube-scheduler"),
            &[kc, "--leader-elect=false".into(), "--secure-port=0".into()],
        ));
        cp
    }

    /// Starts (or restarts) the API server and waits until `/readyz` answers ok.
    pub fn start_apiserver(&mut self) {
        let dir = &self.dir;
        let d = |f: &str| dir.join(f).display().to_string();
        self.apiserver = Some(spawn(
            dir,
            "kube-apiserver",
            &bin("kube-apiserver"),
            &[
                format!("--etcd-servers={}", self.etcd_url),
                "--bind-address=0.0.0.0".into(),
                format!("--secure-port={}", self.addresses.apiserver_port),
                format!("--advertise-address={}", self.addresses.host_ip),
                format!("--tls-cert-file={}", d("apiserver.crt")),
                format!("--tls-private-key-file={}", d("apiserver.key")),
                format!("--client-ca-file={}", d("ca.crt")),
                format!("--service-account-key-file={}", d("sa.pub")),
                format!("--service-account-signing-key-file={}", d("sa.key")),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                "--authorization-mode=Node,RBAC".into(),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
            ],
        ));
        self.wait_ready();
    }

    /// SIGKILLs the API server (etcd and the controllers keep running).
    pub fn kill_apiserver(&mut self) {
        if let Some(mut c) = self.apiserver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            let out = Command::new(bin("kubectl"))
                .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
                .args(["get", "--raw", "/readyz"])
                .output()
                .expect("kubectl runs");
            if out.status.success() {
                return;
            }
            if let Some(Some(status)) = self.apiserver.as_mut().map(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "kube-apiserver exited ({status}):\n{}",
                    self.log("kube-apiserver")
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "kube-apiserver not ready within 90 s: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log("kube-apiserver")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last 60 lines of a component's log (`etcd`, `kube-apiserver`, ...).
    pub fn log(&self, component: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{component}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for c in self
            .others
            .iter_mut()
            .chain(self.apiserver.as_mut())
            .chain(self.etcd.as_mut())
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
