//! Incremental RocksDB checkpoints on S3: shared files are kept exactly while a retained
//! checkpoint references them, and incremental checkpoints restore exactly once across
//! rescales (native files re-read by key group) and into the heap backend.

use std::time::{Duration, Instant};

use weir_e2e::s3::S3Server;
use weir_e2e::{example_job_on_s3, reference_retail_revenue, TestJob};

fn incremental(d: &mut serde_yaml::Value) {
    d["spec"]["stateBackend"] = "rocksdb".into();
    d["spec"]["checkpointing"]["incremental"] = true.into();
    d["spec"]["checkpointing"]["interval"] = "150ms".into();
    d["spec"]["checkpointing"]["retained"] = 2.into();
    d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "100000".into();
}

/// Shared files the `_metadata` of every complete checkpoint of `job` references.
fn referenced_shared(job: &TestJob) -> Vec<String> {
    let mut out = Vec::new();
    for id in job.complete_checkpoints() {
        let text = std::fs::read_to_string(job.checkpoint_dir(id).join("_metadata")).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(text.split_once('\n').unwrap().1).unwrap();
        for op in json["operators"].as_object().unwrap().values() {
            for s in op["subtasks"].as_array().unwrap() {
                for f in s["nativeState"]["files"].as_array().into_iter().flatten() {
                    if f["shared"] == true {
                        out.push(f["path"].as_str().unwrap().to_string());
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Runs `job` until `n` more checkpoints completed, then kills it.
fn run_for_checkpoints(job: &TestJob, n: usize) {
    let (mut child, lines) = job.spawn();
    let start = Instant::now();
    let mut completed = 0;
    while completed < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only {completed} checkpoints completed"
        );
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(l) if l.contains("complete checkpoint=") => completed += 1,
            Ok(l) => assert!(!l.contains("ERROR"), "{l}"),
            Err(_) => assert!(child.try_wait().unwrap().is_none(), "the job ended early"),
        }
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
}

#[test]
fn shared_files_are_exactly_those_the_retained_checkpoints_reference() {
    let server = S3Server::start();
    let job = example_job_on_s3(&server, "gc", incremental);
    let summary = job.run_summarized(&[]);
    let checkpoints = summary["checkpointsCompleted"].as_u64().unwrap_or(0);
    assert!(
        checkpoints >= 10,
        "only {checkpoints} checkpoints: {summary}"
    );
    assert_eq!(job.complete_checkpoints().len(), 2, "retained: 2");
    let referenced = referenced_shared(&job);
    assert!(
        !referenced.is_empty(),
        "incremental checkpoints reference shared files"
    );
    let stored: Vec<String> = server
        .objects("gc/retail-revenue/shared")
        .into_iter()
        .map(|k| k.strip_prefix("gc/retail-revenue/").unwrap().to_string())
        .collect();
    assert_eq!(
        stored, referenced,
        "shared/ holds exactly the files of the retained checkpoints"
    );

    let report = server.gc_report(&job, "gc");
    assert!(report.contains("0 orphaned objects, 0 bytes"), "{report}");
    assert_eq!(job.output_lines(), reference_retail_revenue());
}

#[test]
fn incremental_checkpoints_restore_exactly_once_across_rescales_and_into_heap() {
    let server = S3Server::start();
    let job = example_job_on_s3(&server, "rescale", incremental);
    // 2 subtasks; then 3 (native files re-read by key group); then 3 again (files reopened
    // as they are); then 1 subtask on the heap backend, to the end.
    run_for_checkpoints(&job, 3);
    job.edit(|d| d["spec"]["job"]["parallelism"] = 3.into());
    run_for_checkpoints(&job, 3);
    run_for_checkpoints(&job, 3);
    job.edit(|d| {
        d["spec"]["job"]["parallelism"] = 1.into();
        d["spec"]["stateBackend"] = "heap".into();
        d["spec"]["checkpointing"]["incremental"] = false.into();
    });
    let summary = job.run_summarized(&[]);
    assert_eq!(summary["restoredKind"], "checkpoint", "{summary}");
    assert_eq!(job.output_lines(), reference_retail_revenue());
    // An orphan is reported, not deleted.
    let stray = server
        .root
        .path()
        .join(&server.bucket)
        .join("rescale/retail-revenue/shared/stray.sst");
    std::fs::write(&stray, b"x").unwrap();
    let report = server.gc_report(&job, "rescale");
    assert!(
        report.contains("shared/stray.sst") && report.contains("1 orphaned objects, 1 bytes"),
        "{report}"
    );
    assert!(stray.exists());
}
