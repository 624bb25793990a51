//! Savepoints through the CLI: taken from a running job at a random point, restored at
//! parallelism 1, 3 and 4, from RocksDB into heap and back, and after being moved to another
//! directory; every restored run commits exactly the reference output.

use std::time::Duration;

use weir_e2e::{assert_success, copy_dir, example_job, reference_retail_revenue, TestJob};

/// A job restored from `savepoint` with `parallelism` and `backend`, writing into a copy of
/// `output` (the sink's directory as the savepoint's job left it).
fn restored_job(
    savepoint: &str,
    output: &std::path::Path,
    parallelism: i64,
    backend: &str,
    throttle: bool,
) -> (TestJob, Vec<String>) {
    let job = example_job(|d| {
        d["spec"]["job"]["parallelism"] = parallelism.into();
        d["spec"]["stateBackend"] = backend.into();
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
        if throttle {
            d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "60000".into();
        }
    });
    copy_dir(output, &job.output);
    (job, vec!["--from-savepoint".into(), savepoint.to_string()])
}

fn run_restored(job: &TestJob, args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = job.run_summarized(&args);
    assert_eq!(summary["restoredKind"], "savepoint", "{summary}");
    assert_eq!(
        job.output_lines(),
        reference_retail_revenue(),
        "restored run differs from the reference"
    );
}

#[test]
fn savepoints_restore_at_other_parallelism_across_backends_and_after_moving() {
    let reference = reference_retail_revenue();
    assert!(!reference.is_empty());
    // A: RocksDB, 2 subtasks; savepoint at a random point, then killed.
    let a = example_job(|d| {
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "60000".into();
    });
    let (mut child, _lines) = a.spawn();
    a.wait_for_checkpoints(1);
    std::thread::sleep(Duration::from_millis(fastrand::u64(100..1500)));
    let sp1 = a.savepoint(None);
    assert!(
        sp1.contains("/retail-revenue/savepoints/savepoint-"),
        "{sp1}"
    );
    std::thread::sleep(Duration::from_millis(400));
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    // Restored at parallelism 1 (heap) and 3 (RocksDB), to the end.
    for (p, backend) in [(1, "heap"), (3, "rocksdb")] {
        let (job, args) = restored_job(&sp1, &a.output, p, backend, false);
        run_restored(&job, &args);
    }

    // B: restored into heap at parallelism 3, savepoint taken again, killed; C: that heap
    // savepoint restored into RocksDB at parallelism 4.
    let (b, args) = restored_job(&sp1, &a.output, 3, "heap", true);
    let mut cmd = std::process::Command::new(weir_e2e::weir_bin());
    cmd.arg("run")
        .arg(&b.manifest)
        .args(&args)
        .args(["--progress-interval", "0s"]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn B");
    b.wait_for_checkpoints(1);
    let sp2 = b.savepoint(Some(&format!(
        "file://{}",
        b.dir.path().join("my-savepoints").display()
    )));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let (c, args) = restored_job(&sp2, &b.output, 4, "rocksdb", false);
    run_restored(&c, &args);

    // The first savepoint moved to another directory still restores.
    let moved = a.dir.path().join("moved");
    copy_dir(
        std::path::Path::new(sp1.trim_start_matches("file://")),
        &moved,
    );
    let (d, args) = restored_job(
        &format!("file://{}", moved.display()),
        &a.output,
        2,
        "rocksdb",
        false,
    );
    run_restored(&d, &args);
}

/// A throttled example job that took a savepoint after its first checkpoint and was killed.
fn job_with_savepoint() -> (TestJob, String) {
    let job = example_job(|d| {
        d["spec"]["checkpointing"]["interval"] = "300ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "60000".into();
    });
    let (mut child, _lines) = job.spawn();
    job.wait_for_checkpoints(1);
    let sp = job.savepoint(None);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    (job, sp)
}

#[test]
fn inspect_and_list_describe_savepoints() {
    let (_job, sp) = job_with_savepoint();
    let weir = |args: &[&str]| {
        let out = std::process::Command::new(weir_e2e::weir_bin())
            .args(args)
            .output()
            .unwrap();
        assert_success(&out);
        String::from_utf8(out.stdout).unwrap()
    };
    let inspect = weir(&["savepoint", "inspect", &sp]);
    for needle in [
        "format version:  1",
        "max parallelism: 128",
        "operator window-aggregate (parallelism 2)",
        "key groups 0..=63",
        "key groups 64..=127",
        "operator csv-source",
        "operator file-sink",
        "created:",
    ] {
        assert!(
            inspect.contains(needle),
            "inspect lacks `{needle}`:\n{inspect}"
        );
    }
    let dir = sp.rsplit_once('/').unwrap().0;
    let list = weir(&["savepoint", "list", dir]);
    assert!(list.contains(&sp) && list.contains("Savepoint"), "{list}");
}

#[test]
fn a_savepoint_with_another_max_parallelism_is_refused_before_anything_runs() {
    let (_job, sp) = job_with_savepoint();
    let other = example_job(|d| d["spec"]["job"]["maxParallelism"] = 256.into());
    let out = other.run(&["--from-savepoint", &sp]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max parallelism 128") && err.contains("maxParallelism is 256"),
        "{err}"
    );
    assert!(!other.output.exists(), "nothing may be written");
}

#[test]
fn a_resume_after_a_savepoint_restore_never_picks_up_the_old_runs_checkpoints() {
    // Checkpoints of the old run exist next to the savepoint; the run from the savepoint is
    // killed before it completes a checkpoint of its own; a plain resume must not restore the
    // old run's newer checkpoint (whose output the savepoint restore rolled back).
    let (job, sp) = job_with_savepoint();
    let (mut child, _lines) = job.spawn();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(
        !job.complete_checkpoints().is_empty(),
        "the old run left checkpoints"
    );
    let mut cmd = std::process::Command::new(weir_e2e::weir_bin());
    cmd.arg("run")
        .arg(&job.manifest)
        .args(["--from-savepoint", &sp, "--progress-interval", "0s"]);
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    // Tasks run (the sink has rolled its output back to the savepoint) once the first
    // checkpoint is triggered; kill it then, before that checkpoint completes.
    for line in lines.by_ref() {
        if line.unwrap().contains("triggering checkpoint") {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let out = job.run(&[]);
    assert_success(&out);
    assert_eq!(job.output_lines(), reference_retail_revenue());
}
