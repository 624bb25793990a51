//! The workers' StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{Container, ContainerPort, EnvVar};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use weir_crds::StreamJobSpec;

use super::coordinator::worker_count;
use super::{pod, Target};
use crate::names;

/// StatefulSet `<name>-workers`: `workers.replicas` (default: one per subtask) `weir worker`
/// pods started in parallel, each connecting to the coordinator's Service; the lineage
/// annotation starts new pods with each deployment.
pub fn build_workers(target: &Target, spec: &StreamJobSpec, lineage: &str) -> StatefulSet {
    let (scratch, scratch_mount) = pod::scratch();
    let (token, token_mount) = pod::admin_token_volume(target);
    let container = Container {
        name: "worker".into(),
        args: Some(vec!["worker".into()]),
        ports: Some(vec![ContainerPort {
            name: Some("data".into()),
            container_port: names::DATA_PORT,
            ..Default::default()
        }]),
        volume_mounts: Some(vec![scratch_mount, token_mount]),
        ..Default::default()
    };
    let setting = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    };
    let template = pod::template(
        target,
        spec,
        pod::Component {
            name: "worker",
            overrides: &spec.workers,
            container,
            volumes: vec![scratch, token],
            env: vec![
                setting("WEIR_COORDINATOR", names::control_address(&target.name)),
                setting("WEIR_DATA_BIND", format!("0.0.0.0:{}", names::DATA_PORT)),
                pod::admin_token_env(),
            ],
            annotations: BTreeMap::from([(
                names::ANNOTATION_LINEAGE.to_string(),
                lineage.to_string(),
            )]),
        },
    );
    StatefulSet {
        metadata: target.metadata(names::workers(&target.name), "worker"),
        spec: StatefulSetSpec {
            replicas: Some(worker_count(spec)),
            service_name: Some(names::workers(&target.name)),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(names::labels(&target.name, "worker")),
                ..Default::default()
            },
            template,
            ..Default::default()
        },
        ..Default::default()
    }
}
