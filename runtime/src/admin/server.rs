//! The admin HTTP server (axum) on its own thread and runtime. I/O.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crossbeam_channel::Sender;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::request::AdminRequest;
use weir_api_types::{
    AdminToken, ApiError, DisposeRequest, StopRequest, StopResponse, TriggerRequest,
    TriggerResponse,
};

/// A running admin server.
pub struct AdminServer {
    /// Its address.
    pub addr: SocketAddr,
    discovery: Option<PathBuf>,
    ready: Arc<AtomicBool>,
    shutdown: Option<oneshot::Sender<()>>,
    stopped: Option<crossbeam_channel::Receiver<()>>,
}

impl AdminServer {
    /// Marks the job ready (`/readyz` answers 200): its tasks run.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Marks the job not ready (`/readyz` answers 503): it is restarting or failed.
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }
}

impl Drop for AdminServer {
    /// Stops accepting requests and lets the ones in flight answer (at most 2 s), so that the
    /// answer to a cancel or stop reaches its client before the process exits.
    fn drop(&mut self) {
        if let Some(d) = &self.discovery {
            let _ = std::fs::remove_file(d);
            let _ = std::fs::remove_file(d.with_extension("admin-token"));
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.recv_timeout(std::time::Duration::from_secs(2));
        }
    }
}

/// The file in which a run publishes its admin URL: `<local dir>.admin`.
pub fn discovery_file(local_dir: &Path) -> PathBuf {
    local_dir.with_extension("admin")
}

#[derive(Clone)]
struct AppState {
    requests: Sender<AdminRequest>,
    ready: Arc<AtomicBool>,
    /// S3 settings for savepoint URIs (`checkpointing.s3` of the job).
    s3: Option<weir_crds::S3Spec>,
    /// Where savepoints may be disposed (URI prefixes); `None`: anywhere.
    savepoint_prefixes: Option<Vec<String>>,
}

struct Error(ApiError);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

/// The file in which a run publishes its admin token (mode 0600): `<local dir>.admin-token`.
pub fn token_file(local_dir: &Path) -> PathBuf {
    local_dir.with_extension("admin-token")
}

/// Writes `token` to `path`, readable and writable by its owner only (0600), replacing a
/// stale file of an earlier run.
///
/// # Errors
/// I/O errors creating or writing the file.
pub fn write_token_file(path: &Path, token: &AdminToken) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(token.expose().as_bytes())
}

/// Starts the server on `bind` (port 0 = any free port) and, given `local_dir`, writes its
/// URL to the discovery file of `local_dir` (and `token`, when given, to its token file,
/// mode 0600). `s3` (the job's `checkpointing.s3`) applies to the `s3://` savepoint URIs of
/// `POST /v1/savepoint-disposal`; with `savepoint_prefixes`, only a location below one of them
/// is disposed (else 403 `outside_job_storage`).
///
/// With a `token`, every request but `GET /healthz` and `GET /readyz` (the kubelet's probes,
/// which carry nothing and change nothing) needs `Authorization: Bearer <token>`; anything
/// else is answered 401 `unauthorized` (JSON, `WWW-Authenticate: Bearer`) and changes nothing.
///
/// # Errors
/// I/O errors binding the address or writing the discovery or token file.
pub fn serve(
    bind: SocketAddr,
    local_dir: Option<&Path>,
    requests: Sender<AdminRequest>,
    s3: Option<weir_crds::S3Spec>,
    token: Option<AdminToken>,
    savepoint_prefixes: Option<Vec<String>>,
) -> std::io::Result<AdminServer> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind(bind))?;
    let addr = listener.local_addr()?;
    let ready = Arc::new(AtomicBool::new(false));
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/job", get(job))
        .route("/v1/jobs/{job_id}", get(job_by_id))
        .route("/v1/job/stop", post(stop))
        .route("/v1/checkpoints", get(checkpoints))
        .route("/v1/savepoints", post(trigger_savepoint))
        .route("/v1/savepoints/{trigger_id}", get(savepoint))
        .route("/v1/savepoint-disposal", post(dispose_savepoint))
        .fallback(|| async {
            Error(ApiError::new(
                404,
                "not_found",
                "no such endpoint; see runtime/admin-api.yaml",
            ))
        })
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(token.clone()),
            authenticate,
        ))
        .merge(probes)
        .with_state(AppState {
            requests,
            ready: ready.clone(),
            s3,
            savepoint_prefixes,
        });
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let (stopped_tx, stopped) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("weir-admin".into())
        .spawn(move || {
            let served = rt.block_on(async {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = shutdown_rx.await;
                    })
                    .await
            });
            if let Err(e) = served {
                tracing::error!("admin API stopped: {e}");
            }
            let _ = stopped_tx.send(());
        })?;
    let discovery = local_dir.map(discovery_file);
    if let (Some(dir), Some(t)) = (local_dir, &token) {
        write_token_file(&token_file(dir), t)?;
    }
    if let Some(d) = &discovery {
        std::fs::write(d, format!("http://{addr}\n"))?;
    }
    tracing::info!(%addr, "admin API on http://{addr}");
    Ok(AdminServer {
        addr,
        discovery,
        ready,
        shutdown: Some(shutdown),
        stopped: Some(stopped),
    })
}

/// Admits a request that carries the job's token (or any request when the server has none);
/// answers anything else 401 `unauthorized` without running its handler.
async fn authenticate(
    State(token): State<Arc<Option<AdminToken>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = token.as_ref() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if token.admits(presented) {
        return next.run(request).await;
    }
    crate::net::auth::count_refused(crate::net::auth::Port::Admin);
    tracing::warn!(
        method = %request.method(),
        path = request.uri().path(),
        with_credentials = presented.is_some(),
        "admin request refused: no valid bearer token"
    );
    let mut response = Error(ApiError::new(
        401,
        "unauthorized",
        "send the job's admin token as `Authorization: Bearer <token>` (on Kubernetes the Secret <job>-admin-token; under `weir run` the file <local state dir>.admin-token)",
    ))
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"weir\""),
    );
    response
}

