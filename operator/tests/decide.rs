//! The decide function through its public interface: every lifecycle state, event and upgrade
//! mode, and an operator restart in every upgrade phase. No I/O: time is injected.

mod common;

use common::*;
use weir_api_types::SavepointState;
use weir_crds::{
    JobState, LifecycleState as L, SavepointKind, StreamJobSpec, StreamJobStatus, UpgradeMode,
    UpgradePhase,
};
use weir_operator::decide::{after_actions, decide};
use weir_operator::model::{Action, Desired, Observed, Restore};
use weir_operator::pod_failures::{ContainerFailure, ContainerFailureReason};

#[test]
fn create_deploys_restoring_the_latest_checkpoint_or_the_initial_savepoint() {
    let s = spec(2);
    let d = decide(
        &desired(1, &s),
        &StreamJobStatus::default(),
        &absent(),
        t(0),
    );
    assert_eq!(d.status.lifecycle_state, Some(L::Deploying));
    let deployed = d.status.deployed.clone().unwrap();
    assert_eq!(
        (deployed.generation, deployed.restore.as_str()),
        (1, "latest-checkpoint")
    );
    assert_eq!(
        effects(&d),
        [Action::Deploy {
            spec: Box::new(s.clone()),
            lineage: deployed.lineage.clone(),
            restore: Restore::LatestCheckpoint,
            migrate_lineage: None,
        }]
    );
    assert!(is_true(&d.status, "Reconciling"));
    assert!(!is_true(&d.status, "Ready"));

    let mut from = s.clone();
    from.job.initial_savepoint_path = Some(LOCATION.into());
    let d = decide(
        &desired(1, &from),
        &StreamJobStatus::default(),
        &absent(),
        t(0),
    );
    assert!(
        matches!(&effects(&d)[0], Action::Deploy { restore: Restore::Savepoint(l), .. } if l == LOCATION)
    );

    let mut suspended = s;
    suspended.job.state = JobState::Suspended;
    let d = decide(
        &desired(1, &suspended),
        &StreamJobStatus::default(),
        &absent(),
        t(0),
    );
    assert!(effects(&d).is_empty());
    assert_eq!(d.status.lifecycle_state, Some(L::Suspended));
}

#[test]
fn the_lifecycle_follows_the_job() {
    let s = spec(2);
    let created = decide(
        &desired(1, &s),
        &StreamJobStatus::default(),
        &absent(),
        t(0),
    )
    .status;
    let with = observed;
    // (from, observed, expected lifecycle, Ready, event)
    let table: Vec<(StreamJobStatus, Observed, L, bool, Option<&str>)> = vec![
        (
            created.clone(),
            with(JobRunState::Created, None),
            L::Deploying,
            false,
            None,
        ),
        (
            created.clone(),
            with(JobRunState::Running, None),
            L::Running,
            true,
            Some("JobRunning"),
        ),
        (
            created.clone(),
            with(JobRunState::Running, Some(1)),
            L::Stable,
            true,
            Some("JobStable"),
        ),
        (
            stable(),
            with(JobRunState::Restarting, Some(3)),
            L::Stable,
            false,
            None,
        ),
        (
            stable(),
            with(JobRunState::Failed, Some(3)),
            L::Failed,
            false,
            Some("JobFailed"),
        ),
        (
            stable(),
            with(JobRunState::Canceled, Some(3)),
            L::Failed,
            false,
            Some("JobFailed"),
        ),
        (
            stable(),
            with(JobRunState::Finished, Some(3)),
            L::Stable,
            true,
            None,
        ),
    ];
    for (i, (from, observed, want, ready, event)) in table.into_iter().enumerate() {
        let d = decide(&desired(1, &s), &from, &observed, t(30));
        assert_eq!(d.status.lifecycle_state, Some(want), "row {i}");
        assert_eq!(is_true(&d.status, "Ready"), ready, "row {i}");
        assert_eq!(events(&d).first().copied(), event, "row {i}");
        assert!(effects(&d).is_empty(), "row {i}: {:?}", d.actions);
        if want == L::Failed {
            assert!(is_true(&d.status, "Stalled"), "row {i}");
            assert!(d.status.error.as_deref().unwrap().contains("restartNonce"));
            // The event is sent once, not on every reconcile.
            let again = decide(&desired(1, &s), &d.status, &observed, t(40));
            assert!(events(&again).is_empty());
        }
    }
    // Stable records the last stable spec; the checkpoint lands in status.
    let st = stable();
    assert_eq!(st.last_stable.as_ref().unwrap().generation, 1);
    assert_eq!(st.last_checkpoint.as_ref().unwrap().id, 3);
    assert_eq!(condition(&st, "Ready"), ("True".into(), "Stable".into()));
    assert!(!is_true(&st, "Stalled") && !is_true(&st, "Reconciling"));
    // Failing checkpoints show as their own condition.
    let mut failing = running(Some(3));
    failing.job.as_mut().unwrap().failing_checkpoints = 2;
    let d = decide(&desired(1, &s), &st, &failing, t(30));
    assert!(is_true(&d.status, "CheckpointsFailing"));
    assert_eq!(d.status.consecutive_checkpoint_failures, 2);
}

