//! The Node object and its heartbeat: registered Ready with this machine's capacity, its Lease
//! in `kube-node-lease` renewed every 10 s (the node lifecycle controller's signal), the
//! Ready condition's heartbeat refreshed every minute.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tracing::warn;

/// Lease duration announced (the kubelet's default).
const LEASE_SECONDS: i32 = 40;

fn node_status(host_ip: &str, name: &str) -> serde_json::Value {
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let cond = |t: &str, s: &str, reason: &str| json!({"type": t, "status": s, "reason": reason, "lastHeartbeatTime": now, "lastTransitionTime": now});
    let resources =
        json!({"cpu": "2", "memory": "24Gi", "pods": "110", "ephemeral-storage": "50Gi"});
    json!({
        "conditions": [
            cond("Ready", "True", "KubeletReady"),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": host_ip},
            {"type": "Hostname", "address": name},
        ],
        "capacity": resources,
        "allocatable": resources,
        "nodeInfo": {
            "machineID": "weir-node-agent", "systemUUID": "weir-node-agent", "bootID": "weir-node-agent",
            "kernelVersion": "", "osImage": "weir-node-agent", "containerRuntimeVersion": "process://0.1.0",
            "kubeletVersion": "v1.34.4", "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
    })
}

/// Registers the Node (server-side apply, so a restarted agent takes it over) and writes its
/// status.
pub async fn register(client: &kube::Client, name: &str, host_ip: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let pp = PatchParams::apply("weir-node-agent").force();
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        }},
    });
    nodes.patch(name, &pp, &Patch::Apply(&node)).await?;
    let status = json!({"apiVersion": "v1", "kind": "Node", "status": node_status(host_ip, name)});
    nodes
        .patch_status(name, &pp, &Patch::Apply(&status))
        .await?;
    Ok(())
}

/// Renews the Lease every 10 s and the Node's status every minute, forever.
pub async fn heartbeat(client: kube::Client, name: String, host_ip: String) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client.clone());
    let pp = PatchParams::apply("weir-node-agent").force();
    let mut round = 0u64;
    loop {
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now()),
            },
        });
        if let Err(e) = leases.patch(&name, &pp, &Patch::Apply(&lease)).await {
            warn!("node lease: {e}");
        }
        if round % 6 == 5 {
            let status =
                json!({"apiVersion": "v1", "kind": "Node", "status": node_status(&host_ip, &name)});
            if let Err(e) = nodes.patch_status(&name, &pp, &Patch::Apply(&status)).await {
                warn!("node status: {e}");
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
