//! The manifest format through its public interface: the committed CRD matches the types,
//! the example loads, and every invalid field is rejected with an error naming it.

use weir_crds::{load_manifest, ManifestError};

const VALID: &str = r#"
apiVersion: weir.dev/v1alpha1
kind: StreamJob
metadata:
  name: demo
spec:
  job:
    entry: csv-window-aggregate
    parallelism: 2
  checkpointing:
    storage: file:///tmp/x
"#;

fn with(path: &[&str], value: serde_yaml::Value) -> String {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(VALID).unwrap();
    let mut cur = &mut doc;
    for (i, p) in path.iter().enumerate() {
        if i == path.len() - 1 {
            cur[*p] = value.clone();
        } else {
            cur = &mut cur[*p];
        }
    }
    serde_yaml::to_string(&doc).unwrap()
}

fn error_of(yaml: &str) -> String {
    load_manifest(yaml)
        .expect_err("manifest should be rejected")
        .to_string()
}

#[test]
fn committed_crd_matches_the_types() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/streamjob.yaml"))
        .expect("crds/streamjob.yaml exists");
    assert_eq!(
        committed,
        weir_crds::crd_yaml(),
        "crds/streamjob.yaml is stale: run `cargo run -p weir-crds --bin crdgen > crds/streamjob.yaml`"
    );
}

#[test]
fn defaults_fill_in() {
    let m = load_manifest(VALID).unwrap();
    assert_eq!(m.name, "demo");
    assert_eq!(m.spec.parallelism, 2);
    assert_eq!(m.spec.max_parallelism, 128);
    assert_eq!(
        m.spec.spec.job.upgrade_mode,
        weir_crds::UpgradeMode::Savepoint
    );
    assert_eq!(m.spec.spec.state_backend, weir_crds::StateBackend::Rocksdb);
    assert_eq!(
        m.spec.checkpointing.interval,
        std::time::Duration::from_secs(10)
    );
    assert_eq!(m.spec.checkpointing.retained, 3);
}

#[test]
fn the_example_loads() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/retail-revenue.yaml"
    ))
    .unwrap();
    let m = load_manifest(&text).unwrap();
    assert_eq!(m.spec.spec.job.entry, "csv-window-aggregate");
}

#[test]
fn unknown_fields_are_named() {
    let e = error_of(&with(&["spec", "job", "paralelism"], 3.into()));
    assert!(
        e.contains("spec.job") && e.contains("paralelism") && e.contains("parallelism"),
        "{e}"
    );
}

#[test]
fn invalid_values_are_named_with_allowed_values() {
    let cases: Vec<(Vec<&str>, serde_yaml::Value, &[&str])> = vec![
        (
            vec!["spec", "job", "parallelism"],
            0.into(),
            &["spec.job.parallelism", "at least 1"],
        ),
        (
            vec!["spec", "job", "maxParallelism"],
            1.into(),
            &["spec.job.maxParallelism", "32768"],
        ),
        (
            vec!["spec", "job", "maxParallelism"],
            40000.into(),
            &["spec.job.maxParallelism", "32768"],
        ),
        (
            vec!["spec", "checkpointing", "interval"],
            "10 parsecs".into(),
            &["spec.checkpointing.interval", "10s"],
        ),
        (
            vec!["spec", "checkpointing", "timeout"],
            "soon".into(),
            &["spec.checkpointing.timeout"],
        ),
        (
            vec!["spec", "stateBackend"],
            "leveldb".into(),
            &["spec.stateBackend", "rocksdb", "heap"],
        ),
        (
            vec!["spec", "checkpointing", "storage"],
            "gs://bucket/x".into(),
            &["spec.checkpointing.storage", "file://"],
        ),
        (
            vec!["spec", "checkpointing", "storage"],
            "file://relative".into(),
            &["spec.checkpointing.storage", "absolute"],
        ),
        (
            vec!["spec", "checkpointing", "mode"],
            "twice".into(),
            &["spec.checkpointing.mode", "exactly-once", "at-least-once"],
        ),
        (
            vec!["spec", "job", "upgradeMode"],
            "yolo".into(),
            &[
                "spec.job.upgradeMode",
                "savepoint",
                "last-state",
                "stateless",
            ],
        ),
        (
            vec!["spec", "checkpointing", "retained"],
            0.into(),
            &["spec.checkpointing.retained"],
        ),
    ];
    for (path, value, needles) in cases {
        let e = error_of(&with(&path, value.clone()));
        for n in needles {
            assert!(
                e.contains(n),
                "{path:?}={value:?}: `{e}` should mention `{n}`"
            );
        }
    }
}

#[test]
fn type_meta_and_name_are_checked() {
    assert!(matches!(
        load_manifest(&with(&["kind"], "Deployment".into())),
        Err(ManifestError::WrongType { field: "kind", .. })
    ));
    assert!(matches!(
        load_manifest(&with(&["metadata", "name"], "Not_A_Name".into())),
        Err(ManifestError::Name(_))
    ));
}
