//! The pre-flight check: a short-lived Job running `weir check` with the new spec's image.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, DownwardAPIVolumeSource, ObjectFieldSelector, Volume,
};
use weir_crds::StreamJobSpec;

use super::{manifest_yaml, pod, Target};
use crate::names;

/// Seconds a check may run before Kubernetes fails it (image pulls included).
pub const CHECK_DEADLINE_SECONDS: i64 = 600;
/// Seconds a finished check Job is kept (its report is read from its pod).
pub const CHECK_TTL_SECONDS: i32 = 3600;

/// Job `<name>-check-<generation>`: `weir check` of `spec` against `snapshot` (default: the
/// job's latest checkpoint), writing its JSON report to the termination message
/// (`/dev/termination-log`, at most 4096 bytes; the log's tail when it fails before). The
/// manifest travels in a pod annotation read through the downward API, so the check needs no
/// object of its own. No retries: a failed check is reported, not repeated.
pub fn build_check_job(
    target: &Target,
    generation: i64,
    spec: &StreamJobSpec,
    snapshot: Option<&str>,
) -> Job {
    let (scratch, scratch_mount) = pod::scratch();
    let manifest = Volume {
        name: "manifest".into(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![DownwardAPIVolumeFile {
                path: names::MANIFEST_FILE.into(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.annotations['{}']", names::ANNOTATION_MANIFEST),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut args = vec![
        "check".to_string(),
        pod::manifest_path(),
        "--report-file".into(),
        "/dev/termination-log".into(),
    ];
    if let Some(s) = snapshot {
        args.extend(["--snapshot".to_string(), s.to_string()]);
    }
    let container = Container {
        name: "check".into(),
        args: Some(args),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(vec![pod::manifest_mount(), scratch_mount]),
        ..Default::default()
    };
    let mut template = pod::template(
        target,
        spec,
        pod::Component {
            name: "check",
            overrides: &spec.coordinator,
            container,
            volumes: vec![manifest, scratch],
            env: Vec::new(),
            annotations: BTreeMap::from([(
                names::ANNOTATION_MANIFEST.to_string(),
                manifest_yaml(target, spec),
            )]),
        },
    );
    if let Some(p) = template.spec.as_mut() {
        p.restart_policy = Some("Never".into());
    }
    let mut metadata = target.metadata(names::check_job(&target.name, generation), "check");
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(names::LABEL_GENERATION.into(), generation.to_string());
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(CHECK_DEADLINE_SECONDS),
            ttl_seconds_after_finished: Some(CHECK_TTL_SECONDS),
            template,
            ..Default::default()
        }),
        ..Default::default()
    }
}
