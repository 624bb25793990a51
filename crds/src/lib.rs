//! The `StreamJob` manifest format (group `weir.dev`, version `v1alpha1`, short name `sj`).
//!
//! This crate is the one definition of the manifest: the Rust types (serde + schemars + kube's
//! `CustomResource`), their defaults, and their validation. Everything here is pure: no I/O.
//! `weir run` and the operator both load manifests through [`load_manifest`] so a manifest that
//! the operator would reject is rejected by `weir run` too, with the same field-naming error.

mod duration;
mod load;
mod spec;
mod status;
mod storage;
mod validate;

pub use duration::{parse_duration, DurationError};
pub use load::{load_manifest, LoadedManifest, ManifestError};
pub use spec::{
    secret_arg_env, CheckpointingMode, CheckpointingSpec, ImagePullPolicy, InitialRestore, JobSpec,
    JobState, PodOverrides, S3Spec, SavepointsSpec, SecretCredentials, SecretKeyRef, StateBackend,
    StreamJob, StreamJobSpec, UpgradeMode, UpgradeSpec, DEFAULT_MAX_PARALLELISM,
    MAX_MAX_PARALLELISM,
};
pub use status::{
    CheckpointInfo, DeployedSpec, JobRunState, JobStatus, LifecycleState, PendingSavepoint,
    Rejection, Restore, SavepointInfo, SavepointKind, SavepointsStatus, StorageLayout,
    StreamJobStatus, UpgradePhase, UpgradeStatus,
};
pub use storage::{S3Location, StorageLocation, SUPPORTED_STORAGE_SCHEMES};
pub use validate::{
    resolved_args, validate_spec, CheckpointSettings, FieldError, LifecycleSettings, ValidatedSpec,
};

/// Cross-field rules the API server enforces (CEL, `x-kubernetes-validations`), as
/// (JSON path of the schema node from `.spec.versions[0].schema.openAPIV3Schema`, rule,
/// message). `validate_spec` checks the same rules for `weir run`.
pub const CEL_RULES: &[(&str, &str, &str)] = &[
    (
        "",
        "self.metadata.name.size() <= 44 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "metadata.name must be at most 44 characters of lowercase letters, digits and '-', starting with a letter and ending with a letter or digit (the job's Services, StatefulSet and pod labels derive from it): choose another name",
    ),
    (
        "/properties/spec/properties/job",
        "self.maxParallelism >= self.parallelism",
        "spec.job.maxParallelism must be at least spec.job.parallelism: raise maxParallelism or lower parallelism",
    ),
    (
        "",
        "!has(oldSelf.status) || !has(oldSelf.status.deployed) || self.spec.job.maxParallelism == oldSelf.spec.job.maxParallelism",
        MAX_PARALLELISM_FIXED,
    ),
    (
        "/properties/spec/properties/coordinator",
        "!has(self.replicas)",
        "spec.coordinator.replicas: the coordinator is always one pod; remove the field",
    ),
];

/// Why `job.maxParallelism` cannot change once the job was deployed: the API server's rule in
/// [`CEL_RULES`], and the operator's refusal of the same change (a StreamJob applied without
/// the rule, or status removed by hand).
pub const MAX_PARALLELISM_FIXED: &str = "spec.job.maxParallelism is fixed once the job has been deployed (its state is split into that many key groups): set it back, or deploy a new StreamJob";

/// Longest StreamJob name: the StatefulSet controller labels each worker pod
/// `controller-revision-hash: <name>-workers-<hash of up to 10 characters>`, and a label value
/// has at most 63 characters.
pub const MAX_NAME_LEN: usize = 44;

/// Checks a StreamJob name as the API server's rule in [`CEL_RULES`] does: at most
/// [`MAX_NAME_LEN`] characters, a DNS-1035 label (lowercase letters, digits and `-`, starting
/// with a letter, ending with a letter or digit), since Service names derive from it.
///
/// # Errors
/// A message naming the problem and the fix.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        return Ok(());
    }
    Err(format!(
        "`{name}` must be at most {MAX_NAME_LEN} characters of lowercase letters, digits and '-', starting with a letter and ending with a letter or digit (the job's Services, StatefulSet and pod labels derive from it); choose another name"
    ))
}

/// The StreamJob CustomResourceDefinition: the derived schema plus [`CEL_RULES`].
///
/// # Panics
/// Never in practice: the paths of [`CEL_RULES`] name nodes of the derived schema (a test
/// builds it).
pub fn crd(
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube_core::CustomResourceExt;
    let mut crd = StreamJob::crd();
    let mut value = serde_json::to_value(&crd.spec.versions[0].schema)
        .expect("invariant: the schema serializes");
    for (path, rule, message) in CEL_RULES {
        let node = value
            .pointer_mut(&format!("/openAPIV3Schema{path}"))
            .expect("invariant: CEL rule paths name schema nodes");
        let rules = node
            .as_object_mut()
            .expect("invariant: schema nodes are objects")
            .entry("x-kubernetes-validations")
            .or_insert_with(|| serde_json::json!([]));
        rules
            .as_array_mut()
            .expect("invariant: x-kubernetes-validations is a list")
            .push(serde_json::json!({ "rule": rule, "message": message }));
    }
    crd.spec.versions[0].schema =
        serde_json::from_value(value).expect("invariant: the patched schema deserializes");
    crd
}

/// The generated CustomResourceDefinition as YAML, exactly as `crdgen` prints it and as
/// committed in `crds/streamjob.yaml`.
///
/// # Panics
/// Never in practice: the CRD is a static value whose serialization cannot fail.
pub fn crd_yaml() -> String {
    let crd = crd();
    let body = serde_yaml::to_string(&crd).expect("invariant: the CRD serializes to YAML");
    format!("# Generated by `cargo run -p weir-crds --bin crdgen`; do not edit.\n{body}")
}
