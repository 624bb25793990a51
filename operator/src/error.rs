//! The operator's errors, each with a bounded category for metric labels and Event reasons.

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API request failed (retrying may help: conflicts, timeouts, restarts).
    #[error("kubernetes api: {action}")]
    Kube {
        /// What was attempted, e.g. `apply Deployment wordcount-coordinator`.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The coordinator's admin API failed in a way retrying may fix (unreachable, 5xx).
    #[error("coordinator api: {action}")]
    Coordinator {
        /// What was attempted, e.g. `stop with savepoint upgrade-4-1`.
        action: String,
        /// The cause.
        #[source]
        source: CoordinatorError,
    },
    /// The StreamJob cannot be run as written: waits for the next change (a Warning Event
    /// names the field and the fix).
    #[error("invalid StreamJob: {0}")]
    InvalidSpec(String),
}

impl Error {
    /// A bounded label: `kube`, `coordinator` or `invalid_spec`.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Coordinator { .. } => "coordinator",
            Error::InvalidSpec(_) => "invalid_spec",
        }
    }

    /// True when reconciling again later may succeed without a change of the StreamJob.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Error::InvalidSpec(_))
    }

    /// The API server's refusal of a request as one it will refuse again unchanged: a client
    /// error (400 Bad Request, 403 Forbidden (RBAC, quota, an admission webhook), 404 Not
    /// Found (a missing namespace), 422 Invalid (a field of the object)), but not 408, 409
    /// Conflict, 410 Gone or 429 Too Many Requests, which retrying fixes. Returns
    /// `"<what was attempted>: <the server's message>"`.
    pub fn rejection(&self) -> Option<String> {
        match self {
            Error::Kube {
                action,
                source: kube::Error::Api(status),
            } if (400..500).contains(&status.code)
                && !matches!(status.code, 408 | 409 | 410 | 429) =>
            {
                Some(format!(
                    "{action}: {} ({} {})",
                    status.message, status.code, status.reason
                ))
            }
            _ => None,
        }
    }

    /// Wraps a Kubernetes client error with what was attempted.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }
}

/// A failed call of the coordinator's admin API.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// No answer (connection refused, timeout, DNS).
    #[error("no answer from {url}: {message}")]
    Unreachable {
        /// The request URL.
        url: String,
        /// The transport's message.
        message: String,
    },
    /// An answer with an unexpected status or body.
    #[error("{url} answered {status}: {body}")]
    Answer {
        /// The request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The body (the API's JSON error).
        body: String,
    },
}
