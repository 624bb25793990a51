//! The coordinator's Service (control and admin ports) and the workers' headless Service.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

use super::Target;
use crate::names;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Service `<name>-coordinator`: workers reach the control port, the operator the admin API.
/// Not-ready addresses are published: the coordinator is not ready until its workers
/// registered, through this very Service.
pub fn build_coordinator_service(target: &Target) -> Service {
    Service {
        metadata: target.metadata(names::coordinator(&target.name), "coordinator"),
        spec: Some(ServiceSpec {
            selector: Some(names::labels(&target.name, "coordinator")),
            ports: Some(vec![
                port("control", names::CONTROL_PORT),
                port("admin", names::ADMIN_PORT),
            ]),
            publish_not_ready_addresses: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Headless Service `<name>-workers`, the StatefulSet's governing service (stable pod
/// host names for logs and debugging; peers connect by pod IP).
pub fn build_workers_service(target: &Target) -> Service {
    Service {
        metadata: target.metadata(names::workers(&target.name), "worker"),
        spec: Some(ServiceSpec {
            selector: Some(names::labels(&target.name, "worker")),
            cluster_ip: Some("None".into()),
            ports: Some(vec![port("data", names::DATA_PORT)]),
            publish_not_ready_addresses: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}
