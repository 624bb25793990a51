//! The decide function: `(desired, status, observed, now) -> (status, actions)`. Pure: no
//! I/O, no clock; every test of the lifecycle runs through it.
//!
//! The status is a write-ahead log. Each intent is recorded in the returned status, which the
//! shell writes before it carries out the actions: the savepoint trigger id before the job is
//! asked (trigger ids are caller-chosen and idempotent, so a repeated request never takes a
//! second savepoint), the savepoint location before the old pods are deleted, the deployed
//! spec and its lineage before the new pods are created. A restarted operator reads the
//! status, observes, and repeats the same idempotent action of the phase it finds.
//!
//! The lifecycle follows the Flink Kubernetes Operator's: Created -> Deploying -> Running ->
//! Stable; an upgrade (`Upgrading`) goes Checking (pre-flight `weir check`) -> Savepointing
//! (stop with savepoint) -> Stopping (old pods deleted) -> Deploying; `job.state: suspended`
//! takes the same path and ends in `Suspended`; an upgrade that does not become stable rolls
//! back (`RollingBack` -> `RolledBack`) when `upgrade.rollback` is set.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use weir_api_types::{JobRunState, SavepointState};
use weir_crds::{
    DeployedSpec, JobState, JobStatus, LifecycleSettings, LifecycleState, PendingSavepoint,
    Rejection, SavepointInfo, SavepointKind, StorageLayout, StreamJobSpec, StreamJobStatus,
    UpgradeMode, UpgradePhase, UpgradeStatus,
};

use crate::conditions::{self, set_conditions, Problems};
use crate::diff::{classify, Change};
use crate::model::{
    Action, CheckOutcome, Decision, Desired, EventType, Observed, ObservedSavepoint, Restore,
};
use crate::pod_failures::ContainerFailureReason;

/// The lineage of a deployment whose state is in the legacy storage root (made before roots
/// were per namespace): the next deployment migrates it (`--migrate-lineage`).
fn legacy_lineage(deployed: &DeployedSpec) -> Option<String> {
    deployed
        .storage_layout
        .is_legacy()
        .then(|| deployed.lineage.clone())
}

/// Requeue while something is in progress.
pub const FAST: Duration = Duration::from_secs(2);
/// Requeue while the job runs (to follow its checkpoints).
pub const STEADY: Duration = Duration::from_secs(10);
/// Stop-with-savepoint attempts of one upgrade before it is given up.
pub const MAX_SAVEPOINT_ATTEMPTS: i32 = 3;

/// Decides the next status and actions of one StreamJob.
///
/// `desired` is the StreamJob (generation, spec, deletion), `status` its current status,
/// `observed` what the shell saw this reconcile, `now` the time. The returned status must be
/// written before the actions run. Never fails: a spec the operator cannot carry out (an
/// incompatible upgrade, a failed savepoint) becomes a condition and an Event.
pub fn decide(
    desired: &Desired,
    status: &StreamJobStatus,
    observed: &Observed,
    now: Timestamp,
) -> Decision {
    let mut d = Decider {
        desired,
        observed,
        now,
        st: status.clone(),
        actions: Vec::new(),
        requeue: STEADY,
        blocked: None,
    };
    d.record_observation();
    // A refusal of an earlier generation's request says nothing about this one.
    if d.st
        .rejected
        .as_ref()
        .is_some_and(|r| r.generation != desired.generation)
    {
        d.st.rejected = None;
    }
    if desired.deleting {
        d.delete();
    } else if d.st.upgrade.is_some() {
        d.continue_upgrade();
    } else {
        d.reconcile_spec();
    }
    d.finish()
}

struct Decider<'a> {
    desired: &'a Desired,
    observed: &'a Observed,
    now: Timestamp,
    st: StreamJobStatus,
    actions: Vec<Action>,
    requeue: Duration,
    /// Set when this reconcile blocked the generation: (reason, message).
    blocked: Option<(String, String)>,
}

