//! Exactly-once through the public interface: the example job killed with SIGKILL at random
//! points (several of them right after a checkpoint was triggered) and resumed each time
//! commits exactly the output of an uninterrupted run, which equals a reference computation.

use std::time::{Duration, Instant};

use weir_e2e::{assert_success, example_job, kill_at_random_points, reference_retail_revenue};

/// Records per second per source subtask: slow enough that kills land mid-run.
const RATE: &str = "60000";

#[test]
fn sigkill_at_random_points_then_resume_gives_exactly_once_output() {
    let reference = reference_retail_revenue();
    assert!(
        reference.len() > 100_000,
        "reference has {} lines",
        reference.len()
    );

    let clean = example_job(|d| {
        d["spec"]["stateBackend"] = "heap".into();
    });
    assert_success(&clean.run(&[]));
    let uninterrupted = clean.output_lines();
    assert_eq!(
        uninterrupted, reference,
        "uninterrupted run differs from the reference"
    );

    let job = example_job(|d| {
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = RATE.into();
    });
    let seed = weir_e2e::test_seed();
    let kills = kill_at_random_points(&job, 6, seed);
    eprintln!("{kills:?}");
    assert!(
        kills.total >= 5,
        "only {} kills landed before the job finished",
        kills.total
    );
    assert!(
        kills.during_checkpoint >= 2,
        "only {} kills during a checkpoint",
        kills.during_checkpoint
    );

    let summary = job.run_summarized(&[]);
    assert_eq!(
        summary["restoredKind"], "checkpoint",
        "final run did not restore: {summary}"
    );
    let resumed = job.output_lines();
    assert_eq!(resumed.len(), uninterrupted.len(), "line counts differ");
    assert_eq!(
        resumed, uninterrupted,
        "killed-and-resumed output differs from the uninterrupted run"
    );
}

#[test]
fn resuming_with_another_parallelism_redistributes_key_groups() {
    let job = example_job(|d| {
        d["spec"]["checkpointing"]["interval"] = "200ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "100000".into();
    });
    let set_parallelism = |p: i64| {
        let mut doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&job.manifest).unwrap()).unwrap();
        doc["spec"]["job"]["parallelism"] = p.into();
        std::fs::write(&job.manifest, serde_yaml::to_string(&doc).unwrap()).unwrap();
    };
    // 2 subtasks, killed; then 3 (not a multiple), killed; then 1 to the end.
    for p in [2, 3] {
        set_parallelism(p);
        let before = job.complete_checkpoints().last().copied();
        let (mut child, _lines) = job.spawn();
        let start = Instant::now();
        while job.complete_checkpoints().last().copied() <= before.map(|b| b + 1)
            && start.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        assert!(
            job.complete_checkpoints().last().copied() > before,
            "parallelism {p}: no checkpoint completed"
        );
    }
    set_parallelism(1);
    let summary = job.run_summarized(&[]);
    assert_eq!(summary["restoredKind"], "checkpoint", "{summary}");
    assert_eq!(job.output_lines(), reference_retail_revenue());
}
