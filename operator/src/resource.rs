//! The StreamJob as the operator watches it: metadata typed, spec and status kept as JSON, so
//! one object that does not parse (an older schema, a hand edit that bypassed validation)
//! fails only its own reconcile, never the watch of the others.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use serde::{Deserialize, Serialize};
use weir_crds::{LoadedManifest, StreamJobStatus};

use crate::error::Error;
use crate::names;

/// A StreamJob with its spec and status unparsed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamJobObject {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// `spec` as stored.
    #[serde(default)]
    pub spec: serde_json::Value,
    /// `status` as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

impl kube::Resource for StreamJobObject {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "StreamJob".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "weir.dev".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "streamjobs".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl StreamJobObject {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// `metadata.generation`.
    pub fn generation(&self) -> i64 {
        self.metadata.generation.unwrap_or(0)
    }

    /// True once `metadata.deletionTimestamp` is set.
    pub fn deleting(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    /// True when the operator's finalizer is present.
    pub fn has_finalizer(&self) -> bool {
        self.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|x| x == names::FINALIZER))
    }

    /// The spec parsed and validated exactly as `weir run` does (one validation for both),
    /// plus the operator's own rule for the name (`weir_crds::check_name`, the CRD's CEL rule).
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] naming the field and the fix.
    pub fn manifest(&self) -> Result<LoadedManifest, Error> {
        if let Err(message) = weir_crds::check_name(self.name()) {
            return Err(Error::InvalidSpec(format!("metadata.name: {message}")));
        }
        let doc = serde_json::json!({
            "apiVersion": "weir.dev/v1alpha1",
            "kind": "StreamJob",
            "metadata": { "name": self.name() },
            "spec": self.spec,
        });
        weir_crds::load_manifest(&doc.to_string()).map_err(|e| Error::InvalidSpec(e.to_string()))
    }

    /// The status the operator wrote (its write-ahead log); empty for a new StreamJob.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] when a status exists but does not parse (written by a newer
    /// operator, or edited by hand): the operator does not guess over its own log.
    pub fn parsed_status(&self) -> Result<StreamJobStatus, Error> {
        match &self.status {
            None => Ok(StreamJobStatus::default()),
            Some(v) if v.as_object().is_some_and(|o| o.is_empty()) => {
                Ok(StreamJobStatus::default())
            }
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                Error::InvalidSpec(format!(
                    "status does not parse ({e}); restore it or remove it to start over"
                ))
            }),
        }
    }
}
