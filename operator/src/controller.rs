//! The driver: for each StreamJob, observe -> decide -> write status -> act, with tracing,
//! metrics and the finalizer around it; and the kube-rs controller that calls it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::watcher;
use kube::Api;
use tracing::{debug, error, info, info_span, warn, Instrument};
use weir_crds::StreamJobStatus;

use crate::admin_token::AdminTokens;
use crate::apply::{patch_finalizer, patch_status, Actor};
use crate::build::{OperatorPods, Target};
use crate::conditions::{set_conditions, Problems};
use crate::coordinator_api::CoordinatorApi;
use crate::decide::{after_actions, decide};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::model::{Action, Desired, EventType, Observed};
use crate::names;
use crate::observe::{observe_job, Scope};
use crate::resource::StreamJobObject;

/// Delay before a reconcile that failed for a reason retrying may fix runs again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Delay before a request the API server refused (see [`Error::rejection`]) is sent again.
pub const REJECTED_RETRY: Duration = Duration::from_secs(60);

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The admin API client.
    pub coordinator: Arc<dyn CoordinatorApi>,
    /// Publishes Events (`events.k8s.io/v1`).
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Image of jobs whose spec names none.
    pub default_image: String,
    /// The admin API base URL of StreamJob (namespace, name); [`names::admin_url`] in a
    /// cluster.
    pub admin_url: fn(&str, &str) -> String,
    /// The admin tokens of the StreamJobs, by UID (from the Secrets the operator creates).
    pub tokens: AdminTokens,
    /// Give every job a NetworkPolicy admitting these operator pods to its admin port (and
    /// only its own pods to its control and data ports); `None`: no NetworkPolicies.
    pub network_policy: Option<OperatorPods>,
}