impl Decider<'_> {
    fn gen(&self) -> i64 {
        self.desired.generation
    }

    fn spec(&self) -> &StreamJobSpec {
        &self.desired.spec.spec
    }

    /// The desired spec's parsed durations.
    fn lifecycle(&self) -> &LifecycleSettings {
        &self.desired.spec.lifecycle
    }

    fn now_text(&self) -> String {
        self.now.to_string()
    }

    fn event(&mut self, kind: EventType, reason: &'static str, message: String) {
        self.actions.push(Action::Event {
            kind,
            reason,
            message,
        });
    }

    fn running(&self) -> bool {
        self.observed.job.as_ref().is_some_and(|j| j.is_running())
    }

    fn savepoint_directory(&self) -> Option<String> {
        self.spec().savepoints.directory.clone()
    }

    /// The observed status of trigger `id`.
    fn trigger(&self, id: &str) -> Option<&ObservedSavepoint> {
        self.observed
            .savepoint
            .as_ref()
            .filter(|s| s.trigger_id == id)
    }

    fn set_state(&mut self, state: LifecycleState) {
        self.st.lifecycle_state = Some(state);
    }

    fn state(&self) -> Option<LifecycleState> {
        self.st.lifecycle_state
    }

    /// Copies the coordinator's report into the status.
    fn record_observation(&mut self) {
        match &self.observed.job {
            Some(j) => {
                self.st.job = Some(JobStatus {
                    id: j.id.clone(),
                    state: j.state,
                    parallelism: j.parallelism as i32,
                    start_time: Some(j.start_time.clone()),
                    restarts: j.restarts as i32,
                    restored_from: j.restored_from.clone(),
                });
                if let Some(c) = &j.latest_checkpoint {
                    let seen = self
                        .st
                        .last_checkpoint
                        .as_ref()
                        .is_some_and(|l| l.id == c.id as i64 && l.path == c.location);
                    if !seen {
                        self.st.last_checkpoint = Some(weir_crds::CheckpointInfo {
                            id: c.id as i64,
                            path: c.location.clone(),
                            time: self.now_text(),
                            size_bytes: c.size_bytes as i64,
                            duration_ms: c.duration_ms as i64,
                        });
                    }
                }
                self.st.consecutive_checkpoint_failures = j.failing_checkpoints as i32;
            }
            None if !self.observed.pods_present => self.st.job = None,
            None => {}
        }
    }

    // ---- the spec against what is deployed ----

    fn reconcile_spec(&mut self) {
        let Some(deployed) = self.st.deployed.clone() else {
            if self.spec().job.state == JobState::Suspended {
                self.set_state(LifecycleState::Suspended);
                return;
            }
            // A new StreamJob: its savepoint if it names one; else its own latest checkpoint
            // (the coordinator starts empty when the storage root holds another UID's
            // lineage, unless `spec.restore: latest-checkpoint` adopts it).
            let restore = match self.spec().initial_savepoint() {
                Some(uri) => Restore::Savepoint(uri.to_string()),
                None => Restore::LatestCheckpoint,
            };
            let spec = self.spec().clone();
            self.deploy(self.gen(), &spec, restore, LifecycleState::Deploying);
            return;
        };
        if deployed.generation == self.gen() || self.st.blocked_generation == Some(self.gen()) {
            self.steady(&deployed);
            return;
        }
        let was_suspended = deployed.spec.job.state == JobState::Suspended;
        let change = classify(&deployed.spec, self.spec());
        let wants_suspended = self.spec().job.state == JobState::Suspended;
        match (was_suspended, wants_suspended) {
            (true, true) => self.record_spec(deployed),
            (false, false) if change <= Change::Ignore => {
                self.record_spec(deployed.clone());
                self.steady(&deployed);
            }
            _ => self.start_upgrade(change, was_suspended, wants_suspended),
        }
    }

    /// Records the spec as deployed without touching the pods (a change that needs no restart).
    fn record_spec(&mut self, mut deployed: DeployedSpec) {
        deployed.generation = self.gen();
        deployed.spec = self.spec().clone();
        self.st.deployed = Some(deployed);
    }

    fn deploy(
        &mut self,
        generation: i64,
        spec: &StreamJobSpec,
        restore: Restore,
        state: LifecycleState,
    ) {
        let lineage = format!("{generation}-{}", self.now.as_millisecond());
        let migrate_lineage = self.st.deployed.as_ref().and_then(legacy_lineage);
        self.st.deployed = Some(DeployedSpec {
            generation,
            spec: spec.clone(),
            lineage: lineage.clone(),
            restore: restore.clone(),
            time: self.now_text(),
            storage_layout: StorageLayout::PerNamespace,
        });
        self.st.job = None;
        self.set_state(state);
        self.event(
            EventType::Normal,
            "Deploying",
            format!(
                "deploying generation {generation} with parallelism {}, restoring {}",
                spec.job.parallelism, restore
            ),
        );
        self.actions.push(Action::Deploy {
            spec: Box::new(spec.clone()),
            lineage,
            restore,
            migrate_lineage,
        });
        self.requeue = FAST;
    }

    /// The deployed spec is the desired one (or the desired one is blocked): follow the job.
    fn steady(&mut self, deployed: &DeployedSpec) {
        if deployed.spec.job.state == JobState::Suspended {
            self.set_state(LifecycleState::Suspended);
            if self.observed.pods_present {
                self.actions.push(Action::DeleteCluster);
            }
            self.requeue = Duration::from_secs(60);
            return;
        }
        if !self.observed.workloads_complete {
            // The workload objects are gone or half there (deleted by hand, an apply refused
            // or failed, an operator exit between the two): apply them again with the same
            // lineage, so the coordinator resumes its own checkpoints.
            self.actions.push(Action::Deploy {
                spec: Box::new(deployed.spec.clone()),
                lineage: deployed.lineage.clone(),
                restore: deployed.restore.clone(),
                migrate_lineage: legacy_lineage(deployed),
            });
            self.requeue = FAST;
            return;
        }
        let Some(job) = self.observed.job.clone() else {
            self.requeue = FAST;
            return;
        };
        use LifecycleState as L;
        let previous = self.state();
        use JobRunState as J;
        match job.state {
            J::Running | J::Finishing | J::Finished => {
                let checkpointed = job.latest_checkpoint.is_some() || job.state == J::Finished;
                let next = match previous {
                    Some(L::RollingBack | L::RolledBack) => L::RolledBack,
                    Some(L::Stable) => L::Stable,
                    _ if checkpointed => L::Stable,
                    _ => L::Running,
                };
                if checkpointed && self.st.last_stable.as_ref() != Some(deployed) {
                    self.st.last_stable = Some(deployed.clone());
                }
                if next != previous.unwrap_or(L::Created) {
                    self.event(
                        EventType::Normal,
                        match next {
                            L::Stable => "JobStable",
                            L::RolledBack => "RolledBack",
                            _ => "JobRunning",
                        },
                        format!(
                            "job {} runs generation {} with parallelism {}",
                            job.id, deployed.generation, job.parallelism
                        ),
                    );
                }
                self.set_state(next);
                if self.st.blocked_generation != Some(self.gen()) {
                    self.st.error = None;
                }
            }
            J::Failed | J::Stopped | J::Canceled => {
                let message = match job.state {
                    J::Failed => format!(
                        "the job failed and its restart strategy is exhausted: {}; change the spec or restartNonce to deploy again",
                        job.failure.as_deref().unwrap_or("unknown cause")
                    ),
                    other => format!(
                        "the job was {} outside the operator; change restartNonce to start it again",
                        other.as_str().to_lowercase()
                    ),
                };
                if previous != Some(L::Failed) {
                    self.event(EventType::Warning, "JobFailed", message.clone());
                }
                self.st.error = Some(message);
                self.set_state(L::Failed);
            }
            // Waiting for workers, or restarting after a failure: the lifecycle state stays.
            J::Created | J::Restarting => self.requeue = FAST,
        }
        self.savepoints(deployed);
        self.prune_history(deployed);
        self.rollback_if_unstable(deployed);
    }

    // ---- upgrades ----

    fn start_upgrade(&mut self, change: Change, was_suspended: bool, wants_suspended: bool) {
        let mode = self.spec().job.upgrade_mode;
        let gen = self.gen();
        if let Some(p) = self.st.savepoints.pending.take() {
            self.event(
                EventType::Warning,
                "SavepointAbandoned",
                format!(
                    "savepoint {} is abandoned: generation {gen} replaces the job",
                    p.trigger_id
                ),
            );
        }
        // A deployment that never ran (its pods refused or never ready) holds exactly the state
        // it restored: the new one restores the same, in every mode that keeps state.
        let never_ran = self.state() == Some(LifecycleState::Deploying)
            && !self.running()
            && !self.checkpointed_since_deployed();
        self.st.upgrade = Some(UpgradeStatus {
            phase: UpgradePhase::Checking,
            target_generation: gen,
            target_spec: self.spec().clone(),
            mode,
            rollback: false,
            trigger_id: None,
            restore: (never_ran && mode != UpgradeMode::Stateless).then(|| self.deployed_restore()),
            failed_attempts: 0,
            started: self.now_text(),
        });
        self.set_state(LifecycleState::Upgrading);
        let what = match (was_suspended, wants_suspended) {
            (false, true) => "suspend".to_string(),
            (true, false) => "resume".to_string(),
            _ => format!("{change:?} change"),
        };
        self.event(
            EventType::Normal,
            "UpgradeStarted",
            format!(
                "{what} to generation {gen} (upgrade mode {})",
                mode_name(mode)
            ),
        );
        // The API server's rule refuses this edit; the operator refuses it the same way in
        // every upgrade mode (stateless included), so both agree.
        if change == Change::Redeploy {
            self.block(
                "MaxParallelismChanged",
                weir_crds::MAX_PARALLELISM_FIXED.to_string(),
            );
            return;
        }
        // Nothing is restored when suspending, or in stateless mode: no check.
        if wants_suspended || mode == UpgradeMode::Stateless {
            self.after_check();
        } else {
            self.run_check();
        }
    }

    fn run_check(&mut self) {
        let up = self.st.upgrade.as_ref().expect("invariant: upgrading");
        // Checked against the savepoint the new pods will restore when that is already known
        // (a suspended job, a deployment that never ran), else the latest checkpoint.
        let snapshot = match (&up.restore, self.deployed_restore()) {
            (Some(Restore::Savepoint(uri)), _) => Some(uri.clone()),
            (_, Restore::Savepoint(uri)) if self.deployed_suspended() => Some(uri),
            _ => None,
        };
        let spec = up.target_spec.clone();
        self.actions.push(Action::RunCheck {
            generation: up.target_generation,
            spec: Box::new(spec),
            snapshot,
        });
        self.requeue = FAST;
    }

    fn continue_upgrade(&mut self) {
        let up = self.st.upgrade.clone().expect("invariant: upgrading");
        if up.phase == UpgradePhase::Checking && !up.rollback && up.target_generation != self.gen()
        {
            // A newer spec arrived while nothing had stopped yet: start over with it.
            self.st.upgrade = None;
            self.reconcile_spec();
            return;
        }
        match up.phase {
            UpgradePhase::Checking => self.check_progress(&up),
            UpgradePhase::Savepointing => self.savepoint_progress(&up),
            UpgradePhase::Stopping => self.stop_progress(&up),
        }
    }

    fn check_progress(&mut self, up: &UpgradeStatus) {
        let outcome = self
            .observed
            .check
            .as_ref()
            .filter(|c| c.generation == up.target_generation)
            .map(|c| c.outcome.clone());
        match outcome {
            Some(CheckOutcome::Done(report)) if report.compatible => self.after_check(),
            Some(CheckOutcome::Done(report)) => {
                let message = format!(
                    "generation {} cannot restore {}: {}; the running job is unchanged",
                    up.target_generation,
                    report.snapshot.as_deref().unwrap_or("the job's state"),
                    report.reasons.join("; ")
                );
                self.block("IncompatibleState", message);
            }
            Some(CheckOutcome::Error(e)) => {
                let message = format!(
                    "the pre-flight check of generation {} failed: {e}; the running job is unchanged. Fix the cause and edit the spec to retry",
                    up.target_generation
                );
                self.block("CheckFailed", message);
            }
            Some(CheckOutcome::Running) => self.requeue = FAST,
            None => self.run_check(),
        }
    }

    /// Gives up the current upgrade; the running job stays as it is.
    fn block(&mut self, reason: &'static str, message: String) {
        let up = self.st.upgrade.take().expect("invariant: upgrading");
        self.st.blocked_generation = Some(up.target_generation);
        self.st.error = Some(message.clone());
        self.event(EventType::Warning, "UpgradeBlocked", message.clone());
        self.blocked = Some((reason.to_string(), message));
        if let Some(deployed) = self.st.deployed.clone() {
            self.set_state(if self.deployed_suspended() {
                LifecycleState::Suspended
            } else {
                LifecycleState::Running
            });
            self.steady(&deployed);
        }
    }

    /// The check passed (or was not needed): choose how state is carried.
    fn after_check(&mut self) {
        let up = self.st.upgrade.clone().expect("invariant: upgrading");
        let restore = match up.mode {
            UpgradeMode::Stateless => Some(Restore::Nothing),
            _ if up.restore.is_some() && !self.running() => up.restore.clone(),
            UpgradeMode::Savepoint if self.running() => {
                let id = format!("upgrade-{}-{}", up.target_generation, up.failed_attempts);
                self.stop_with_savepoint(id);
                return;
            }
            UpgradeMode::Savepoint if self.deployed_suspended() => Some(self.deployed_restore()),
            UpgradeMode::Savepoint if self.spec().upgrade.last_state_fallback => {
                self.event(
                    EventType::Warning,
                    "LastStateFallback",
                    "the job is not running and cannot take a savepoint; upgrading from its latest checkpoint".into(),
                );
                Some(self.latest_state())
            }
            UpgradeMode::Savepoint => None,
            UpgradeMode::LastState if self.deployed_suspended() => {
                Some(match self.deployed_restore() {
                    Restore::Savepoint(uri) if self.st.last_checkpoint.is_none() => {
                        Restore::Savepoint(uri)
                    }
                    _ => Restore::LatestCheckpoint,
                })
            }
            UpgradeMode::LastState => Some(self.latest_state()),
        };
        match restore {
            Some(r) => self.enter_stopping(r),
            None => {
                self.st.error = Some(
                    "waiting for the job to run to take a savepoint (upgrade.lastStateFallback is false)"
                        .into(),
                );
                self.requeue = FAST;
            }
        }
    }

    fn stop_with_savepoint(&mut self, trigger_id: String) {
        let up = self.st.upgrade.as_mut().expect("invariant: upgrading");
        up.phase = UpgradePhase::Savepointing;
        up.trigger_id = Some(trigger_id.clone());
        self.actions.push(Action::StopWithSavepoint {
            trigger_id,
            directory: self.savepoint_directory(),
        });
        self.requeue = FAST;
    }

    fn savepoint_progress(&mut self, up: &UpgradeStatus) {
        let id = up
            .trigger_id
            .clone()
            .expect("invariant: savepointing has a trigger");
        match self.trigger(&id).cloned() {
            Some(ObservedSavepoint {
                state: SavepointState::Completed,
                location: Some(location),
                ..
            }) => {
                let kind = if self.target_suspended(up) {
                    SavepointKind::Suspend
                } else {
                    SavepointKind::Upgrade
                };
                self.record_savepoint(&location, kind, &id);
                self.event(
                    EventType::Normal,
                    "SavepointCompleted",
                    format!("savepoint {id} completed at {location}"),
                );
                self.enter_stopping(Restore::Savepoint(location));
            }
            Some(ObservedSavepoint {
                state: SavepointState::Failed,
                failure,
                ..
            }) => {
                let cause = failure.unwrap_or_else(|| "unknown cause".into());
                let attempts = up.failed_attempts + 1;
                self.event(
                    EventType::Warning,
                    "SavepointFailed",
                    format!("savepoint {id} failed (attempt {attempts} of {MAX_SAVEPOINT_ATTEMPTS}): {cause}"),
                );
                self.st
                    .upgrade
                    .as_mut()
                    .expect("invariant: upgrading")
                    .failed_attempts = attempts;
                if attempts < MAX_SAVEPOINT_ATTEMPTS && self.running() {
                    self.stop_with_savepoint(format!(
                        "upgrade-{}-{attempts}",
                        up.target_generation
                    ));
                } else {
                    let message = format!(
                        "generation {} is not applied: the savepoint before the upgrade failed {attempts} time(s), last: {cause}; the running job is unchanged",
                        up.target_generation
                    );
                    self.st.upgrade = None;
                    self.st.blocked_generation = Some(up.target_generation);
                    self.st.error = Some(message);
                    self.set_state(LifecycleState::Running);
                }
            }
            Some(_) => self.requeue = FAST,
            None if self.running() => {
                // Not asked yet, or the coordinator restarted and forgot the id: ask (again).
                self.actions.push(Action::StopWithSavepoint {
                    trigger_id: id,
                    directory: self.savepoint_directory(),
                });
                self.requeue = FAST;
            }
            None if self.spec().upgrade.last_state_fallback && self.observed.job.is_none() => {
                self.event(
                    EventType::Warning,
                    "LastStateFallback",
                    format!("the job stopped before savepoint {id} was reported; upgrading from its latest checkpoint"),
                );
                let restore = self.latest_state();
                self.enter_stopping(restore);
            }
            None => self.requeue = FAST,
        }
    }

    /// Records what the new pods restore, then deletes the old ones (the shell writes the
    /// status first).
    fn enter_stopping(&mut self, restore: Restore) {
        let up = self.st.upgrade.as_mut().expect("invariant: upgrading");
        up.phase = UpgradePhase::Stopping;
        up.restore = Some(restore);
        self.st.error = None;
        self.actions.push(Action::DeleteCluster);
        self.requeue = FAST;
    }

    fn stop_progress(&mut self, up: &UpgradeStatus) {
        if self.observed.pods_present {
            self.actions.push(Action::DeleteCluster);
            self.requeue = FAST;
            return;
        }
        let target = up.target_spec.clone();
        let restore = up.restore.clone().unwrap_or_default();
        self.st.upgrade = None;
        if target.job.state == JobState::Suspended {
            // The pods are gone: the deployment's lineage and layout stay those of the one
            // that ran (its state is where that one wrote it).
            let (lineage, storage_layout) = self
                .st
                .deployed
                .as_ref()
                .map(|d| (d.lineage.clone(), d.storage_layout))
                .unwrap_or((String::new(), StorageLayout::PerNamespace));
            self.st.deployed = Some(DeployedSpec {
                generation: up.target_generation,
                spec: up.target_spec.clone(),
                lineage,
                restore: restore.clone(),
                time: self.now_text(),
                storage_layout,
            });
            self.st.job = None;
            self.set_state(LifecycleState::Suspended);
            self.event(
                EventType::Normal,
                "Suspended",
                format!("the job is suspended; it resumes from {}", restore),
            );
            return;
        }
        let state = if up.rollback {
            LifecycleState::RollingBack
        } else {
            LifecycleState::Deploying
        };
        self.deploy(up.target_generation, &target, restore, state);
    }

    fn rollback_if_unstable(&mut self, deployed: &DeployedSpec) {
        let settings = &self.spec().upgrade;
        if !settings.rollback || self.st.upgrade.is_some() || deployed.generation != self.gen() {
            return;
        }
        let Some(stable) = self.st.last_stable.clone() else {
            return;
        };
        if stable.generation == deployed.generation {
            return;
        }
        let timeout = self.lifecycle().stable_timeout;
        let age = elapsed(&deployed.time, self.now);
        let state = self.state();
        let failed = state == Some(LifecycleState::Failed);
        let unstable = matches!(
            state,
            Some(LifecycleState::Deploying | LifecycleState::Running)
        ) && age >= timeout;
        if !(failed || unstable) {
            return;
        }
        let message = format!(
            "generation {} did not become stable ({}); rolling back to generation {} restored from {}",
            deployed.generation,
            if failed { "the job failed".to_string() } else { format!("not stable after {}", settings.stable_timeout) },
            stable.generation,
            deployed.restore
        );
        self.event(EventType::Warning, "RollingBack", message.clone());
        self.st.blocked_generation = Some(self.gen());
        self.st.error = Some(message);
        self.st.upgrade = Some(UpgradeStatus {
            phase: UpgradePhase::Checking,
            target_generation: stable.generation,
            target_spec: stable.spec.clone(),
            mode: self.spec().job.upgrade_mode,
            rollback: true,
            trigger_id: None,
            restore: None,
            failed_attempts: 0,
            started: self.now_text(),
        });
        self.set_state(LifecycleState::RollingBack);
        self.enter_stopping(deployed.restore.clone());
    }

    // ---- savepoints outside upgrades ----

    fn savepoints(&mut self, deployed: &DeployedSpec) {
        if let Some(p) = self.st.savepoints.pending.clone() {
            self.pending_savepoint(p);
            return;
        }
        if !self.running() {
            return;
        }
        let nonce = self.spec().job.savepoint_trigger_nonce;
        if let Some(n) = nonce.filter(|n| Some(*n) != self.st.savepoints.last_trigger_nonce) {
            self.trigger_savepoint(format!("manual-{n}"), SavepointKind::Manual, Some(n));
            return;
        }
        let Some(interval) = self.lifecycle().periodic_savepoint_interval else {
            return;
        };
        let since = self
            .st
            .savepoints
            .last_periodic
            .clone()
            .unwrap_or_else(|| deployed.time.clone());
        if elapsed(&since, self.now) >= interval {
            self.st.savepoints.last_periodic = Some(self.now_text());
            let id = format!("periodic-{}", self.now.as_millisecond());
            self.trigger_savepoint(id, SavepointKind::Periodic, None);
        }
    }

    fn trigger_savepoint(&mut self, trigger_id: String, kind: SavepointKind, nonce: Option<i64>) {
        self.st.savepoints.pending = Some(PendingSavepoint {
            trigger_id: trigger_id.clone(),
            kind,
            nonce,
            time: self.now_text(),
        });
        self.event(
            EventType::Normal,
            "SavepointTriggered",
            format!("{kind:?} savepoint {trigger_id} triggered"),
        );
        self.actions.push(Action::TriggerSavepoint {
            trigger_id,
            directory: self.savepoint_directory(),
        });
        self.requeue = FAST;
    }

    fn pending_savepoint(&mut self, p: PendingSavepoint) {
        let done = |d: &mut Self| {
            d.st.savepoints.pending = None;
            if p.kind == SavepointKind::Manual {
                d.st.savepoints.last_trigger_nonce = p.nonce;
            }
        };
        match self.trigger(&p.trigger_id).cloned() {
            Some(ObservedSavepoint {
                state: SavepointState::Completed,
                location: Some(location),
                ..
            }) => {
                self.record_savepoint(&location, p.kind, &p.trigger_id);
                self.event(
                    EventType::Normal,
                    "SavepointCompleted",
                    format!("savepoint {} completed at {location}", p.trigger_id),
                );
                done(self);
            }
            Some(ObservedSavepoint {
                state: SavepointState::Failed,
                failure,
                ..
            }) => {
                let message = format!(
                    "savepoint {} failed: {}",
                    p.trigger_id,
                    failure.as_deref().unwrap_or("unknown cause")
                );
                self.event(EventType::Warning, "SavepointFailed", message.clone());
                self.st.error = Some(message);
                done(self);
            }
            Some(_) => self.requeue = FAST,
            None if self.running() => {
                self.actions.push(Action::TriggerSavepoint {
                    trigger_id: p.trigger_id.clone(),
                    directory: self.savepoint_directory(),
                });
                self.requeue = FAST;
            }
            None if self.state() == Some(LifecycleState::Failed) => {
                self.event(
                    EventType::Warning,
                    "SavepointFailed",
                    format!("savepoint {} is abandoned: the job failed", p.trigger_id),
                );
                done(self);
            }
            None => self.requeue = FAST,
        }
    }

    fn record_savepoint(&mut self, location: &str, kind: SavepointKind, trigger_id: &str) {
        let info = SavepointInfo {
            location: location.to_string(),
            time: self.now_text(),
            kind,
            trigger_id: trigger_id.to_string(),
        };
        let sp = &mut self.st.savepoints;
        if !sp.history.iter().any(|h| h.location == location) {
            sp.history.push(info.clone());
        }
        sp.last = Some(info);
    }

    /// Deletes savepoints beyond `historyMaxCount` or older than `historyMaxAge`; never the
    /// newest, nor one a deployment restores from.
    fn prune_history(&mut self, deployed: &DeployedSpec) {
        let settings = &self.spec().savepoints;
        let max_count = settings.history_max_count.max(1) as usize;
        let max_age = self.lifecycle().savepoint_history_max_age;
        let newest = self.st.savepoints.last.as_ref().map(|l| l.location.clone());
        let history = std::mem::take(&mut self.st.savepoints.history);
        let n = history.len();
        let mut kept = Vec::with_capacity(n);
        for (i, sp) in history.into_iter().enumerate() {
            let surplus = i + max_count < n;
            let expired = max_age.is_some_and(|a| elapsed(&sp.time, self.now) > a);
            let protected =
                Some(&sp.location) == newest.as_ref() || sp.location == deployed.restore.as_str();
            if (surplus || expired) && !protected {
                self.event(
                    EventType::Normal,
                    "SavepointDisposed",
                    format!("savepoint {} is deleted (history limits)", sp.location),
                );
                self.actions.push(Action::DisposeSavepoint {
                    location: sp.location.clone(),
                });
            } else {
                kept.push(sp);
            }
        }
        self.st.savepoints.history = kept;
    }

    // ---- deletion ----

    fn delete(&mut self) {
        self.set_state(LifecycleState::Deleting);
        self.requeue = FAST;
        if let Some(p) = self.st.savepoints.pending.clone() {
            if p.kind == SavepointKind::Deletion {
                match self.trigger(&p.trigger_id).cloned() {
                    Some(ObservedSavepoint {
                        state: SavepointState::Completed,
                        location: Some(location),
                        ..
                    }) => {
                        self.record_savepoint(&location, SavepointKind::Deletion, &p.trigger_id);
                        self.event(
                            EventType::Normal,
                            "SavepointCompleted",
                            format!("final savepoint {} completed at {location}", p.trigger_id),
                        );
                    }
                    Some(ObservedSavepoint {
                        state: SavepointState::Failed,
                        failure,
                        ..
                    }) => self.event(
                        EventType::Warning,
                        "SavepointFailed",
                        format!(
                            "final savepoint {} failed: {}; the job is cancelled",
                            p.trigger_id,
                            failure.as_deref().unwrap_or("unknown cause")
                        ),
                    ),
                    _ if self.running() => {
                        self.actions.push(Action::StopWithSavepoint {
                            trigger_id: p.trigger_id.clone(),
                            directory: self.savepoint_directory(),
                        });
                        return;
                    }
                    _ => {}
                }
                self.st.savepoints.pending = None;
            }
        } else if self.spec().savepoints.on_deletion && self.running() {
            let id = format!("delete-{}", self.gen());
            self.st.savepoints.pending = Some(PendingSavepoint {
                trigger_id: id.clone(),
                kind: SavepointKind::Deletion,
                nonce: None,
                time: self.now_text(),
            });
            self.actions.push(Action::StopWithSavepoint {
                trigger_id: id,
                directory: self.savepoint_directory(),
            });
            return;
        }
        if self.observed.pods_present {
            self.actions.push(Action::DeleteCluster);
        } else {
            self.actions.push(Action::RemoveFinalizer);
        }
    }

    // ---- helpers ----

    fn deployed_suspended(&self) -> bool {
        self.st
            .deployed
            .as_ref()
            .is_some_and(|d| d.spec.job.state == JobState::Suspended)
    }

    /// True when the operator saw a checkpoint complete after the current deployment began.
    fn checkpointed_since_deployed(&self) -> bool {
        let (Some(c), Some(d)) = (&self.st.last_checkpoint, &self.st.deployed) else {
            return false;
        };
        match (
            crate::model::parse_time(&c.time),
            crate::model::parse_time(&d.time),
        ) {
            (Some(c), Some(d)) => c >= d,
            _ => true,
        }
    }

    fn deployed_restore(&self) -> Restore {
        self.st
            .deployed
            .as_ref()
            .map_or(Restore::LatestCheckpoint, |d| d.restore.clone())
    }

    fn target_suspended(&self, up: &UpgradeStatus) -> bool {
        up.target_spec.job.state == JobState::Suspended
    }

    /// The newest state without a savepoint: the latest checkpoint, or, when the operator
    /// never saw one, the savepoint the deployment started from.
    fn latest_state(&self) -> Restore {
        if self.st.last_checkpoint.is_some() {
            return Restore::LatestCheckpoint;
        }
        match self.deployed_restore() {
            Restore::Savepoint(uri) => Restore::Savepoint(uri),
            _ => Restore::LatestCheckpoint,
        }
    }

    fn finish(mut self) -> Decision {
        let gen = self.gen();
        self.st.observed_generation = Some(gen);
        let container = self
            .observed
            .container_failures
            .first()
            .map(|f| (f.reason.as_str().to_string(), f.message.clone()));
        update_conditions(&mut self.st, gen, self.blocked.clone(), container, self.now);
        Decision {
            status: self.st,
            actions: self.actions,
            requeue_after: self.requeue,
        }
    }
}

