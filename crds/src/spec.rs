//! The `StreamJob` spec types. Every doc comment here becomes the CRD description that
//! `kubectl explain streamjob.spec...` prints, so it is written for users.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration, Volume, VolumeMount};
use kube_derive::CustomResource;
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
    crates(kube_core = "::kube_core"),
    group = "weir.dev",
    version = "v1alpha1",
    kind = "StreamJob",
    namespaced,
    shortname = "sj",
    status = "StreamJobStatus",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.lifecycleState"}"#,
    printcolumn = r#"{"name":"Parallelism","type":"integer","jsonPath":".spec.job.parallelism"}"#,
    printcolumn = r#"{"name":"Last Savepoint","type":"date","jsonPath":".status.savepoints.last.time"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    scale = r#"{"specReplicasPath":".spec.job.parallelism","statusReplicasPath":".status.job.parallelism"}"#
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
    /// What a new StreamJob starts from, as Flink's `initialSavepointPath`: a savepoint (or
    /// retained checkpoint) directory URI, or `latest-checkpoint` for the latest checkpoint
    /// already in the job's storage root (`<storage>/<namespace>/<name>/`) even if another
    /// StreamJob of the same name (another UID, deleted since) wrote it. Without it a new
    /// StreamJob starts empty and never restores a predecessor's state; the predecessor's
    /// objects stay (`weir checkpoints gc --dry-run` lists them). Read only when this
    /// StreamJob deploys for the first time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub restore: Option<InitialRestore>,
    /// Checkpointing: how often, with which guarantee, and where checkpoints are stored.
    pub checkpointing: CheckpointingSpec,
    /// Where keyed state lives while the job runs: `rocksdb` (on local disk, state larger than
    /// memory) or `heap` (in memory, fastest). Checkpoints and savepoints have the same format
    /// for both, so a job can switch backends by restoring.
    #[serde(default)]
    pub state_backend: StateBackend,
    /// Change this number to restart the job without any other change; the restart follows
    /// `job.upgradeMode` (a savepoint first, by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_nonce: Option<i64>,
    /// Savepoints the operator takes: where, how often, how many are kept.
    #[serde(default)]
    pub savepoints: SavepointsSpec,
    /// How upgrades are made safe: rollback of an upgrade that does not become stable.
    #[serde(default)]
    pub upgrade: UpgradeSpec,
    /// The coordinator pod (one per job).
    #[serde(default)]
    pub coordinator: PodOverrides,
    /// The worker pods.
    #[serde(default)]
    pub workers: PodOverrides,
}

/// `spec.restore`: what a new StreamJob starts from. In YAML `latest-checkpoint` or a
/// savepoint directory URI (`s3://...` or `file:///...`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(try_from = "String", into = "String")]
pub enum InitialRestore {
    /// The latest complete checkpoint in the job's storage root, whoever wrote it.
    LatestCheckpoint,
    /// The savepoint (or retained checkpoint) in this directory.
    Savepoint(String),
}

impl InitialRestore {
    /// The YAML form: `latest-checkpoint` or the URI.
    pub fn as_str(&self) -> &str {
        match self {
            InitialRestore::LatestCheckpoint => "latest-checkpoint",
            InitialRestore::Savepoint(uri) => uri,
        }
    }
}

impl StreamJobSpec {
    /// The savepoint a new StreamJob starts from: `spec.restore` when it names one, else
    /// `job.initialSavepointPath`.
    pub fn initial_savepoint(&self) -> Option<&str> {
        match &self.restore {
            Some(InitialRestore::Savepoint(uri)) => Some(uri),
            _ => self.job.initial_savepoint_path.as_deref(),
        }
    }

    /// `spec.restore: latest-checkpoint`: a new StreamJob takes over the latest checkpoint in
    /// its storage root even when another StreamJob (another UID) wrote it.
    pub fn adopts_latest_checkpoint(&self) -> bool {
        self.restore == Some(InitialRestore::LatestCheckpoint)
    }
}

impl TryFrom<String> for InitialRestore {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if s == "latest-checkpoint" {
            return Ok(InitialRestore::LatestCheckpoint);
        }
        crate::StorageLocation::parse(&s).map_err(|e| {
            format!("must be `latest-checkpoint` or a savepoint directory URI: {e}")
        })?;
        Ok(InitialRestore::Savepoint(s))
    }
}

impl From<InitialRestore> for String {
    fn from(r: InitialRestore) -> String {
        r.as_str().to_string()
    }
}

