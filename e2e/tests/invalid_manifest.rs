//! Invalid manifests are rejected by `weir run` before anything runs: exit code 2, an error
//! naming the field and the allowed values, and no checkpoint or output written.

use weir_e2e::example_job;

fn set(doc: &mut serde_yaml::Value, path: &[&str], value: serde_yaml::Value) {
    let mut cur = doc;
    for p in &path[..path.len() - 1] {
        cur = &mut cur[*p];
    }
    cur[path[path.len() - 1]] = value;
}

#[test]
fn each_invalid_manifest_is_rejected_with_its_field_and_nothing_is_written() {
    let cases: Vec<(Vec<&str>, serde_yaml::Value, Vec<&str>)> = vec![
        (
            vec!["spec", "job", "paralelism"],
            2.into(),
            vec!["spec.job", "unknown field `paralelism`"],
        ),
        (
            vec!["spec", "job", "parallelism"],
            0.into(),
            vec!["spec.job.parallelism", "at least 1"],
        ),
        (
            vec!["spec", "job", "maxParallelism"],
            1.into(),
            vec!["spec.job.maxParallelism", "between"],
        ),
        (
            vec!["spec", "job", "maxParallelism"],
            40000.into(),
            vec!["spec.job.maxParallelism", "32768"],
        ),
        (
            vec!["spec", "checkpointing", "interval"],
            "ten seconds".into(),
            vec!["spec.checkpointing.interval", "500ms"],
        ),
        (
            vec!["spec", "stateBackend"],
            "leveldb".into(),
            vec!["spec.stateBackend", "`rocksdb`", "`heap`"],
        ),
        (
            vec!["spec", "checkpointing", "storage"],
            "hdfs://nn/ckpt".into(),
            vec!["spec.checkpointing.storage", "file://"],
        ),
        (
            vec!["spec", "job", "entry"],
            "no-such-job".into(),
            vec!["spec.job.entry", "csv-window-aggregate"],
        ),
        (
            vec!["spec", "job", "args", "key"],
            "NoSuchColumn".into(),
            vec!["spec.job.args.key", "StockCode"],
        ),
        (
            vec!["spec", "job", "args", "window"],
            "1 fortnight".into(),
            vec!["spec.job.args.window"],
        ),
    ];
    for (path, value, needles) in cases {
        let job = example_job(|d| set(d, &path, value.clone()));
        let out = job.run(&[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{path:?}: expected exit code 2, stderr:\n{err}"
        );
        for n in &needles {
            assert!(
                err.contains(n),
                "{path:?}={value:?}: error should mention `{n}`:\n{err}"
            );
        }
        assert!(
            !job.storage.exists(),
            "{path:?}: checkpoint storage was written"
        );
        assert!(!job.output.exists(), "{path:?}: output was written");
    }
}

#[test]
fn every_example_manifest_validates_from_a_clone() {
    // A clone's layout: <dir>/weir/examples and <dir>/shared/data, run from <dir>/weir.
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("weir");
    std::fs::create_dir(&clone).unwrap();
    let examples = weir_e2e::repo_root().join("examples");
    std::os::unix::fs::symlink(&examples, clone.join("examples")).unwrap();
    let shared = weir_e2e::retail_data()
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .to_path_buf();
    std::os::unix::fs::symlink(shared, dir.path().join("shared")).unwrap();
    let mut checked = 0;
    for e in std::fs::read_dir(&examples).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") {
            continue;
        }
        // A manifest for the operator reads its input inside its image, not here.
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
        if !doc["spec"]["image"].is_null() {
            continue;
        }
        let out = std::process::Command::new(weir_e2e::weir_bin())
            .arg("validate")
            .arg(format!("examples/{name}"))
            .current_dir(&clone)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} example manifests");
}
