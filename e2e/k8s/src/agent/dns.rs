//! Cluster DNS for the pods: `<service>.<namespace>.svc.<domain>` answers with the addresses
//! of the Service's ready endpoints (from its EndpointSlices; not-ready ones too when the
//! Service publishes them), `<hostname>.<service>.<namespace>.svc.<domain>` with the endpoint
//! of that hostname (StatefulSet pods). There is no kube-proxy, so a Service name resolves to
//! its endpoints as if it were headless. Other names get NXDOMAIN.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use futures::StreamExt as _;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, ResourceExt};
use tokio::net::UdpSocket;
use tracing::warn;

/// What a name resolves to.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// These addresses (possibly none: the name exists without ready endpoints).
    Addresses(Vec<Ipv4Addr>),
    /// No such name.
    NotFound,
}

/// Resolves `name` (lowercase, without the trailing dot) against the Services and
/// EndpointSlices; a pure function of the two lists.
pub fn resolve(
    name: &str,
    domain: &str,
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
) -> Answer {
    let Some(rest) = name.strip_suffix(&format!(".svc.{domain}")) else {
        return Answer::NotFound;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    let (hostname, svc, ns) = match parts.as_slice() {
        [svc, ns] => (None, *svc, *ns),
        [host, svc, ns] => (Some(*host), *svc, *ns),
        _ => return Answer::NotFound,
    };
    let Some(service) = services
        .iter()
        .find(|s| s.name_any() == svc && s.namespace().as_deref() == Some(ns))
    else {
        return Answer::NotFound;
    };
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut out = Vec::new();
    for slice in slices.iter().filter(|s| {
        s.namespace().as_deref() == Some(ns)
            && s.labels()
                .get("kubernetes.io/service-name")
                .map(String::as_str)
                == Some(svc)
    }) {
        for ep in slice.endpoints.iter().flatten() {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !(ready || publish_not_ready) {
                continue;
            }
            if hostname.is_some() && ep.hostname.as_deref() != hostname {
                continue;
            }
            out.extend(
                ep.addresses
                    .iter()
                    .filter_map(|a| a.parse::<Ipv4Addr>().ok()),
            );
        }
    }
    if hostname.is_some() && out.is_empty() {
        return Answer::NotFound;
    }
    out.sort();
    out.dedup();
    Answer::Addresses(out)
}

/// Serves DNS over UDP on `bind` until the process ends.
pub async fn serve(client: kube::Client, bind: SocketAddr, domain: String) -> anyhow::Result<()> {
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let svc_stream = reflector::reflector(
        svc_writer,
        watcher(Api::<Service>::all(client.clone()), Default::default()),
    );
    let slice_stream = reflector::reflector(
        slice_writer,
        watcher(Api::<EndpointSlice>::all(client), Default::default()),
    );
    tokio::spawn(svc_stream.default_backoff().for_each(|e| async move {
        if let Err(e) = e {
            warn!("dns: services watch: {e}");
        }
    }));
    tokio::spawn(slice_stream.default_backoff().for_each(|e| async move {
        if let Err(e) = e {
            warn!("dns: endpointslices watch: {e}");
        }
    }));
    let socket = UdpSocket::bind(bind).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = socket.recv_from(&mut buf).await?;
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let reply = answer(&query, &domain, &services, &slices);
        if let Ok(bytes) = reply.to_vec() {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

fn answer(
    query: &Message,
    domain: &str,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
) -> Message {
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    let (svcs, sls) = (services.state(), slices.state());
    for q in &query.queries {
        reply.add_query(q.clone());
        let name = q.name().to_ascii().trim_end_matches('.').to_lowercase();
        match resolve(&name, domain, &svcs, &sls) {
            Answer::NotFound => reply.metadata.response_code = ResponseCode::NXDomain,
            Answer::Addresses(ips) => {
                if matches!(q.query_type(), RecordType::A | RecordType::ANY) {
                    for ip in ips {
                        reply.add_answer(Record::from_rdata(q.name().clone(), 5, RData::A(A(ip))));
                    }
                }
            }
        }
    }
    reply
}
