//! I/O: carries out the decide function's actions: server-side apply of the built objects,
//! foreground deletion of the workloads, admin API calls, status, Events, the finalizer.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, warn};
use weir_crds::{StreamJobSpec, StreamJobStatus};

use crate::admin_token::{ensure_admin_token, fetch_admin_token, AdminTokens};
use crate::build::{self, Target};
use crate::coordinator_api::{CoordinatorApi, JobEndpoint};
use crate::error::{CoordinatorError, Error};
use crate::model::{Action, EventType, Restore};
use crate::names;
use crate::observe::blocking;
use crate::resource::StreamJobObject;

/// What the actions of one StreamJob need.
pub struct Actor<'a> {
    /// The Kubernetes client.
    pub client: &'a kube::Client,
    /// The StreamJob.
    pub object: &'a StreamJobObject,
    /// Owner and image settings for the builders.
    pub target: Target,
    /// The coordinator's admin API base URL.
    pub admin_url: String,
    /// The admin tokens the operator knows.
    pub tokens: &'a AdminTokens,
    /// The operator's pods, when jobs get NetworkPolicies.
    pub network_policy: Option<&'a build::OperatorPods>,
    /// The admin API client.
    pub coordinator: &'a Arc<dyn CoordinatorApi>,
    /// Publishes Events.
    pub recorder: &'a Recorder,
}

/// Server-side apply of `object` (forced: the operator owns these fields).
///
/// # Errors
/// [`Error::Kube`] when the request fails.
pub async fn apply_object<K>(client: &kube::Client, object: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = object.name_any();
    let ns = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(object))
        .await
        .map_err(Error::kube(format!("apply {} {name}", K::kind(&()))))?;
    Ok(())
}

/// Deletes object `name` in the foreground (it stays, with a deletion timestamp, until its
/// pods are gone); an object already gone is fine.
async fn delete_foreground<K>(client: &kube::Client, ns: &str, name: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.delete(name, &DeleteParams::foreground()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("delete {} {name}", K::kind(&())))(e)),
    }
}

