//! `weir-node-agent`: a node of the end-to-end test cluster that runs pods as processes.
//! Needs root (network namespaces, bind mounts) and a kubeconfig (`KUBECONFIG`).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Parser;
use weir_e2e_k8s::agent::{self, images::Images};

#[derive(Parser)]
#[command(
    name = "weir-node-agent",
    about = "Runs the pods of one Kubernetes node as processes (tests only)"
)]
struct Cli {
    /// Name of the Node.
    #[arg(long, default_value = "weir-node")]
    node_name: String,
    /// Name of the pod bridge (at most 10 characters).
    #[arg(long, default_value = "weir0")]
    bridge: String,
    /// The host's address on the bridge; pods get addresses in its /16.
    #[arg(long, default_value = "10.201.0.1")]
    host_ip: Ipv4Addr,
    /// The API server's port, as pods see it (`KUBERNETES_SERVICE_PORT`).
    #[arg(long)]
    apiserver_port: u16,
    /// Directory of the pods' files, volumes and logs.
    #[arg(long)]
    state_dir: PathBuf,
    /// The image table (YAML: reference -> entrypoint, cmd, binaries, files).
    #[arg(long)]
    images: PathBuf,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    // Both of rustls' providers are compiled into a workspace build; choose one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let client = kube::Client::try_default().await?;
    let config = agent::Config {
        node_name: cli.node_name,
        bridge: cli.bridge,
        host_ip: cli.host_ip,
        apiserver_port: cli.apiserver_port,
        state_dir: cli.state_dir,
        images: Images::load(&cli.images)?,
        cluster_domain: cli.cluster_domain,
    };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    agent::run(client, config, shutdown).await
}