/// Rewrites the conditions of `st` for generation `gen`: an upgrade blocked now (`blocked`)
/// or before (the `UpgradeBlocked` condition of a blocked generation), a generation given up
/// (`RolledBack`, `UpgradeFailed`), a request the API server refused (`ApplyRejected`), or a
/// container of the job that is down (`container`: reason and message, such as `OOMKilled`).
fn update_conditions(
    st: &mut StreamJobStatus,
    gen: i64,
    blocked: Option<(String, String)>,
    container: Option<(String, String)>,
    now: Timestamp,
) {
    let mut problems = Problems {
        container,
        ..Problems::default()
    };
    if st.blocked_generation == Some(gen) {
        let still_blocked = conditions::find(st, conditions::UPGRADE_BLOCKED)
            .filter(|c| c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()));
        match blocked.or(still_blocked) {
            Some(b) => problems.upgrade_blocked = Some(b),
            None => {
                let reason = match st.lifecycle_state {
                    Some(LifecycleState::RollingBack | LifecycleState::RolledBack) => "RolledBack",
                    _ => "UpgradeFailed",
                };
                let message = st
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("generation {gen} is not applied"));
                problems.stalled = Some((reason.to_string(), message));
            }
        }
    }
    if let Some(r) = st.rejected.as_ref().filter(|r| r.generation == gen) {
        st.error = Some(r.message.clone());
        if problems.stalled.is_none() {
            problems.stalled = Some(("ApplyRejected".into(), r.message.clone()));
        }
    }
    set_conditions(st, gen, &problems, now);
}

