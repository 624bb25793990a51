//! A fake Kubernetes API server behind kube's tower-test mock service, and a fake coordinator
//! admin API: the operator's reconcile runs against them unchanged (server-side apply, JSON
//! patches, foreground deletes, Event creation, label-selected lists), and every request is
//! recorded (method, path, query, body) so tests can assert the exact calls.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use weir_api_types::{CheckpointsInfo, JobInfo, SavepointState, SavepointStatus};
use weir_operator::controller::Context;
use weir_operator::coordinator_api::{CoordinatorApi, JobEndpoint};
use weir_operator::error::CoordinatorError;
use weir_operator::metrics::Metrics;

/// One request the operator made.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// URL path.
    pub path: String,
    /// URL query.
    pub query: String,
    /// `content-type` of the body.
    pub content_type: String,
    /// The JSON body (`null` when none).
    pub body: Value,
}

impl Call {
    /// `METHOD path`, the form the tests compare.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    calls: Vec<Call>,
    version: u64,
}

/// The fake API server: objects by URL path, the calls it received.
#[derive(Clone)]
pub struct FakeKube {
    state: Arc<Mutex<State>>,
    /// A client whose requests this server answers.
    pub client: kube::Client,
}

/// The URL path of a namespaced object.
pub fn path(api: &str, namespace: &str, plural: &str, name: &str) -> String {
    let prefix = if api == "v1" {
        "/api/v1".to_string()
    } else {
        format!("/apis/{api}")
    };
    format!("{prefix}/namespaces/{namespace}/{plural}/{name}")
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn not_found(path: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("{path} not found"), "reason": "NotFound", "code": 404})
}

fn labels_match(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        object["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/")
        })
    })
}

impl State {
    fn handle(&mut self, call: &Call) -> (u16, Value) {
        let p = call.path.clone();
        match call.method.as_str() {
            "GET" => {
                if let Some(o) = self.objects.get(&p) {
                    return (200, o.clone());
                }
                if let Some(selector) = query_param(&call.query, "labelSelector") {
                    let items: Vec<Value> = self
                        .objects
                        .iter()
                        .filter(|(k, o)| {
                            k.starts_with(&format!("{p}/")) && labels_match(o, &selector)
                        })
                        .map(|(_, o)| o.clone())
                        .collect();
                    return (
                        200,
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}),
                    );
                }
                (404, not_found(&p))
            }
            "PATCH" => {
                let (key, status) = match p.strip_suffix("/status") {
                    Some(k) => (k.to_string(), true),
                    None => (p.clone(), false),
                };
                self.version += 1;
                let version = self.version.to_string();
                let apply = call.content_type.contains("apply-patch");
                if call.content_type.contains("json-patch") {
                    let Some(object) = self.objects.get_mut(&key) else {
                        return (404, not_found(&key));
                    };
                    let ops: json_patch::Patch = serde_json::from_value(call.body.clone()).unwrap();
                    if json_patch::patch(object, &ops).is_err() {
                        return (
                            422,
                            json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "Invalid", "code": 422,
                            "message": "the JSON patch test failed"}),
                        );
                    }
                    object["metadata"]["resourceVersion"] = json!(version);
                    return (200, object.clone());
                }
                // The operator patches only with JSON patches (above) and server-side apply.
                if !apply {
                    return (
                        415,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "reason": "UnsupportedMediaType", "code": 415,
                        "message": format!("unexpected patch type {}", call.content_type)}),
                    );
                }
                let mut object = match self.objects.get(&key).cloned() {
                    Some(o) => o,
                    None => {
                        let mut o = call.body.clone();
                        o["metadata"]["uid"] = json!(format!("uid-{version}"));
                        o["metadata"]["generation"] = json!(1);
                        o
                    }
                };
                if status {
                    object["status"] = call.body["status"].clone();
                } else {
                    let metadata = object["metadata"].clone();
                    object = call.body.clone();
                    for k in ["uid", "generation", "finalizers", "deletionTimestamp"] {
                        if !metadata[k].is_null() {
                            object["metadata"][k] = metadata[k].clone();
                        }
                    }
                }
                object["metadata"]["resourceVersion"] = json!(version);
                self.objects.insert(key, object.clone());
                (200, object)
            }
            "DELETE" => match self.objects.remove(&p) {
                Some(o) => (200, o),
                None => (404, not_found(&p)),
            },
            "POST" => {
                self.version += 1;
                let mut o = call.body.clone();
                let name = o["metadata"]["name"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("obj-{}", self.version));
                o["metadata"]["name"] = json!(name);
                self.objects.insert(format!("{p}/{name}"), o.clone());
                (201, o)
            }
            _ => (405, json!({"kind": "Status", "code": 405})),
        }
    }
}

impl FakeKube {
    /// Starts the server on the current tokio runtime.
    pub fn start() -> Self {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = Arc::new(Mutex::new(State::default()));
        let server = state.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    content_type: parts
                        .headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let (code, body) = {
                    let mut s = server.lock().unwrap();
                    let answer = s.handle(&call);
                    s.calls.push(call);
                    answer
                };
                send.send_response(respond(code, &body));
            }
        });
        FakeKube {
            state,
            client: kube::Client::new(service, "default"),
        }
    }

    /// Stores `object` at `path` (as if another client created it).
    pub fn put(&self, path: &str, object: Value) {
        self.state
            .lock()
            .unwrap()
            .objects
            .insert(path.to_string(), object);
    }

    /// The object at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Edits the object at `path`.
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut s = self.state.lock().unwrap();
        f(s.objects.get_mut(path).expect("object to edit"));
    }

    /// Removes the object at `path`.
    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().objects.remove(path);
    }

    /// Paths of the stored objects under `prefix`.
    pub fn paths(&self, prefix: &str) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The calls received since the last `take_calls`.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }
}

