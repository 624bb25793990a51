//! One pod on the node: its network namespace and address, its volumes, its init containers
//! then its containers as processes, their probes, restarts per `restartPolicy`, the pod's
//! status, and its termination (SIGTERM, SIGKILL after the grace period, then the final
//! delete that lets the API server forget it).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Preconditions;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use nix::sys::signal::Signal;
use tokio::sync::watch;
use tracing::{info, warn};

use super::images::Image;
use super::network::PodNet;
use super::probe::{self, ProbeState};
use super::process::{self, Bind};
use super::security::{self, Confinement, MemoryCgroup};
use super::volumes::{self, Resolver};
use super::Shared;

/// First restart delay of a crashed container; doubled per crash up to [`MAX_BACKOFF`]
/// (the kubelet's are 10 s and 5 minutes; shorter here so tests recover quickly).
const BACKOFF: Duration = Duration::from_secs(1);
/// Longest restart delay.
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// How often the supervisor looks at its processes and the pod.
const TICK: Duration = Duration::from_millis(200);
/// Most bytes of a termination message (the kubelet's limit).
const MAX_MESSAGE: usize = 4096;

struct Run {
    spec: Container,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    binds: Vec<Bind>,
    confinement: Confinement,
    /// Name of the memory cgroups of this container's runs (`weir-agent/<pod uid>/<name>`).
    cgroup_name: String,
    /// The memory cgroup of the current run, when the container has a memory limit.
    cgroup: Option<MemoryCgroup>,
    log: PathBuf,
    message_file: PathBuf,
    child: Option<Child>,
    started: Option<(Instant, Time)>,
    restarts: i32,
    last: Option<ContainerStateTerminated>,
    terminated: Option<ContainerStateTerminated>,
    waiting: Option<(String, String)>,
    backoff: Duration,
    retry_at: Option<Instant>,
    readiness: ProbeState,
    liveness: ProbeState,
}

impl Run {
    fn running(&self) -> bool {
        self.child.is_some()
    }

    fn ready(&self) -> bool {
        self.running() && (self.spec.readiness_probe.is_none() || self.readiness.passing)
    }

