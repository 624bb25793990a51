//! The operator's decide function driving real `weir` coordinator and worker processes
//! through a job's life: create -> rescale 2 -> 3 with a savepoint -> an argument change ->
//! an incompatible change, blocked while the old job keeps running -> suspend -> resume, then
//! the input ends and the output is compared with the reference computation (exactly once
//! across four stops with savepoints). One operator crash is simulated right after it wrote
//! a savepoint trigger id to status: no second savepoint is taken.

use std::time::Duration;

use weir_crds::{
    JobRunState, JobState, LifecycleState as L, SavepointKind, StreamJobSpec, StreamJobStatus,
};
use weir_e2e::processes::{drive, ProcessShell};
use weir_e2e::{example_job, reference_retail_revenue};
use weir_operator::decide::decide;
use weir_operator::model::{Action, Desired};

const STEP: Duration = Duration::from_secs(120);

fn desired(generation: i64, spec: &StreamJobSpec) -> Desired {
    Desired {
        generation,
        spec: weir_crds::validate_spec(spec).expect("a valid spec"),
        deleting: false,
    }
}

fn stable_at(
    generation: i64,
) -> impl Fn(&StreamJobStatus, &weir_operator::model::Observed) -> bool {
    move |st, _| {
        st.lifecycle_state == Some(L::Stable)
            && st
                .deployed
                .as_ref()
                .is_some_and(|d| d.generation == generation)
            && st.upgrade.is_none()
    }
}

