//! The `StreamJob` spec types. Every doc comment here becomes the CRD description that
//! `kubectl explain streamjob.spec...` prints, so it is written for users.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::StreamJobStatus;

/// Max parallelism (number of key groups) used when `job.maxParallelism` is not set.
pub const DEFAULT_MAX_PARALLELISM: i32 = 128;
/// The largest allowed max parallelism: key groups are 2-byte numbers, as in Flink.
pub const MAX_MAX_PARALLELISM: i32 = 32768;

/// A stateful streaming job: which job to run, how wide, and where its checkpoints go.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "StreamJob",
    namespaced,
    shortname = "sj",
    status = "StreamJobStatus",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.lifecycleState"}"#,
    printcolumn = r#"{"name":"Parallelism","type":"integer","jsonPath":".spec.job.parallelism"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamJobSpec {
    /// Container image of the runtime (or of a user image built against weir-runtime) that the
    /// operator runs for the coordinator and the workers. Not used by `weir run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy of the job's pods: `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Kubernetes service account of the job's pods (for example one bound to an S3 role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The job to run and how.
    pub job: JobSpec,
    /// Checkpointing: how often, with which guarantee, and where checkpoints are stored.
    pub checkpointing: CheckpointingSpec,
    /// Where keyed state lives while the job runs: `rocksdb` (on local disk, state larger than
    /// memory) or `heap` (in memory, fastest). Checkpoints and savepoints have the same format
    /// for both, so a job can switch backends by restoring.
    #[serde(default)]
    pub state_backend: StateBackend,
    /// Change this number to restart the job (from its latest checkpoint) without any other
    /// change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_nonce: Option<i64>,
}

/// The job to run: its entry point, its arguments, and its parallelism.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    /// Name of the job in the runtime binary's registry, for example `csv-window-aggregate`.
    /// `weir jobs` lists the names a binary knows.
    pub entry: String,
    /// Arguments handed to the job, as strings. Each job documents and validates its own
    /// arguments; an unknown or malformed argument is rejected before the job starts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// Number of parallel subtasks of every operator. At least 1, at most `maxParallelism`.
    #[serde(default = "default_parallelism")]
    pub parallelism: i32,
    /// Number of key groups: the unit in which keyed state is distributed over subtasks and
    /// the upper bound of `parallelism`. Fixed for the life of the job's state: a checkpoint or
    /// savepoint cannot be restored with a different value. Between `parallelism` and 32768.
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: i32,
    /// How the operator carries state across an upgrade: `savepoint` (take a savepoint, then
    /// restore from it; the default, state is never dropped), `last-state` (restore from the
    /// latest checkpoint), or `stateless` (start empty).
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,
    /// Desired state: `running`, or `suspended` (stop with a savepoint, keep the resource).
    #[serde(default)]
    pub state: JobState,
    /// Restore even if the snapshot holds state of an operator uid the job no longer has (that
    /// state is dropped).
    #[serde(default)]
    pub allow_non_restored_state: bool,
    /// Change this number to trigger a savepoint of the running job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_trigger_nonce: Option<i64>,
    /// Savepoint to start from when the job has no state of its own yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_savepoint_path: Option<String>,
}

/// How the operator carries state across an upgrade.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    /// Take a savepoint, then restore from it.
    #[default]
    Savepoint,
    /// Restore from the latest complete checkpoint.
    LastState,
    /// Start with empty state.
    Stateless,
}

/// Desired state of the job.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// The job runs.
    #[default]
    Running,
    /// The job is stopped with a savepoint; the resource is kept.
    Suspended,
}

/// Image pull policy of the job's pods.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// Always pull.
    Always,
    /// Pull when the image is not on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// Where keyed state lives while the job runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackend {
    /// One RocksDB instance per subtask on local disk; state may exceed memory.
    #[default]
    Rocksdb,
    /// In-memory maps per key group; fastest, bounded by memory.
    Heap,
}

/// Checkpointing settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointingSpec {
    /// Time between the start of two checkpoints, for example `10s`.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// `exactly-once` (operators with several inputs align barriers) or `at-least-once`
    /// (no alignment; records may be counted twice after a failure).
    #[serde(default)]
    pub mode: CheckpointingMode,
    /// A checkpoint not complete after this long is aborted and its files deleted, for
    /// example `10m`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Least time between the end of one checkpoint and the start of the next, for example
    /// `0s`.
    #[serde(default = "default_min_pause")]
    pub min_pause: String,
    /// Checkpoints in flight at once (Flink's `execution.checkpointing.max-concurrent-checkpoints`).
    /// At least 1; a `minPause` above zero keeps it at 1 (the pause starts when the previous
    /// checkpoint ends).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: i32,
    /// Incremental checkpoints (RocksDB only): each checkpoint uploads only the RocksDB files
    /// the previous ones did not, into `<job>/shared/`; a shared file is deleted when no
    /// retained checkpoint references it. Savepoints are always full and self-contained.
    #[serde(default)]
    pub incremental: bool,
    /// Number of newest complete checkpoints kept; older ones are deleted. At least 1.
    #[serde(default = "default_retained")]
    pub retained: i32,
    /// Where checkpoints are written: `s3://bucket/prefix` or `file:///absolute/dir`. The
    /// job's files go under `<storage>/<job name>/`.
    pub storage: String,
    /// Settings of `s3://` storage (endpoint, region, addressing, credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
}

/// Settings of `s3://` checkpoint storage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Spec {
    /// Endpoint URL of an S3-compatible store (MinIO, Garage, Ceph), for example
    /// `http://minio.storage:9000`. Omit for AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region, for example `eu-west-1`. Default: the environment's (`AWS_REGION`), else
    /// `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style addressing (`<endpoint>/<bucket>/<key>`), which most S3-compatible stores
    /// need. Default false (virtual-hosted style, as AWS S3).
    #[serde(default)]
    pub path_style: bool,
    /// Credentials from a Secret in the job's namespace, handed to the job's pods as
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`. Without it the standard AWS chain
    /// applies: environment, profile, web identity (IRSA), instance metadata. `weir run`
    /// always uses the standard chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretCredentials>,
}

/// A Secret holding S3 credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretCredentials {
    /// Name of the Secret.
    pub name: String,
    /// Key of the access key id in the Secret.
    #[serde(default = "default_access_key_id_key")]
    pub access_key_id_key: String,
    /// Key of the secret access key in the Secret.
    #[serde(default = "default_secret_access_key_key")]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}
fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

/// Checkpointing guarantee.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointingMode {
    /// Barriers are aligned; every record affects state and output exactly once.
    #[default]
    ExactlyOnce,
    /// No alignment; after a failure some records may affect state twice.
    AtLeastOnce,
}

fn default_parallelism() -> i32 {
    1
}
fn default_max_parallelism() -> i32 {
    DEFAULT_MAX_PARALLELISM
}
fn default_interval() -> String {
    "10s".into()
}
fn default_timeout() -> String {
    "10m".into()
}
fn default_min_pause() -> String {
    "0s".into()
}
fn default_max_concurrent() -> i32 {
    1
}
fn default_retained() -> i32 {
    3
}
