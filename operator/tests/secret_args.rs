//! `spec.job.argsFromSecrets` reaches every pod of the job (coordinator, workers, the check
//! Job) as a reference to the Secret, and never as a value: the manifest the pods read holds
//! only the reference, and the runtime reads the variable the operator sets.

use k8s_openapi::api::core::v1::{EnvVar, PodSpec};
use weir_operator::build::{build_check_job, build_config_map, build_coordinator, build_workers};
use weir_operator::crds::{load_manifest, resolved_args, secret_arg_env, ManifestError};

const MANIFEST: &str = r#"
apiVersion: weir.dev/v1alpha1
kind: StreamJob
metadata:
  name: bids
spec:
  job:
    entry: csv-window-aggregate
    parallelism: 2
    args:
      input: kafka://kafka:9092/bids
      kafka.security.protocol: SASL_PLAINTEXT
      kafka.sasl.mechanism: PLAIN
    argsFromSecrets:
      kafka.sasl.username: {name: kafka-credentials, key: username}
      kafka.sasl.password: {name: kafka-credentials, key: password}
  checkpointing:
    storage: s3://bucket/jobs
"#;

fn secret_env(pod: &PodSpec, var: &str) -> (String, String) {
    let env: Vec<EnvVar> = pod.containers[0].env.clone().unwrap_or_default();
    let e = env
        .iter()
        .find(|e| e.name == var)
        .unwrap_or_else(|| panic!("{var} not in {env:?}"));
    assert_eq!(e.value, None, "{var} must be a reference, not a value");
    let r = e
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secretKeyRef");
    (r.name.clone(), r.key.clone())
}

#[test]
fn arguments_from_secrets_reach_every_pod_by_reference() {
    let loaded = load_manifest(MANIFEST).expect("valid");
    let spec = &loaded.spec.spec;
    let target = weir_operator::build::Target {
        name: loaded.name.clone(),
        namespace: "default".into(),
        uid: "u".into(),
        default_image: "weir:dev".into(),
    };
    let coordinator = build_coordinator(
        &target,
        spec,
        "1-1",
        &weir_operator::model::Restore::LatestCheckpoint,
        None,
    )
    .spec
    .template
    .spec
    .unwrap();
    let workers = build_workers(&target, spec, "1-1")
        .spec
        .template
        .spec
        .unwrap();
    let check = build_check_job(&target, 1, spec, None)
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let var = secret_arg_env("kafka.sasl.password");
    assert_eq!(var, "WEIR_ARG_KAFKA_SASL_PASSWORD");
    for pod in [&coordinator, &workers, &check] {
        assert_eq!(
            secret_env(pod, &var),
            ("kafka-credentials".into(), "password".into())
        );
        assert_eq!(
            secret_env(pod, "WEIR_ARG_KAFKA_SASL_USERNAME"),
            ("kafka-credentials".into(), "username".into())
        );
    }

    // The pods' manifest names the Secret; with the variables the operator sets, the job's
    // arguments are complete.
    let config_map = build_config_map(&target, spec);
    let text = config_map.data.unwrap().into_values().next().unwrap();
    let in_pod = load_manifest(&text).expect("the pods' manifest is valid");
    let args = resolved_args(&in_pod.spec.spec.job, |v| {
        (v == var)
            .then(|| "s3cr3t".to_string())
            .or_else(|| (v == "WEIR_ARG_KAFKA_SASL_USERNAME").then(|| "weir".to_string()))
    })
    .expect("resolved");
    assert_eq!(args["kafka.sasl.password"], "s3cr3t");
    assert_eq!(args["kafka.sasl.username"], "weir");
    assert_eq!(args["kafka.sasl.mechanism"], "PLAIN");
    let missing = resolved_args(&in_pod.spec.spec.job, |_| None).unwrap_err();
    assert!(missing
        .field
        .starts_with("spec.job.argsFromSecrets.kafka.sasl."));
}

#[test]
fn an_argument_in_both_places_or_a_bad_secret_reference_is_rejected() {
    let fields = |yaml: &str| match load_manifest(yaml) {
        Err(ManifestError::Invalid(errors)) => {
            errors.into_iter().map(|e| e.field).collect::<Vec<_>>()
        }
        other => panic!("expected invalid fields, got {other:?}"),
    };
    let both = MANIFEST.replace(
        "      kafka.sasl.mechanism: PLAIN\n",
        "      kafka.sasl.mechanism: PLAIN\n      kafka.sasl.password: plain-text\n",
    );
    assert_eq!(
        fields(&both),
        ["spec.job.argsFromSecrets.kafka.sasl.password"]
    );
    let bad = MANIFEST.replace(
        "{name: kafka-credentials, key: password}",
        "{name: Kafka_Creds, key: \"pass word\"}",
    );
    assert_eq!(
        fields(&bad),
        [
            "spec.job.argsFromSecrets.kafka.sasl.password.name",
            "spec.job.argsFromSecrets.kafka.sasl.password.key"
        ]
    );
}
