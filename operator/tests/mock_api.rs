//! The reconcile shell against a fake Kubernetes API server (kube's tower-test pattern) and a
//! fake coordinator: the exact calls of create, upgrade with savepoint, suspend and delete.

mod support;

use std::sync::Arc;

use serde_json::{json, Value};
use support::{context, path, stream_job, Call, FakeCoordinator, FakeKube};
use weir_operator::controller::{reconcile, Context};
use weir_operator::resource::StreamJobObject;

const NS: &str = "streams";
const NAME: &str = "retail";

fn spec(parallelism: i64) -> Value {
    json!({
        "image": "weir:1",
        "job": {"entry": "csv-window-aggregate", "parallelism": parallelism,
                "args": {"input": "/data/in.csv"}},
        "checkpointing": {"storage": "s3://bucket/jobs",
                          "s3": {"credentialsSecret": {"name": "s3-creds"}}},
    })
}

fn sj() -> String {
    path("weir.dev/v1alpha1", NS, "streamjobs", NAME)
}
fn deployment() -> String {
    path("apps/v1", NS, "deployments", "retail-coordinator")
}
fn statefulset() -> String {
    path("apps/v1", NS, "statefulsets", "retail-workers")
}
fn config_map() -> String {
    path("v1", NS, "configmaps", "retail-manifest")
}

/// One reconcile of the stored StreamJob; the calls it made, as `METHOD path`.
async fn reconcile_once(kube: &FakeKube, ctx: &Arc<Context>) -> Vec<Call> {
    let object: StreamJobObject =
        serde_json::from_value(kube.get(&sj()).expect("StreamJob")).expect("StreamJob object");
    reconcile(Arc::new(object), ctx.clone())
        .await
        .expect("reconcile");
    kube.take_calls()
}

/// The calls as `METHOD path` with the namespace prefix cut, and every Event write (a
/// create, or a patch of a repeated one) as `EVENT`.
fn lines(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            if c.path.contains("/events.k8s.io/") {
                return "EVENT".to_string();
            }
            c.line().replace(&format!("namespaces/{NS}/"), "")
        })
        .collect()
}

/// What the operator reads first: the workloads, then (when any exists) the job's pods for
/// containers that are down (OOMKilled).
const GET_WORKLOADS: [&str; 3] = [
    "GET /apis/apps/v1/deployments/retail-coordinator",
    "GET /apis/apps/v1/statefulsets/retail-workers",
    "GET /api/v1/pods",
];
/// The same while neither workload exists (no pods to read).
const GET_ABSENT: [&str; 2] = [GET_WORKLOADS[0], GET_WORKLOADS[1]];
const STATUS: &str = "PATCH /apis/weir.dev/v1alpha1/streamjobs/retail/status";
const APPLY_ALL: [&str; 5] = [
    "PATCH /api/v1/configmaps/retail-manifest",
    "PATCH /api/v1/services/retail-coordinator",
    "PATCH /api/v1/services/retail-workers",
    "PATCH /apis/apps/v1/deployments/retail-coordinator",
    "PATCH /apis/apps/v1/statefulsets/retail-workers",
];
/// Before the workloads of a deployment: the admin token Secret is read (and created when
/// missing).
const SECRET_GET: &str = "GET /api/v1/secrets/retail-admin-token";
const SECRET_CREATE: &str = "POST /api/v1/secrets";
const DELETE_WORKLOADS: [&str; 2] = [
    "DELETE /apis/apps/v1/deployments/retail-coordinator",
    "DELETE /apis/apps/v1/statefulsets/retail-workers",
];

/// `parts` joined into one expected sequence.
fn seq(parts: &[&[&str]]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|p| p.iter().map(|s| s.to_string()))
        .collect()
}

/// A StreamJob created and running (coordinator RUNNING with checkpoint 1), its calls
/// taken.
async fn running_job() -> (FakeKube, Arc<FakeCoordinator>, Arc<Context>) {
    let kube = FakeKube::start();
    let coordinator = Arc::new(FakeCoordinator::default());
    let ctx = context(&kube, coordinator.clone());
    kube.put(&sj(), stream_job(NS, NAME, spec(2)));
    reconcile_once(&kube, &ctx).await;
    coordinator.set_job(Some("RUNNING"), Some(1));
    reconcile_once(&kube, &ctx).await;
    coordinator.take_calls();
    (kube, coordinator, ctx)
}

