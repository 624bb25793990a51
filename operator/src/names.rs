//! Every name the operator writes into the cluster, formatted in one place: label keys, the
//! field manager, the finalizer, object names and the coordinator's in-cluster addresses.

use std::collections::BTreeMap;

/// Server-side apply field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "weir-operator";
/// Finalizer on every StreamJob the operator manages: deletion waits for the final savepoint
/// (when asked) and the workloads' removal.
pub const FINALIZER: &str = "weir.dev/finalizer";
/// Label: the StreamJob an object belongs to.
pub const LABEL_JOB: &str = "weir.dev/job";
/// Label: `coordinator`, `worker` or `check`.
pub const LABEL_COMPONENT: &str = "weir.dev/component";
/// Label: the generation a pre-flight check Job checks.
pub const LABEL_GENERATION: &str = "weir.dev/generation";
/// Annotation on pod templates: the deployment id (`--lineage`); a new one rolls the pods.
pub const ANNOTATION_LINEAGE: &str = "weir.dev/lineage";
/// Annotation on the check Job's pod: the manifest it checks (read through the downward API).
pub const ANNOTATION_MANIFEST: &str = "weir.dev/manifest";
/// The standard managed-by label and its value, on every object the operator creates; the
/// operator watches only objects that carry it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "weir-operator");
/// Port of the coordinator's control server (workers connect to it).
pub const CONTROL_PORT: i32 = 6123;
/// Port of the coordinator's admin API.
pub const ADMIN_PORT: i32 = 8081;
/// Port of a worker's data server (peers connect to it).
pub const DATA_PORT: i32 = 6124;
/// Where the job's admin token Secret is mounted in its pods.
pub const ADMIN_TOKEN_DIR: &str = "/var/run/weir/admin-token";
/// The environment variable naming the token file (`weir coordinator|worker
/// --admin-token-file`).
pub const ADMIN_TOKEN_ENV: &str = "WEIR_ADMIN_TOKEN_FILE";
/// Where the manifest is mounted in the job's pods.
pub const MANIFEST_DIR: &str = "/etc/weir";
/// The manifest's file name in [`MANIFEST_DIR`] and its key in the ConfigMap.
pub const MANIFEST_FILE: &str = "job.yaml";
/// Longest StreamJob name the operator accepts: the StatefulSet controller labels each worker
/// pod `controller-revision-hash: <name>-workers-<hash of up to 10 characters>`, and a label
/// value has at most 63 characters (63 - 10 - 1 - 8 = 44); `<name>-coordinator` stays a valid
/// Service name within it.
pub const MAX_NAME_LEN: usize = weir_crds::MAX_NAME_LEN;

/// The coordinator's Deployment and Service.
pub fn coordinator(job: &str) -> String {
    format!("{job}-coordinator")
}

/// The workers' StatefulSet and headless Service.
pub fn workers(job: &str) -> String {
    format!("{job}-workers")
}

/// The ConfigMap holding the deployed manifest.
pub fn config_map(job: &str) -> String {
    format!("{job}-manifest")
}

/// The job's NetworkPolicy.
pub fn network_policy(job: &str) -> String {
    format!("{job}-job")
}

/// The Secret holding the job's admin token (key [`weir_api_types::ADMIN_TOKEN_KEY`]).
pub fn admin_token_secret(job: &str) -> String {
    format!("{job}-admin-token")
}

/// The token file inside the job's containers.
pub fn admin_token_file() -> String {
    format!("{ADMIN_TOKEN_DIR}/{}", weir_api_types::ADMIN_TOKEN_KEY)
}

/// The pre-flight check Job of `generation`.
pub fn check_job(job: &str, generation: i64) -> String {
    format!("{job}-check-{generation}")
}

/// The coordinator's control address as workers reach it (`host:port`).
pub fn control_address(job: &str) -> String {
    format!("{}:{CONTROL_PORT}", coordinator(job))
}

/// The coordinator's admin API base URL as the operator reaches it (cluster DNS).
pub fn admin_url(namespace: &str, job: &str) -> String {
    format!("http://{}.{namespace}.svc:{ADMIN_PORT}", coordinator(job))
}

/// Labels of the objects of component `component` of StreamJob `job`: also their selector.
pub fn labels(job: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_JOB.to_string(), job.to_string()),
        (LABEL_COMPONENT.to_string(), component.to_string()),
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
    ])
}

/// Label selector (`k=v,...`) of every object the operator manages.
pub fn managed_selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}
