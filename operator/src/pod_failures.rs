//! Containers of a job's pods that are down for a reason the user must act on, read from the
//! pods' container statuses. Pure.
//!
//! Today: a container that is not running and whose last run the kernel's OOM killer ended
//! (`OOMKilled`), which a StreamJob only survives with a larger memory limit. A container that
//! runs again after an OOM kill is not a failure any more (its `lastState` keeps the reason).

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt as _;

use crate::names;

/// Why a container is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerFailureReason {
    /// Its last run exceeded the container's memory limit and was killed.
    OomKilled,
}

impl ContainerFailureReason {
    /// The condition reason (the kubelet's word).
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerFailureReason::OomKilled => "OOMKilled",
        }
    }
}

/// A container of the job that is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFailure {
    /// Why.
    pub reason: ContainerFailureReason,
    /// For people: which pod and container, and what to change.
    pub message: String,
}

/// The failed containers of `pod` (a pod of the job: coordinator, worker or check).
pub fn container_failures(pod: &Pod) -> Vec<ContainerFailure> {
    let component = pod
        .labels()
        .get(names::LABEL_COMPONENT)
        .map(String::as_str)
        .unwrap_or_default();
    let field = match component {
        "coordinator" => "spec.coordinator.resources.limits.memory",
        _ => "spec.workers.resources.limits.memory",
    };
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    statuses
        .into_iter()
        .flatten()
        .filter(|s| oom_killed_and_down(s))
        .map(|s| {
            let limit = pod
                .spec
                .as_ref()
                .and_then(|spec| spec.containers.iter().find(|c| c.name == s.name))
                .and_then(|c| c.resources.as_ref()?.limits.as_ref()?.get("memory").cloned())
                .map_or_else(|| "no memory limit".to_string(), |q| format!("memory limit {}", q.0));
            ContainerFailure {
                reason: ContainerFailureReason::OomKilled,
                message: format!(
                    "container `{}` of pod `{}` was OOMKilled ({limit}, {} restarts): raise {field}",
                    s.name,
                    pod.name_any(),
                    s.restart_count
                ),
            }
        })
        .collect()
}

/// Not running, and the last run (the current state when terminated, else `lastState`) ended
/// with `OOMKilled`.
fn oom_killed_and_down(s: &ContainerStatus) -> bool {
    let state = s.state.clone().unwrap_or_default();
    if state.running.is_some() {
        return false;
    }
    let last = state
        .terminated
        .or_else(|| s.last_state.as_ref()?.terminated.clone());
    last.and_then(|t| t.reason).as_deref() == Some("OOMKilled")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn worker(state: serde_json::Value, last: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "orders-workers-1", "labels": {"weir.dev/component": "worker"}},
            "spec": {"containers": [{"name": "worker",
                     "resources": {"limits": {"memory": "32Mi"}}}]},
            "status": {"containerStatuses": [{
                "name": "worker", "image": "weir", "imageID": "", "ready": false,
                "restartCount": 3, "state": state, "lastState": last,
            }]},
        }))
        .unwrap()
    }

    #[test]
    fn a_container_down_after_an_oom_kill_is_a_failure_naming_the_limit_to_raise() {
        let pod = worker(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
        );
        assert_eq!(
            container_failures(&pod),
            vec![ContainerFailure {
                reason: ContainerFailureReason::OomKilled,
                message: "container `worker` of pod `orders-workers-1` was OOMKilled (memory limit 32Mi, 3 restarts): raise spec.workers.resources.limits.memory".into(),
            }]
        );
    }

    #[test]
    fn a_container_running_again_or_down_for_another_reason_is_not() {
        let running = worker(
            json!({"running": {}}),
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
        );
        assert!(container_failures(&running).is_empty());
        let error = worker(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
        );
        assert!(container_failures(&error).is_empty());
    }
}
