//! I/O: reads what the decide function needs: the job's workload objects and the failures of
//! their pods' containers, its coordinator's admin API, the savepoint trigger the status waits
//! for, the pre-flight check's report.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use weir_api_types::CompatibilityReport;
use weir_crds::{StreamJobStatus, UpgradePhase};

use crate::admin_token::{fetch_admin_token, AdminTokens};
use crate::build::Target;
use crate::coordinator_api::{CoordinatorApi, JobEndpoint};
use crate::error::{CoordinatorError, Error};
use crate::model::{CheckOutcome, Observed, ObservedCheck, ObservedJob};
use crate::names;
use crate::pod_failures::container_failures;

/// Where to look: the StreamJob's namespace and name, its coordinator's admin URL.
pub struct Scope<'a> {
    /// The Kubernetes client.
    pub client: &'a kube::Client,
    /// The StreamJob's namespace.
    pub namespace: &'a str,
    /// The StreamJob's name.
    pub name: &'a str,
    /// The coordinator's admin API base URL.
    pub admin_url: String,
    /// The StreamJob (for its admin token Secret).
    pub target: &'a Target,
    /// The admin tokens the operator knows.
    pub tokens: &'a AdminTokens,
    /// The admin API client.
    pub coordinator: &'a Arc<dyn CoordinatorApi>,
}

/// Gathers [`Observed`] for `status`: the coordinator Deployment and workers StatefulSet
/// (present while they or their pods exist: they are deleted in the foreground), the admin
/// API when the coordinator exists, and, while an upgrade is checking, the check Job of its
/// target generation.
///
/// # Errors
/// [`Error::Kube`] when a read fails; [`Error::Coordinator`] when the coordinator answers
/// with an error (an absent coordinator is not an error: `job` stays `None`).
pub async fn observe_job(scope: &Scope<'_>, status: &StreamJobStatus) -> Result<Observed, Error> {
    let ns = scope.namespace;
    let deployments: Api<Deployment> = Api::namespaced(scope.client.clone(), ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(scope.client.clone(), ns);
    let coordinator_name = names::coordinator(scope.name);
    let workers_name = names::workers(scope.name);
    let coordinator = deployments
        .get_opt(&coordinator_name)
        .await
        .map_err(Error::kube(format!("get Deployment {coordinator_name}")))?;
    let workers = statefulsets
        .get_opt(&workers_name)
        .await
        .map_err(Error::kube(format!("get StatefulSet {workers_name}")))?;
    let mut observed = Observed {
        pods_present: coordinator.is_some() || workers.is_some(),
        workloads_complete: coordinator.is_some() && workers.is_some(),
        ..Default::default()
    };
    if observed.pods_present {
        let pods: Api<Pod> = Api::namespaced(scope.client.clone(), ns);
        let selector = format!("{}={}", names::LABEL_JOB, scope.name);
        observed.container_failures = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(Error::kube(format!("list pods of {}", scope.name)))?
            .items
            .iter()
            .flat_map(container_failures)
            .collect();
    }
    if coordinator.is_some() {
        let api = scope.coordinator.clone();
        let endpoint = JobEndpoint {
            url: scope.admin_url.clone(),
            token: fetch_admin_token(scope.client, scope.target, scope.tokens).await?,
        };
        let trigger = Observed::awaited_trigger(status);
        let (job, savepoint) = blocking(move || {
            let job = api.job(&endpoint)?;
            let savepoint = match (&job, trigger) {
                (Some(_), Some(id)) => api.savepoint(&endpoint, &id)?,
                _ => None,
            };
            Ok::<_, CoordinatorError>((job, savepoint))
        })
        .await
        .map_err(|source| Error::Coordinator {
            action: "observe the job".into(),
            source,
        })?;
        observed.job = job.map(|(info, checkpoints)| ObservedJob::from_api(info, checkpoints));
        observed.savepoint = savepoint.map(Into::into);
    }
    if let Some(up) = status
        .upgrade
        .as_ref()
        .filter(|u| u.phase == UpgradePhase::Checking)
    {
        observed.check = observe_check(scope, up.target_generation).await?;
    }
    Ok(observed)
}

/// The check Job of `generation`: running, its report, or why it produced none.
async fn observe_check(scope: &Scope<'_>, generation: i64) -> Result<Option<ObservedCheck>, Error> {
    let jobs: Api<Job> = Api::namespaced(scope.client.clone(), scope.namespace);
    let name = names::check_job(scope.name, generation);
    let Some(job) = jobs
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get Job {name}")))?
    else {
        return Ok(None);
    };
    let status = job.status.unwrap_or_default();
    let finished = status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
    let Some(finished) = finished.cloned() else {
        return Ok(Some(ObservedCheck {
            generation,
            outcome: CheckOutcome::Running,
        }));
    };
    let pods: Api<Pod> = Api::namespaced(scope.client.clone(), scope.namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await
        .map_err(Error::kube(format!("list pods of Job {name}")))?;
    let message = list
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
        .next();
    let outcome = match message
        .as_deref()
        .map(|m| serde_json::from_str::<CompatibilityReport>(m.trim()))
    {
        Some(Ok(report)) => CheckOutcome::Done(report),
        Some(Err(_)) => CheckOutcome::Error(format!(
            "weir check produced no report: {}",
            message.unwrap_or_default().trim()
        )),
        None => CheckOutcome::Error(format!(
            "check Job {name} ended ({}) without a report: {}",
            finished.reason.unwrap_or_default(),
            finished.message.unwrap_or_default()
        )),
    };
    Ok(Some(ObservedCheck {
        generation,
        outcome,
    }))
}

/// Runs blocking admin API calls off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoordinatorError> + Send + 'static,
) -> Result<T, CoordinatorError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(CoordinatorError::Unreachable {
            url: String::new(),
            message: format!("admin API call panicked: {e}"),
        })
    })
}