#[test]
fn workload_objects_deleted_by_hand_are_applied_again_with_the_same_lineage() {
    let st = stable();
    let lineage = st.deployed.as_ref().unwrap().lineage.clone();
    let d = decide(&desired(1, &spec(2)), &st, &absent(), t(30));
    assert!(
        matches!(&effects(&d)[..], [Action::Deploy { lineage: l, restore: Restore::LatestCheckpoint, .. }] if *l == lineage)
    );
}

#[test]
fn an_oom_killed_worker_makes_the_job_not_ready_naming_the_limit_to_raise() {
    let st = stable();
    let message = "container `worker` of pod `j-workers-1` was OOMKilled (memory limit 32Mi, 2 restarts): raise spec.workers.resources.limits.memory";
    let oom = Observed {
        container_failures: vec![ContainerFailure {
            reason: ContainerFailureReason::OomKilled,
            message: message.into(),
        }],
        ..running(Some(3))
    };
    let d = decide(&desired(1, &spec(2)), &st, &oom, t(30));
    assert_eq!(
        condition(&d.status, "Ready"),
        ("False".into(), "OOMKilled".into())
    );
    let ready = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.message, message);
    // Running again: ready again.
    let d = decide(&desired(1, &spec(2)), &d.status, &running(Some(4)), t(40));
    assert!(is_true(&d.status, "Ready"));
}

#[test]
fn a_half_applied_deployment_is_completed_with_the_same_lineage() {
    let st = stable();
    let lineage = st.deployed.as_ref().unwrap().lineage.clone();
    // The coordinator's Deployment exists, the workers' StatefulSet does not.
    let half = Observed {
        pods_present: true,
        workloads_complete: false,
        ..Default::default()
    };
    let d = decide(&desired(1, &spec(2)), &st, &half, t(30));
    assert!(
        matches!(&effects(&d)[..], [Action::Deploy { lineage: l, restore: Restore::LatestCheckpoint, .. }] if *l == lineage)
    );
}

