//! The `StreamJob` status types, written by the operator and read by people and GitOps tools.
//!
//! The status is also the operator's write-ahead log: every intent (the spec being deployed,
//! the phase of an upgrade, a savepoint trigger id) is recorded here before its action runs,
//! so a restarted operator resumes where the previous one stopped.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use weir_api_types::JobRunState;

use crate::spec::{StreamJobSpec, UpgradeMode};

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
    /// Conditions in the kstatus shape: `Ready`, `Reconciling`, `Stalled`, `UpgradeBlocked`,
    /// `CheckpointsFailing`, each with its own `observedGeneration`.
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
    /// The spec the pods run (or, when suspended, last ran), recorded before they are created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<DeployedSpec>,
    /// The last deployed spec that became stable (running with a completed checkpoint): the
    /// target of a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stable: Option<DeployedSpec>,
    /// The upgrade in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeStatus>,
    /// Savepoints: the last one, the history, the trigger in progress.
    #[serde(default)]
    pub savepoints: SavepointsStatus,
    /// A generation the operator does not apply: its pre-flight check failed or it was rolled
    /// back. Any edit of the spec makes a new generation, which is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_generation: Option<i64>,
    /// A request the API server refused for the current generation (an invalid object, RBAC,
    /// a quota, an admission webhook): the operator retries it slowly and reports `Stalled`
    /// until it is accepted or the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Rejection>,
    /// Last error, for people; machines read the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A request the API server refused with a client error.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// The generation being applied when it was refused.
    pub generation: i64,
    /// What was attempted and the server's message, for example `apply StatefulSet
    /// retail-workers: StatefulSet.apps "retail-workers" is invalid: ... (422 Invalid)`.
    pub message: String,
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
    /// A spec change is being applied (pre-flight check, savepoint, redeploy).
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
    /// Job state as the coordinator reports it: `CREATED`, `RUNNING`, `FINISHING`,
    /// `RESTARTING`, `FAILED`, `FINISHED`, `STOPPED`, `CANCELED`.
    pub state: JobRunState,
    /// Current parallelism.
    pub parallelism: i32,
    /// Start time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Restarts after failures since the coordinator started.
    #[serde(default)]
    pub restarts: i32,
    /// The checkpoint or savepoint the job restored from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<String>,
}

/// A completed checkpoint.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointInfo {
    /// Checkpoint id.
    pub id: i64,
    /// Location of the checkpoint directory.
    pub path: String,
    /// When the operator saw it completed, RFC 3339.
    pub time: String,
    /// Total size of the checkpoint's files in bytes.
    pub size_bytes: i64,
    /// Time from trigger to completion in milliseconds.
    pub duration_ms: i64,
}

/// A spec as deployed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployedSpec {
    /// The StreamJob generation the spec is from.
    pub generation: i64,
    /// The spec; in the status a JSON string (so the status schema stays small).
    #[serde(with = "spec_json")]
    #[schemars(with = "String")]
    pub spec: StreamJobSpec,
    /// The deployment id handed to the coordinator (`--lineage`): a restarted coordinator of
    /// the same deployment resumes its own checkpoints.
    pub lineage: String,
    /// What the deployment restored: a savepoint location, `latest-checkpoint`, or `none`.
    #[schemars(with = "String")]
    pub restore: Restore,
    /// When it was deployed, RFC 3339.
    pub time: String,
    /// Where its state lives: `per-namespace` (`<storage>/<namespace>/<name>/`, lineage with
    /// the StreamJob's UID); absent (`legacy`) for a deployment made by an operator before
    /// roots were per namespace (`<storage>/<name>/`), whose state the next deployment
    /// migrates once.
    #[serde(default, skip_serializing_if = "StorageLayout::is_legacy")]
    pub storage_layout: StorageLayout,
}

/// The storage layout a deployment's coordinator used.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StorageLayout {
    /// `<storage>/<name>/`: operators before roots were per namespace.
    #[default]
    Legacy,
    /// `<storage>/<namespace>/<name>/`.
    PerNamespace,
}

impl StorageLayout {
    /// True for [`StorageLayout::Legacy`].
    pub fn is_legacy(&self) -> bool {
        *self == StorageLayout::Legacy
    }
}

/// What a deployment restores; in the status, `none`, `latest-checkpoint` or the savepoint's
/// URI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Restore {
    /// Nothing: empty state (upgrade mode `stateless`).
    Nothing,
    /// The job's latest complete checkpoint in its storage.
    #[default]
    LatestCheckpoint,
    /// This savepoint directory (URI).
    Savepoint(String),
}

impl Restore {
    /// The form recorded in status: `none`, `latest-checkpoint`, or the savepoint URI.
    pub fn as_str(&self) -> &str {
        match self {
            Restore::Nothing => "none",
            Restore::LatestCheckpoint => "latest-checkpoint",
            Restore::Savepoint(uri) => uri,
        }
    }
}

impl std::fmt::Display for Restore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Restore> for String {
    fn from(r: Restore) -> String {
        r.as_str().to_string()
    }
}

impl From<String> for Restore {
    /// Parses [`Restore::as_str`]'s form: any other text is a savepoint URI.
    fn from(s: String) -> Restore {
        match s.as_str() {
            "none" => Restore::Nothing,
            "latest-checkpoint" => Restore::LatestCheckpoint,
            _ => Restore::Savepoint(s),
        }
    }
}

