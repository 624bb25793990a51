//! The `weir` command line: `jobs` lists the registry, `validate` checks a manifest.

use std::process::Command;

#[test]
fn jobs_lists_the_builtin_job() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("jobs")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("csv-window-aggregate"));
}

#[test]
fn validate_rejects_an_unknown_entry_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.yaml");
    std::fs::write(
        &m,
        "apiVersion: weir.dev/v1alpha1\nkind: StreamJob\nmetadata: {name: x}\nspec:\n  job: {entry: nope}\n  checkpointing: {storage: 'file:///tmp/x'}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("validate")
        .arg(&m)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.job.entry: unknown job `nope`"));
}