/// Savepoints taken by the operator (before upgrades, on `savepointTriggerNonce`,
/// periodically, on suspend and, when asked, on deletion).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavepointsSpec {
    /// Directory URI (`s3://bucket/prefix` or `file:///dir`) for savepoints. Default:
    /// `<checkpointing.storage>/<namespace>/<name>/savepoints`. On Kubernetes a job takes
    /// savepoints into, and disposes savepoints from, only its own storage root and this
    /// directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// Take a savepoint this often while the job runs, for example `6h`. Default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodic_interval: Option<String>,
    /// Savepoints kept in `status.savepoints.history`; older ones are deleted with their
    /// files. The newest savepoint is always kept. At least 1.
    #[serde(default = "default_history_max_count")]
    pub history_max_count: i32,
    /// Savepoints older than this are deleted with their files, for example `7d`
    /// (the newest is always kept). Default: no age limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_max_age: Option<String>,
    /// Take a final savepoint before the StreamJob is deleted (the savepoint is kept in
    /// storage). Default false: deletion cancels the job.
    #[serde(default)]
    pub on_deletion: bool,
}

impl Default for SavepointsSpec {
    fn default() -> Self {
        Self {
            directory: None,
            periodic_interval: None,
            history_max_count: default_history_max_count(),
            history_max_age: None,
            on_deletion: false,
        }
    }
}

/// Upgrade safety settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpgradeSpec {
    /// Roll back to the last stable spec (restored from the savepoint the upgrade took) when
    /// the upgraded job does not become stable within `stableTimeout`. Default false.
    #[serde(default)]
    pub rollback: bool,
    /// How long an upgraded job has to reach `Stable` (running with a completed checkpoint),
    /// for example `5m`.
    #[serde(default = "default_stable_timeout")]
    pub stable_timeout: String,
    /// With `upgradeMode: savepoint`, when the job cannot take a savepoint (it failed or its
    /// coordinator is gone), upgrade from its latest complete checkpoint instead. Default
    /// true; false waits for the job to run again.
    #[serde(default = "yes")]
    pub last_state_fallback: bool,
}

impl Default for UpgradeSpec {
    fn default() -> Self {
        Self {
            rollback: false,
            stable_timeout: default_stable_timeout(),
            last_state_fallback: true,
        }
    }
}

/// Settings of the job's pods beyond the image: resources, placement, labels, environment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodOverrides {
    /// Number of pods; workers only (the coordinator is always one pod). Subtask i of every
    /// operator runs on worker `i % replicas`. Default: `job.parallelism` (one subtask of each
    /// operator per worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// CPU and memory requests and limits of the container, as in a Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pods, as in a Pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Extra labels of the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations of the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra environment variables of the container (for example `RUST_LOG`), as in a Pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Extra volumes of the pods, as in a Pod (for example a PersistentVolumeClaim for a file
    /// sink's output). The names `manifest`, `scratch` and `admin-token` are the operator's
    /// own. The CRD's schema leaves the items open (the full Volume schema would take the CRD
    /// past the size `kubectl apply` accepts); the API server validates them when the operator
    /// creates the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "open_objects")]
    pub volumes: Vec<Volume>,
    /// Where the container mounts them, as in a Container's `volumeMounts`. `/tmp` and the
    /// manifest's directory are the operator's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "open_objects")]
    pub volume_mounts: Vec<VolumeMount>,
}

/// Schema of a list of Kubernetes objects the API server validates elsewhere: objects whose
/// fields are kept as they are.
fn open_objects(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
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
    /// Job arguments whose values come from a Secret in the job's namespace (passwords,
    /// tokens), by argument name, for example
    /// `kafka.sasl.password: {name: kafka-credentials, key: password}`. The operator hands
    /// each to the job's pods as a reference to the Secret (never the value) in the
    /// environment variable [`secret_arg_env`] names (`WEIR_ARG_KAFKA_SASL_PASSWORD`); `weir
    /// run` reads the same variable. An argument is either here or in `args`, not both.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args_from_secrets: BTreeMap<String, SecretKeyRef>,
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
    /// job's files go under `<storage>/<namespace>/<name>/` on Kubernetes (two StreamJobs of
    /// one name in two namespaces never share them), `<storage>/<name>/` under `weir run`.
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

/// One key of a Secret in the job's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// The key within it.
    pub key: String,
}

/// The environment variable that carries job argument `arg` from `spec.job.argsFromSecrets`:
/// `WEIR_ARG_` and the argument's name in upper case with every character other than an ASCII
/// letter or digit replaced by `_` (`kafka.sasl.password` -> `WEIR_ARG_KAFKA_SASL_PASSWORD`).
pub fn secret_arg_env(arg: &str) -> String {
    let name: String = arg
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("WEIR_ARG_{name}")
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
fn default_history_max_count() -> i32 {
    5
}
fn default_stable_timeout() -> String {
    "5m".into()
}
fn yes() -> bool {
    true
}
