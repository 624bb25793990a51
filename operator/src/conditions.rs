//! The StreamJob's conditions in the kstatus shape, derived from its status. Pure.
//!
//! kstatus (which Flux reads without configuration, and Argo CD through the health check in
//! `operator/argocd/health.lua`) computes a resource's health from `Ready`,
//! `Reconciling` and `Stalled` and from `observedGeneration`; Weir adds `UpgradeBlocked` and
//! `CheckpointsFailing`. Every condition carries the generation it describes; a condition's
//! `lastTransitionTime` changes only when its status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use weir_crds::{JobRunState, LifecycleState, StreamJobStatus};

/// `Ready`: the desired spec runs (or is suspended, as asked).
pub const READY: &str = "Ready";
/// `Reconciling`: the operator is moving the job towards the spec.
pub const RECONCILING: &str = "Reconciling";
/// `Stalled`: the operator cannot make progress without a change by the user.
pub const STALLED: &str = "Stalled";
/// `UpgradeBlocked`: the pre-flight check found that the new spec cannot restore the state.
pub const UPGRADE_BLOCKED: &str = "UpgradeBlocked";
/// `CheckpointsFailing`: checkpoints fail since the last completed one.
pub const CHECKPOINTS_FAILING: &str = "CheckpointsFailing";

/// Why the job is blocked or failed, when it is: (reason, message).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Problems {
    /// The pre-flight check refused the current generation.
    pub upgrade_blocked: Option<(String, String)>,
    /// The operator gave up on the current generation for another reason (rolled back,
    /// savepoint failed repeatedly).
    pub stalled: Option<(String, String)>,
    /// A container of the job's pods is down for a reason the user must act on (`OOMKilled`):
    /// `Ready` is false with that reason while it lasts.
    pub container: Option<(String, String)>,
}

/// Rewrites `status.conditions` for `generation` at time `now`.
pub fn set_conditions(
    status: &mut StreamJobStatus,
    generation: i64,
    problems: &Problems,
    now: Timestamp,
) {
    use LifecycleState as L;
    let state = status.lifecycle_state.unwrap_or(L::Created);
    let job_state = status.job.as_ref().map(|j| j.state);
    let failed_job = status
        .job
        .as_ref()
        .filter(|j| j.state == JobRunState::Failed);
    let stalled = match (&problems.upgrade_blocked, &problems.stalled, state) {
        (Some((reason, message)), _, _) => Some((reason.clone(), message.clone())),
        (_, Some((reason, message)), _) => Some((reason.clone(), message.clone())),
        (_, _, L::Failed) => Some((
            "JobFailed".to_string(),
            status
                .error
                .clone()
                .or_else(|| failed_job.map(|_| "the job failed".to_string()))
                .unwrap_or_else(|| "the job failed".into()),
        )),
        _ => None,
    };
    let reconciling = match state {
        L::Created => Some(("Created", "waiting for the first deployment")),
        L::Deploying => Some(("Deploying", "the job's pods start and restore its state")),
        L::Upgrading => Some(("Upgrading", "a spec change is applied through a savepoint")),
        L::RollingBack => Some(("RollingBack", "the last stable spec is restored")),
        L::Deleting => Some(("Deleting", "the job is stopped before the resource goes")),
        _ => None,
    };
    let ready = stalled.is_none()
        && problems.container.is_none()
        && match state {
            L::Running | L::Stable => job_state != Some(JobRunState::Restarting),
            L::Suspended => true,
            _ => false,
        };
    let ready_reason = match (state, job_state) {
        (_, Some(JobRunState::Restarting)) => "Restarting",
        (L::Stable, _) => "Stable",
        (L::Running, _) => "Running",
        (L::Suspended, _) => "Suspended",
        _ => "NotRunning",
    };
    let (ready_reason, ready_message) = match &problems.container {
        Some((reason, message)) => (reason.clone(), message.clone()),
        None => (
            ready_reason.to_string(),
            format!("lifecycle state {state:?}"),
        ),
    };
    let conditions = &mut status.conditions;
    put(
        conditions,
        READY,
        ready,
        &ready_reason,
        &ready_message,
        generation,
        now,
    );
    let (r_reason, r_message) = reconciling.unwrap_or(("Reconciled", "the spec is applied"));
    put(
        conditions,
        RECONCILING,
        reconciling.is_some(),
        r_reason,
        r_message,
        generation,
        now,
    );
    let (s_reason, s_message) = stalled
        .clone()
        .unwrap_or_else(|| ("Progressing".into(), "no user action needed".into()));
    put(
        conditions,
        STALLED,
        stalled.is_some(),
        &s_reason,
        &s_message,
        generation,
        now,
    );
    let (b_reason, b_message) = problems
        .upgrade_blocked
        .clone()
        .unwrap_or_else(|| ("Compatible".into(), "no upgrade is blocked".into()));
    put(
        conditions,
        UPGRADE_BLOCKED,
        problems.upgrade_blocked.is_some(),
        &b_reason,
        &b_message,
        generation,
        now,
    );
    let failing = status.consecutive_checkpoint_failures;
    put(
        conditions,
        CHECKPOINTS_FAILING,
        failing > 0,
        if failing > 0 {
            "CheckpointFailed"
        } else {
            "CheckpointsComplete"
        },
        &format!("{failing} checkpoint(s) failed since the last completed one"),
        generation,
        now,
    );
}

/// Sets condition `type_`, keeping its transition time when its status is unchanged.
fn put(
    conditions: &mut Vec<Condition>,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    generation: i64,
    now: Timestamp,
) {
    let status = if value { "True" } else { "False" };
    let since = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let c = Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: Some(generation),
        last_transition_time: since,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(old) => *old = c,
        None => conditions.push(c),
    }
}

/// The condition `type_`, if set.
pub fn find<'a>(status: &'a StreamJobStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}