/// A fake admin API: the job's state, its savepoint triggers, the calls received.
#[derive(Default)]
pub struct FakeCoordinator {
    state: Mutex<Coord>,
}

#[derive(Default)]
struct Coord {
    job_state: Option<String>,
    checkpoint: Option<u64>,
    savepoints: HashMap<String, SavepointStatus>,
    calls: Vec<String>,
    /// The token the last `GET /v1/job` carried.
    token: Option<weir_api_types::AdminToken>,
}

impl FakeCoordinator {
    /// The admin token the operator sent with its last observation of the job.
    pub fn last_token(&self) -> Option<weir_api_types::AdminToken> {
        self.state.lock().unwrap().token.clone()
    }

    /// The coordinator answers with job state `state` (`None`: nothing answers) and
    /// `checkpoint` as its latest completed checkpoint.
    pub fn set_job(&self, state: Option<&str>, checkpoint: Option<u64>) {
        let mut s = self.state.lock().unwrap();
        s.job_state = state.map(str::to_string);
        s.checkpoint = checkpoint;
    }

    /// Admin API calls since the last `take_calls` (`op trigger-or-location`).
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    fn savepoint_done(s: &mut Coord, base: &str, trigger_id: &str, directory: Option<&str>) {
        let location = format!(
            "{}/savepoint-{trigger_id}",
            directory.unwrap_or("s3://bucket/retail/savepoints")
        );
        s.calls.push(format!("{base} {trigger_id}"));
        s.savepoints.insert(
            trigger_id.to_string(),
            SavepointStatus {
                trigger_id: trigger_id.to_string(),
                status: SavepointState::Completed,
                location: Some(location),
                failure: None,
            },
        );
    }
}

impl CoordinatorApi for FakeCoordinator {
    fn job(
        &self,
        job: &JobEndpoint,
    ) -> Result<Option<(JobInfo, CheckpointsInfo)>, CoordinatorError> {
        let mut s = self.state.lock().unwrap();
        s.token = job.token.clone();
        let Some(state) = &s.job_state else {
            return Ok(None);
        };
        let info: JobInfo = serde_json::from_value(json!({
            "name": "retail", "id": "0123456789abcdef0123456789abcdef", "state": state,
            "restarts": 0, "parallelism": 2, "maxParallelism": 128,
            "startTime": "2026-11-21T10:00:00Z", "recordsIn": 10, "recordsOut": 5,
        }))
        .unwrap();
        let checkpoints: CheckpointsInfo = serde_json::from_value(json!({
            "latest": s.checkpoint.map(|id| json!({
                "id": id, "location": format!("s3://bucket/retail/checkpoints/chk-{id}"),
                "sizeBytes": 100, "durationMs": 20})),
            "completed": s.checkpoint.unwrap_or(0), "failed": 0, "recentFailures": [],
        }))
        .unwrap();
        Ok(Some((info, checkpoints)))
    }

    fn savepoint(
        &self,
        _: &JobEndpoint,
        id: &str,
    ) -> Result<Option<SavepointStatus>, CoordinatorError> {
        Ok(self.state.lock().unwrap().savepoints.get(id).cloned())
    }

    fn trigger_savepoint(
        &self,
        _: &JobEndpoint,
        id: &str,
        dir: Option<&str>,
    ) -> Result<(), CoordinatorError> {
        Self::savepoint_done(&mut self.state.lock().unwrap(), "trigger", id, dir);
        Ok(())
    }

    fn stop_with_savepoint(
        &self,
        _: &JobEndpoint,
        id: &str,
        dir: Option<&str>,
    ) -> Result<(), CoordinatorError> {
        let mut s = self.state.lock().unwrap();
        Self::savepoint_done(&mut s, "stop", id, dir);
        s.job_state = Some("STOPPED".into());
        Ok(())
    }

    fn dispose_savepoint(&self, _: &JobEndpoint, location: &str) -> Result<(), CoordinatorError> {
        self.state
            .lock()
            .unwrap()
            .calls
            .push(format!("dispose {location}"));
        Ok(())
    }
}

/// The operator's context over `kube` and `coordinator`.
pub fn context(kube: &FakeKube, coordinator: Arc<FakeCoordinator>) -> Arc<Context> {
    Arc::new(Context {
        client: kube.client.clone(),
        coordinator,
        recorder: kube::runtime::events::Recorder::new(
            kube.client.clone(),
            kube::runtime::events::Reporter {
                controller: "weir-operator".into(),
                instance: Some("test".into()),
            },
        ),
        metrics: Arc::new(Metrics::default()),
        default_image: "weir:test".into(),
        admin_url: weir_operator::names::admin_url,
        tokens: Default::default(),
        network_policy: None,
    })
}

/// A StreamJob object as the API server stores it.
pub fn stream_job(namespace: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"),
                     "generation": 1, "resourceVersion": "1"},
        "spec": spec,
    })
}
