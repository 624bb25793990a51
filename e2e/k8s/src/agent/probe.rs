//! Readiness and liveness probes: `httpGet` (a 2xx or 3xx status), `tcpSocket` (a connection)
//! and `exec` (exit code 0, run in the container's namespaces), against the pod's address.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Counters of one probe of one container, applied with Kubernetes' thresholds.
#[derive(Debug, Default, Clone)]
pub struct ProbeState {
    successes: i32,
    failures: i32,
    next: Option<Instant>,
    /// The probe's verdict so far: `true` once `successThreshold` consecutive successes.
    pub passing: bool,
}

fn port(c: &Container, p: &IntOrString) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok()),
    }
}

/// One attempt of `probe` against a container at `ip`; `exec` runs the probe's command.
pub fn attempt(
    probe: &Probe,
    c: &Container,
    ip: Ipv4Addr,
    exec: &dyn Fn(&[String], Duration) -> bool,
) -> bool {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(h) = &probe.http_get {
        let Some(port) = port(c, &h.port) else {
            return false;
        };
        let host = h.host.clone().unwrap_or_else(|| ip.to_string());
        let url = format!(
            "{}://{host}:{port}{}",
            h.scheme.as_deref().unwrap_or("HTTP").to_lowercase(),
            h.path.as_deref().unwrap_or("/")
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        return agent
            .get(&url)
            .call()
            .map(|r| (200..400).contains(&r.status().as_u16()))
            .unwrap_or(false);
    }
    if let Some(t) = &probe.tcp_socket {
        let Some(port) = port(c, &t.port) else {
            return false;
        };
        return TcpStream::connect_timeout(&SocketAddr::from((ip, port)), timeout).is_ok();
    }
    if let Some(e) = &probe.exec {
        return exec(e.command.as_deref().unwrap_or_default(), timeout);
    }
    false
}

impl ProbeState {
    /// Whether the probe is due at `now` (`initialDelaySeconds` after `started`, then every
    /// `periodSeconds`).
    pub fn due(&mut self, probe: &Probe, started: Instant, now: Instant) -> bool {
        let next = *self.next.get_or_insert(
            started + Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64),
        );
        if now < next {
            return false;
        }
        self.next =
            Some(now + Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64));
        true
    }

    /// Records one attempt's result; returns the verdict (`successThreshold` consecutive
    /// successes make it pass, `failureThreshold` consecutive failures make it fail).
    pub fn record(&mut self, probe: &Probe, ok: bool) -> bool {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= probe.success_threshold.unwrap_or(1) {
                self.passing = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= probe.failure_threshold.unwrap_or(3) {
                self.passing = false;
            }
        }
        self.passing
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> i32 {
        self.failures
    }
}