/// Marks the check Job of `generation` complete, its pod's termination message the report.
fn complete_check(kube: &FakeKube, generation: i64, compatible: bool) {
    let job = format!("retail-check-{generation}");
    kube.edit(
        &path("batch/v1", NS, "jobs", &job),
        |j| {
            j["status"] =
                json!({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1})
        },
    );
    let report = json!({"compatible": compatible, "snapshot": "s3://bucket/jobs/retail/checkpoints/chk-1",
                        "checkpointId": 1, "reasons": if compatible { json!([]) } else { json!(["operator uid `window` is gone"]) }});
    kube.put(
        &path("v1", NS, "pods", &format!("{job}-x1")),
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": format!("{job}-x1"), "namespace": NS, "labels": {"job-name": job}},
               "status": {"containerStatuses": [{"name": "check", "image": "weir:1", "imageID": "",
                  "ready": false, "restartCount": 0,
                  "state": {"terminated": {"exitCode": if compatible { 0 } else { 3 }, "message": report.to_string()}}}]}}),
    );
}

fn stored(kube: &FakeKube, path: &str) -> Value {
    kube.get(path)
        .unwrap_or_else(|| panic!("{path} not stored"))
}

fn container_args(deployment: &Value) -> Vec<String> {
    serde_json::from_value(deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone())
        .expect("args")
}

