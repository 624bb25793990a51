//! Pure builders: the Kubernetes objects of a StreamJob, one file per kind, each a function of
//! the spec and a [`Target`] (no I/O). The shell applies them with server-side apply.

mod admin_token;
mod check_job;
mod config_map;
mod coordinator;
mod network_policy;
mod pod;
mod services;
mod workers;

pub use admin_token::{admin_token_of, build_admin_token_secret};
pub use check_job::build_check_job;
pub use config_map::{build_config_map, manifest_yaml};
pub use coordinator::build_coordinator;
pub use network_policy::{build_network_policy, OperatorPods};
pub use pod::{container_security_context, pod_security_context};
pub use services::{build_coordinator_service, build_workers_service};
pub use workers::build_workers;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use weir_crds::StreamJobSpec;

use crate::names;

/// The StreamJob the objects belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `metadata.name` (also the job's name in checkpoint storage).
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`, for the owner references.
    pub uid: String,
    /// Image used when `spec.image` is not set (the operator's `--default-image`).
    pub default_image: String,
}

impl Target {
    /// The controller owner reference every built object carries: deleting the StreamJob
    /// deletes them (Kubernetes garbage collection).
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "weir.dev/v1alpha1".into(),
            kind: "StreamJob".into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Metadata of object `name` of component `component`: namespace, labels, owner.
    fn metadata(&self, name: String, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(names::labels(&self.name, component)),
            owner_references: Some(vec![self.owner_reference()]),
            ..Default::default()
        }
    }

    /// The image the pods of `spec` run.
    fn image(&self, spec: &StreamJobSpec) -> String {
        spec.image
            .clone()
            .unwrap_or_else(|| self.default_image.clone())
    }
}