/// `status` (as decided for generation `generation` and written) after its actions ran:
/// `rejection` is the API server's refusal of one of them (see
/// [`crate::error::Error::rejection`]), `None` when they all went through. A refusal is
/// recorded (`rejected`, `error`, condition `Stalled` with reason `ApplyRejected`); success
/// clears an earlier one. Returns `None` when nothing changes.
pub fn after_actions(
    status: &StreamJobStatus,
    generation: i64,
    rejection: Option<String>,
    now: Timestamp,
) -> Option<StreamJobStatus> {
    let mut st = status.clone();
    match rejection {
        Some(message) => {
            st.rejected = Some(Rejection {
                generation,
                message,
            })
        }
        None => {
            let old = st.rejected.take()?;
            if st.error.as_deref() == Some(old.message.as_str()) {
                st.error = None;
            }
        }
    }
    let container = conditions::find(&st, conditions::READY)
        .filter(|c| c.reason == ContainerFailureReason::OomKilled.as_str())
        .map(|c| (c.reason.clone(), c.message.clone()));
    update_conditions(&mut st, generation, None, container, now);
    (st != *status).then_some(st)
}

/// Time from `since` (RFC 3339) to `now`; zero when `since` does not parse or is later.
fn elapsed(since: &str, now: Timestamp) -> Duration {
    crate::model::parse_time(since)
        .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
        .unwrap_or(Duration::ZERO)
}

fn mode_name(mode: UpgradeMode) -> &'static str {
    match mode {
        UpgradeMode::Savepoint => "savepoint",
        UpgradeMode::LastState => "last-state",
        UpgradeMode::Stateless => "stateless",
    }
}