#[tokio::test]
async fn create_adds_the_finalizer_writes_status_then_applies_the_objects() {
    let kube = FakeKube::start();
    let coordinator = Arc::new(FakeCoordinator::default());
    let ctx = context(&kube, coordinator.clone());
    kube.put(&sj(), stream_job(NS, NAME, spec(2)));
    let calls = reconcile_once(&kube, &ctx).await;
    assert_eq!(
        lines(&calls),
        seq(&[
            &["PATCH /apis/weir.dev/v1alpha1/streamjobs/retail"],
            &GET_ABSENT,
            &[STATUS, "EVENT"],
            &[SECRET_GET, SECRET_CREATE],
            &APPLY_ALL,
        ])
    );
    // The finalizer, then server-side apply (forced, the operator's field manager) for the
    // status and every object.
    assert_eq!(calls[0].content_type, "application/json-patch+json");
    assert_eq!(
        stored(&kube, &sj())["metadata"]["finalizers"],
        json!(["weir.dev/finalizer"])
    );
    for c in calls.iter().filter(|c| c.method == "PATCH").skip(1) {
        assert_eq!(c.content_type, "application/apply-patch+yaml", "{}", c.path);
        assert!(
            c.query.contains("fieldManager=weir-operator") && c.query.contains("force=true"),
            "{}",
            c.query
        );
    }
    let status = &stored(&kube, &sj())["status"];
    assert_eq!(status["lifecycleState"], "Deploying");
    assert_eq!(status["deployed"]["restore"], "latest-checkpoint");
    // Every object is owned by the StreamJob.
    for p in [config_map(), deployment(), statefulset()] {
        let owner = &stored(&kube, &p)["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                owner["kind"].as_str(),
                owner["uid"].as_str(),
                owner["controller"].as_bool()
            ),
            (Some("StreamJob"), Some("uid-retail"), Some(true)),
            "{p}"
        );
    }
    // The coordinator runs the ConfigMap's manifest with the recorded lineage; credentials
    // come from the Secret by reference only.
    let d = stored(&kube, &deployment());
    let lineage = status["deployed"]["lineage"].as_str().unwrap();
    assert_eq!(
        container_args(&d),
        [
            "coordinator",
            "/etc/weir/job.yaml",
            "--workers",
            "2",
            "--lineage",
            lineage,
            "--linger"
        ]
    );
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], "weir:1");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    assert_eq!(
        pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    let env = pod["containers"][0]["env"].as_array().unwrap();
    let key_id = env
        .iter()
        .find(|e| e["name"] == "AWS_ACCESS_KEY_ID")
        .unwrap();
    assert_eq!(key_id["valueFrom"]["secretKeyRef"]["name"], "s3-creds");
    assert!(key_id.get("value").is_none());
    let manifest = stored(&kube, &config_map())["data"]["job.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let loaded =
        weir_operator::crds::load_manifest(&manifest).expect("the ConfigMap's manifest loads");
    assert_eq!(
        (loaded.name.as_str(), loaded.spec.parallelism),
        ("retail", 2)
    );
    let workers = stored(&kube, &statefulset());
    assert_eq!(workers["spec"]["replicas"], 2);
    let wenv = &workers["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        wenv.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "WEIR_COORDINATOR" && e["value"] == "retail-coordinator:6123"),
        "{wenv}"
    );

    // The job runs: the status follows (and an Event says so); then nothing more is written.
    coordinator.set_job(Some("RUNNING"), Some(1));
    assert_eq!(
        lines(&reconcile_once(&kube, &ctx).await),
        seq(&[&GET_WORKLOADS, &[STATUS, "EVENT"]])
    );
    assert_eq!(stored(&kube, &sj())["status"]["lifecycleState"], "Stable");
    assert_eq!(
        lines(&reconcile_once(&kube, &ctx).await),
        seq(&[&GET_WORKLOADS])
    );
    assert!(coordinator.take_calls().is_empty());
}

#[tokio::test]
async fn upgrade_with_savepoint_checks_stops_records_the_location_then_replaces_the_pods() {
    let (kube, coordinator, ctx) = running_job().await;
    kube.edit(&sj(), |o| {
        o["spec"]["job"]["parallelism"] = json!(3);
        o["metadata"]["generation"] = json!(2);
    });
    // 1. The pre-flight check Job starts; nothing stops.
    assert_eq!(
        lines(&reconcile_once(&kube, &ctx).await),
        seq(&[
            &GET_WORKLOADS,
            &[
                STATUS,
                "EVENT",
                "GET /apis/batch/v1/jobs/retail-check-2",
                "PATCH /apis/batch/v1/jobs/retail-check-2"
            ]
        ])
    );
    let check = stored(&kube, &path("batch/v1", NS, "jobs", "retail-check-2"));
    let annotations = &check["spec"]["template"]["metadata"]["annotations"];
    assert!(annotations["weir.dev/manifest"]
        .as_str()
        .unwrap()
        .contains("parallelism: 3"));
    assert!(coordinator.take_calls().is_empty());
    // 2. The check passes: stop with savepoint under the recorded trigger id.
    complete_check(&kube, 2, true);
    let calls = reconcile_once(&kube, &ctx).await;
    assert_eq!(
        lines(&calls),
        seq(&[
            &GET_WORKLOADS,
            &[
                "GET /apis/batch/v1/jobs/retail-check-2",
                "GET /api/v1/pods",
                STATUS
            ]
        ])
    );
    assert_eq!(
        calls[5].body["status"]["upgrade"]["triggerId"],
        "upgrade-2-0"
    );
    assert_eq!(coordinator.take_calls(), ["stop upgrade-2-0"]);
    // 3. The savepoint completed: its location is in status before any pod is deleted.
    let calls = reconcile_once(&kube, &ctx).await;
    assert_eq!(
        lines(&calls),
        seq(&[&GET_WORKLOADS, &[STATUS, "EVENT"], &DELETE_WORKLOADS])
    );
    let location = "s3://bucket/retail/savepoints/savepoint-upgrade-2-0";
    assert_eq!(calls[3].body["status"]["upgrade"]["restore"], location);
    // 4. The new spec is deployed from the savepoint.
    coordinator.set_job(None, None);
    assert_eq!(
        lines(&reconcile_once(&kube, &ctx).await),
        seq(&[&GET_ABSENT, &[STATUS, "EVENT"], &[SECRET_GET], &APPLY_ALL])
    );
    let args = container_args(&stored(&kube, &deployment()));
    assert_eq!(&args[2..4], ["--workers", "3"]);
    assert_eq!(&args[args.len() - 2..], ["--from-savepoint", location]);
    assert_eq!(stored(&kube, &statefulset())["spec"]["replicas"], 3);
    let status = &stored(&kube, &sj())["status"];
    assert_eq!(
        (
            status["deployed"]["generation"].as_i64(),
            status["upgrade"].is_null()
        ),
        (Some(2), true)
    );
}

#[tokio::test]
async fn an_incompatible_upgrade_is_blocked_and_the_job_keeps_running() {
    let (kube, coordinator, ctx) = running_job().await;
    kube.edit(&sj(), |o| {
        o["spec"]["job"]["args"]["window"] = json!("5m");
        o["metadata"]["generation"] = json!(2);
    });
    reconcile_once(&kube, &ctx).await;
    complete_check(&kube, 2, false);
    let calls = reconcile_once(&kube, &ctx).await;
    assert_eq!(
        lines(&calls),
        seq(&[
            &GET_WORKLOADS,
            &[
                "GET /apis/batch/v1/jobs/retail-check-2",
                "GET /api/v1/pods",
                STATUS,
                "EVENT",
                "EVENT"
            ]
        ])
    );
    let status = &stored(&kube, &sj())["status"];
    let blocked = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "UpgradeBlocked")
        .unwrap();
    assert_eq!(blocked["status"], "True");
    assert!(
        blocked["message"]
            .as_str()
            .unwrap()
            .contains("operator uid `window` is gone"),
        "{blocked}"
    );
    assert!(coordinator.take_calls().is_empty(), "nothing stopped");
    assert!(kube.get(&deployment()).is_some());
}

