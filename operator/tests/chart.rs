//! charts/weir-operator, linted and rendered by the Helm SDK (`scripts/chart.py`, pip
//! `helm-python-sdk`), parsed back as Kubernetes types: the CRD is the generated one, RBAC
//! grants exactly what the operator uses (namespaced Roles when the watch is namespaced),
//! the pods are non-root with a read-only root file system.

use std::collections::BTreeMap;
use std::process::Command;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;

#[derive(Default)]
struct Rendered {
    crds: Vec<CustomResourceDefinition>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    admission_policies: Vec<ValidatingAdmissionPolicy>,
    admission_policy_bindings: Vec<ValidatingAdmissionPolicyBinding>,
}

/// Lints and renders the chart; every rendered document parsed by its kind.
fn render() -> BTreeMap<String, Rendered> {
    let out = tempfile::tempdir().unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let result = Command::new("python3")
        .arg(format!("{root}/scripts/chart.py"))
        .arg(out.path())
        .output()
        .expect("python3 runs");
    assert!(
        result.status.success(),
        "scripts/chart.py failed (is helm-python-sdk installed? scripts/setup.sh --test installs it):\n{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let mut sets = BTreeMap::new();
    for set in ["cluster-wide", "namespaced"] {
        let text = std::fs::read_to_string(out.path().join(format!("{set}.yaml"))).unwrap();
        let mut r = Rendered::default();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            if value.is_null() {
                continue; // an empty document between two `---`
            }
            let kind = value["kind"].as_str().unwrap_or_default().to_string();
            let v = value;
            macro_rules! typed {
                ($field:ident) => {
                    r.$field.push(
                        serde_yaml::from_value(v).unwrap_or_else(|e| panic!("{set}: {kind}: {e}")),
                    )
                };
            }
            match kind.as_str() {
                "CustomResourceDefinition" => typed!(crds),
                "Deployment" => typed!(deployments),
                "Service" => typed!(services),
                "ServiceAccount" => typed!(service_accounts),
                "ClusterRole" => typed!(cluster_roles),
                "ClusterRoleBinding" => typed!(cluster_role_bindings),
                "Role" => typed!(roles),
                "RoleBinding" => typed!(role_bindings),
                "ValidatingAdmissionPolicy" => typed!(admission_policies),
                "ValidatingAdmissionPolicyBinding" => typed!(admission_policy_bindings),
                other => panic!("{set}: unexpected kind `{other}`"),
            }
        }
        sets.insert(set.to_string(), r);
    }
    sets
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// What the operator calls (see `operator/src/observe.rs` and `apply.rs`), nothing more.
fn operator_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            "weir.dev",
            &["streamjobs"],
            &["get", "list", "watch", "patch"],
        ),
        rule("weir.dev", &["streamjobs/status"], &["patch"]),
        rule("weir.dev", &["streamjobs/finalizers"], &["update"]),
        rule(
            "apps",
            &["deployments", "statefulsets"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule(
            "batch",
            &["jobs"],
            &["get", "list", "watch", "create", "patch"],
        ),
        rule("", &["pods"], &["list"]),
        rule("", &["configmaps", "services"], &["create", "patch"]),
        rule("", &["secrets"], &["get", "create", "delete"]),
        rule(
            "networking.k8s.io",
            &["networkpolicies"],
            &["create", "patch"],
        ),
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ]
}

