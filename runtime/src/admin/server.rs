//! The admin HTTP server (axum) on its own thread and runtime. I/O.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crossbeam_channel::Sender;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::types::{AdminRequest, ApiError, TriggerResponse};

/// A running admin server.
pub struct AdminServer {
    /// Its address.
    pub addr: SocketAddr,
    discovery: PathBuf,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.discovery);
    }
}

/// The file in which a run publishes its admin URL: `<local dir>.admin`.
pub fn discovery_file(local_dir: &Path) -> PathBuf {
    local_dir.with_extension("admin")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

/// Starts the server on `127.0.0.1:port` (0 = any free port) and writes its URL to the
/// discovery file of `local_dir`.
///
/// # Errors
/// I/O errors binding the port or writing the discovery file.
pub fn serve(
    port: u16,
    local_dir: &Path,
    requests: Sender<AdminRequest>,
) -> std::io::Result<AdminServer> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/job", get(job))
        .route("/v1/checkpoints", get(checkpoints))
        .route("/v1/savepoints", post(trigger_savepoint))
        .route("/v1/savepoints/{trigger_id}", get(savepoint))
        .fallback(|| async { ApiError::new(404, "not_found", "no such endpoint; see GET /v1/job") })
        .with_state(requests);
    std::thread::Builder::new()
        .name("weir-admin".into())
        .spawn(move || {
            if let Err(e) = rt.block_on(async { axum::serve(listener, app).await }) {
                tracing::error!("admin API stopped: {e}");
            }
        })?;
    let discovery = discovery_file(local_dir);
    std::fs::write(&discovery, format!("http://{addr}\n"))?;
    tracing::info!(%addr, "admin API on http://{addr}");
    Ok(AdminServer { addr, discovery })
}

/// Sends a request to the coordinator and waits for its answer.
async fn ask<T>(
    requests: &Sender<AdminRequest>,
    make: impl FnOnce(oneshot::Sender<T>) -> AdminRequest,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    let gone = || ApiError::new(503, "job_stopped", "the job is stopping");
    requests.send(make(tx)).map_err(|_| gone())?;
    rx.await.map_err(|_| gone())
}

async fn job(State(requests): State<Sender<AdminRequest>>) -> Response {
    match ask(&requests, AdminRequest::Job).await {
        Ok(info) => Json(info).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn checkpoints(State(requests): State<Sender<AdminRequest>>) -> Response {
    match ask(&requests, AdminRequest::Checkpoints).await {
        Ok(info) => Json(info).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TriggerBody {
    directory: Option<String>,
}

async fn trigger_savepoint(
    State(requests): State<Sender<AdminRequest>>,
    body: axum::body::Bytes,
) -> Response {
    let body: TriggerBody = if body.is_empty() {
        TriggerBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return ApiError::new(400, "malformed_request", format!("body: {e}"))
                    .into_response()
            }
        }
    };
    let answer = ask(&requests, |reply| AdminRequest::TriggerSavepoint {
        directory: body.directory,
        reply,
    })
    .await;
    match answer.and_then(|r| r) {
        Ok(trigger_id) => {
            (StatusCode::ACCEPTED, Json(TriggerResponse { trigger_id })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn savepoint(
    State(requests): State<Sender<AdminRequest>>,
    UrlPath(trigger_id): UrlPath<String>,
) -> Response {
    let id = trigger_id.clone();
    match ask(&requests, |reply| AdminRequest::Savepoint {
        trigger_id: id,
        reply,
    })
    .await
    {
        Ok(Some(status)) => Json(status).into_response(),
        Ok(None) => ApiError::new(
            404,
            "unknown_trigger",
            format!("no savepoint trigger `{trigger_id}`"),
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}