#[tokio::test]
async fn suspend_stops_with_a_savepoint_deletes_the_pods_and_keeps_the_resource() {
    let (kube, coordinator, ctx) = running_job().await;
    kube.edit(&sj(), |o| {
        o["spec"]["job"]["state"] = json!("suspended");
        o["metadata"]["generation"] = json!(2);
    });
    assert_eq!(
        lines(&reconcile_once(&kube, &ctx).await),
        seq(&[&GET_WORKLOADS, &[STATUS, "EVENT"]])
    );
    assert_eq!(coordinator.take_calls(), ["stop upgrade-2-0"]);
    let calls = reconcile_once(&kube, &ctx).await;
    assert_eq!(
        lines(&calls),
        seq(&[&GET_WORKLOADS, &[STATUS, "EVENT"], &DELETE_WORKLOADS])
    );
    assert_eq!(
        calls[3].body["status"]["upgrade"]["restore"],
        "s3://bucket/retail/savepoints/savepoint-upgrade-2-0"
    );
    assert_eq!(
        lines(&reconcile_once(&kube, &ctx).await),
        seq(&[&GET_ABSENT, &[STATUS, "EVENT"]])
    );
    let status = &stored(&kube, &sj())["status"];
    assert_eq!(status["lifecycleState"], "Suspended");
    assert_eq!(
        status["deployed"]["restore"],
        "s3://bucket/retail/savepoints/savepoint-upgrade-2-0"
    );
    assert_eq!(
        lines(&reconcile_once(&kube, &ctx).await),
        seq(&[&GET_ABSENT])
    );
    assert!(kube.get(&sj()).is_some() && kube.get(&deployment()).is_none());
}

#[tokio::test]
async fn delete_removes_the_workloads_then_the_finalizer() {
    let (kube, _coordinator, ctx) = running_job().await;
    kube.edit(&sj(), |o| {
        o["metadata"]["deletionTimestamp"] = json!("2026-11-21T10:00:00Z")
    });
    assert_eq!(
        lines(&reconcile_once(&kube, &ctx).await),
        seq(&[&GET_WORKLOADS, &[STATUS], &DELETE_WORKLOADS])
    );
    assert_eq!(stored(&kube, &sj())["status"]["lifecycleState"], "Deleting");
    let calls = reconcile_once(&kube, &ctx).await;
    assert_eq!(
        lines(&calls),
        seq(&[
            &GET_ABSENT,
            &[STATUS, "PATCH /apis/weir.dev/v1alpha1/streamjobs/retail"]
        ])
    );
    assert_eq!(calls[3].body[1]["value"], json!([]));
    assert_eq!(stored(&kube, &sj())["metadata"]["finalizers"], json!([]));
    // Without the finalizer nothing more is done.
    assert!(lines(&reconcile_once(&kube, &ctx).await).is_empty());
}