#[test]
fn a_refused_apply_stalls_the_generation_until_accepted_or_edited() {
    let mut from = spec(2);
    from.job.initial_savepoint_path = Some(LOCATION.into());
    let fixed_spec = from.clone();
    // A volume with two sources: valid for the CRD's schema, refused by the API server.
    from.workers
        .volumes
        .push(k8s_openapi::api::core::v1::Volume {
            name: "data".into(),
            empty_dir: Some(Default::default()),
            host_path: Some(k8s_openapi::api::core::v1::HostPathVolumeSource {
                path: "/tmp/data".into(),
                type_: None,
            }),
            ..Default::default()
        });
    let d = decide(
        &desired(1, &from),
        &StreamJobStatus::default(),
        &absent(),
        t(0),
    );
    let refused = "apply StatefulSet j-workers: spec.template.spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type (422 Invalid)";
    let st = after_actions(&d.status, 1, Some(refused.into()), t(1)).expect("recorded");
    assert_eq!(
        condition(&st, "Stalled"),
        ("True".into(), "ApplyRejected".into())
    );
    assert!(!is_true(&st, "Ready"));
    assert_eq!(st.error.as_deref(), Some(refused));
    // The same refusal again changes nothing (no second write, no second Event).
    assert_eq!(after_actions(&st, 1, Some(refused.into()), t(2)), None);

    // The next reconcile applies again and keeps the condition as it is (no flapping).
    let half = Observed {
        pods_present: true,
        workloads_complete: false,
        ..Default::default()
    };
    let again = decide(&desired(1, &from), &st, &half, t(60));
    assert!(matches!(&effects(&again)[..], [Action::Deploy { .. }]));
    assert_eq!(again.status.conditions, st.conditions);
    assert_eq!(again.status.error.as_deref(), Some(refused));

    // Accepted (what refused it changed): cleared.
    let cleared = after_actions(&again.status, 1, None, t(61)).expect("cleared");
    assert_eq!(cleared.rejected, None);
    assert_eq!(cleared.error, None);
    assert_eq!(condition(&cleared, "Stalled").0, "False");

    // Or the user edits the spec: the refusal of generation 1 no longer applies; the
    // deployment never ran, so the new one restores what it restored, checked against it,
    // with no savepoint asked of a job that does not run.
    let fixed = decide(&desired(2, &fixed_spec), &st, &half, t(90));
    assert_eq!(fixed.status.rejected, None);
    assert_eq!(condition(&fixed.status, "Stalled").0, "False");
    assert!(
        matches!(&effects(&fixed)[..], [Action::RunCheck { generation: 2, snapshot: Some(s), .. }] if s == LOCATION),
        "{:?}",
        effects(&fixed)
    );
    let d = decide(
        &desired(2, &fixed_spec),
        &fixed.status,
        &checked(half.clone(), 2, true),
        t(95),
    );
    assert_eq!(effects(&d), [Action::DeleteCluster]);
    let d = decide(&desired(2, &fixed_spec), &d.status, &absent(), t(100));
    assert!(
        matches!(&effects(&d)[..], [Action::Deploy { restore: Restore::Savepoint(l), .. }] if l == LOCATION),
        "{:?}",
        effects(&d)
    );
}

#[test]
fn a_rescale_takes_a_savepoint_records_it_deletes_the_old_pods_then_deploys_from_it() {
    let new = spec(3);
    let steps = upgrade_to(&new);
    let phases: Vec<Option<UpgradePhase>> = steps
        .iter()
        .map(|d| d.status.upgrade.as_ref().map(|u| u.phase))
        .collect();
    assert_eq!(
        phases,
        [
            Some(UpgradePhase::Checking),
            Some(UpgradePhase::Savepointing),
            Some(UpgradePhase::Savepointing),
            Some(UpgradePhase::Stopping),
            None
        ]
    );
    assert!(matches!(
        &effects(&steps[0])[..],
        [Action::RunCheck {
            generation: 2,
            snapshot: None,
            ..
        }]
    ));
    assert_eq!(events(&steps[0]), ["UpgradeStarted"]);
    assert_eq!(
        effects(&steps[1]),
        [Action::StopWithSavepoint {
            trigger_id: "upgrade-2-0".into(),
            directory: None
        }]
    );
    assert!(effects(&steps[2]).is_empty());
    assert_eq!(effects(&steps[3]), [Action::DeleteCluster]);
    let st = &steps[3].status;
    assert_eq!(
        st.upgrade
            .as_ref()
            .unwrap()
            .restore
            .as_ref()
            .map(Restore::as_str),
        Some(LOCATION)
    );
    assert_eq!(st.savepoints.last.as_ref().unwrap().location, LOCATION);
    assert_eq!(
        st.savepoints.last.as_ref().unwrap().kind,
        SavepointKind::Upgrade
    );
    let last = steps.last().unwrap();
    assert!(
        matches!(&effects(last)[..], [Action::Deploy { spec, restore: Restore::Savepoint(l), .. }] if spec.job.parallelism == 3 && l == LOCATION)
    );
    assert_eq!(last.status.lifecycle_state, Some(L::Deploying));
    assert_eq!(last.status.deployed.as_ref().unwrap().generation, 2);
    for d in &steps[..4] {
        assert_eq!(d.status.lifecycle_state, Some(L::Upgrading));
        assert!(is_true(&d.status, "Reconciling"));
    }
    // The new deployment becomes stable on its first checkpoint.
    let d = decide(&desired(2, &new), &last.status, &running(Some(8)), t(30));
    assert_eq!(d.status.lifecycle_state, Some(L::Stable));
    assert_eq!(d.status.last_stable.as_ref().unwrap().generation, 2);
}