#[test]
fn the_chart_lints_renders_and_parses_as_kubernetes_objects() {
    let sets = render();
    for (set, r) in &sets {
        // The CRD is the generated one.
        assert_eq!(r.crds.len(), 1, "{set}");
        assert_eq!(
            r.crds[0].spec,
            weir_operator::crds::crd().spec,
            "{set}: charts/weir-operator/crds/streamjob.yaml is stale; copy crds/streamjob.yaml"
        );
        // The operator's pod: non-root, read-only root file system, no escalation.
        let d = &r.deployments[0];
        let pod = d.spec.template.spec.as_ref().unwrap();
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_non_root,
            Some(true),
            "{set}"
        );
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(
            (sc.read_only_root_filesystem, sc.allow_privilege_escalation),
            (Some(true), Some(false)),
            "{set}"
        );
        assert_eq!(c.args.as_deref(), Some(&["run".to_string()][..]));
        assert_eq!(
            pod.service_account_name.as_deref(),
            r.service_accounts[0].metadata.name.as_deref()
        );
        let env: BTreeMap<_, _> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.clone()))
            .collect();
        let namespaces = env["WEIR_NAMESPACES"].clone().unwrap_or_default();
        // NetworkPolicies by default, admitting the pods this Deployment makes.
        assert_eq!(
            env["WEIR_NETWORK_POLICIES"].as_deref(),
            Some("true"),
            "{set}"
        );
        let operator_labels = env["WEIR_OPERATOR_POD_LABELS"].clone().unwrap_or_default();
        let template_labels = d.spec.template.metadata.as_ref().unwrap().labels.clone();
        for kv in operator_labels.split(',') {
            let (k, v) = kv.split_once('=').expect("k=v");
            assert_eq!(
                template_labels
                    .as_ref()
                    .and_then(|l| l.get(k))
                    .map(String::as_str),
                Some(v),
                "{set}: WEIR_OPERATOR_POD_LABELS names the operator pods' label {k}"
            );
        }
        // Leader election: a Role on Leases in the release namespace only.
        let lease = r
            .roles
            .iter()
            .find(|role| {
                role.metadata
                    .name
                    .as_deref()
                    .unwrap()
                    .ends_with("-leader-election")
            })
            .unwrap();
        assert_eq!(lease.metadata.namespace.as_deref(), Some("weir-system"));
        assert_eq!(
            lease.rules.as_deref(),
            Some(
                &[rule(
                    "coordination.k8s.io",
                    &["leases"],
                    &["get", "create", "patch"]
                )][..]
            )
        );
        // The metrics Service selects the operator's pods.
        let selector = r.services[0]
            .spec
            .as_ref()
            .unwrap()
            .selector
            .clone()
            .unwrap();
        let pod_labels = d
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        assert!(!selector.is_empty(), "{set}");
        for (k, v) in &selector {
            assert_eq!(pod_labels.get(k), Some(v), "{set}: selector {k}");
        }
        let job_roles: Vec<&Role> = r
            .roles
            .iter()
            .filter(|role| role.rules.as_deref() == Some(&operator_rules()[..]))
            .collect();
        // The admission policy only when asked for, bound with its namespace selector.
        if set == "cluster-wide" {
            assert!(r.admission_policies.is_empty() && r.admission_policy_bindings.is_empty());
        } else {
            let policy = r.admission_policies[0].spec.as_ref().unwrap();
            let rules: Vec<String> = policy
                .validations
                .iter()
                .flatten()
                .map(|v| v.expression.clone())
                .collect();
            assert_eq!(rules.len(), 3, "{rules:?}");
            assert!(
                rules[0].contains(r#"["registry.example.com/team-a/"]"#),
                "{rules:?}"
            );
            assert!(rules[1].contains(r#"["jobs"]"#), "{rules:?}");
            assert!(rules[2].contains("hostPath"), "{rules:?}");
            let binding = &r.admission_policy_bindings[0].spec;
            assert_eq!(
                Some(&binding.policy_name),
                r.admission_policies[0].metadata.name.as_ref()
            );
            assert_eq!(binding.validation_actions, ["Deny"]);
            let selector = binding
                .match_resources
                .as_ref()
                .and_then(|m| m.namespace_selector.as_ref())
                .and_then(|s| s.match_labels.clone());
            assert_eq!(
                selector,
                Some(BTreeMap::from([(
                    "weir.dev/admission".to_string(),
                    "on".to_string()
                )]))
            );
        }
        if set == "cluster-wide" {
            assert_eq!(namespaces, "");
            assert_eq!(r.cluster_roles.len(), 1);
            assert_eq!(
                r.cluster_roles[0].rules.as_deref(),
                Some(&operator_rules()[..])
            );
            assert_eq!(r.cluster_role_bindings.len(), 1);
            assert!(job_roles.is_empty());
        } else {
            assert_eq!(namespaces, "team-a,team-b");
            assert_eq!(d.spec.replicas, Some(2));
            assert!(
                r.cluster_roles.is_empty() && r.cluster_role_bindings.is_empty(),
                "nothing cluster-wide when namespaced"
            );
            let mut scoped: Vec<_> = job_roles
                .iter()
                .map(|role| role.metadata.namespace.clone().unwrap())
                .collect();
            scoped.sort();
            assert_eq!(scoped, ["team-a", "team-b"]);
            assert_eq!(r.role_bindings.len(), 3);
        }
    }
}

#[test]
fn the_kubernetes_example_is_a_valid_stream_job_and_builds_its_objects() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/retail-revenue-k8s.yaml"
    ))
    .unwrap();
    let loaded = weir_operator::crds::load_manifest(&text).expect("the example is valid");
    let target = weir_operator::build::Target {
        name: loaded.name.clone(),
        namespace: "default".into(),
        uid: "u".into(),
        default_image: "unused".into(),
    };
    let spec = &loaded.spec.spec;
    let d = weir_operator::build::build_coordinator(
        &target,
        spec,
        "1-1",
        &weir_operator::model::Restore::LatestCheckpoint,
        None,
    );
    let pod = d.spec.template.spec.unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("weir:dev"));
    let env = pod.containers[0].env.clone().unwrap();
    let secret = env
        .iter()
        .find(|e| e.name == "AWS_SECRET_ACCESS_KEY")
        .and_then(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
        .expect("credentials by Secret reference");
    assert_eq!(secret.name, "weir-s3");
}
