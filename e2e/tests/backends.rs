//! The heap and RocksDB state backends produce identical output for the same job.

use weir_e2e::{assert_success, example_job};

#[test]
fn heap_and_rocksdb_give_identical_output() {
    let mut outputs = Vec::new();
    for backend in ["heap", "rocksdb"] {
        let job = example_job(|d| {
            d["spec"]["stateBackend"] = backend.into();
            d["spec"]["job"]["parallelism"] = 3.into();
            d["spec"]["checkpointing"]["interval"] = "200ms".into();
        });
        let out = job.run(&[]);
        assert_success(&out);
        let lines = job.output_lines();
        assert!(lines.len() > 100_000, "{backend}: {} lines", lines.len());
        outputs.push(lines);
    }
    assert_eq!(outputs[0], outputs[1]);
}