#[test]
fn pods_are_never_deleted_before_the_savepoint_location_is_in_status() {
    for d in upgrade_to(&spec(3)) {
        if effects(&d).contains(&Action::DeleteCluster) {
            let up = d.status.upgrade.as_ref().unwrap();
            assert_eq!(up.restore.as_ref().map(Restore::as_str), Some(LOCATION));
        }
    }
}

#[test]
fn a_restarted_operator_repeats_the_same_idempotent_action_in_every_phase() {
    let steps = upgrade_to(&spec(3));
    let g = desired(2, &spec(3));
    // Checking: the check is started again for the same generation.
    let d = decide(&g, &steps[0].status, &running(Some(3)), t(100));
    assert!(matches!(
        &effects(&d)[..],
        [Action::RunCheck { generation: 2, .. }]
    ));
    // Savepointing, the coordinator does not know the trigger yet: the same id again.
    let d = decide(&g, &steps[1].status, &running(Some(3)), t(100));
    assert_eq!(
        effects(&d),
        [Action::StopWithSavepoint {
            trigger_id: "upgrade-2-0".into(),
            directory: None
        }]
    );
    // Savepointing, the job stopped meanwhile and reports the savepoint: go on.
    let stopped = observed(JobRunState::Stopped, Some(3));
    let d = decide(
        &g,
        &steps[1].status,
        &savepoint(stopped, "upgrade-2-0", SavepointState::Completed),
        t(100),
    );
    assert_eq!(effects(&d), [Action::DeleteCluster]);
    assert_eq!(
        d.status
            .upgrade
            .as_ref()
            .unwrap()
            .restore
            .as_ref()
            .map(Restore::as_str),
        Some(LOCATION)
    );
    // Stopping, pods still there: delete again; gone: deploy from the recorded location.
    let d = decide(&g, &steps[3].status, &running(Some(3)), t(100));
    assert_eq!(effects(&d), [Action::DeleteCluster]);
    let d = decide(&g, &steps[3].status, &absent(), t(100));
    assert!(
        matches!(&effects(&d)[..], [Action::Deploy { restore: Restore::Savepoint(l), .. }] if l == LOCATION)
    );
    // Deployed: the same deployment is applied again, never a second savepoint.
    let d = decide(&g, &steps[4].status, &absent(), t(100));
    let lineage = steps[4].status.deployed.as_ref().unwrap().lineage.clone();
    assert!(matches!(&effects(&d)[..], [Action::Deploy { lineage: l, .. }] if *l == lineage));
}

