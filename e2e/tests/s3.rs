//! Checkpoints and output on a real S3-compatible server (s3s-fs, started by the test):
//! exactly-once under SIGKILL, output written as multipart uploads exactly once through
//! SIGKILLs and rescales, and a server that dies in the middle of a checkpoint and comes back.

use std::time::{Duration, Instant};

use weir_e2e::s3::S3Server;
use weir_e2e::{example_job_on_s3, kill_at_random_points, reference_retail_revenue};

#[test]
fn sigkill_at_random_points_with_checkpoints_on_s3_gives_exactly_once_output() {
    let server = S3Server::start();
    let job = example_job_on_s3(&server, "eo", |d| {
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "60000".into();
    });
    let seed = fastrand::u64(..);
    eprintln!("kill schedule seed: {seed}");
    let kills = kill_at_random_points(&job, 5, seed);
    assert!(kills.total >= 5, "{kills:?}");
    let summary = job.run_summarized(&[]);
    assert_eq!(summary["restoredKind"], "checkpoint", "{summary}");
    assert!(
        !server.objects("eo/retail-revenue/checkpoints").is_empty(),
        "checkpoints are in the bucket"
    );
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn output_on_s3_is_exactly_once_through_sigkills_and_rescales() {
    let server = S3Server::start();
    let mut job = example_job_on_s3(&server, "out", |d| {
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "60000".into();
        d["spec"]["job"]["args"]["output"] = format!("s3://{}/out/output", server.bucket).into();
    });
    // s3s-fs keeps a completed object as a file of the bucket's directory.
    job.output = server.root.path().join(&server.bucket).join("out/output");
    let seed = fastrand::u64(..);
    eprintln!("kill schedule seed: {seed}");
    // 2 subtasks, killed; 3, killed; then 1 to the end.
    let kills = kill_at_random_points(&job, 3, seed);
    job.edit(|d| d["spec"]["job"]["parallelism"] = 3.into());
    let more = kill_at_random_points(&job, 2, seed ^ 1);
    assert!(kills.total + more.total >= 4, "{kills:?} {more:?}");
    job.edit(|d| d["spec"]["job"]["parallelism"] = 1.into());
    let summary = job.run_summarized(&[]);
    assert_eq!(summary["restoredKind"], "checkpoint", "{summary}");
    assert_eq!(
        summary["output"],
        format!("s3://{}/out/output", server.bucket)
    );
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn a_part_larger_than_an_upload_part_goes_up_in_parts_and_reads_back_whole() {
    let server = S3Server::start();
    let mut job = example_job_on_s3(&server, "big", |d| {
        // One subtask and no checkpoint before the final one: one part file of the whole
        // output, more than one upload part (8 MiB) of it.
        d["spec"]["job"]["parallelism"] = 1.into();
        d["spec"]["checkpointing"]["interval"] = "1h".into();
        d["spec"]["job"]["args"]["output"] = format!("s3://{}/big/output", server.bucket).into();
    });
    job.output = server.root.path().join(&server.bucket).join("big/output");
    job.run_summarized(&[]);
    let part = job.output.join("part-0-000000.csv");
    let size = std::fs::metadata(&part).expect("the one part file").len();
    assert!(
        size > weir_runtime::storage::s3::PART_SIZE as u64,
        "{size} bytes fit one upload part"
    );
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

/// Ids of the checkpoints named by the log lines that contain `marker`.
fn checkpoint_ids(log: &[String], marker: &str) -> Vec<u64> {
    log.iter()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            l.split("checkpoint ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn a_checkpoint_whose_upload_fails_is_aborted_and_the_job_goes_on() {
    let mut server = S3Server::start();
    let job = example_job_on_s3(&server, "faults", |d| {
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "60000".into();
    });
    let (mut child, lines) = job.spawn();
    let mut log = Vec::new();
    // Stop the server the moment a checkpoint is triggered after two completed ones.
    let start = Instant::now();
    loop {
        let l = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("weir log");
        let trigger = l.contains("triggering checkpoint");
        log.push(l);
        if trigger && job.complete_checkpoints().len() >= 2 {
            server.stop();
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no checkpoints");
    }
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    log.extend(lines.iter());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "the job must survive a failed checkpoint:\n{}",
        log.join("\n")
    );

    let failed = checkpoint_ids(&log, "aborting it, the job continues");
    assert!(
        !failed.is_empty(),
        "no checkpoint failed:\n{}",
        log.join("\n")
    );
    let completed = checkpoint_ids(&log, "complete checkpoint=");
    assert!(
        completed.iter().max() > failed.iter().max(),
        "no checkpoint completed after the outage:\n{}",
        log.join("\n")
    );
    for id in failed {
        let left = server.objects(&format!("faults/retail-revenue/checkpoints/chk-{id}"));
        assert!(
            left.is_empty(),
            "objects of failed checkpoint {id} remain: {left:?}"
        );
    }
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn a_savepoint_copied_to_another_bucket_restores() {
    let server = S3Server::start();
    let job = example_job_on_s3(&server, "src", |d| {
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "60000".into();
    });
    let (mut child, _lines) = job.spawn();
    job.wait_for_checkpoints(1);
    let sp = job.savepoint(Some(&format!("s3://{}/savepoints", server.bucket)));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let key = sp
        .strip_prefix(&format!("s3://{}/", server.bucket))
        .expect("savepoint in the bucket")
        .to_string();
    assert!(
        !server.objects(&key).is_empty(),
        "savepoint objects in the bucket"
    );

    // Move it: another bucket, another prefix.
    let bucket_dir = server.root.path().join(&server.bucket);
    let moved_dir = server.root.path().join("archive").join("moved/sp");
    weir_e2e::copy_dir(&bucket_dir.join(&key), &moved_dir);

    let restored = example_job_on_s3(&server, "dst", |_| {});
    weir_e2e::copy_dir(&job.output, &restored.output);
    let summary = restored.run_summarized(&["--from-savepoint", "s3://archive/moved/sp"]);
    assert_eq!(summary["restoredKind"], "savepoint", "{summary}");
    assert_eq!(
        summary["restoredLocation"], "s3://archive/moved/sp",
        "{summary}"
    );
    assert_eq!(restored.output_lines(), reference_retail_revenue());
}
