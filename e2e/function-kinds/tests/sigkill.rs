//! Every kind of user function through the job's own binary (`function-kinds run`): its
//! outputs equal the reference after SIGKILLs at random points (mid-checkpoint included), and
//! after rescales 2 -> 3 -> 1 through savepoints that switch the state backend (keyed state,
//! timers and broadcast state redistributed, the event sources' splits resumed).

use std::path::{Path, PathBuf};

use weir_e2e::{
    assert_success, kill_at_random_points, manifest_job, read_output, test_seed, TestJob,
};
use weir_function_kinds::{first_difference, reference, OUTPUTS};

const EVENTS: u64 = 30_000;

fn job(edit: impl FnOnce(&mut serde_yaml::Value)) -> TestJob {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("job.yaml");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_function-kinds"));
    manifest_job(bin, &manifest, |d| {
        d["spec"]["job"]["args"]["events"] = EVENTS.to_string().into();
        edit(d);
    })
}

/// Asserts that each of `outputs` under the job's output equals the reference at
/// `parallelism`.
fn assert_reference(job: &TestJob, parallelism: u32, outputs: &[&str], what: &str) {
    let reference = reference(EVENTS, parallelism);
    for name in outputs {
        assert!(!reference[name].is_empty(), "{name}");
        let diff = first_difference(&read_output(&job.output.join(name)), &reference[name]);
        assert!(diff.is_none(), "{what}: {name}: {diff:?}");
    }
}

#[test]
fn every_function_kind_is_exactly_once_after_sigkills_at_random_points() {
    let clean = job(|_| {});
    assert_success(&clean.run(&[]));
    assert_reference(&clean, 2, &OUTPUTS, "uninterrupted");

    let killed = job(|d| {
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "2500".into();
    });
    let kills = kill_at_random_points(&killed, 6, test_seed());
    eprintln!("{kills:?}");
    assert!(kills.total >= 5, "only {} kills landed", kills.total);
    assert!(
        kills.during_checkpoint >= 2,
        "only {} mid-checkpoint",
        kills.during_checkpoint
    );
    assert!(
        !killed.complete_checkpoints().is_empty(),
        "the killed runs made progress"
    );
    assert_success(&killed.run(&[]));
    assert_reference(&killed, 2, &OUTPUTS, "killed and resumed");
}

#[test]
fn state_timers_and_broadcast_state_survive_rescales_through_savepoints() {
    let job = job(|d| {
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "2500".into();
    });
    let mut savepoint: Option<String> = None;
    for (parallelism, backend) in [(2, "rocksdb"), (3, "heap")] {
        job.edit(|d| {
            d["spec"]["job"]["parallelism"] = parallelism.into();
            d["spec"]["stateBackend"] = backend.into();
        });
        let mut cmd = std::process::Command::new(&job.bin);
        cmd.arg("run")
            .arg(&job.manifest)
            .args(["--progress-interval", "0s"]);
        if let Some(sp) = &savepoint {
            cmd.args(["--from-savepoint", sp]);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        job.wait_for_a_new_checkpoint();
        savepoint = Some(job.savepoint(None));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
    job.edit(|d| {
        d["spec"]["job"]["parallelism"] = 1.into();
        d["spec"]["stateBackend"] = "rocksdb".into();
        d["spec"]["job"]["args"]
            .as_mapping_mut()
            .unwrap()
            .remove("maxRecordsPerSecond");
    });
    let sp = savepoint.expect("two savepoints taken");
    assert_success(&job.run(&["--from-savepoint", &sp]));
    // The milestones count per subtask: their numbering depends on the parallelism history.
    let outputs: Vec<&str> = OUTPUTS
        .iter()
        .copied()
        .filter(|o| *o != "milestones")
        .collect();
    assert_reference(&job, 1, &outputs, "rescaled 2 -> 3 -> 1");
}

#[test]
fn the_manifest_validates_against_the_binary_that_registers_the_job() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_function-kinds"))
        .arg("validate")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("job.yaml"))
        .output()
        .expect("spawn");
    assert_success(&out);
}

#[test]
fn a_changed_state_descriptor_is_refused_by_check_and_by_restore_naming_the_state() {
    let job = job(|d| d["spec"]["job"]["args"]["events"] = "2000".into());
    assert_success(&job.run(&[]));
    let check = || {
        std::process::Command::new(&job.bin)
            .arg("check")
            .arg(&job.manifest)
            .output()
            .expect("spawn")
    };
    job.edit(|d| d["spec"]["job"]["args"]["alertsSeenVersion"] = "2".into());
    let out = check();
    assert_eq!(out.status.code(), Some(3), "incompatible");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["compatible"], false);
    let reasons = report["reasons"].to_string();
    assert!(
        reasons.contains("`alerts` state `seen`") && reasons.contains("version 1"),
        "{reasons}"
    );
    // A restore refuses it as well, before anything runs.
    assert_eq!(job.run(&[]).status.code(), Some(1));
    // Back at version 1 the snapshot fits again.
    job.edit(|d| d["spec"]["job"]["args"]["alertsSeenVersion"] = "1".into());
    let out = check();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