#[test]
fn an_incompatible_upgrade_is_blocked_and_the_old_job_keeps_running() {
    let mut new = spec(2);
    new.job.entry = "other".into();
    let g = desired(2, &new);
    let d = decide(&g, &stable(), &running(Some(3)), t(20));
    let d = decide(&g, &d.status, &checked(running(Some(3)), 2, false), t(21));
    assert!(effects(&d).is_empty(), "{:?}", d.actions);
    assert!(events(&d).contains(&"UpgradeBlocked"));
    let st = &d.status;
    assert_eq!(st.blocked_generation, Some(2));
    assert!(st.upgrade.is_none());
    assert_eq!(st.deployed.as_ref().unwrap().generation, 1);
    assert_eq!(
        condition(st, "UpgradeBlocked"),
        ("True".into(), "IncompatibleState".into())
    );
    assert!(is_true(st, "Stalled") && !is_true(st, "Ready"));
    assert!(st.error.as_deref().unwrap().contains("window"));
    // It stays blocked without checking again; the job is followed as before.
    let again = decide(&g, st, &running(Some(4)), t(40));
    assert!(effects(&again).is_empty());
    assert!(is_true(&again.status, "UpgradeBlocked"));
    assert_eq!(again.status.last_checkpoint.as_ref().unwrap().id, 4);
    // A new edit is tried again.
    let d = decide(
        &desired(3, &spec(2)),
        &again.status,
        &running(Some(4)),
        t(50),
    );
    assert!(
        effects(&d).is_empty(),
        "back to the deployed spec: {:?}",
        d.actions
    );
    let d = decide(
        &desired(4, &spec(3)),
        &again.status,
        &running(Some(4)),
        t(50),
    );
    assert!(matches!(
        &effects(&d)[..],
        [Action::RunCheck { generation: 4, .. }]
    ));
    assert!(!is_true(&d.status, "UpgradeBlocked"));
}

#[test]
fn a_max_parallelism_change_is_refused_in_every_upgrade_mode() {
    for mode in [
        UpgradeMode::Stateless,
        UpgradeMode::LastState,
        UpgradeMode::Savepoint,
    ] {
        let mut s = spec(2);
        s.job.upgrade_mode = mode;
        s.job.max_parallelism = 256;
        let d = decide(&desired(2, &s), &stable(), &running(Some(3)), t(20));
        // Nothing stops: the old job runs on, the change is blocked with the CRD's message.
        assert!(
            !effects(&d)
                .iter()
                .any(|a| matches!(a, Action::DeleteCluster | Action::Deploy { .. })),
            "{mode:?}: {:?}",
            effects(&d)
        );
        assert_eq!(d.status.blocked_generation, Some(2), "{mode:?}");
        assert_eq!(
            d.status.error.as_deref(),
            Some(weir_crds::MAX_PARALLELISM_FIXED)
        );
    }
}

#[test]
fn each_upgrade_mode_carries_state_its_own_way() {
    let with_mode = |mode: UpgradeMode| {
        let mut s = spec(3);
        s.job.upgrade_mode = mode;
        s
    };
    // last-state: checked, then straight to stopping with the latest checkpoint.
    let s = with_mode(UpgradeMode::LastState);
    let d = decide(&desired(2, &s), &stable(), &running(Some(3)), t(20));
    assert!(matches!(&effects(&d)[..], [Action::RunCheck { .. }]));
    let d = decide(
        &desired(2, &s),
        &d.status,
        &checked(running(Some(3)), 2, true),
        t(21),
    );
    assert_eq!(effects(&d), [Action::DeleteCluster]);
    assert_eq!(
        d.status
            .upgrade
            .as_ref()
            .unwrap()
            .restore
            .as_ref()
            .map(Restore::as_str),
        Some("latest-checkpoint")
    );
    // stateless: no check, nothing restored.
    let s = with_mode(UpgradeMode::Stateless);
    let d = decide(&desired(2, &s), &stable(), &running(Some(3)), t(20));
    assert_eq!(effects(&d), [Action::DeleteCluster]);
    let d = decide(&desired(2, &s), &d.status, &absent(), t(21));
    assert!(matches!(
        &effects(&d)[..],
        [Action::Deploy {
            restore: Restore::Nothing,
            ..
        }]
    ));
    // savepoint, but the job failed: the latest checkpoint (fallback allowed by default)...
    let failed = observed(JobRunState::Failed, Some(3));
    let s = with_mode(UpgradeMode::Savepoint);
    let d = decide(&desired(2, &s), &stable(), &failed, t(20));
    let d = decide(
        &desired(2, &s),
        &d.status,
        &checked(failed.clone(), 2, true),
        t(21),
    );
    assert_eq!(effects(&d), [Action::DeleteCluster]);
    assert!(events(&d).contains(&"LastStateFallback"));
    assert_eq!(
        d.status
            .upgrade
            .as_ref()
            .unwrap()
            .restore
            .as_ref()
            .map(Restore::as_str),
        Some("latest-checkpoint")
    );
    // ...or, with the fallback off, it waits for the job.
    let mut s = s;
    s.upgrade.last_state_fallback = false;
    let d = decide(&desired(2, &s), &stable(), &failed, t(20));
    let d = decide(&desired(2, &s), &d.status, &checked(failed, 2, true), t(21));
    assert!(effects(&d).is_empty());
    assert!(d
        .status
        .error
        .as_deref()
        .unwrap()
        .contains("lastStateFallback"));
}

