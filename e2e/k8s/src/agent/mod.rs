//! The node agent: the one stand-in of the Kubernetes test cluster (a kubelet, a container
//! runtime, a CNI plugin and a cluster DNS in one process). It registers a Node, runs every
//! pod scheduled to it as processes (see [`pod`]), and answers Service names (see [`dns`]).
//! What it does not do is listed in `e2e/README.md`.

pub mod dns;
pub mod images;
pub mod network;
pub mod node;
pub mod pod;
pub mod probe;
pub mod process;
pub mod security;
pub mod volumes;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use kube::Api;
use tokio::sync::watch;
use tracing::{info, warn};

use images::Images;
use network::Network;

/// The agent's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Name of the Node.
    pub node_name: String,
    /// Name of the pod bridge (at most 10 characters: pod namespaces are `<bridge>-<n>`).
    pub bridge: String,
    /// The host's address on the bridge (a /16 of pods around it), where pods reach the API
    /// server, the DNS server and anything else the host serves.
    pub host_ip: Ipv4Addr,
    /// The API server's port, given to pods as `KUBERNETES_SERVICE_PORT`.
    pub apiserver_port: u16,
    /// Where pods' files, volumes and logs live (`<state_dir>/pods/<ns>_<name>_<uid>/`).
    pub state_dir: PathBuf,
    /// The image table.
    pub images: Images,
    /// The cluster's DNS domain (`cluster.local`).
    pub cluster_domain: String,
}

/// What every pod supervisor shares.
pub struct Shared {
    /// The agent's client (admin credentials).
    pub client: kube::Client,
    /// The pod network.
    pub network: Network,
    /// The image table.
    pub images: Images,
    /// See [`Config::state_dir`].
    pub state_dir: PathBuf,
    /// See [`Config::apiserver_port`].
    pub apiserver_port: u16,
    /// See [`Config::cluster_domain`].
    pub cluster_domain: String,
}

/// Runs the agent until `shutdown` resolves; then kills every pod's processes and removes
/// the pod network.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let network = Network::create(&config.bridge, config.host_ip).await?;
    node::register(&client, &config.node_name, &config.host_ip.to_string()).await?;
    tokio::spawn(node::heartbeat(
        client.clone(),
        config.node_name.clone(),
        config.host_ip.to_string(),
    ));
    {
        let (client, domain) = (client.clone(), config.cluster_domain.clone());
        let bind = SocketAddr::from((config.host_ip, 53));
        tokio::spawn(async move {
            if let Err(e) = dns::serve(client, bind, domain).await {
                warn!("dns server stopped: {e:#}");
            }
        });
    }
    let shared = Arc::new(Shared {
        client: client.clone(),
        network,
        images: config.images.clone(),
        state_dir: config.state_dir.clone(),
        apiserver_port: config.apiserver_port,
        cluster_domain: config.cluster_domain.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let pods: Api<Pod> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name));
    let mut events = watcher::watcher(pods, cfg).default_backoff().boxed();
    let mut known: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    info!(node = %config.node_name, "node agent ready");
    tokio::pin!(shutdown);
    loop {
        let event = tokio::select! {
            _ = &mut shutdown => break,
            e = events.next() => e,
        };
        let Some(event) = event else { break };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!("pod watch: {e}");
                continue;
            }
        };
        match event {
            Event::Apply(pod) | Event::InitApply(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                match known.get(&uid) {
                    Some(tx) => {
                        let _ = tx.send(Some(pod));
                    }
                    None => {
                        let (tx, rx) = watch::channel(Some(pod));
                        known.insert(uid, tx);
                        tasks.spawn(pod::supervise(shared.clone(), rx, stop_rx.clone()));
                    }
                }
            }
            Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(tx) = known.remove(&uid) {
                    let _ = tx.send(None);
                }
            }
            Event::Init | Event::InitDone => {}
        }
        known.retain(|_, tx| !tx.is_closed());
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    shared.network.remove().await;
    Ok(())
}
