//! `weir-operator run | crd`: the controller process (telemetry, leader election, `/metrics`,
//! `/healthz`, `/readyz`) and the CRD printer.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kube::runtime::events::{Recorder, Reporter};
use kube_lease_manager::LeaseManagerBuilder;
use tracing::{error, info};
use weir_operator::build::OperatorPods;
use weir_operator::controller::{self, Context};
use weir_operator::coordinator_api::HttpCoordinatorApi;
use weir_operator::metrics::Metrics;
use weir_operator::names;

#[derive(Parser)]
#[command(
    name = "weir-operator",
    version,
    about = "The Weir Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(RunArgs),
    /// Print the StreamJob CustomResourceDefinition (YAML).
    Crd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(
        long,
        env = "WEIR_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    namespaces: Vec<String>,
    /// Image of the job pods when a StreamJob names none.
    #[arg(long, env = "WEIR_DEFAULT_IMAGE", default_value = concat!("ghcr.io/weir-dev/weir:", env!("CARGO_PKG_VERSION")))]
    default_image: String,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "WEIR_METRICS_BIND", default_value = "0.0.0.0:8080")]
    metrics_bind: SocketAddr,
    /// Take part in leader election (a Lease), so several replicas can run with one active.
    #[arg(long, env = "WEIR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "WEIR_LEASE_NAME", default_value = "weir-operator")]
    lease_name: String,
    /// This replica's identity in the election and in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Give every job a NetworkPolicy: its admin port admits only the operator's pods (in
    /// this pod's namespace, with `--operator-pod-labels`), its control and data ports only
    /// the job's own pods.
    #[arg(long, env = "WEIR_NETWORK_POLICIES", default_value_t = false, action = clap::ArgAction::Set)]
    network_policies: bool,
    /// Labels of the operator's pods, `k=v,k=v` (the chart's selector labels); required with
    /// --network-policies.
    #[arg(long, env = "WEIR_OPERATOR_POD_LABELS", default_value = "")]
    operator_pod_labels: String,
}

/// The operator's pods for the jobs' NetworkPolicies: namespace `namespace`, labels `labels`
/// (`k=v,k=v`).
fn operator_pods(namespace: &str, labels: &str) -> anyhow::Result<OperatorPods> {
    let labels = labels
        .split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .with_context(|| format!("--operator-pod-labels: `{kv}` is not k=v"))
        })
        .collect::<anyhow::Result<std::collections::BTreeMap<_, _>>>()?;
    anyhow::ensure!(
        !labels.is_empty(),
        "--network-policies needs --operator-pod-labels (WEIR_OPERATOR_POD_LABELS): the labels of the operator's pods, which alone may reach the jobs' admin ports"
    );
    Ok(OperatorPods {
        namespace: namespace.to_string(),
        labels,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // With both of rustls' providers compiled in (a workspace build), it picks none on its
    // own and the first TLS connection panics; ring is the one kube's features name.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", weir_operator::crds::crd_yaml());
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let namespaces: Vec<String> = args
        .namespaces
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster service account or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    serve_telemetry(args.metrics_bind, metrics.clone(), ready.clone()).await?;
    let network_policy = args
        .network_policies
        .then(|| operator_pods(&args.lease_namespace, &args.operator_pod_labels))
        .transpose()?;
    let identity = args
        .identity
        .unwrap_or_else(|| format!("weir-operator-{}", std::process::id()));
    let ctx = Arc::new(Context {
        client: client.clone(),
        coordinator: Arc::new(HttpCoordinatorApi::default()),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: names::FIELD_MANAGER.into(),
                instance: Some(identity.clone()),
            },
        ),
        metrics,
        default_image: args.default_image,
        admin_url: names::admin_url,
        tokens: Default::default(),
        network_policy,
    });
    // Not ready until StreamJobs can be listed (the CRD is installed, RBAC allows it).
    while let Err(e) = controller::preflight(&client, &namespaces).await {
        error!("{}; retrying in 5 s", weir_operator::error_chain(&e));
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
    if !args.leader_election {
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        controller::run(ctx, namespaces).await;
        return Ok(());
    }
    let manager = LeaseManagerBuilder::new(client, &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(&identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .context("leader election: cannot create or read the Lease")?;
    // Ready once this replica can take part: the API server answers and the Lease is
    // readable. Not tied to leadership: a standby that reported NotReady would never let a
    // rolling update (`helm upgrade`, `kubectl rollout restart`) of the operator complete,
    // since the old pod keeps the Lease until it is gone.
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut leader, lease_task) = manager.watch().await;
    info!(
        identity,
        lease = args.lease_name,
        "waiting to become the leader"
    );
    while !*leader.borrow_and_update() {
        leader.changed().await.context("leader election stopped")?;
    }
    info!(identity, "leader: starting the controller");
    let lost = async {
        while *leader.borrow_and_update() {
            if leader.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = controller::run(ctx, namespaces) => {
            drop(leader);
            let _ = lease_task.await;
            Ok(())
        }
        () = lost => {
            // Another replica may act from now on: stop at once rather than race it.
            error!(identity, "lost the leader lease; exiting");
            std::process::exit(1);
        }
    }
}

/// Serves `/metrics`, `/healthz` (the process runs) and `/readyz` (the replica reached the API
/// server and takes part in leader election, leading or standing by; or election is off) on
/// `bind`.
async fn serve_telemetry(
    bind: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.load(std::sync::atomic::Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "standby")
                }
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (--metrics-bind)"))?;
    info!(%bind, "metrics on http://{bind}/metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!("metrics server stopped: {e}");
        }
    });
    Ok(())
}