fn condition(st: &StreamJobStatus, type_: &str) -> String {
    st.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

#[test]
fn the_decide_function_drives_a_job_through_rescale_upgrade_block_suspend_and_resume() {
    let job = example_job(|d| {
        d["spec"]["job"]["parallelism"] = 2.into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "6000".into();
        d["spec"]["checkpointing"]["interval"] = "500ms".into();
        d["spec"]["stateBackend"] = "heap".into();
    });
    let text = std::fs::read_to_string(&job.manifest).unwrap();
    let mut spec = weir_crds::load_manifest(&text).unwrap().spec.spec;
    let mut shell = ProcessShell::new(job.dir.path(), &job.name);
    let mut st = StreamJobStatus::default();
    let never = |_: &[Action]| false;

    // Create: deployed, running, stable after its first checkpoint.
    drive(
        &mut shell,
        &desired(1, &spec),
        &mut st,
        STEP,
        never,
        stable_at(1),
    );
    assert_eq!(shell.workers(), 2);
    assert_eq!(condition(&st, "Ready"), "True");

    // Rescale 2 -> 3: a savepoint, then the job restored from it on 3 workers. The operator
    // "crashes" right after recording the stop-with-savepoint intent: the next reconcile asks
    // again with the same trigger id.
    spec.job.parallelism = 3;
    let mut crashed = false;
    let crash_once = |actions: &[Action]| {
        let stop = actions
            .iter()
            .any(|a| matches!(a, Action::StopWithSavepoint { .. }));
        let skip = stop && !crashed;
        crashed |= stop;
        skip
    };
    drive(
        &mut shell,
        &desired(2, &spec),
        &mut st,
        STEP,
        crash_once,
        stable_at(2),
    );
    let rescale = st.savepoints.last.clone().expect("upgrade savepoint");
    assert_eq!(rescale.kind, SavepointKind::Upgrade);
    assert_eq!(rescale.trigger_id, "upgrade-2-0");
    assert_eq!(st.job.as_ref().unwrap().parallelism, 3);
    assert_eq!(
        st.job.as_ref().unwrap().restored_from.as_deref(),
        Some(rescale.location.as_str())
    );
    assert_eq!(shell.workers(), 3);
    let savepoints_dir = job.storage.join(&job.name).join("savepoints");
    assert_eq!(
        std::fs::read_dir(&savepoints_dir).unwrap().count(),
        1,
        "exactly one savepoint for the rescale"
    );

    // An argument change: another savepoint and redeploy.
    spec.job
        .args
        .insert("maxRecordsPerSecond".into(), "7000".into());
    drive(
        &mut shell,
        &desired(3, &spec),
        &mut st,
        STEP,
        never,
        stable_at(3),
    );
    let upgrade = st.savepoints.last.clone().unwrap();
    assert_eq!(upgrade.trigger_id, "upgrade-3-0");
    assert_ne!(upgrade.location, rescale.location);
    let running_job = st.job.clone().unwrap();

    // An incompatible change (other max parallelism): refused before any check, with the
    // message of the CRD's rule that refuses the same edit on a cluster; nothing stops.
    let mut incompatible = spec.clone();
    incompatible.job.max_parallelism = 256;
    let before = st.last_checkpoint.as_ref().unwrap().id;
    drive(
        &mut shell,
        &desired(4, &incompatible),
        &mut st,
        STEP,
        never,
        |st, _| st.blocked_generation == Some(4),
    );
    assert_eq!(condition(&st, "UpgradeBlocked"), "True");
    assert_eq!(condition(&st, "Stalled"), "True");
    assert_eq!(
        st.error.as_deref(),
        Some(weir_crds::MAX_PARALLELISM_FIXED),
        "{:?}",
        st.error
    );
    // The old job runs on: same job, new checkpoints.
    drive(
        &mut shell,
        &desired(4, &incompatible),
        &mut st,
        STEP,
        never,
        |st, _| st.last_checkpoint.as_ref().unwrap().id > before + 1,
    );
    assert_eq!(st.job.as_ref().unwrap().id, running_job.id);
    assert_eq!(st.job.as_ref().unwrap().state, JobRunState::Running);
    assert_eq!(st.deployed.as_ref().unwrap().generation, 3);

    // Suspend: stop with a savepoint, no processes left.
    let mut suspended = spec.clone();
    suspended.job.state = JobState::Suspended;
    drive(
        &mut shell,
        &desired(5, &suspended),
        &mut st,
        STEP,
        never,
        |st, _| st.lifecycle_state == Some(L::Suspended),
    );
    assert!(shell.admin().is_none());
    let suspend = st.savepoints.last.clone().unwrap();
    assert_eq!(suspend.kind, SavepointKind::Suspend);
    assert_eq!(condition(&st, "Ready"), "True");

    // Resume: checked against the suspend savepoint, restored from it; runs to the end.
    drive(
        &mut shell,
        &desired(6, &spec),
        &mut st,
        Duration::from_secs(300),
        never,
        |st, _| {
            st.job
                .as_ref()
                .is_some_and(|j| j.state == JobRunState::Finished)
                && st.deployed.as_ref().is_some_and(|d| d.generation == 6)
        },
    );
    assert_eq!(
        st.job.as_ref().unwrap().restored_from.as_deref(),
        Some(suspend.location.as_str())
    );
    let reasons: Vec<&str> = shell.events.iter().map(|(r, _)| r.as_str()).collect();
    for expected in [
        "Deploying",
        "UpgradeStarted",
        "SavepointCompleted",
        "UpgradeBlocked",
        "Suspended",
        "JobStable",
    ] {
        assert!(
            reasons.contains(&expected),
            "no {expected} event in {reasons:?}"
        );
    }
    // Four deployments (create, rescale, args, resume), each with its own lineage.
    let lineages: std::collections::BTreeSet<&String> =
        shell.deployed.iter().map(|(l, _)| l).collect();
    assert_eq!(lineages.len(), 4, "{:?}", shell.deployed);

    // Exactly once across every stop and restore.
    assert_eq!(job.output_lines(), reference_retail_revenue());

    // Deletion: the processes go, then the finalizer.
    let gone = Desired {
        deleting: true,
        ..desired(6, &spec)
    };
    for _ in 0..3 {
        let observed = shell.observe(&st);
        let d = decide(&gone, &st, &observed, k8s_openapi::jiff::Timestamp::now());
        st = d.status;
        shell.act(&d.actions);
    }
    assert!(shell.finalizer_removed);
    assert!(shell.admin().is_none());
    assert_eq!(st.lifecycle_state, Some(L::Deleting));
}
