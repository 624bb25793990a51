//! A damaged checkpoint is never restored: a state file with a flipped byte, or a checkpoint
//! without `_metadata`, makes the run fall back to the previous complete checkpoint, say so in
//! its log, and still commit exactly-once output.

use std::time::{Duration, Instant};

use weir_e2e::{example_job, reference_retail_revenue, TestJob};

fn interrupted_job() -> TestJob {
    let job = example_job(|d| {
        d["spec"]["checkpointing"]["interval"] = "150ms".into();
        d["spec"]["checkpointing"]["retained"] = 10.into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "100000".into();
    });
    let (mut child, _lines) = job.spawn();
    let start = Instant::now();
    while job.complete_checkpoints().len() < 3 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(
        job.complete_checkpoints().len() >= 3,
        "fewer than 3 checkpoints completed"
    );
    job
}

fn state_file_of(job: &TestJob, id: u64) -> std::path::PathBuf {
    std::fs::read_dir(job.checkpoint_dir(id))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "state"))
        .expect("a keyed state file")
}

#[test]
fn flipped_byte_in_a_state_file_falls_back_to_the_previous_checkpoint() {
    let job = interrupted_job();
    let ids = job.complete_checkpoints();
    let latest = *ids.last().unwrap();
    let file = state_file_of(&job, latest);
    let mut bytes = std::fs::read(&file).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();

    let summary = job.run_summarized(&[]);
    let skipped = &summary["skippedCheckpoints"];
    assert_eq!(skipped[0]["id"], latest, "{summary}");
    assert_eq!(
        skipped[0]["reason"]["kind"], "checksumMismatch",
        "{summary}"
    );
    let previous = ids[ids.len() - 2];
    assert_eq!(summary["restoredFrom"], previous, "{summary}");
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn checkpoint_without_metadata_is_never_restored() {
    let job = interrupted_job();
    let ids = job.complete_checkpoints();
    let latest = *ids.last().unwrap();
    std::fs::remove_file(job.checkpoint_dir(latest).join("_metadata")).unwrap();

    let summary = job.run_summarized(&[]);
    let skipped = &summary["skippedCheckpoints"];
    assert_eq!(skipped[0]["id"], latest, "{summary}");
    assert_eq!(skipped[0]["reason"]["kind"], "noMetadata", "{summary}");
    let previous = ids[ids.len() - 2];
    assert_eq!(summary["restoredFrom"], previous, "{summary}");
    assert_eq!(job.output_lines(), reference_retail_revenue());
}