/// Reconciles one StreamJob; the span carries namespace, name and generation, the metrics
/// count it.
///
/// # Errors
/// [`Error`]: the first failed request, or an invalid StreamJob (after its status and a
/// Warning Event say why).
pub async fn reconcile(object: Arc<StreamJobObject>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let span = info_span!(
        "reconcile",
        namespace = object.namespace(),
        name = object.name(),
        generation = object.generation()
    );
    let started = Instant::now();
    let result = reconcile_job(&object, &ctx).instrument(span).await;
    ctx.metrics.reconciled(
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    result
}

/// The controller's error policy: retry transient failures after [`RETRY_AFTER`]; an
/// invalid StreamJob waits for its next change.
pub fn error_policy(object: Arc<StreamJobObject>, error: &Error, _ctx: Arc<Context>) -> Requeue {
    warn!(
        namespace = object.namespace(),
        name = object.name(),
        category = error.category(),
        "reconcile failed: {}",
        crate::error_chain(error)
    );
    if error.is_transient() {
        Requeue::requeue(RETRY_AFTER)
    } else {
        Requeue::await_change()
    }
}

async fn reconcile_job(object: &StreamJobObject, ctx: &Context) -> Result<Requeue, Error> {
    let key = format!("{}/{}", object.namespace(), object.name());
    if object.deleting() && !object.has_finalizer() {
        ctx.metrics.set_state(&key, None);
        return Ok(Requeue::await_change());
    }
    let status = object.parsed_status()?;
    let actor = Actor {
        client: &ctx.client,
        object,
        target: Target {
            name: object.name().to_string(),
            namespace: object.namespace().to_string(),
            uid: object.metadata.uid.clone().unwrap_or_default(),
            default_image: ctx.default_image.clone(),
        },
        admin_url: (ctx.admin_url)(object.namespace(), object.name()),
        tokens: &ctx.tokens,
        network_policy: ctx.network_policy.as_ref(),
        coordinator: &ctx.coordinator,
        recorder: &ctx.recorder,
    };
    let spec = match object.manifest() {
        Ok(m) => m.spec,
        Err(e) => match deployed_spec(&status) {
            // Deletion of a job whose spec became invalid still follows the deployed one.
            Some(spec) if object.deleting() => spec,
            None if object.deleting() => {
                // Nothing deployed from a spec the operator can read: nothing to stop or
                // save. The finalizer goes (owned objects follow by garbage collection).
                info!(
                    namespace = object.namespace(),
                    name = object.name(),
                    "deleting a StreamJob with an invalid spec and nothing deployed: {e}"
                );
                patch_finalizer(&ctx.client, object, false).await?;
                ctx.metrics.set_state(&key, None);
                return Ok(Requeue::await_change());
            }
            _ => return Err(refuse(object, ctx, &actor, status, e).await),
        },
    };
    let mut resource_version = object.metadata.resource_version.clone();
    if !object.deleting() && !object.has_finalizer() {
        resource_version = patch_finalizer(&ctx.client, object, true).await?;
    }
    let scope = Scope {
        client: &ctx.client,
        namespace: object.namespace(),
        name: object.name(),
        admin_url: actor.admin_url.clone(),
        target: &actor.target,
        tokens: &ctx.tokens,
        coordinator: &ctx.coordinator,
    };
    let observed = observe_job(&scope, &status).await?;
    let desired = Desired {
        generation: object.generation(),
        spec,
        deleting: object.deleting(),
    };
    let now = Timestamp::now();
    let decision = decide(&desired, &status, &observed, now);
    log_decision(&status, &decision.status, &observed, &decision.actions);
    if decision.status != status {
        // The status is the write-ahead log: it is written before any action.
        resource_version = patch_status(
            &ctx.client,
            object,
            &decision.status,
            resource_version.as_deref(),
        )
        .await?;
    }
    if let Some(took) = savepoint_took(&status, &decision.status, now) {
        ctx.metrics.savepoint_completed(took);
    }
    // A refused request is recorded and retried slowly; any other failure is retried soon.
    let rejection = match actor.act(&decision.actions).await {
        Ok(()) => None,
        Err(e) => match e.rejection() {
            Some(message) => Some(message),
            None => return Err(e),
        },
    };
    let generation = object.generation();
    if let Some(after) = after_actions(&decision.status, generation, rejection.clone(), now) {
        patch_status(&ctx.client, object, &after, resource_version.as_deref()).await?;
        if let Some(message) = rejection.clone() {
            // A new refusal (an unchanged one was recorded before): said once.
            warn!(
                namespace = object.namespace(),
                name = object.name(),
                "the API server refused a request: {message}"
            );
            let event = Action::Event {
                kind: EventType::Warning,
                reason: "ApplyRejected",
                message,
            };
            actor.act(&[event]).await?;
        }
    }
    if rejection.is_some() {
        // Refused again unchanged: retried slowly, in case what refused it changes (a quota
        // freed, a webhook fixed, RBAC granted); an edit of the spec reconciles at once.
        return Ok(Requeue::requeue(REJECTED_RETRY));
    }
    let gone = decision
        .actions
        .iter()
        .any(|a| matches!(a, Action::RemoveFinalizer));
    ctx.metrics.set_state(
        &key,
        if gone {
            None
        } else {
            decision.status.lifecycle_state
        },
    );
    Ok(Requeue::requeue(decision.requeue_after))
}

/// Records why the StreamJob cannot run (status `error`, condition `Stalled` with reason
/// `InvalidSpec`, a Warning Event) and returns the error; the job already running, if any,
/// is left alone.
async fn refuse(
    object: &StreamJobObject,
    ctx: &Context,
    actor: &Actor<'_>,
    mut status: StreamJobStatus,
    error: Error,
) -> Error {
    let message = match &error {
        Error::InvalidSpec(m) => m.clone(),
        other => other.to_string(),
    };
    let before = status.clone();
    status.error = Some(message.clone());
    status.observed_generation = Some(object.generation());
    let problems = Problems {
        stalled: Some(("InvalidSpec".into(), message.clone())),
        ..Default::default()
    };
    set_conditions(
        &mut status,
        object.generation(),
        &problems,
        Timestamp::now(),
    );
    if status != before {
        let rv = object.metadata.resource_version.as_deref();
        if let Err(e) = patch_status(&ctx.client, object, &status, rv).await {
            return e;
        }
        let event = Action::Event {
            kind: EventType::Warning,
            reason: "InvalidSpec",
            message,
        };
        if let Err(e) = actor.act(&[event]).await {
            return e;
        }
    }
    error
}

/// The spec the operator deployed, as it recorded it (validated when it was deployed).
fn deployed_spec(status: &StreamJobStatus) -> Option<weir_crds::ValidatedSpec> {
    weir_crds::validate_spec(&status.deployed.as_ref()?.spec).ok()
}

/// Time from a savepoint's trigger to the reconcile that saw it complete: the pending
/// trigger's time, or the start of the upgrade whose savepoint it is.
fn savepoint_took(
    old: &StreamJobStatus,
    new: &StreamJobStatus,
    now: Timestamp,
) -> Option<Duration> {
    let last = new.savepoints.last.as_ref()?;
    if old.savepoints.last.as_ref() == Some(last) {
        return None;
    }
    let started = old
        .savepoints
        .pending
        .as_ref()
        .filter(|p| p.trigger_id == last.trigger_id)
        .map(|p| p.time.clone())
        .or_else(|| {
            old.upgrade
                .as_ref()
                .filter(|u| u.trigger_id.as_deref() == Some(last.trigger_id.as_str()))
                .map(|u| u.started.clone())
        })?;
    let started = crate::model::parse_time(&started)?;
    now.duration_since(started).try_into().ok()
}

fn log_decision(
    old: &StreamJobStatus,
    new: &StreamJobStatus,
    observed: &Observed,
    actions: &[Action],
) {
    if old.lifecycle_state != new.lifecycle_state {
        info!(
            from = ?old.lifecycle_state,
            to = ?new.lifecycle_state,
            job_state = observed.job.as_ref().map(|j| j.state.as_str()),
            "lifecycle state"
        );
    }
    for action in actions {
        match action {
            Action::Event {
                reason, message, ..
            } => info!(reason, "{message}"),
            Action::Deploy {
                lineage, restore, ..
            } => {
                info!(lineage, restore = restore.as_str(), "deploy")
            }
            other => debug!(action = ?other, "action"),
        }
    }
}

/// Lists the StreamJobs of every namespace in `namespaces` (all when empty) once: the check
/// the operator passes before it reports ready, so a missing CRD or a ServiceAccount without
/// RBAC shows as a NotReady pod and a logged reason instead of a silent, ready operator.
///
/// # Errors
/// [`Error::Kube`] naming the namespace when a list fails.
pub async fn preflight(client: &kube::Client, namespaces: &[String]) -> Result<(), Error> {
    let scopes: Vec<Option<&String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(Some).collect()
    };
    for ns in scopes {
        let api: Api<StreamJobObject> = match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        api.list(&kube::api::ListParams::default().limit(1))
            .await
            .map_err(Error::kube(format!(
                "list StreamJobs in {}",
                ns.map_or("all namespaces", |n| n.as_str())
            )))?;
    }
    Ok(())
}