#[test]
fn a_failing_savepoint_is_retried_then_the_upgrade_is_given_up() {
    let new = spec(3);
    let g = desired(2, &new);
    let mut st = upgrade_to(&new)[1].status.clone();
    for attempt in 0..3 {
        let id = format!("upgrade-2-{attempt}");
        let d = decide(
            &g,
            &st,
            &savepoint(running(Some(3)), &id, SavepointState::Failed),
            t(30),
        );
        assert!(events(&d).contains(&"SavepointFailed"));
        st = d.status.clone();
        if attempt < 2 {
            assert_eq!(
                effects(&d),
                [Action::StopWithSavepoint {
                    trigger_id: format!("upgrade-2-{}", attempt + 1),
                    directory: None
                }]
            );
        } else {
            assert!(effects(&d).is_empty());
            assert!(st.upgrade.is_none());
            assert_eq!(st.blocked_generation, Some(2));
            assert_eq!(
                condition(&st, "Stalled"),
                ("True".into(), "UpgradeFailed".into())
            );
        }
    }
}

#[test]
fn suspend_stops_with_a_savepoint_and_resume_restores_it() {
    let mut suspended = spec(2);
    suspended.job.state = JobState::Suspended;
    let g = desired(2, &suspended);
    let d = decide(&g, &stable(), &running(Some(3)), t(20));
    assert_eq!(
        effects(&d),
        [Action::StopWithSavepoint {
            trigger_id: "upgrade-2-0".into(),
            directory: None
        }],
        "no pre-flight check when suspending"
    );
    let d = decide(
        &g,
        &d.status,
        &savepoint(running(Some(3)), "upgrade-2-0", SavepointState::Completed),
        t(21),
    );
    assert_eq!(effects(&d), [Action::DeleteCluster]);
    assert_eq!(
        d.status.savepoints.last.as_ref().unwrap().kind,
        SavepointKind::Suspend
    );
    let d = decide(&g, &d.status, &absent(), t(22));
    assert!(effects(&d).is_empty());
    assert_eq!(d.status.lifecycle_state, Some(L::Suspended));
    assert!(is_true(&d.status, "Ready"));
    assert_eq!(
        d.status.deployed.as_ref().unwrap().restore.as_str(),
        LOCATION
    );
    let suspended_status = decide(&g, &d.status, &absent(), t(60)).status;
    assert_eq!(suspended_status.lifecycle_state, Some(L::Suspended));

    // Resume: checked against the savepoint, then deployed from it.
    let g = desired(3, &spec(2));
    let d = decide(&g, &suspended_status, &absent(), t(100));
    assert!(
        matches!(&effects(&d)[..], [Action::RunCheck { generation: 3, snapshot: Some(s), .. }] if s == LOCATION)
    );
    let d = decide(&g, &d.status, &checked(absent(), 3, true), t(101));
    assert_eq!(effects(&d), [Action::DeleteCluster]);
    let d = decide(&g, &d.status, &absent(), t(102));
    assert!(
        matches!(&effects(&d)[..], [Action::Deploy { restore: Restore::Savepoint(l), .. }] if l == LOCATION)
    );
}