/// Writes `status` with server-side apply on the status subresource: fields the operator
/// no longer sets (a finished upgrade, a handled trigger) are removed. The status is the
/// operator's write-ahead log, so the write is conditional on `resource_version` (the version
/// the decision was made on): a reconcile from a stale cache gets a 409 Conflict and retries
/// on fresh data instead of overwriting a newer status.
///
/// Returns the StreamJob's new resourceVersion.
///
/// # Errors
/// [`Error::Kube`] when the request fails, a conflict included.
pub async fn patch_status(
    client: &kube::Client,
    object: &StreamJobObject,
    status: &StreamJobStatus,
    resource_version: Option<&str>,
) -> Result<Option<String>, Error> {
    let api: Api<StreamJobObject> = Api::namespaced(client.clone(), object.namespace());
    let mut body = serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "StreamJob",
        "status": status,
    });
    if let Some(rv) = resource_version {
        body["metadata"] = serde_json::json!({ "resourceVersion": rv });
    }
    let written = api
        .patch_status(
            object.name(),
            &PatchParams::apply(names::FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map_err(Error::kube(format!(
            "patch status of StreamJob {}",
            object.name()
        )))?;
    Ok(written.metadata.resource_version)
}

/// Longest note the API server accepts in an Event (`events.k8s.io/v1`), in bytes.
pub const MAX_EVENT_NOTE: usize = 1024;

/// `message` cut to [`MAX_EVENT_NOTE`] bytes at a character boundary, ending in `…` when cut:
/// the API server rejects longer notes, and the longest messages (a blocked upgrade, an
/// invalid spec, a failed job) are the ones that must reach the user. The full text stays in
/// the status' `error`.
pub fn event_note(message: &str) -> String {
    if message.len() <= MAX_EVENT_NOTE {
        return message.to_string();
    }
    let mut end = MAX_EVENT_NOTE - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// Adds (`add`) or removes the operator's finalizer with a JSON patch that first tests the
/// finalizer list it read, so a concurrent change of the finalizers fails this request (the
/// next reconcile retries) instead of being overwritten. Unlike `resourceVersion`, the test
/// is not upset by the operator's own status write earlier in the same reconcile. When the
/// object had no finalizers, the `add` tests the `resourceVersion` it read instead (there is
/// no list to test, and adding the list would replace one another controller just set); the
/// add comes first in a reconcile, before any write of the operator's.
///
/// Returns the object's new `resourceVersion`.
///
/// # Errors
/// [`Error::Kube`] when the request fails, a failed test included.
pub async fn patch_finalizer(
    client: &kube::Client,
    object: &StreamJobObject,
    add: bool,
) -> Result<Option<String>, Error> {
    let api: Api<StreamJobObject> = Api::namespaced(client.clone(), object.namespace());
    let current = object.metadata.finalizers.clone();
    let mut next: Vec<String> = current
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != names::FINALIZER)
        .collect();
    if add {
        next.push(names::FINALIZER.to_string());
    }
    let ops = match current {
        None => serde_json::json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": object.metadata.resource_version },
            { "op": "add", "path": "/metadata/finalizers", "value": next }
        ]),
        Some(current) => serde_json::json!([
            { "op": "test", "path": "/metadata/finalizers", "value": current },
            { "op": "replace", "path": "/metadata/finalizers", "value": next }
        ]),
    };
    let patch: json_patch::Patch =
        serde_json::from_value(ops).expect("invariant: a well-formed JSON patch");
    let patched = api
        .patch(
            object.name(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
        .map_err(Error::kube(format!(
            "{} finalizer of StreamJob {}",
            if add { "add" } else { "remove" },
            object.name()
        )))?;
    Ok(patched.metadata.resource_version)
}

impl Actor<'_> {
    /// Carries out `actions` in order; stops at the first failure (the status already says
    /// what is intended, so the next reconcile repeats the rest: every action is idempotent).
    ///
    /// # Errors
    /// The first action's error.
    pub async fn act(&self, actions: &[Action]) -> Result<(), Error> {
        for action in actions {
            self.act_one(action).await?;
        }
        Ok(())
    }

    async fn act_one(&self, action: &Action) -> Result<(), Error> {
        let ns = self.object.namespace();
        let name = self.object.name();
        match action {
            Action::Deploy {
                spec,
                lineage,
                restore,
                migrate_lineage,
            } => {
                self.deploy(spec, lineage, restore, migrate_lineage.as_deref())
                    .await
            }
            Action::DeleteCluster => {
                info!(namespace = ns, name, "deleting the job's workloads");
                delete_foreground::<Deployment>(self.client, ns, &names::coordinator(name)).await?;
                delete_foreground::<StatefulSet>(self.client, ns, &names::workers(name)).await
            }
            Action::RunCheck {
                generation,
                spec,
                snapshot,
            } => {
                let job =
                    build::build_check_job(&self.target, *generation, spec, snapshot.as_deref());
                let jobs: Api<Job> = Api::namespaced(self.client.clone(), ns);
                let job_name = names::check_job(name, *generation);
                // A Job's pod template is immutable: create it once per generation.
                if jobs
                    .get_opt(&job_name)
                    .await
                    .map_err(Error::kube(format!("get Job {job_name}")))?
                    .is_none()
                {
                    apply_object(self.client, &job).await?;
                }
                Ok(())
            }
            Action::TriggerSavepoint {
                trigger_id,
                directory,
            } => {
                let (id, dir) = (trigger_id.clone(), directory.clone());
                self.call(
                    format!("trigger savepoint {trigger_id}"),
                    move |api, base| api.trigger_savepoint(base, &id, dir.as_deref()),
                )
                .await
            }
            Action::StopWithSavepoint {
                trigger_id,
                directory,
            } => {
                let (id, dir) = (trigger_id.clone(), directory.clone());
                self.call(
                    format!("stop with savepoint {trigger_id}"),
                    move |api, base| api.stop_with_savepoint(base, &id, dir.as_deref()),
                )
                .await
            }
            Action::DisposeSavepoint { location } => {
                let loc = location.clone();
                self.call(format!("dispose savepoint {location}"), move |api, base| {
                    api.dispose_savepoint(base, &loc)
                })
                .await
            }
            Action::Event {
                kind,
                reason,
                message,
            } => {
                let event = Event {
                    type_: match kind {
                        EventType::Normal => KubeEventType::Normal,
                        EventType::Warning => KubeEventType::Warning,
                    },
                    reason: (*reason).to_string(),
                    note: Some(event_note(message)),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                let reference = self.object.object_ref(&());
                if let Err(e) = self.recorder.publish(&event, &reference).await {
                    // An Event is for people; losing one must not stop the job's lifecycle.
                    warn!(namespace = ns, name, reason, "event not recorded: {e}");
                }
                Ok(())
            }
            Action::RemoveFinalizer => patch_finalizer(self.client, self.object, false)
                .await
                .map(|_| ()),
        }
    }

    /// Runs one admin API call off the async threads; `action` names it in the error.
    async fn call(
        &self,
        action: String,
        f: impl FnOnce(&dyn CoordinatorApi, &JobEndpoint) -> Result<(), CoordinatorError>
            + Send
            + 'static,
    ) -> Result<(), Error> {
        let endpoint = JobEndpoint {
            url: self.admin_url.clone(),
            token: fetch_admin_token(self.client, &self.target, self.tokens).await?,
        };
        let api = self.coordinator.clone();
        blocking(move || f(api.as_ref(), &endpoint))
            .await
            .map_err(|source| Error::Coordinator { action, source })
    }

    /// Makes sure the job's admin token Secret exists, then applies the ConfigMap, the two
    /// Services, the NetworkPolicy (when enabled), the coordinator Deployment and the workers
    /// StatefulSet of `spec`: the manifest first, the workloads last.
    async fn deploy(
        &self,
        spec: &StreamJobSpec,
        lineage: &str,
        restore: &Restore,
        migrate_lineage: Option<&str>,
    ) -> Result<(), Error> {
        let t = &self.target;
        ensure_admin_token(self.client, t, self.tokens).await?;
        apply_object::<ConfigMap>(self.client, &build::build_config_map(t, spec)).await?;
        apply_object::<Service>(self.client, &build::build_coordinator_service(t)).await?;
        apply_object::<Service>(self.client, &build::build_workers_service(t)).await?;
        if let Some(operator) = self.network_policy {
            apply_object::<NetworkPolicy>(self.client, &build::build_network_policy(t, operator))
                .await?;
        }
        apply_object::<Deployment>(
            self.client,
            &build::build_coordinator(t, spec, lineage, restore, migrate_lineage),
        )
        .await?;
        apply_object::<StatefulSet>(self.client, &build::build_workers(t, spec, lineage)).await
    }
}

#[cfg(test)]
mod tests {
    use super::{event_note, MAX_EVENT_NOTE};

    #[test]
    fn event_notes_are_cut_to_what_the_api_server_accepts() {
        assert_eq!(event_note("short"), "short");
        let long = "é".repeat(1000);
        let note = event_note(&long);
        assert!(note.len() <= MAX_EVENT_NOTE, "{}", note.len());
        assert!(note.ends_with('…'));
        assert!(long.starts_with(note.trim_end_matches('…')));
    }
}