/// Runs the controller over the StreamJobs of `namespaces` (all namespaces when empty)
/// until a shutdown signal: one watch per namespace, owned Deployments, StatefulSets and
/// Jobs (those labelled as the operator's) trigger their StreamJob's reconcile.
pub async fn run(ctx: Arc<Context>, namespaces: Vec<String>) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let controllers = scopes.into_iter().map(|ns| {
        let client = ctx.client.clone();
        let api = |c: kube::Client| -> Api<StreamJobObject> {
            match &ns {
                Some(ns) => Api::namespaced(c, ns),
                None => Api::all(c),
            }
        };
        let owned = watcher::Config::default().labels(&names::managed_selector());
        let (deployments, statefulsets, jobs) = match &ns {
            Some(ns) => (
                Api::<Deployment>::namespaced(client.clone(), ns),
                Api::<StatefulSet>::namespaced(client.clone(), ns),
                Api::<Job>::namespaced(client.clone(), ns),
            ),
            None => (
                Api::<Deployment>::all(client.clone()),
                Api::<StatefulSet>::all(client.clone()),
                Api::<Job>::all(client.clone()),
            ),
        };
        info!(
            namespace = ns.as_deref().unwrap_or("(all)"),
            "watching StreamJobs"
        );
        Controller::new(api(client.clone()), watcher::Config::default())
            .owns(deployments, owned.clone())
            .owns(statefulsets, owned.clone())
            .owns(jobs, owned)
            .shutdown_on_signal()
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => debug!(
                        namespace = object.namespace,
                        name = object.name,
                        "reconciled"
                    ),
                    // The watch failed (a missing CRD, RBAC, the API server gone): said
                    // loudly, since nothing is reconciled meanwhile. kube-rs retries with
                    // back-off.
                    Err(kube::runtime::controller::Error::QueueError(e)) => error!(
                        "watching StreamJobs or their workloads failed: {e}; is the CRD installed and may the operator's ServiceAccount list and watch them?"
                    ),
                    // Reconcile failures are reported by `error_policy`.
                    Err(e) => debug!("{e}"),
                }
            })
    });
    futures::future::join_all(controllers).await;
}
