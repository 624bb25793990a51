//! The Argo CD health check (`operator/argocd/health.lua`) run by a real Lua 5.4 interpreter
//! against statuses the decide function produced: every lifecycle state maps to the Argo CD
//! health a user expects.

mod common;

use std::process::Command;

use common::*;
use weir_crds::{JobState, StreamJobStatus};
use weir_operator::decide::decide;

/// A serde_json value as a Lua table constructor.
fn lua(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "nil".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Array(a) => {
            format!("{{{}}}", a.iter().map(lua).collect::<Vec<_>>().join(", "))
        }
        serde_json::Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// (health status, message) of a StreamJob with `generation` and `status`.
fn health(generation: i64, status: Option<&StreamJobStatus>) -> (String, String) {
    let mut obj = serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": {"name": "j", "generation": generation},
    });
    if let Some(s) = status {
        obj["status"] = serde_json::to_value(s).unwrap();
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/argocd/health.lua");
    let program = format!(
        "obj = {}\nlocal hs = dofile({script:?})\nio.write(hs.status, \"\\t\", hs.message or \"\")",
        lua(&obj)
    );
    let out = Command::new("lua5.4")
        .args(["-e", &program])
        .output()
        .expect("lua5.4 runs (scripts/setup.sh --test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\t').unwrap();
    (status.to_string(), message.to_string())
}

#[test]
fn every_lifecycle_state_has_the_health_a_user_expects() {
    let s = spec(2);
    let created = decide(
        &desired(1, &s),
        &StreamJobStatus::default(),
        &absent(),
        t(0),
    )
    .status;
    let running_st = decide(&desired(1, &s), &created, &running(None), t(5)).status;
    let stable_st = stable();
    let upgrading = decide(&desired(2, &spec(3)), &stable_st, &running(Some(3)), t(20)).status;
    let failed = decide(
        &desired(1, &s),
        &stable_st,
        &observed(JobRunState::Failed, Some(3)),
        t(20),
    )
    .status;
    let mut other = spec(2);
    other.job.entry = "other".into();
    let blocked = {
        let d = decide(&desired(2, &other), &stable_st, &running(Some(3)), t(20));
        decide(
            &desired(2, &other),
            &d.status,
            &checked(running(Some(3)), 2, false),
            t(21),
        )
        .status
    };
    let mut sus = spec(2);
    sus.job.state = JobState::Suspended;
    let suspended = decide(
        &desired(1, &sus),
        &StreamJobStatus::default(),
        &absent(),
        t(0),
    )
    .status;

    let table: &[(&str, i64, Option<&StreamJobStatus>, &str, &str)] = &[
        ("no status yet", 1, None, "Progressing", "observe"),
        (
            "status of an older generation",
            2,
            Some(&stable_st),
            "Progressing",
            "generation 2",
        ),
        ("deploying", 1, Some(&created), "Progressing", "pods start"),
        ("running", 1, Some(&running_st), "Healthy", "Running"),
        ("stable", 1, Some(&stable_st), "Healthy", "Stable"),
        ("upgrading", 2, Some(&upgrading), "Progressing", "savepoint"),
        ("failed", 1, Some(&failed), "Degraded", "restartNonce"),
        (
            "upgrade blocked",
            2,
            Some(&blocked),
            "Degraded",
            "Upgrade blocked",
        ),
        ("suspended", 1, Some(&suspended), "Suspended", "savepoint"),
    ];
    for (name, generation, status, want, fragment) in table {
        let (got, message) = health(*generation, *status);
        assert_eq!(got, *want, "{name}: {message}");
        assert!(message.contains(fragment), "{name}: {message}");
    }
}