#[test]
fn manual_and_periodic_savepoints_and_history_pruning() {
    let mut s = spec(2);
    s.job.savepoint_trigger_nonce = Some(5);
    let g = desired(2, &s);
    // A nonce-only edit restarts nothing; the savepoint is triggered with its own id.
    let d = decide(&g, &stable(), &running(Some(3)), t(20));
    assert_eq!(
        effects(&d),
        [Action::TriggerSavepoint {
            trigger_id: "manual-5".into(),
            directory: None
        }]
    );
    assert_eq!(d.status.deployed.as_ref().unwrap().generation, 2);
    assert_eq!(
        d.status.savepoints.pending.as_ref().unwrap().trigger_id,
        "manual-5"
    );
    // Restarted operator, coordinator has not seen it: same id again.
    let again = decide(&g, &d.status, &running(Some(3)), t(21));
    assert_eq!(effects(&again), effects(&d));
    let d = decide(
        &g,
        &d.status,
        &savepoint(running(Some(3)), "manual-5", SavepointState::Completed),
        t(22),
    );
    assert!(effects(&d).is_empty());
    assert_eq!(d.status.savepoints.last_trigger_nonce, Some(5));
    assert_eq!(d.status.savepoints.history.len(), 1);
    let d = decide(&g, &d.status, &running(Some(3)), t(23));
    assert!(effects(&d).is_empty(), "a handled nonce triggers nothing");

    // Periodic: due after the interval since deployment.
    let mut p = s.clone();
    p.savepoints.periodic_interval = Some("1h".into());
    let g = desired(3, &p);
    let d = decide(&g, &d.status, &running(Some(3)), t(1800));
    assert!(effects(&d).is_empty());
    let d = decide(&g, &d.status, &running(Some(3)), t(3700));
    assert!(
        matches!(&effects(&d)[..], [Action::TriggerSavepoint { trigger_id, .. }] if trigger_id.starts_with("periodic-"))
    );

    // Pruning: beyond historyMaxCount, the oldest go with their files; never the newest.
    let mut st = d.status.clone();
    st.savepoints.pending = None;
    st.savepoints.history = (0..4)
        .map(|i| weir_crds::SavepointInfo {
            location: format!("file:///sp/{i}"),
            time: t(i).to_string(),
            kind: SavepointKind::Manual,
            trigger_id: format!("m{i}"),
        })
        .collect();
    st.savepoints.last = st.savepoints.history.last().cloned();
    st.savepoints.last_periodic = Some(t(3700).to_string());
    let mut q = p.clone();
    q.savepoints.history_max_count = 2;
    let d = decide(&desired(4, &q), &st, &running(Some(3)), t(3800));
    assert_eq!(
        effects(&d),
        [
            Action::DisposeSavepoint {
                location: "file:///sp/0".into()
            },
            Action::DisposeSavepoint {
                location: "file:///sp/1".into()
            }
        ]
    );
    assert_eq!(d.status.savepoints.history.len(), 2);
    q.savepoints.history_max_age = Some("10s".into());
    let d = decide(&desired(5, &q), &d.status, &running(Some(3)), t(3800));
    assert_eq!(
        effects(&d),
        [Action::DisposeSavepoint {
            location: "file:///sp/2".into()
        }]
    );
    assert_eq!(d.status.savepoints.history.len(), 1, "the newest is kept");
}

