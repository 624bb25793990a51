//! Helpers shared by the operator's tests: specs, times, observations, and short runs of the
//! decide function.
#![allow(dead_code)]

use k8s_openapi::jiff::Timestamp;
pub use weir_api_types::JobRunState;
use weir_api_types::{CheckpointInfo, CompatibilityReport, SavepointState};
use weir_crds::{LifecycleState as L, StreamJobSpec, StreamJobStatus};
use weir_operator::decide::decide;
use weir_operator::model::{
    Action, CheckOutcome, Decision, Desired, Observed, ObservedCheck, ObservedJob,
    ObservedSavepoint,
};

pub const LOCATION: &str = "file:///ckpt/j/savepoints/savepoint-7";

pub fn spec(parallelism: i32) -> StreamJobSpec {
    let mut s = weir_crds::load_manifest(
        "apiVersion: weir.dev/v1alpha1\nkind: StreamJob\nmetadata: {name: j}\nspec:\n  job: {entry: csv-window-aggregate, args: {window: 1m}}\n  checkpointing: {storage: 'file:///ckpt'}\n",
    )
    .unwrap()
    .spec
    .spec;
    s.job.parallelism = parallelism;
    s
}

pub fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

pub fn desired(generation: i64, spec: &StreamJobSpec) -> Desired {
    Desired {
        generation,
        spec: weir_crds::validate_spec(spec).expect("a valid spec"),
        deleting: false,
    }
}

pub fn job(state: JobRunState, checkpoint: Option<u64>) -> ObservedJob {
    ObservedJob {
        id: "abc".into(),
        state,
        parallelism: 2,
        restarts: 0,
        failure: (state == JobRunState::Failed).then(|| "worker lost".into()),
        start_time: t(0).to_string(),
        restored_from: None,
        latest_checkpoint: checkpoint.map(|id| CheckpointInfo {
            id,
            location: format!("file:///ckpt/j/checkpoints/chk-{id}"),
            size_bytes: 10,
            duration_ms: 5,
        }),
        failing_checkpoints: 0,
    }
}

/// Pods present and the coordinator reporting `state` with `checkpoint` as its latest.
pub fn observed(state: JobRunState, checkpoint: Option<u64>) -> Observed {
    Observed {
        pods_present: true,
        workloads_complete: true,
        job: Some(job(state, checkpoint)),
        ..Default::default()
    }
}

pub fn running(checkpoint: Option<u64>) -> Observed {
    observed(JobRunState::Running, checkpoint)
}

pub fn absent() -> Observed {
    Observed::default()
}

pub fn savepoint(observed: Observed, id: &str, state: SavepointState) -> Observed {
    Observed {
        savepoint: Some(ObservedSavepoint {
            trigger_id: id.into(),
            state,
            location: (state == SavepointState::Completed).then(|| LOCATION.into()),
            failure: (state == SavepointState::Failed).then(|| "disk full".into()),
        }),
        ..observed
    }
}

pub fn checked(observed: Observed, generation: i64, compatible: bool) -> Observed {
    Observed {
        check: Some(ObservedCheck {
            generation,
            outcome: CheckOutcome::Done(CompatibilityReport {
                compatible,
                snapshot: Some("file:///ckpt/j/checkpoints/chk-3".into()),
                checkpoint_id: Some(3),
                reasons: if compatible {
                    vec![]
                } else {
                    vec!["snapshot 3 holds state of operator uid(s) [\"window\"]".into()]
                },
            }),
        }),
        ..observed
    }
}

/// The actions without Events.
pub fn effects(d: &Decision) -> Vec<Action> {
    d.actions
        .iter()
        .filter(|a| !matches!(a, Action::Event { .. }))
        .cloned()
        .collect()
}

pub fn events(d: &Decision) -> Vec<&'static str> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::Event { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

pub fn condition(status: &StreamJobStatus, type_: &str) -> (String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    assert_eq!(c.observed_generation, status.observed_generation);
    (c.status.clone(), c.reason.clone())
}

pub fn is_true(status: &StreamJobStatus, type_: &str) -> bool {
    condition(status, type_).0 == "True"
}

/// A job of generation 1 with parallelism 2, deployed and stable (checkpoint 3 seen).
pub fn stable() -> StreamJobStatus {
    let s = spec(2);
    let d = decide(
        &desired(1, &s),
        &StreamJobStatus::default(),
        &absent(),
        t(0),
    );
    let d = decide(&desired(1, &s), &d.status, &running(None), t(5));
    let d = decide(&desired(1, &s), &d.status, &running(Some(3)), t(10));
    assert_eq!(d.status.lifecycle_state, Some(L::Stable));
    d.status
}

/// Runs an upgrade from [`stable`] to `new` (generation 2) until the old pods are gone and
/// the new spec is deployed; returns every decision.
pub fn upgrade_to(new: &StreamJobSpec) -> Vec<Decision> {
    let g = desired(2, new);
    let mut out = vec![decide(&g, &stable(), &running(Some(3)), t(20))];
    let mut step = |observed: Observed, at: i64| {
        let d = decide(&g, &out.last().unwrap().status, &observed, t(at));
        out.push(d);
    };
    step(checked(running(Some(3)), 2, true), 21);
    step(
        savepoint(running(Some(3)), "upgrade-2-0", SavepointState::InProgress),
        22,
    );
    step(
        savepoint(running(Some(3)), "upgrade-2-0", SavepointState::Completed),
        23,
    );
    step(absent(), 24);
    out
}
