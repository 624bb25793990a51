//! What every pod of a job shares: the restricted security profile, the S3 credentials
//! from their Secret, writable scratch space, the manifest volume, the user's overrides.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use weir_crds::{PodOverrides, StreamJobSpec};

use super::Target;
use crate::names;

/// The uid and gid the job's processes run as (not root; the images' `nonroot` user).
pub const RUN_AS: i64 = 65532;

/// Pod security context of every pod the operator creates (Kubernetes' restricted Pod
/// Security Standard): non-root, a fixed uid/gid, the runtime's default seccomp profile.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Container security context: read-only root file system, no privilege escalation, every
/// capability dropped.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Environment of the job's containers: `TMPDIR` on the scratch volume, S3 credentials and
/// the `job.argsFromSecrets` arguments as references to their Secret (never the values), the
/// component's `extra` settings, then the user's `env` (which wins).
pub(super) fn env(
    spec: &StreamJobSpec,
    overrides: &PodOverrides,
    extra: Vec<EnvVar>,
) -> Vec<EnvVar> {
    let mut env = vec![EnvVar {
        name: "TMPDIR".into(),
        value: Some("/tmp".into()),
        ..Default::default()
    }];
    if let Some(creds) = spec
        .checkpointing
        .s3
        .as_ref()
        .and_then(|s3| s3.credentials_secret.as_ref())
    {
        for (var, key) in [
            ("AWS_ACCESS_KEY_ID", &creds.access_key_id_key),
            ("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key_key),
        ] {
            env.push(EnvVar {
                name: var.into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: creds.name.clone(),
                        key: key.clone(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    for (arg, secret) in &spec.job.args_from_secrets {
        env.push(EnvVar {
            name: weir_crds::secret_arg_env(arg),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name.clone(),
                    key: secret.key.clone(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    env.extend(extra);
    for user in &overrides.env {
        env.retain(|e| e.name != user.name);
        env.push(user.clone());
    }
    env
}

/// The scratch volume (`/tmp`: RocksDB working files, spill) and its mount.
pub(super) fn scratch() -> (Volume, VolumeMount) {
    (
        Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        VolumeMount {
            name: "scratch".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        },
    )
}

/// The manifest volume from ConfigMap `<name>-manifest` and its read-only mount.
pub(super) fn manifest_volume(target: &Target) -> (Volume, VolumeMount) {
    (
        Volume {
            name: "manifest".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map(&target.name),
                ..Default::default()
            }),
            ..Default::default()
        },
        manifest_mount(),
    )
}

/// Read-only mount of the `manifest` volume at [`names::MANIFEST_DIR`].
pub(super) fn manifest_mount() -> VolumeMount {
    VolumeMount {
        name: "manifest".into(),
        mount_path: names::MANIFEST_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The admin token volume from Secret `<name>-admin-token` (files 0440: readable by the
/// `fsGroup`, the job's group) and its read-only mount at [`names::ADMIN_TOKEN_DIR`].
pub(super) fn admin_token_volume(target: &Target) -> (Volume, VolumeMount) {
    (
        Volume {
            name: "admin-token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::admin_token_secret(&target.name)),
                default_mode: Some(0o440),
                optional: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: "admin-token".into(),
            mount_path: names::ADMIN_TOKEN_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    )
}

/// `WEIR_ADMIN_TOKEN_FILE`: where `weir coordinator` and `weir worker` read the token.
pub(super) fn admin_token_env() -> EnvVar {
    EnvVar {
        name: names::ADMIN_TOKEN_ENV.into(),
        value: Some(names::admin_token_file()),
        ..Default::default()
    }
}

/// Path of the manifest inside the containers.
pub(super) fn manifest_path() -> String {
    format!("{}/{}", names::MANIFEST_DIR, names::MANIFEST_FILE)
}

/// What a component adds to the shared pod template.
pub(super) struct Component<'a> {
    /// `coordinator`, `worker` or `check` (the component label).
    pub name: &'a str,
    /// The user's overrides for it.
    pub overrides: &'a PodOverrides,
    /// Its container (name, args, ports, probes, mounts).
    pub container: Container,
    /// Its volumes.
    pub volumes: Vec<Volume>,
    /// Its environment settings (the user's `env` wins over them).
    pub env: Vec<EnvVar>,
    /// Its pod annotations (they win over the user's).
    pub annotations: BTreeMap<String, String>,
}

/// A pod template: the component's container with the shared security context, image, pull
/// policy, resources, environment and the user's extra volume mounts, in a pod with the
/// component's and the user's volumes, the user's scheduling overrides, labels and annotations.
pub(super) fn template(target: &Target, spec: &StreamJobSpec, c: Component) -> PodTemplateSpec {
    let Component {
        name: component,
        overrides,
        mut container,
        volumes,
        env: extra_env,
        annotations: extra_annotations,
    } = c;
    let mut labels = overrides.labels.clone();
    labels.extend(names::labels(&target.name, component));
    let mut annotations = overrides.annotations.clone();
    annotations.extend(extra_annotations);
    container.image = Some(target.image(spec));
    container.image_pull_policy = spec.image_pull_policy.as_ref().map(|p| format!("{p:?}"));
    container.security_context = Some(container_security_context());
    container.resources = overrides.resources.clone();
    container.env = Some(env(spec, overrides, extra_env));
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .extend(overrides.volume_mounts.iter().cloned());
    let mut volumes = volumes;
    volumes.extend(overrides.volumes.iter().cloned());
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            security_context: Some(pod_security_context()),
            service_account_name: spec.service_account.clone(),
            automount_service_account_token: Some(false),
            node_selector: (!overrides.node_selector.is_empty())
                .then(|| overrides.node_selector.clone()),
            tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
            ..Default::default()
        }),
    }
}