/// Sends a request to the coordinator and waits for its answer.
async fn ask<T>(
    state: &AppState,
    make: impl FnOnce(oneshot::Sender<T>) -> AdminRequest,
) -> Result<T, Error> {
    let (tx, rx) = oneshot::channel();
    let gone = || Error(ApiError::new(503, "job_stopped", "the job is not running"));
    state.requests.send(make(tx)).map_err(|_| gone())?;
    rx.await.map_err(|_| gone())
}

/// An optional JSON body: empty means the type's default; malformed is a 400 naming why.
fn body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Error(ApiError::new(
            400,
            "malformed_request",
            format!("body: {e}"),
        ))
    })
}

/// Rejects a caller-chosen trigger id the API does not accept (400 `invalid_trigger_id`).
fn check_trigger_id(id: Option<&str>) -> Result<(), Error> {
    match id {
        Some(id) if !weir_api_types::valid_trigger_id(id) => Err(Error(ApiError::new(
            400,
            "invalid_trigger_id",
            format!("triggerId `{id}`: use 1 to 64 characters of A-Z a-z 0-9 . _ -"),
        ))),
        _ => Ok(()),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready").into_response()
    } else {
        Error(ApiError::new(
            503,
            "starting",
            "the job is restoring or starting its tasks",
        ))
        .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Result<Response, Error> {
    let text = ask(&state, AdminRequest::Metrics).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn job(State(state): State<AppState>) -> Result<Response, Error> {
    Ok(Json(ask(&state, AdminRequest::Job).await?).into_response())
}

async fn job_by_id(
    State(state): State<AppState>,
    UrlPath(job_id): UrlPath<String>,
) -> Result<Response, Error> {
    let info = ask(&state, AdminRequest::Job).await?;
    if info.id != job_id {
        return Err(Error(ApiError::new(
            404,
            "unknown_job",
            format!(
                "no job with id `{job_id}` here; this coordinator runs job `{}` ({})",
                info.id, info.name
            ),
        )));
    }
    Ok(Json(info).into_response())
}

async fn checkpoints(State(state): State<AppState>) -> Result<Response, Error> {
    Ok(Json(ask(&state, AdminRequest::Checkpoints).await?).into_response())
}

async fn trigger_savepoint(
    State(state): State<AppState>,
    bytes: axum::body::Bytes,
) -> Result<Response, Error> {
    let request: TriggerRequest = body(&bytes)?;
    check_trigger_id(request.trigger_id.as_deref())?;
    let trigger_id = ask(&state, |reply| AdminRequest::TriggerSavepoint {
        directory: request.directory,
        trigger_id: request.trigger_id,
        reply,
    })
    .await?
    .map_err(Error)?;
    Ok((StatusCode::ACCEPTED, Json(TriggerResponse { trigger_id })).into_response())
}

async fn stop(State(state): State<AppState>, bytes: axum::body::Bytes) -> Result<Response, Error> {
    let request: StopRequest = body(&bytes)?;
    check_trigger_id(request.trigger_id.as_deref())?;
    let trigger_id = ask(&state, |reply| AdminRequest::Stop { request, reply })
        .await?
        .map_err(Error)?;
    Ok((StatusCode::ACCEPTED, Json(StopResponse { trigger_id })).into_response())
}

async fn savepoint(
    State(state): State<AppState>,
    UrlPath(trigger_id): UrlPath<String>,
) -> Result<Response, Error> {
    let id = trigger_id.clone();
    match ask(&state, |reply| AdminRequest::Savepoint {
        trigger_id: id,
        reply,
    })
    .await?
    {
        Some(status) => Ok(Json(status).into_response()),
        None => Err(Error(ApiError::new(
            404,
            "unknown_trigger",
            format!("no savepoint trigger `{trigger_id}`"),
        ))),
    }
}

/// Deletes a savepoint's files on a thread of its own (storage I/O blocks); 200 when done or
/// already gone, 409 `not_a_savepoint` when the location holds no savepoint, 502
/// `storage_failed` when storage fails (retrying may help).
async fn dispose_savepoint(
    State(state): State<AppState>,
    bytes: axum::body::Bytes,
) -> Result<Response, Error> {
    let request: DisposeRequest = serde_json::from_slice(&bytes).map_err(|e| {
        Error(ApiError::new(
            400,
            "malformed_request",
            format!("body: {e}; send {{\"location\": \"<savepoint URI>\"}}"),
        ))
    })?;
    if let Some(prefixes) = &state.savepoint_prefixes {
        crate::storage::paths::check_within(&request.location, prefixes)
            .map_err(|e| Error(e.into()))?;
    }
    let (tx, rx) = oneshot::channel();
    let location = request.location.clone();
    std::thread::spawn(move || {
        let _ = tx.send(crate::runner::dispose_savepoint(
            &location,
            state.s3.as_ref(),
        ));
    });
    match rx.await {
        Ok(Ok(())) => Ok((StatusCode::OK, Json(request)).into_response()),
        Ok(Err(crate::runner::RunError::Savepoint { reason, .. })) => Err(Error(ApiError::new(
            409,
            "not_a_savepoint",
            format!("{}: {reason}", request.location),
        ))),
        Ok(Err(e)) => Err(Error(ApiError::new(
            502,
            "storage_failed",
            crate::runner::error_chain(&e),
        ))),
        Err(_) => Err(Error(ApiError::new(
            500,
            "internal",
            "the disposal thread ended without an answer",
        ))),
    }
}
