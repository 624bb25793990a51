//! The `StreamJob` status types, written by the operator and read by people and GitOps tools.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a StreamJob.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the job is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_state: Option<LifecycleState>,
    /// Standard conditions (`Ready`, `Reconciling`, `Stalled`, and domain ones such as
    /// `UpgradeBlocked`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The running job as the coordinator reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobStatus>,
    /// The last completed checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointInfo>,
    /// Checkpoints that failed in a row since the last completed one.
    #[serde(default)]
    pub consecutive_checkpoint_failures: i32,
    /// Last error, for people; machines read the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Lifecycle states, after the Flink Kubernetes Operator's.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LifecycleState {
    /// Accepted, nothing deployed yet.
    Created,
    /// Pods are being created.
    Deploying,
    /// The job runs.
    Running,
    /// The job runs and has completed a checkpoint since its last deployment.
    Stable,
    /// A spec change is being applied (savepoint, redeploy).
    Upgrading,
    /// Stopped with a savepoint at the user's request.
    Suspended,
    /// The job failed and will not be restarted without a change.
    Failed,
    /// An upgrade failed and the last stable spec is being restored.
    RollingBack,
    /// The last stable spec runs again after a failed upgrade.
    RolledBack,
    /// The resource is being deleted.
    Deleting,
}

/// The running job as reported by its coordinator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// Job id.
    pub id: String,
    /// Job state as the coordinator reports it (for example `RUNNING`).
    pub state: String,
    /// Current parallelism.
    pub parallelism: i32,
    /// Start time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
}

/// A completed checkpoint.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointInfo {
    /// Checkpoint id.
    pub id: i64,
    /// Location of the checkpoint directory.
    pub path: String,
    /// Completion time, RFC 3339.
    pub time: String,
    /// Total size of the checkpoint's files in bytes.
    pub size_bytes: i64,
    /// Time from trigger to completion in milliseconds.
    pub duration_ms: i64,
}
