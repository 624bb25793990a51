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
    let savepoints_dir = job
        .storage
        .join(weir_e2e::processes::NAMESPACE)
        .join(&job.name)
        .join("savepoints");
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

/// Triggers a savepoint of the running job (`job.savepointTriggerNonce`) and returns its
/// location.
fn manual_savepoint(
    shell: &mut ProcessShell,
    spec: &StreamJobSpec,
    generation: i64,
    st: &mut StreamJobStatus,
) -> String {
    let mut with_nonce = spec.clone();
    with_nonce.job.savepoint_trigger_nonce = Some(generation);
    drive(
        shell,
        &desired(generation, &with_nonce),
        st,
        STEP,
        |_| false,
        |st, _| {
            st.savepoints.pending.is_none()
                && st
                    .savepoints
                    .last
                    .as_ref()
                    .is_some_and(|s| s.kind == SavepointKind::Manual)
        },
    );
    st.savepoints.last.clone().unwrap().location
}

/// Deletes the StreamJob of `shell`: its processes go, then the finalizer.
fn delete(shell: &mut ProcessShell, spec: &StreamJobSpec, generation: i64, st: &StreamJobStatus) {
    let gone = Desired {
        deleting: true,
        ..desired(generation, spec)
    };
    let mut st = st.clone();
    for _ in 0..3 {
        let observed = shell.observe(&st);
        let d = decide(&gone, &st, &observed, k8s_openapi::jiff::Timestamp::now());
        st = d.status;
        shell.act(&d.actions);
    }
    assert!(shell.finalizer_removed && shell.admin().is_none());
}

/// Creates StreamJob `uid` with `spec` and drives it until it is stable; its status.
fn create(shell: &mut ProcessShell, spec: &StreamJobSpec) -> StreamJobStatus {
    let mut st = StreamJobStatus::default();
    drive(
        shell,
        &desired(1, spec),
        &mut st,
        STEP,
        |_| false,
        stable_at(1),
    );
    st
}

