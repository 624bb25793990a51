//! The admin API of a running job: versioned HTTP/JSON on 127.0.0.1, the only way into a job
//! from outside (`weir savepoint create`, later the operator). Handlers turn requests into
//! [`AdminRequest`]s for the coordinator thread and return its answers; errors are JSON with a
//! stable code and a message.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `GET /healthz` | `ok` |
//! | `GET /v1/job` | [`JobInfo`] |
//! | `GET /v1/jobs/{id}` | [`JobInfo`] when `id` is this job's, else 404 `unknown_job` |
//! | `GET /v1/checkpoints` | [`CheckpointsInfo`] |
//! | `POST /v1/savepoints` `{"directory": "<uri>"?}` | 202 `{"triggerId": "..."}` |
//! | `GET /v1/savepoints/{triggerId}` | [`SavepointStatus`] |
//! | `POST /v1/job/stop` `{"withSavepoint": true, "directory": "<uri>"?, "drain": false}` | 202 [`StopResponse`] |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /readyz` | 200 once the tasks run, else 503 |
//!
//! With a token (always on Kubernetes and under `weir run`), every path but `/healthz` and
//! `/readyz` needs `Authorization: Bearer <token>`, else 401 `unauthorized`.
//!
//! The body types live in the `weir-api-types` crate; `runtime/admin-api.yaml` is the
//! OpenAPI description.

mod request;
mod server;

pub use request::AdminRequest;
pub use server::{discovery_file, serve, token_file, write_token_file, AdminServer};
pub use weir_api_types::{
    AdminToken, ApiError, CheckpointInfo, CheckpointsInfo, JobInfo, JobRunState, SavepointState,
    SavepointStatus, StopRequest, StopResponse, TriggerRequest, TriggerResponse,
};
