//! The ConfigMap holding the manifest the coordinator runs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use weir_crds::StreamJobSpec;

use super::Target;
use crate::names;

/// The manifest `weir` reads (`apiVersion`, `kind`, `metadata`, `spec`) as YAML. The metadata
/// keeps the name and namespace, which give the job's storage root
/// (`<storage>/<namespace>/<name>/`), and the UID, which the job's lineage records so a
/// StreamJob re-created under the same name never restores its predecessor's state.
pub fn manifest_yaml(target: &Target, spec: &StreamJobSpec) -> String {
    let doc = serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": { "name": target.name, "namespace": target.namespace, "uid": target.uid },
        "spec": spec,
    });
    serde_yaml::to_string(&doc).expect("invariant: a spec serializes to YAML")
}

/// ConfigMap `<name>-manifest` with key `job.yaml`: the manifest of `spec`.
pub fn build_config_map(target: &Target, spec: &StreamJobSpec) -> ConfigMap {
    ConfigMap {
        metadata: target.metadata(names::config_map(&target.name), "coordinator"),
        data: Some(BTreeMap::from([(
            names::MANIFEST_FILE.to_string(),
            manifest_yaml(target, spec),
        )])),
        ..Default::default()
    }
}