/// An upgrade in progress: the operator's write-ahead log for it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    /// Where the upgrade is.
    pub phase: UpgradePhase,
    /// The generation being applied.
    pub target_generation: i64,
    /// The spec being applied; in the status a JSON string.
    #[serde(with = "spec_json")]
    #[schemars(with = "String")]
    pub target_spec: StreamJobSpec,
    /// How state is carried: `savepoint`, `last-state` or `stateless`.
    pub mode: UpgradeMode,
    /// True when this upgrade rolls back to the last stable spec.
    #[serde(default)]
    pub rollback: bool,
    /// The savepoint trigger id (chosen by the operator before it asks the job, so a retried
    /// request cannot take a second savepoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
    /// What the new pods restore: a savepoint location, `latest-checkpoint`, or `none`;
    /// recorded before the old pods are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub restore: Option<Restore>,
    /// Savepoint attempts that failed.
    #[serde(default)]
    pub failed_attempts: i32,
    /// When the upgrade started, RFC 3339.
    pub started: String,
}

/// Phases of an upgrade, in order.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpgradePhase {
    /// The new spec's job graph is compared with the job's latest snapshot (`weir check`).
    #[default]
    Checking,
    /// Stop with savepoint requested (trigger id recorded).
    Savepointing,
    /// The old pods are being deleted; `restore` is recorded.
    Stopping,
}

/// Savepoints of the job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointsStatus {
    /// The newest completed savepoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<SavepointInfo>,
    /// Completed savepoints the operator keeps, oldest first (pruned by
    /// `savepoints.historyMaxCount` and `historyMaxAge`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<SavepointInfo>,
    /// A savepoint trigger in progress (not an upgrade's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingSavepoint>,
    /// The `job.savepointTriggerNonce` last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trigger_nonce: Option<i64>,
    /// When the last periodic savepoint was triggered, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_periodic: Option<String>,
}

/// A completed savepoint.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointInfo {
    /// Location of the savepoint directory.
    pub location: String,
    /// When the operator saw it completed, RFC 3339.
    pub time: String,
    /// Why it was taken.
    pub kind: SavepointKind,
    /// The trigger id.
    pub trigger_id: String,
}

/// A savepoint trigger in progress.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingSavepoint {
    /// The trigger id.
    pub trigger_id: String,
    /// Why it was taken.
    pub kind: SavepointKind,
    /// The nonce that asked for it (manual savepoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<i64>,
    /// When it was triggered, RFC 3339.
    pub time: String,
}

/// Why a savepoint was taken.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SavepointKind {
    /// Before an upgrade or rescale.
    #[default]
    Upgrade,
    /// `job.savepointTriggerNonce` changed.
    Manual,
    /// `savepoints.periodicInterval`.
    Periodic,
    /// `job.state: suspended`.
    Suspend,
    /// Before deletion (`savepoints.onDeletion`).
    Deletion,
}

/// A spec recorded in the status as a JSON string: parsed once, with the status; a status
/// whose recorded spec does not parse is refused as a whole.
mod spec_json {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::spec::StreamJobSpec;

    pub fn serialize<S: Serializer>(spec: &StreamJobSpec, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(spec).map_err(S::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StreamJobSpec, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text)
            .map_err(|e| D::Error::custom(format!("the recorded spec does not parse: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployed_json(spec: &str, restore: &str) -> serde_json::Value {
        serde_json::json!({
            "deployed": {
                "generation": 2, "lineage": "2-1", "time": "2026-12-02T00:00:00Z",
                "restore": restore, "spec": spec,
            }
        })
    }

    #[test]
    fn recorded_specs_and_restore_sources_round_trip_as_strings() {
        let spec =
            r#"{"job":{"entry":"csv-window-aggregate"},"checkpointing":{"storage":"file:///c"}}"#;
        let status: StreamJobStatus =
            serde_json::from_value(deployed_json(spec, "s3://b/sp/savepoint-1")).unwrap();
        let deployed = status.deployed.clone().unwrap();
        assert_eq!(deployed.spec.job.entry, "csv-window-aggregate");
        assert_eq!(
            deployed.restore,
            Restore::Savepoint("s3://b/sp/savepoint-1".into())
        );
        let back = serde_json::to_value(&status).unwrap();
        assert!(back["deployed"]["spec"].is_string());
        assert_eq!(back["deployed"]["restore"], "s3://b/sp/savepoint-1");
        let again: StreamJobStatus = serde_json::from_value(back).unwrap();
        assert_eq!(again, status);
        for (text, restore) in [
            ("none", Restore::Nothing),
            ("latest-checkpoint", Restore::LatestCheckpoint),
        ] {
            let s: StreamJobStatus = serde_json::from_value(deployed_json(spec, text)).unwrap();
            assert_eq!(s.deployed.unwrap().restore, restore);
        }
    }

    #[test]
    fn a_status_whose_recorded_spec_does_not_parse_is_refused() {
        let err = serde_json::from_value::<StreamJobStatus>(deployed_json("{\"job\":", "none"))
            .unwrap_err();
        assert!(
            err.to_string().contains("the recorded spec does not parse"),
            "{err}"
        );
    }
}
