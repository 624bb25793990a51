//! The NetworkPolicy of a job: its pods admit the coordinator's admin port only from the
//! operator's pods, and the control and data ports only from the job's own pods. Egress is
//! left open (checkpoint storage, Kafka and the job's other systems are the user's).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Target;
use crate::names;

/// Where the operator's own pods are: the only peers of the admin port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPods {
    /// The operator's namespace.
    pub namespace: String,
    /// Labels its pods carry (the chart's selector labels).
    pub labels: BTreeMap<String, String>,
}

/// NetworkPolicy `<name>-job` selecting every pod of the job (label `weir.dev/job`): ingress
/// on the admin port from `operator`'s pods, on the control and data ports from the job's pods
/// in its namespace; nothing else.
pub fn build_network_policy(target: &Target, operator: &OperatorPods) -> NetworkPolicy {
    let job_pods = LabelSelector {
        match_labels: Some(BTreeMap::from([(
            names::LABEL_JOB.to_string(),
            target.name.clone(),
        )])),
        ..Default::default()
    };
    let ports = |ports: &[i32]| {
        Some(
            ports
                .iter()
                .map(|p| NetworkPolicyPort {
                    port: Some(IntOrString::Int(*p)),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        )
    };
    NetworkPolicy {
        metadata: target.metadata(names::network_policy(&target.name), "coordinator"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(job_pods.clone()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                "kubernetes.io/metadata.name".to_string(),
                                operator.namespace.clone(),
                            )])),
                            ..Default::default()
                        }),
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(operator.labels.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ports: ports(&[names::ADMIN_PORT]),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(job_pods),
                        ..Default::default()
                    }]),
                    ports: ports(&[names::CONTROL_PORT, names::DATA_PORT]),
                },
            ]),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_port_admits_the_operator_and_the_job_ports_admit_the_job() {
        let target = Target {
            name: "orders".into(),
            namespace: "team-a".into(),
            uid: "u".into(),
            default_image: "weir:dev".into(),
        };
        let operator = OperatorPods {
            namespace: "weir-system".into(),
            labels: BTreeMap::from([("app.kubernetes.io/name".into(), "weir-operator".into())]),
        };
        let p = build_network_policy(&target, &operator);
        assert_eq!(p.metadata.name.as_deref(), Some("orders-job"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("team-a"));
        let spec = p.spec.unwrap();
        let job = BTreeMap::from([("weir.dev/job".to_string(), "orders".to_string())]);
        assert_eq!(spec.pod_selector.unwrap().match_labels, Some(job.clone()));
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
        let rules = spec.ingress.unwrap();
        let port_list = |r: &NetworkPolicyIngressRule| -> Vec<i32> {
            r.ports
                .iter()
                .flatten()
                .map(|p| match p.port {
                    Some(IntOrString::Int(n)) => n,
                    _ => 0,
                })
                .collect()
        };
        assert_eq!(port_list(&rules[0]), [8081]);
        let from = &rules[0].from.as_ref().unwrap()[0];
        assert_eq!(
            from.namespace_selector.as_ref().unwrap().match_labels,
            Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                "weir-system".to_string()
            )]))
        );
        assert_eq!(
            from.pod_selector.as_ref().unwrap().match_labels,
            Some(operator.labels)
        );
        assert_eq!(port_list(&rules[1]), [6123, 6124]);
        let own = &rules[1].from.as_ref().unwrap()[0];
        assert!(own.namespace_selector.is_none(), "the job's namespace only");
        assert_eq!(own.pod_selector.as_ref().unwrap().match_labels, Some(job));
    }
}
