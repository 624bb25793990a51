//! The only way the operator reaches a job: its coordinator's admin API
//! (`runtime/admin-api.yaml`). A trait, so tests can stand in for the coordinator, and its
//! HTTP implementation (ureq, blocking: call it from `spawn_blocking`).

use std::time::Duration;

use weir_api_types::{
    AdminToken, CheckpointsInfo, DisposeRequest, JobInfo, SavepointStatus, StopRequest,
    TriggerRequest,
};

use crate::error::CoordinatorError;

/// Where a job's admin API is and the token it requires.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEndpoint {
    /// The API's base URL ([`crate::names::admin_url`]).
    pub url: String,
    /// The job's admin token (from its Secret), sent as `Authorization: Bearer`; `None` for a
    /// job deployed before tokens existed, whose coordinator requires none.
    pub token: Option<AdminToken>,
}

/// The admin API calls the operator makes, each to the job at `job`. Every call is
/// idempotent: trigger ids are the caller's.
pub trait CoordinatorApi: Send + Sync + 'static {
    /// `GET /v1/job` and `GET /v1/checkpoints`; `Ok(None)` when nothing answers (the pod is
    /// starting, gone, or its Service has no endpoint yet).
    ///
    /// # Errors
    /// An answer other than 200 (the coordinator is there but misbehaves).
    fn job(
        &self,
        job: &JobEndpoint,
    ) -> Result<Option<(JobInfo, CheckpointsInfo)>, CoordinatorError>;

    /// `GET /v1/savepoints/{trigger_id}`; `Ok(None)` for an unknown trigger or no answer.
    ///
    /// # Errors
    /// An answer other than 200 or 404.
    fn savepoint(
        &self,
        job: &JobEndpoint,
        trigger_id: &str,
    ) -> Result<Option<SavepointStatus>, CoordinatorError>;

    /// `POST /v1/savepoints` (202; a 409 "not running" is not an error: the next observation
    /// shows why).
    ///
    /// # Errors
    /// No answer, or an answer other than 202 or 409.
    fn trigger_savepoint(
        &self,
        job: &JobEndpoint,
        trigger_id: &str,
        directory: Option<&str>,
    ) -> Result<(), CoordinatorError>;

    /// `POST /v1/job/stop` with a savepoint (202 or 409, as [`CoordinatorApi::trigger_savepoint`]).
    ///
    /// # Errors
    /// As [`CoordinatorApi::trigger_savepoint`].
    fn stop_with_savepoint(
        &self,
        job: &JobEndpoint,
        trigger_id: &str,
        directory: Option<&str>,
    ) -> Result<(), CoordinatorError>;

    /// `POST /v1/savepoint-disposal` (200; 409 "not a savepoint" is logged and accepted:
    /// there is nothing to delete).
    ///
    /// # Errors
    /// No answer, or an answer other than 200 or 409.
    fn dispose_savepoint(&self, job: &JobEndpoint, location: &str) -> Result<(), CoordinatorError>;
}

/// [`CoordinatorApi`] over HTTP with a 5 s timeout per request.
#[derive(Debug, Clone)]
pub struct HttpCoordinatorApi {
    agent: ureq::Agent,
}

impl Default for HttpCoordinatorApi {
    fn default() -> Self {
        Self {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into(),
        }
    }
}

/// An answer: status and body text; `Err` when nothing answered.
type Answer = Result<(u16, String), CoordinatorError>;

impl HttpCoordinatorApi {
    fn call(&self, url: &str, token: Option<&AdminToken>, body: Option<String>) -> Answer {
        let bearer = token.map(AdminToken::authorization);
        let sent = match (body, bearer) {
            (None, None) => self.agent.get(url).call(),
            (None, Some(t)) => self.agent.get(url).header("authorization", &t).call(),
            (Some(b), None) => self
                .agent
                .post(url)
                .header("content-type", "application/json")
                .send(b),
            (Some(b), Some(t)) => self
                .agent
                .post(url)
                .header("content-type", "application/json")
                .header("authorization", &t)
                .send(b),
        };
        let mut resp = sent.map_err(|e| CoordinatorError::Unreachable {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Ok((status, text))
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        job: &JobEndpoint,
        path: &str,
    ) -> Result<Option<T>, CoordinatorError> {
        let url = &format!("{}{path}", job.url);
        match self.call(url, job.token.as_ref(), None) {
            Err(CoordinatorError::Unreachable { .. }) => Ok(None),
            Err(e) => Err(e),
            Ok((200, body)) => {
                serde_json::from_str(&body)
                    .map(Some)
                    .map_err(|e| CoordinatorError::Answer {
                        url: url.to_string(),
                        status: 200,
                        body: format!("{e}: {body}"),
                    })
            }
            Ok((404, _)) => Ok(None),
            Ok((status, body)) => Err(CoordinatorError::Answer {
                url: url.to_string(),
                status,
                body,
            }),
        }
    }

    fn post(
        &self,
        job: &JobEndpoint,
        path: &str,
        body: String,
        ok: &[u16],
    ) -> Result<(), CoordinatorError> {
        let url = &format!("{}{path}", job.url);
        match self.call(url, job.token.as_ref(), Some(body))? {
            (status, _) if ok.contains(&status) => Ok(()),
            (status, body) => Err(CoordinatorError::Answer {
                url: url.to_string(),
                status,
                body,
            }),
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("invariant: request bodies serialize")
}

impl CoordinatorApi for HttpCoordinatorApi {
    fn job(
        &self,
        job: &JobEndpoint,
    ) -> Result<Option<(JobInfo, CheckpointsInfo)>, CoordinatorError> {
        let Some(info) = self.get::<JobInfo>(job, "/v1/job")? else {
            return Ok(None);
        };
        Ok(self
            .get::<CheckpointsInfo>(job, "/v1/checkpoints")?
            .map(|c| (info, c)))
    }

    fn savepoint(
        &self,
        job: &JobEndpoint,
        trigger_id: &str,
    ) -> Result<Option<SavepointStatus>, CoordinatorError> {
        self.get(job, &format!("/v1/savepoints/{trigger_id}"))
    }

    fn trigger_savepoint(
        &self,
        job: &JobEndpoint,
        trigger_id: &str,
        directory: Option<&str>,
    ) -> Result<(), CoordinatorError> {
        let body = TriggerRequest {
            directory: directory.map(str::to_string),
            trigger_id: Some(trigger_id.to_string()),
        };
        self.post(job, "/v1/savepoints", json(&body), &[202, 409])
    }

    fn stop_with_savepoint(
        &self,
        job: &JobEndpoint,
        trigger_id: &str,
        directory: Option<&str>,
    ) -> Result<(), CoordinatorError> {
        let body = StopRequest {
            with_savepoint: true,
            directory: directory.map(str::to_string),
            trigger_id: Some(trigger_id.to_string()),
            drain: false,
        };
        self.post(job, "/v1/job/stop", json(&body), &[202, 409])
    }

    fn dispose_savepoint(&self, job: &JobEndpoint, location: &str) -> Result<(), CoordinatorError> {
        let body = DisposeRequest {
            location: location.to_string(),
        };
        self.post(job, "/v1/savepoint-disposal", json(&body), &[200, 409])
    }
}