#[test]
fn an_upgrade_that_does_not_become_stable_rolls_back_when_enabled() {
    let mut new = spec(3);
    new.upgrade.rollback = true;
    new.upgrade.stable_timeout = "5m".into();
    let steps = upgrade_to(&new);
    let g = desired(2, &new);
    let deployed = steps.last().unwrap().status.clone();
    let d = decide(&g, &deployed, &running(None), t(60));
    assert_eq!(d.status.lifecycle_state, Some(L::Running));
    assert!(effects(&d).is_empty());
    let d = decide(&g, &d.status, &running(None), t(24 + 301));
    assert_eq!(d.status.lifecycle_state, Some(L::RollingBack));
    assert_eq!(effects(&d), [Action::DeleteCluster]);
    assert!(events(&d).contains(&"RollingBack"));
    let up = d.status.upgrade.clone().unwrap();
    assert!(up.rollback);
    assert_eq!(
        (
            up.target_generation,
            up.restore.as_ref().map(Restore::as_str)
        ),
        (1, Some(LOCATION))
    );
    let d = decide(&g, &d.status, &absent(), t(400));
    assert!(
        matches!(&effects(&d)[..], [Action::Deploy { spec, restore: Restore::Savepoint(l), .. }] if spec.job.parallelism == 2 && l == LOCATION)
    );
    assert_eq!(d.status.lifecycle_state, Some(L::RollingBack));
    let d = decide(&g, &d.status, &running(None), t(410));
    assert_eq!(d.status.lifecycle_state, Some(L::RolledBack));
    assert_eq!(
        condition(&d.status, "Stalled"),
        ("True".into(), "RolledBack".into())
    );
    let d = decide(&g, &d.status, &running(Some(9)), t(420));
    assert_eq!(d.status.lifecycle_state, Some(L::RolledBack));
    assert!(effects(&d).is_empty());
    // Without rollback the upgraded job is left as it is.
    let steps = upgrade_to(&spec(3));
    let d = decide(
        &desired(2, &spec(3)),
        &steps.last().unwrap().status,
        &running(None),
        t(1000),
    );
    assert_eq!(d.status.lifecycle_state, Some(L::Running));
}

#[test]
fn deletion_cancels_or_takes_a_final_savepoint_then_releases_the_finalizer() {
    let gone = |s: &StreamJobSpec| Desired {
        deleting: true,
        ..desired(1, s)
    };
    let s = spec(2);
    let d = decide(&gone(&s), &stable(), &running(Some(3)), t(20));
    assert_eq!(effects(&d), [Action::DeleteCluster]);
    assert_eq!(d.status.lifecycle_state, Some(L::Deleting));
    let d = decide(&gone(&s), &d.status, &absent(), t(21));
    assert_eq!(effects(&d), [Action::RemoveFinalizer]);

    let mut keep = s;
    keep.savepoints.on_deletion = true;
    let d = decide(&gone(&keep), &stable(), &running(Some(3)), t(20));
    assert_eq!(
        effects(&d),
        [Action::StopWithSavepoint {
            trigger_id: "delete-1".into(),
            directory: None
        }]
    );
    let d = decide(
        &gone(&keep),
        &d.status,
        &savepoint(running(Some(3)), "delete-1", SavepointState::Completed),
        t(21),
    );
    assert_eq!(effects(&d), [Action::DeleteCluster]);
    assert_eq!(
        d.status.savepoints.last.as_ref().unwrap().kind,
        SavepointKind::Deletion
    );
    let d = decide(&gone(&keep), &d.status, &absent(), t(22));
    assert_eq!(effects(&d), [Action::RemoveFinalizer]);
}

#[test]
fn a_newer_spec_during_the_check_replaces_the_target() {
    let d = decide(&desired(2, &spec(3)), &stable(), &running(Some(3)), t(20));
    let d = decide(
        &desired(3, &spec(4)),
        &d.status,
        &checked(running(Some(3)), 2, true),
        t(21),
    );
    assert!(
        matches!(&effects(&d)[..], [Action::RunCheck { generation: 3, spec, .. }] if spec.job.parallelism == 4)
    );
}

#[test]
fn condition_transition_times_change_only_with_their_status() {
    let st = stable();
    let before = st.conditions.clone();
    let d = decide(&desired(1, &spec(2)), &st, &running(Some(4)), t(500));
    for (a, b) in before.iter().zip(&d.status.conditions) {
        assert_eq!(
            a.last_transition_time, b.last_transition_time,
            "{}",
            a.type_
        );
    }
    let d = decide(
        &desired(1, &spec(2)),
        &d.status,
        &observed(JobRunState::Failed, Some(4)),
        t(600),
    );
    let ready = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.last_transition_time.0, t(600));
}
