//! Loading a manifest from YAML text: structure (serde, with the path of the offending field)
//! then [`validate_spec`](crate::validate_spec). Pure: the caller reads the file.

use crate::spec::StreamJob;
use crate::validate::{validate_spec, FieldError, ValidatedSpec};

/// A manifest that parsed and validated.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    /// `metadata.name`: names the job's directory in checkpoint storage.
    pub name: String,
    /// `metadata.namespace`: set in the manifests the operator hands its pods, where the
    /// job's storage root is `<namespace>/<name>`; absent for `weir run` (root `<name>`).
    pub namespace: Option<String>,
    /// `metadata.uid`: the StreamJob's UID, recorded in the job's lineage so a StreamJob
    /// re-created under the same name never restores its predecessor's state by accident.
    pub uid: Option<String>,
    /// The validated spec.
    pub spec: ValidatedSpec,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManifestError {
    /// The YAML does not have the StreamJob structure (unknown field, wrong type, unknown
    /// enum value). `field` is the path of the offending field.
    #[error("{field}: {message}")]
    Structure {
        /// Path of the field, for example `spec.job.paralelism`.
        field: String,
        /// The parser's message, which lists the allowed names or values.
        message: String,
    },
    /// `apiVersion` or `kind` is not `weir.dev/v1alpha1` / `StreamJob`.
    #[error("{field}: expected `{expected}`, got `{got}`")]
    WrongType {
        /// `apiVersion` or `kind`.
        field: &'static str,
        /// The accepted value.
        expected: &'static str,
        /// The value in the manifest.
        got: String,
    },
    /// `metadata.name` is missing or not a DNS-1123 label.
    #[error("metadata.name: {0}")]
    Name(String),
    /// `metadata.namespace` is not a DNS-1123 label (it names a directory in storage).
    #[error("metadata.namespace: {0}")]
    Namespace(String),
    /// Fields with invalid values.
    #[error("invalid manifest:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

/// Parses and validates a StreamJob manifest.
///
/// # Errors
/// [`ManifestError`] naming the offending field: unknown fields, malformed values, wrong
/// `apiVersion`/`kind`, a missing or malformed `metadata.name`, and every failure of
/// [`validate_spec`].
pub fn load_manifest(yaml: &str) -> Result<LoadedManifest, ManifestError> {
    let de = serde_yaml::Deserializer::from_str(yaml);
    let job: StreamJob = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde_yaml appends "at line N column M"; keep it, it helps find the field.
        ManifestError::Structure {
            field: if path == "." {
                "(document)".into()
            } else {
                path
            },
            message,
        }
    })?;
    check_type_meta(yaml)?;
    let name = job
        .metadata
        .name
        .clone()
        .ok_or_else(|| ManifestError::Name("is required".into()))?;
    if !is_dns_label(&name) {
        return Err(ManifestError::Name(format!(
            "`{name}` must be lowercase letters, digits and '-', start and end with a letter or digit, at most 63 characters"
        )));
    }
    let spec = validate_spec(&job.spec).map_err(ManifestError::Invalid)?;
    let namespace = job.metadata.namespace.clone();
    if let Some(ns) = &namespace {
        if !is_dns_label(ns) {
            return Err(ManifestError::Namespace(format!(
                "`{ns}` must be lowercase letters, digits and '-', start and end with a letter or digit, at most 63 characters"
            )));
        }
    }
    Ok(LoadedManifest {
        name,
        namespace,
        uid: job.metadata.uid.clone().filter(|u| !u.is_empty()),
        spec,
    })
}

fn check_type_meta(yaml: &str) -> Result<(), ManifestError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct TypeMeta {
        api_version: Option<String>,
        kind: Option<String>,
    }
    let meta: TypeMeta = serde_yaml::from_str(yaml).map_err(|e| ManifestError::Structure {
        field: "(document)".into(),
        message: e.to_string(),
    })?;
    let api = meta.api_version.unwrap_or_default();
    if api != "weir.dev/v1alpha1" {
        return Err(ManifestError::WrongType {
            field: "apiVersion",
            expected: "weir.dev/v1alpha1",
            got: api,
        });
    }
    let kind = meta.kind.unwrap_or_default();
    if kind != "StreamJob" {
        return Err(ManifestError::WrongType {
            field: "kind",
            expected: "StreamJob",
            got: kind,
        });
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}
