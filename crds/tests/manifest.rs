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

/// Walks every property of the CRD's schema, calling `f(path, node)`.
fn walk(path: &str, node: &serde_json::Value, f: &mut dyn FnMut(&str, &serde_json::Value)) {
    f(path, node);
    if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
        for (k, v) in props {
            walk(&format!("{path}.{k}"), v, f);
        }
    }
    for key in ["items", "additionalProperties"] {
        // Map and list values of scalars (labels, args) are described by their field.
        if let Some(v) = node.get(key).filter(|v| v.get("properties").is_some()) {
            walk(&format!("{path}[]"), v, f);
        }
    }
}

#[test]
fn the_crd_is_documented_compact_and_validated_by_the_api_server() {
    let crd = weir_crds::crd();
    let yaml = weir_crds::crd_yaml();
    assert!(
        yaml.len() < 256 * 1024 / 2,
        "the CRD is {} bytes; kubectl apply's last-applied annotation allows 256 KiB",
        yaml.len()
    );
    let version = &crd.spec.versions[0];
    let schema =
        serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
    let mut undocumented = Vec::new();
    walk("", &schema["properties"]["spec"], &mut |path, node| {
        if node.get("description").is_none() {
            undocumented.push(path.to_string());
        }
    });
    walk("", &schema["properties"]["status"], &mut |path, node| {
        // Condition is Kubernetes' own type; its fields are documented by k8s-openapi.
        if node.get("description").is_none() && !path.is_empty() {
            undocumented.push(format!("status{path}"));
        }
    });
    assert!(
        undocumented.is_empty(),
        "fields without a description (kubectl explain): {undocumented:?}"
    );
    // Defaults are in the schema, so `kubectl get -o yaml` shows what runs.
    let job = &schema["properties"]["spec"]["properties"]["job"]["properties"];
    assert_eq!(job["upgradeMode"]["default"], "savepoint");
    assert_eq!(job["maxParallelism"]["default"], 128);
    // The cross-field rules are there.
    let rules = serde_json::to_string(&schema).unwrap();
    for (_, rule, _) in weir_crds::CEL_RULES {
        assert!(rules.contains(&serde_json::to_string(rule).unwrap()[1..rule.len()]));
    }
    // Status and scale subresources, and the columns of `kubectl get sj`.
    let sub = version.subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    assert_eq!(
        sub.scale.as_ref().unwrap().spec_replicas_path,
        ".spec.job.parallelism"
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["State", "Parallelism", "Last Savepoint", "Age"]);
}

#[test]
fn operator_settings_are_validated() {
    let e = error_of(&with(
        &["spec", "savepoints"],
        serde_yaml::from_str("historyMaxCount: 0").unwrap(),
    ));
    assert!(e.contains("spec.savepoints.historyMaxCount"), "{e}");
    let e = error_of(&with(
        &["spec", "savepoints"],
        serde_yaml::from_str("periodicInterval: soon").unwrap(),
    ));
    assert!(e.contains("spec.savepoints.periodicInterval"), "{e}");
    let e = error_of(&with(
        &["spec", "coordinator"],
        serde_yaml::from_str("replicas: 2").unwrap(),
    ));
    assert!(e.contains("spec.coordinator.replicas"), "{e}");
    let e = error_of(&with(
        &["spec", "workers"],
        serde_yaml::from_str("replicas: 0").unwrap(),
    ));
    assert!(e.contains("spec.workers.replicas"), "{e}");
    let ok = with(
        &["spec", "workers"],
        serde_yaml::from_str("replicas: 3\nresources: {limits: {memory: 2Gi}}").unwrap(),
    );
    assert_eq!(
        load_manifest(&ok).unwrap().spec.spec.workers.replicas,
        Some(3)
    );
}
