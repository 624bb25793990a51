//! The ConfigMap holding the manifest the coordinator runs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use weir_crds::StreamJobSpec;

use super::Target;
use crate::names;

/// The manifest `weir` reads (`apiVersion`, `kind`, `metadata.name`, `spec`) as YAML. Only
/// the name is kept from the metadata: it names the job's directory in checkpoint storage.
pub fn manifest_yaml(name: &str, spec: &StreamJobSpec) -> String {
    let doc = serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": { "name": name },
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
            manifest_yaml(&target.name, spec),
        )])),
        ..Default::default()
    }
}