    fn status(&self, image: &str) -> ContainerStatus {
        let state = if let Some((_, t)) = self.started.as_ref().filter(|_| self.running()) {
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(t.clone()),
                }),
                ..Default::default()
            }
        } else if let Some(t) = &self.terminated {
            ContainerState {
                terminated: Some(t.clone()),
                ..Default::default()
            }
        } else {
            let (reason, message) = self
                .waiting
                .clone()
                .unwrap_or(("ContainerCreating".into(), String::new()));
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason),
                    message: (!message.is_empty()).then_some(message),
                }),
                ..Default::default()
            }
        };
        ContainerStatus {
            name: self.spec.name.clone(),
            image: image.to_string(),
            image_id: format!("weir-node-agent://{image}"),
            container_id: self.child.as_ref().map(|c| format!("process://{}", c.id())),
            ready: self.ready(),
            started: Some(self.running()),
            restart_count: self.restarts,
            state: Some(state),
            last_state: self.last.clone().map(|t| ContainerState {
                terminated: Some(t),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The termination message: the file at `terminationMessagePath`, or with
    /// `FallbackToLogsOnError` and a failure, the log's tail.
    fn message(&self, exit_code: i32) -> Option<String> {
        let mut text = std::fs::read_to_string(&self.message_file).unwrap_or_default();
        if text.is_empty()
            && exit_code != 0
            && self.spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            text = lines[lines.len().saturating_sub(80)..].join("\n");
        }
        if text.len() > MAX_MESSAGE {
            let mut cut = text.len() - MAX_MESSAGE;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text = text[cut..].to_string();
        }
        (!text.is_empty()).then_some(text)
    }

    fn start(&mut self, netns: &str) {
        let _ = std::fs::write(&self.message_file, b"");
        self.cgroup = None;
        let cgroup = match self.confinement.memory_limit.map(|limit| {
            MemoryCgroup::create(&format!("{}-{}", self.cgroup_name, self.restarts), limit)
        }) {
            Some(Ok(cgroup)) => Some(cgroup),
            Some(Err(e)) => {
                self.waiting = Some(("RunContainerError".into(), format!("{e:#}")));
                self.retry_at = Some(Instant::now() + self.backoff);
                return;
            }
            None => None,
        };
        let procs = cgroup.as_ref().map(MemoryCgroup::procs);
        match process::spawn(&process::Spec {
            argv: &self.argv,
            env: &self.env,
            working_dir: self.spec.working_dir.as_deref(),
            netns,
            binds: &self.binds,
            log: &self.log,
            confinement: &self.confinement,
            cgroup_procs: procs.as_deref(),
        }) {
            Ok(child) => {
                self.child = Some(child);
                self.cgroup = cgroup;
                self.started = Some((Instant::now(), Time(Timestamp::now())));
                self.terminated = None;
                self.waiting = None;
                self.readiness = ProbeState::default();
                self.liveness = ProbeState::default();
            }
            Err(e) => {
                self.waiting = Some(("RunContainerError".into(), format!("{e:#}")));
                self.retry_at = Some(Instant::now() + self.backoff);
            }
        }
    }

    /// Records an exit; returns the terminated state.
    fn exited(&mut self, status: std::process::ExitStatus) -> ContainerStateTerminated {
        use std::os::unix::process::ExitStatusExt;
        self.child = None;
        let exit_code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        let oom_killed = self.cgroup.take().is_some_and(|cgroup| cgroup.oom_killed());
        let reason = match (oom_killed, exit_code) {
            (true, _) => "OOMKilled",
            (false, 0) => "Completed",
            (false, _) => "Error",
        };
        let t = ContainerStateTerminated {
            exit_code,
            signal: status.signal(),
            reason: Some(reason.into()),
            message: self.message(exit_code),
            started_at: self.started.as_ref().map(|(_, t)| t.clone()),
            finished_at: Some(Time(Timestamp::now())),
            container_id: None,
        };
        self.terminated = Some(t.clone());
        t
    }

    fn signal(&self, s: Signal) {
        if let Some(c) = &self.child {
            process::signal(c, s);
        }
    }
}

/// Supervises one pod until it is deleted (or the agent stops).
pub async fn supervise(
    shared: Arc<Shared>,
    mut pod_rx: watch::Receiver<Option<Pod>>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(pod) = pod_rx.borrow().clone() else {
        return;
    };
    let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    let net = loop {
        match shared.network.attach().await {
            Ok(n) => break n,
            Err(e) => {
                warn!(pod = %name, "network: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    info!(pod = %name, ip = %net.ip, "pod network ready");
    let mut sup = Supervisor::new(shared.clone(), pod, net);
    sup.run(&mut pod_rx, &mut stop).await;
    sup.cleanup().await;
    info!(pod = %name, "pod gone");
}

struct Supervisor {
    shared: Arc<Shared>,
    pod: Pod,
    api: Api<Pod>,
    net: PodNet,
    dir: PathBuf,
    init: Vec<Run>,
    main: Vec<Run>,
    prepared: bool,
    initialized: bool,
    start_time: Time,
    last_sent: Option<serde_json::Value>,
    pod_message: Option<String>,
}

impl Supervisor {
    fn new(shared: Arc<Shared>, pod: Pod, net: PodNet) -> Self {
        let ns = pod.namespace().unwrap_or_else(|| "default".into());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = shared.state_dir.join("pods").join(format!(
            "{ns}_{}_{}",
            pod.name_any(),
            &uid[..uid.len().min(8)]
        ));
        Supervisor {
            api: Api::namespaced(shared.client.clone(), &ns),
            shared,
            pod,
            net,
            dir,
            init: Vec::new(),
            main: Vec::new(),
            prepared: false,
            initialized: false,
            start_time: Time(Timestamp::now()),
            last_sent: None,
            pod_message: None,
        }
    }

    fn spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        self.pod.spec.as_ref().expect("a pod has a spec")
    }

    fn restart_policy(&self) -> &str {
        self.spec().restart_policy.as_deref().unwrap_or("Always")
    }

    /// Writes the pod's files and volumes and resolves each container's command,
    /// environment and mounts. Errors (a missing ConfigMap, Secret or image) are reported in
    /// the status and retried.
    async fn prepare(&mut self) -> anyhow::Result<()> {
        let ns = self.pod.namespace().unwrap_or_else(|| "default".into());
        std::fs::create_dir_all(&self.dir)?;
        let domain = &self.shared.cluster_domain;
        std::fs::write(
            self.dir.join("resolv.conf"),
            format!(
                "nameserver {}\nsearch {ns}.svc.{domain} svc.{domain} {domain}\noptions ndots:5\n",
                self.shared.network.host_ip()
            ),
        )?;
        std::fs::write(
            self.dir.join("hosts"),
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost\n{}\t{}\n",
                self.net.ip,
                self.pod.name_any()
            ),
        )?;
        let pod_ip = self.net.ip.to_string();
        let host_ip = self.shared.network.host_ip().to_string();
        let resolver = Resolver {
            client: &self.shared.client,
            pod: &self.pod,
            pod_ip: &pod_ip,
            host_ip: &host_ip,
        };
        let mut volume_dirs = BTreeMap::new();
        for v in self.spec().volumes.iter().flatten() {
            let dir = volumes::volume_dir(&self.dir, v);
            resolver
                .materialize(v, &dir)
                .await
                .with_context(|| format!("volume {:?}", v.name))?;
            let fs_group = self
                .spec()
                .security_context
                .as_ref()
                .and_then(|s| s.fs_group);
            if let (Some(gid), None) = (fs_group, &v.host_path) {
                security::give_to_fs_group(&dir, gid as u32, v.empty_dir.is_some())
                    .with_context(|| format!("volume {:?}: fsGroup", v.name))?;
            }
            volume_dirs.insert(v.name.clone(), dir);
        }
        let mut runs = Vec::new();
        let containers: Vec<(bool, Container)> = self
            .spec()
            .init_containers
            .iter()
            .flatten()
            .map(|c| (true, c.clone()))
            .chain(self.spec().containers.iter().map(|c| (false, c.clone())))
            .collect();
        for (is_init, c) in containers {
            let image_ref = c.image.clone().unwrap_or_default();
            let image: &Image = self.shared.images.get(&image_ref).with_context(|| {
                format!("ErrImagePull: image {image_ref:?} is not in the node agent's image table")
            })?;
            let mut env = vec![
                (
                    "PATH".to_string(),
                    "/usr/local/bin:/usr/bin:/bin".to_string(),
                ),
                ("HOSTNAME".to_string(), self.pod.name_any()),
                (
                    "KUBERNETES_SERVICE_HOST".to_string(),
                    self.shared.network.host_ip().to_string(),
                ),
                (
                    "KUBERNETES_SERVICE_PORT".to_string(),
                    self.shared.apiserver_port.to_string(),
                ),
            ];
            for (k, v) in resolver
                .env(&c)
                .await
                .with_context(|| format!("container {:?}", c.name))?
            {
                env.retain(|(n, _)| *n != k);
                env.push((k, v));
            }
            let expand = |args: &Option<Vec<String>>| {
                args.as_ref().map(|a| {
                    a.iter()
                        .map(|s| volumes::expand(s, &env))
                        .collect::<Vec<_>>()
                })
            };
            let argv = image.argv(expand(&c.command).as_deref(), expand(&c.args).as_deref());
            let confinement =
                security::confinement(self.spec(), &c).context("CreateContainerConfigError")?;
            let cgroup_name = format!(
                "weir-agent/{}/{}",
                self.pod.uid().unwrap_or_default(),
                c.name
            );
            let message_file = self.dir.join(format!("{}.termination-log", c.name));
            std::fs::write(&message_file, b"")?;
            // World-writable, as the kubelet makes it: the container's user writes it.
            std::fs::set_permissions(&message_file, std::fs::Permissions::from_mode(0o666))?;
            let mut binds: Vec<Bind> = image
                .files
                .iter()
                .map(|(target, source)| Bind {
                    source: source.clone(),
                    target: target.into(),
                    read_only: true,
                })
                .collect();
            binds.push(Bind {
                source: self.dir.join("resolv.conf"),
                target: "/etc/resolv.conf".into(),
                read_only: true,
            });
            binds.push(Bind {
                source: self.dir.join("hosts"),
                target: "/etc/hosts".into(),
                read_only: true,
            });
            binds.push(Bind {
                source: message_file.clone(),
                target: c
                    .termination_message_path
                    .clone()
                    .unwrap_or_else(|| "/dev/termination-log".into())
                    .into(),
                read_only: false,
            });
            let mut mounts = c.volume_mounts.clone().unwrap_or_default();
            mounts.sort_by_key(|m| m.mount_path.matches('/').count());
            for m in mounts {
                let dir = volume_dirs
                    .get(&m.name)
                    .with_context(|| format!("volumeMount {:?}: no such volume", m.name))?;
                let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                    Some(sub) => dir.join(sub),
                    None => dir.clone(),
                };
                binds.push(Bind {
                    source,
                    target: m.mount_path.clone().into(),
                    read_only: m.read_only.unwrap_or(false),
                });
            }
            runs.push((
                is_init,
                Run {
                    log: self.dir.join(format!("{}.log", c.name)),
                    spec: c,
                    argv,
                    env,
                    binds,
                    confinement,
                    cgroup_name,
                    cgroup: None,
                    message_file,
                    child: None,
                    started: None,
                    restarts: 0,
                    last: None,
                    terminated: None,
                    waiting: None,
                    backoff: BACKOFF,
                    retry_at: None,
                    readiness: ProbeState::default(),
                    liveness: ProbeState::default(),
                },
            ));
        }
        self.init = Vec::new();
        self.main = Vec::new();
        for (is_init, r) in runs {
            if is_init {
                self.init.push(r);
            } else {
                self.main.push(r);
            }
        }
        self.initialized = self.init.is_empty();
        Ok(())
    }

    async fn run(
        &mut self,
        pod_rx: &mut watch::Receiver<Option<Pod>>,
        stop: &mut watch::Receiver<bool>,
    ) {
        let mut next_prepare = Instant::now();
        loop {
            if *stop.borrow() {
                self.kill_all();
                return;
            }
            let current = pod_rx.borrow_and_update().clone();
            let Some(pod) = current else {
                // Gone from the API (a forced delete): stop at once.
                self.kill_all();
                return;
            };
            self.pod.metadata = pod.metadata.clone();
            if pod.metadata.deletion_timestamp.is_some() {
                self.terminate().await;
                if self.final_delete().await {
                    return;
                }
            } else if !self.prepared {
                if Instant::now() >= next_prepare {
                    match self.prepare().await {
                        Ok(()) => {
                            self.prepared = true;
                            self.pod_message = None;
                        }
                        Err(e) => {
                            self.pod_message = Some(format!("{e:#}"));
                            next_prepare = Instant::now() + Duration::from_secs(1);
                        }
                    }
                }
            } else {
                self.step().await;
            }
            self.write_status().await;
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = pod_rx.changed() => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One round: start what is due, reap exits, restart or finish per `restartPolicy`, run
    /// the probes that are due.
    async fn step(&mut self) {
        let policy = self.restart_policy().to_string();
        let netns = self.net.netns.clone();
        if !self.initialized {
            // Init containers one at a time, each to success.
            let Some(i) = self
                .init
                .iter()
                .position(|r| r.terminated.as_ref().is_none_or(|t| t.exit_code != 0))
            else {
                self.initialized = true;
                return;
            };
            let r = &mut self.init[i];
            if let Some(child) = r.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let t = r.exited(status);
                    if t.exit_code != 0 && policy != "Never" {
                        r.last = r.terminated.take();
                        r.restarts += 1;
                        r.retry_at = Some(Instant::now() + r.backoff);
                        r.backoff = (r.backoff * 2).min(MAX_BACKOFF);
                    }
                }
            } else if r.terminated.is_none() && r.retry_at.is_none_or(|t| Instant::now() >= t) {
                r.start(&netns);
            }
            return;
        }
        let now = Instant::now();
        for r in &mut self.main {
            if let Some(child) = r.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let t = r.exited(status);
                    let restart = match policy.as_str() {
                        "Never" => false,
                        "OnFailure" => t.exit_code != 0,
                        _ => true,
                    };
                    if restart {
                        r.last = r.terminated.take();
                        r.restarts += 1;
                        r.waiting = Some((
                            "CrashLoopBackOff".into(),
                            format!("back-off {:?} restarting failed container", r.backoff),
                        ));
                        r.retry_at = Some(now + r.backoff);
                        r.backoff = (r.backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            if r.child.is_none() && r.terminated.is_none() && r.retry_at.is_none_or(|t| now >= t) {
                r.start(&netns);
            }
            // A container that ran for 10 s without crashing earns its back-off back.
            if r.child.is_some()
                && r.started
                    .as_ref()
                    .is_some_and(|(t, _)| t.elapsed() > Duration::from_secs(10))
            {
                r.backoff = BACKOFF;
            }
        }
        self.probe().await;
    }

    async fn probe(&mut self) {
        let ip = self.net.ip;
        let netns = self.net.netns.clone();
        let now = Instant::now();
        for r in &mut self.main {
            let Some((started, _)) = r.started.as_ref().filter(|_| r.child.is_some()).cloned()
            else {
                continue;
            };
            for live in [false, true] {
                let probe = if live {
                    &r.spec.liveness_probe
                } else {
                    &r.spec.readiness_probe
                };
                let Some(probe) = probe.clone() else { continue };
                let state = if live {
                    &mut r.liveness
                } else {
                    &mut r.readiness
                };
                if !state.due(&probe, started, now) {
                    continue;
                }
                let (c, env, binds, log, confinement) = (
                    r.spec.clone(),
                    r.env.clone(),
                    r.binds.clone(),
                    r.log.clone(),
                    r.confinement.clone(),
                );
                let ns = netns.clone();
                let p = probe.clone();
                let ok = tokio::task::spawn_blocking(move || {
                    let exec = |argv: &[String], timeout: Duration| {
                        exec_probe(argv, &env, &ns, &binds, &log, &confinement, timeout)
                    };
                    probe::attempt(&p, &c, ip, &exec)
                })
                .await
                .unwrap_or(false);
                let state = if live {
                    &mut r.liveness
                } else {
                    &mut r.readiness
                };
                state.record(&probe, ok);
                if live && !ok && state.failures() >= probe.failure_threshold.unwrap_or(3) {
                    warn!(container = %r.spec.name, "liveness probe failed: restarting");
                    r.signal(Signal::SIGKILL);
                    r.liveness = ProbeState::default();
                }
            }
        }
    }

    fn kill_all(&mut self) {
        for r in self.init.iter_mut().chain(self.main.iter_mut()) {
            r.signal(Signal::SIGKILL);
            if let Some(mut c) = r.child.take() {
                let _ = c.wait();
            }
        }
    }

    /// SIGTERM to every container, SIGKILL to what still runs after the grace period.
    async fn terminate(&mut self) {
        if self.init.iter().chain(&self.main).all(|r| !r.running()) {
            return;
        }
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(self.spec().termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        for r in self.init.iter().chain(&self.main) {
            r.signal(Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(grace);
        loop {
            let mut running = false;
            for r in self.init.iter_mut().chain(self.main.iter_mut()) {
                if let Some(child) = r.child.as_mut() {
                    match child.try_wait() {
                        Ok(Some(status)) => {
                            r.exited(status);
                        }
                        _ => running = true,
                    }
                }
            }
            if !running {
                break;
            }
            if Instant::now() >= deadline {
                for r in self.init.iter().chain(&self.main) {
                    r.signal(Signal::SIGKILL);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deletes the pod object for good (grace period 0, on this uid only); true once done.
    async fn final_delete(&mut self) -> bool {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api.delete(&self.pod.name_any(), &dp).await {
            Ok(_) => true,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => true,
            Err(e) => {
                warn!(pod = %self.pod.name_any(), "final delete: {e}");
                false
            }
        }
    }

    fn phase(&self) -> &'static str {
        if !self.prepared || !self.initialized {
            if self
                .init
                .iter()
                .any(|r| r.terminated.as_ref().is_some_and(|t| t.exit_code != 0))
                && self.restart_policy() == "Never"
            {
                return "Failed";
            }
            return "Pending";
        }
        let all_done = self
            .main
            .iter()
            .all(|r| r.terminated.is_some() && !r.running());
        if all_done && !self.main.is_empty() {
            if self
                .main
                .iter()
                .all(|r| r.terminated.as_ref().is_some_and(|t| t.exit_code == 0))
            {
                return "Succeeded";
            }
            return "Failed";
        }
        "Running"
    }

    fn status(&self) -> PodStatus {
        let now = Time(Timestamp::now());
        let cond = |type_: &str, ok: bool| PodCondition {
            type_: type_.into(),
            status: if ok { "True" } else { "False" }.into(),
            last_transition_time: Some(now.clone()),
            ..Default::default()
        };
        let image = |r: &Run| r.spec.image.clone().unwrap_or_default();
        let ready = self.prepared
            && self.initialized
            && !self.main.is_empty()
            && self.main.iter().all(Run::ready);
        let phase = self.phase();
        let main_statuses = if self.prepared {
            self.main.iter().map(|r| r.status(&image(r))).collect()
        } else {
            self.spec()
                .containers
                .iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(
                                if self
                                    .pod_message
                                    .as_deref()
                                    .is_some_and(|m| m.contains("ErrImagePull"))
                                {
                                    "ErrImagePull"
                                } else {
                                    "ContainerCreating"
                                }
                                .into(),
                            ),
                            message: self.pod_message.clone(),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect()
        };
        let ip = self.net.ip.to_string();
        let host = self.shared.network.host_ip().to_string();
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![
                cond("PodScheduled", true),
                cond("Initialized", self.initialized && self.prepared),
                cond("ContainersReady", ready),
                cond("Ready", ready),
            ]),
            host_ip: Some(host.clone()),
            host_ips: Some(vec![HostIP { ip: host }]),
            pod_ip: Some(ip.clone()),
            pod_ips: Some(vec![PodIP { ip }]),
            start_time: Some(self.start_time.clone()),
            container_statuses: Some(main_statuses),
            init_container_statuses: (!self.init.is_empty())
                .then(|| self.init.iter().map(|r| r.status(&image(r))).collect()),
            message: self.pod_message.clone(),
            ..Default::default()
        }
    }

    /// Writes the status when it changed (ignoring condition times), retrying on the next
    /// round when the API server does not answer.
    async fn write_status(&mut self) {
        let status = self.status();
        let mut key = serde_json::to_value(&status).unwrap_or_default();
        if let Some(conds) = key.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for c in conds {
                c.as_object_mut().map(|o| o.remove("lastTransitionTime"));
            }
        }
        if self.last_sent.as_ref() == Some(&key) {
            return;
        }
        let patch = serde_json::json!({ "status": status });
        match self
            .api
            .patch_status(
                &self.pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => self.last_sent = Some(key),
            Err(kube::Error::Api(e)) if e.code == 404 => self.last_sent = Some(key),
            Err(e) => warn!(pod = %self.pod.name_any(), "status: {e}"),
        }
    }

    async fn cleanup(&mut self) {
        self.kill_all();
        self.shared.network.detach(&self.net).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs an exec probe's command in the container's namespaces; true when it exits 0 within
/// `timeout`.
fn exec_probe(
    argv: &[String],
    env: &[(String, String)],
    netns: &str,
    binds: &[Bind],
    log: &std::path::Path,
    confinement: &Confinement,
    timeout: Duration,
) -> bool {
    let Ok(mut child) = process::spawn(&process::Spec {
        argv,
        env,
        working_dir: None,
        netns,
        binds,
        log,
        confinement,
        cgroup_procs: None,
    }) else {
        return false;
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                process::signal(&child, Signal::SIGKILL);
                let _ = child.wait();
                return false;
            }
        }
    }
}
