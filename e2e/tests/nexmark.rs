//! The windowed Nexmark queries through the `weir` binary, exactly once: q5 (sliding windows),
//! q7 (highest bid), q8 (window join) and q11 (session windows) SIGKILLed at random points
//! (half of them right after a checkpoint trigger) and resumed commit exactly the output of an
//! uninterrupted run (q10 too: its partitioned sink restores pending files in bucket
//! directories); q11's sessions, merged across checkpoints, and q5's sliced sliding windows
//! (slices outlive the windows that fired) also survive a rescale 2 -> 3 -> 1 through
//! savepoints that switch the state backend.

use weir_e2e::{assert_success, kill_at_random_points, manifest_job, repo_root, weir_bin, TestJob};

/// 400,000 events, paced so that a run lasts about 10 s at parallelism 2.
fn job(query: &str, edit: impl FnOnce(&mut serde_yaml::Value)) -> TestJob {
    manifest_job(
        weir_bin(),
        &repo_root().join("examples/nexmark-q5.yaml"),
        |d| {
            d["metadata"]["name"] = format!("nexmark-{query}").into();
            d["spec"]["job"]["args"]["query"] = query.into();
            d["spec"]["job"]["args"]["events"] = "400000".into();
            // 200 s of event time: 20 windows of q7 and q8, 100 of q5.
            d["spec"]["job"]["args"]["eventsPerSecond"] = "2000".into();
            d["spec"]["job"]["args"]["maxEventsPerSecond"] = "20000".into();
            d["spec"]["checkpointing"]["interval"] = "300ms".into();
            edit(d);
        },
    )
}

fn uninterrupted(query: &str) -> Vec<String> {
    let clean = job(query, |d| {
        d["spec"]["job"]["args"]
            .as_mapping_mut()
            .unwrap()
            .remove("maxEventsPerSecond");
    });
    assert_success(&clean.run(&[]));
    let lines = clean.output_lines();
    assert!(lines.len() > 10, "{query}: {} lines", lines.len());
    lines
}

#[test]
fn windowed_queries_are_exactly_once_after_sigkills_at_random_points() {
    let seed = weir_e2e::test_seed();
    for (i, query) in ["q5", "q7", "q8", "q11", "q10"].into_iter().enumerate() {
        let expected = uninterrupted(query);
        if query == "q10" {
            // 200 s of event time from midnight: four minute buckets.
            assert!(expected
                .iter()
                .any(|l| l.starts_with("dt=2020-01-01/hm=00:03|")));
        }
        let job = job(query, |_| {});
        let kills = kill_at_random_points(&job, 6, seed + i as u64);
        assert!(
            kills.total >= 5,
            "{query}: only {} kills landed before the job finished",
            kills.total
        );
        assert_success(&job.run(&[]));
        let resumed = job.output_lines();
        assert_eq!(
            resumed.len(),
            expected.len(),
            "{query}: killed and resumed {kills:?}"
        );
        assert_eq!(resumed, expected, "{query}: killed and resumed {kills:?}");
    }
}

/// Runs `query` at parallelism 2 on RocksDB and 3 on heap, a savepoint taken mid-run from
/// each, then to the end at 1 on RocksDB: its output equals an uninterrupted run's.
fn rescaled_through_savepoints(query: &str) {
    let expected = uninterrupted(query);
    let job = job(query, |d| {
        d["spec"]["job"]["args"]["maxEventsPerSecond"] = "30000".into();
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
            .expect("spawn weir");
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
            .remove("maxEventsPerSecond");
    });
    let sp = savepoint.expect("two savepoints taken");
    assert_success(&job.run(&["--from-savepoint", &sp]));
    assert_eq!(
        job.output_lines(),
        expected,
        "{query}: rescaled 2 -> 3 -> 1"
    );
}

#[test]
fn merged_sessions_survive_rescales_through_savepoints_that_switch_backends() {
    rescaled_through_savepoints("q11");
}

#[test]
fn sliced_sliding_windows_survive_rescales_through_savepoints_that_switch_backends() {
    rescaled_through_savepoints("q5");
}