#[tokio::test]
async fn a_malformed_stream_job_is_refused_with_a_warning_and_nothing_is_created() {
    let kube = FakeKube::start();
    let coordinator = Arc::new(FakeCoordinator::default());
    let ctx = context(&kube, coordinator);
    let mut bad = spec(2);
    bad["job"]["paralelism"] = json!(4);
    kube.put(&sj(), stream_job(NS, NAME, bad));
    let object: StreamJobObject = serde_json::from_value(kube.get(&sj()).unwrap()).unwrap();
    let err = reconcile(Arc::new(object), ctx.clone())
        .await
        .expect_err("refused");
    assert_eq!(err.category(), "invalid_spec");
    assert!(!err.is_transient());
    let calls = kube.take_calls();
    assert_eq!(lines(&calls), [STATUS, "EVENT"]);
    assert!(
        calls[1].body["note"]
            .as_str()
            .unwrap()
            .contains("paralelism"),
        "{}",
        calls[1].body
    );
    let status = &stored(&kube, &sj())["status"];
    assert!(
        status["error"].as_str().unwrap().contains("spec.job"),
        "{status}"
    );
    let stalled = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Stalled")
        .unwrap();
    assert_eq!(
        (stalled["status"].as_str(), stalled["reason"].as_str()),
        (Some("True"), Some("InvalidSpec"))
    );
    // A well-formed neighbour in the same watch is unaffected: it reconciles normally.
    kube.put(
        &path("weir.dev/v1alpha1", NS, "streamjobs", "other"),
        stream_job(NS, "other", spec(1)),
    );
    let other: StreamJobObject = serde_json::from_value(
        kube.get(&path("weir.dev/v1alpha1", NS, "streamjobs", "other"))
            .unwrap(),
    )
    .unwrap();
    reconcile(Arc::new(other), ctx)
        .await
        .expect("the other job reconciles");
    assert!(kube
        .get(&path("apps/v1", NS, "deployments", "other-coordinator"))
        .is_some());
}

#[tokio::test]
async fn the_admin_token_secret_is_created_once_mounted_and_sent_to_the_coordinator() {
    let (kube, coordinator, _ctx) = running_job().await;
    let secret = stored(&kube, &path("v1", NS, "secrets", "retail-admin-token"));
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["uid"],
        "uid-retail"
    );
    assert_eq!(secret["immutable"], true);
    let token = weir_operator::build::admin_token_of(
        &serde_json::from_value(secret.clone()).expect("a Secret"),
    )
    .expect("a token under key `token`");
    // The operator observed the job with the Secret's token.
    assert_eq!(coordinator.last_token(), Some(token));
    // Coordinator and workers read it from the mounted Secret.
    for p in [deployment(), statefulset()] {
        let pod = &stored(&kube, &p)["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert!(
            container["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "WEIR_ADMIN_TOKEN_FILE"
                    && e["value"] == "/var/run/weir/admin-token/token"),
            "{p}"
        );
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "admin-token")
            .expect("admin token volume");
        assert_eq!(volume["secret"]["secretName"], "retail-admin-token");
        assert!(container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "admin-token" && m["readOnly"] == true));
    }
    // The manifest names the namespace and the UID: the job's storage root and its owner.
    let manifest = stored(&kube, &config_map())["data"]["job.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let loaded = weir_operator::crds::load_manifest(&manifest).unwrap();
    assert_eq!(
        (loaded.namespace.as_deref(), loaded.uid.as_deref()),
        (Some(NS), Some("uid-retail"))
    );
}
