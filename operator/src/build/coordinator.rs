//! The coordinator's Deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{Container, ContainerPort, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_crds::StreamJobSpec;

use super::{pod, Target};
use crate::model::Restore;
use crate::names;

/// Number of workers the coordinator waits for: `workers.replicas`, else one per subtask.
pub(super) fn worker_count(spec: &StreamJobSpec) -> i32 {
    spec.workers.replicas.unwrap_or(spec.job.parallelism).max(1)
}

/// The `weir coordinator` arguments of a deployment: the manifest, the number of workers,
/// `--lineage` (a restarted coordinator of the same deployment resumes its own checkpoints),
/// `--linger` (the final savepoint stays readable after a stop), what to restore, and
/// `--migrate-lineage` when the deployment before it kept its state in the legacy root.
pub fn coordinator_args(
    spec: &StreamJobSpec,
    lineage: &str,
    restore: &Restore,
    migrate_lineage: Option<&str>,
) -> Vec<String> {
    let mut args = vec![
        "coordinator".to_string(),
        pod::manifest_path(),
        "--workers".into(),
        worker_count(spec).to_string(),
        "--lineage".into(),
        lineage.to_string(),
        "--linger".into(),
    ];
    match restore {
        Restore::Nothing => args.push("--fresh".into()),
        Restore::LatestCheckpoint => {}
        Restore::Savepoint(uri) => args.extend(["--from-savepoint".to_string(), uri.clone()]),
    }
    if let Some(l) = migrate_lineage {
        args.extend(["--migrate-lineage".to_string(), l.to_string()]);
    }
    args
}

/// Deployment `<name>-coordinator`: one replica, `Recreate` (two coordinators of one job never
/// run side by side), the lineage as a pod annotation so each deployment starts a new pod.
pub fn build_coordinator(
    target: &Target,
    spec: &StreamJobSpec,
    lineage: &str,
    restore: &Restore,
    migrate_lineage: Option<&str>,
) -> Deployment {
    let (scratch, scratch_mount) = pod::scratch();
    let (manifest, manifest_mount) = pod::manifest_volume(target);
    let (token, token_mount) = pod::admin_token_volume(target);
    let http = |path: &str| HTTPGetAction {
        path: Some(path.into()),
        port: IntOrString::Int(names::ADMIN_PORT),
        ..Default::default()
    };
    let container = Container {
        name: "coordinator".into(),
        args: Some(coordinator_args(spec, lineage, restore, migrate_lineage)),
        ports: Some(vec![
            ContainerPort {
                name: Some("control".into()),
                container_port: names::CONTROL_PORT,
                ..Default::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: names::ADMIN_PORT,
                ..Default::default()
            },
        ]),
        liveness_probe: Some(Probe {
            http_get: Some(http("/healthz")),
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..Default::default()
        }),
        volume_mounts: Some(vec![manifest_mount, scratch_mount, token_mount]),
        ..Default::default()
    };
    let template = pod::template(
        target,
        spec,
        pod::Component {
            name: "coordinator",
            overrides: &spec.coordinator,
            container,
            volumes: vec![manifest, scratch, token],
            env: vec![pod::admin_token_env()],
            annotations: BTreeMap::from([(
                names::ANNOTATION_LINEAGE.to_string(),
                lineage.to_string(),
            )]),
        },
    );
    Deployment {
        metadata: target.metadata(names::coordinator(&target.name), "coordinator"),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(names::labels(&target.name, "coordinator")),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..Default::default()
            }),
            template,
            ..Default::default()
        },
        ..Default::default()
    }
}
