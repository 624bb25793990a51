//! Event time survives failures: over an out-of-order input with late records throughout, a
//! run killed with SIGKILL at random points and resumed drops exactly the records an
//! uninterrupted run drops, so its output is exactly the uninterrupted output (the sources'
//! watermarks are checkpointed with their positions; restarting from the minimum watermark
//! would let late records re-open windows that already fired).

use std::io::Write;

use weir_e2e::{assert_success, kill_at_random_points, manifest_job, weir_bin};

const ROWS: i64 = 40_000;

/// `key,value,epoch seconds`: one row per second of event time, every 50th row two hours old.
fn write_input(path: &std::path::Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "key,value,ts").unwrap();
    for i in 0..ROWS {
        let ts = 1_700_000_000 + i - if i % 50 == 49 { 7_200 } else { 0 };
        writeln!(f, "k{},1,{ts}", i % 7).unwrap();
    }
}

#[test]
fn killed_and_resumed_runs_make_the_same_late_data_decisions() {
    let data = tempfile::tempdir().unwrap();
    let input = data.path().join("events.csv");
    write_input(&input);
    let manifest = data.path().join("job.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: weir.dev/v1alpha1\nkind: StreamJob\nmetadata: {{name: late-data}}\nspec:\n  job:\n    entry: csv-window-aggregate\n    parallelism: 1\n    args:\n      input: {}\n      timestamp: ts\n      timestampFormat: epoch-s\n      key: key\n      value: value\n      window: 1m\n      aggregates: count,sum\n      outOfOrderness: 5s\n      output: unset\n  checkpointing: {{interval: 200ms, storage: 'file:///unset'}}\n  stateBackend: heap\n",
            input.display()
        ),
    )
    .unwrap();

    let clean = manifest_job(weir_bin(), &manifest, |_| {});
    let summary = clean.dir.path().join("summary.json");
    assert_success(&clean.run(&["--summary-json", summary.to_str().unwrap()]));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let late = summary["lateRecords"]
        .as_u64()
        .expect("lateRecords in the summary");
    assert!(late >= ROWS as u64 / 100, "only {late} late records");
    let uninterrupted = clean.output_lines();

    let killed = manifest_job(weir_bin(), &manifest, |d| {
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "3000".into();
    });
    let seed = weir_e2e::test_seed();
    let kills = kill_at_random_points(&killed, 6, seed);
    assert!(kills.total >= 5, "only {} kills landed", kills.total);
    assert_success(&killed.run(&[]));
    assert_eq!(
        killed.output_lines(),
        uninterrupted,
        "killed-and-resumed output differs: a late record re-opened a fired window"
    );
}