#[test]
fn a_re_created_stream_job_starts_empty_unless_it_names_what_to_restore() {
    let job = example_job(|d| {
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "3000".into();
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
        d["spec"]["stateBackend"] = "heap".into();
    });
    let text = std::fs::read_to_string(&job.manifest).unwrap();
    let spec = weir_crds::load_manifest(&text).unwrap().spec.spec;
    let root = job
        .storage
        .join(weir_e2e::processes::NAMESPACE)
        .join(&job.name);

    // The first StreamJob: checkpoints, a savepoint, then deleted.
    let mut first = ProcessShell::with_uid(job.dir.path(), &job.name, "uid-first");
    let mut st = create(&mut first, &spec);
    let savepoint = manual_savepoint(&mut first, &spec, 2, &mut st);
    let first_checkpoint = st.last_checkpoint.clone().unwrap();
    // A StreamJob's savepoints stay in its own storage: a savepoint into, or a disposal of,
    // another directory is refused (and nothing there is touched).
    let elsewhere = job.dir.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("savepoint-1-1")).unwrap();
    std::fs::write(elsewhere.join("savepoint-1-1/_metadata"), b"not ours").unwrap();
    for (path, body) in [
        (
            "/v1/savepoints",
            format!(r#"{{"directory": "file://{}"}}"#, elsewhere.display()),
        ),
        (
            "/v1/savepoint-disposal",
            format!(
                r#"{{"location": "file://{}/savepoint-1-1"}}"#,
                elsewhere.display()
            ),
        ),
    ] {
        let (status, answer) = first.admin_call("POST", path, Some(&body));
        assert_eq!(status, 403, "{path}: {answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["code"], "outside_job_storage", "{answer}");
    }
    assert!(elsewhere.join("savepoint-1-1/_metadata").exists());
    delete(&mut first, &spec, 2, &st);

    // Re-created under the same name (another UID): it starts empty, and the first one's
    // checkpoints stay, listed as a predecessor's orphans.
    let mut second = ProcessShell::with_uid(job.dir.path(), &job.name, "uid-second");
    // Its own output directory: a job that starts over writes the part files the first one's
    // savepoint still names.
    let mut elsewhere = spec.clone();
    elsewhere.job.args.insert(
        "output".into(),
        job.dir.path().join("output-second").display().to_string(),
    );
    let st = create(&mut second, &elsewhere);
    let job_status = st.job.clone().unwrap();
    assert_eq!(job_status.restored_from, None, "{job_status:?}");
    assert!(
        st.last_checkpoint.as_ref().unwrap().id > first_checkpoint.id,
        "new checkpoint ids above the predecessor's"
    );
    let chk_path = first_checkpoint.path.strip_prefix("file://").unwrap();
    assert!(std::path::Path::new(chk_path).join("_metadata").exists());
    let storage = weir_runtime::storage::LocalStorage::new(root.clone());
    let orphans = weir_runtime::checkpoint::gc::scan_job(&storage).unwrap();
    let chk_dir = format!("checkpoints/chk-{}/_metadata", first_checkpoint.id);
    assert!(
        orphans
            .iter()
            .any(|o| o.path == chk_dir && o.reason.contains("predecessor")),
        "{orphans:?}"
    );
    // Its own upgrades through a savepoint delete its own older checkpoints only.
    let mut st = st;
    let mut rescaled = elsewhere.clone();
    rescaled.job.parallelism += 1;
    drive(
        &mut second,
        &desired(2, &rescaled),
        &mut st,
        STEP,
        |_| false,
        stable_at(2),
    );
    assert!(
        std::path::Path::new(chk_path).join("_metadata").exists(),
        "the predecessor's checkpoint outlives the new job's savepoint restore"
    );
    delete(&mut second, &rescaled, 2, &st);

    // Re-created naming the first one's savepoint: exactly that is restored.
    let mut from_savepoint = spec.clone();
    from_savepoint.restore = Some(weir_crds::InitialRestore::Savepoint(savepoint.clone()));
    let mut third = ProcessShell::with_uid(job.dir.path(), &job.name, "uid-third");
    let st = create(&mut third, &from_savepoint);
    assert_eq!(
        st.job.as_ref().unwrap().restored_from.as_deref(),
        Some(savepoint.as_str())
    );
    let third_checkpoint = st.last_checkpoint.clone().unwrap();
    delete(&mut third, &from_savepoint, 1, &st);

    // Re-created with `restore: latest-checkpoint`: the predecessor's latest checkpoint.
    let mut adopt = spec.clone();
    adopt.restore = Some(weir_crds::InitialRestore::LatestCheckpoint);
    let mut fourth = ProcessShell::with_uid(job.dir.path(), &job.name, "uid-fourth");
    let st = create(&mut fourth, &adopt);
    let restored = st.job.as_ref().unwrap().restored_from.clone().unwrap();
    let restored_id: i64 = restored
        .rsplit("chk-")
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a checkpoint of the root: {restored}"));
    assert!(restored.starts_with(&format!("file://{}/checkpoints/", root.display())));
    assert!(restored_id >= third_checkpoint.id, "{restored}");
    delete(&mut fourth, &adopt, 1, &st);
}

#[test]
fn a_job_deployed_before_per_namespace_roots_keeps_its_state() {
    let job = example_job(|d| {
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "20000".into();
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
    });
    let text = std::fs::read_to_string(&job.manifest).unwrap();
    let spec = weir_crds::load_manifest(&text).unwrap().spec.spec;
    // The job as an operator before per-namespace roots deployed it: the manifest's name only
    // (root `<storage>/<name>/`), deployment 1-100; killed after a checkpoint.
    let legacy = weir_e2e::cluster::Cluster::start(&job, 1, &["--lineage", "1-100"]);
    legacy.wait_checkpoints(2, Duration::from_secs(60));
    drop(legacy);
    let legacy_root = job.storage.join(&job.name);
    assert!(legacy_root.join("_lineage").exists());

    // Its status, as that operator wrote it (no storage layout), with its pods gone.
    let status: StreamJobStatus = serde_json::from_value(serde_json::json!({
        "observedGeneration": 1,
        "lifecycleState": "Stable",
        "deployed": {
            "generation": 1,
            "spec": serde_json::to_string(&spec).unwrap(),
            "lineage": "1-100",
            "restore": "latest-checkpoint",
            "time": "2026-12-01T10:00:00Z",
        },
    }))
    .unwrap();
    let mut st = status;
    let mut shell = ProcessShell::new(job.dir.path(), &job.name);
    // The operator re-creates the workloads: the coordinator migrates the legacy root's
    // latest checkpoint of deployment 1-100 and runs to the end in its own root.
    let mut migrated = None;
    drive(
        &mut shell,
        &desired(1, &spec),
        &mut st,
        Duration::from_secs(300),
        |actions| {
            for a in actions {
                if let Action::Deploy {
                    migrate_lineage, ..
                } = a
                {
                    migrated = Some(migrate_lineage.clone());
                }
            }
            false
        },
        |st, _| {
            st.job
                .as_ref()
                .is_some_and(|j| j.state == JobRunState::Finished)
        },
    );
    assert_eq!(migrated, Some(Some("1-100".to_string())));
    let restored = st.job.as_ref().unwrap().restored_from.clone().unwrap();
    assert!(
        restored.starts_with(&format!(
            "file://{}/checkpoints/chk-",
            legacy_root.display()
        )),
        "{restored}"
    );
    let new_root = job
        .storage
        .join(weir_e2e::processes::NAMESPACE)
        .join(&job.name);
    assert!(new_root.join("_lineage").exists());
    assert!(new_root.join("checkpoints").exists());
    // Exactly once across the kill and the move.
    assert_eq!(job.output_lines(), reference_retail_revenue());
}
