//! A realistic end-to-end run on Garage, a real object store: a 40 MiB multipart upload reads
//! back intact, and the example with incremental RocksDB checkpoints killed with SIGKILL at
//! random points and resumed commits exactly the reference output, its output written to
//! Garage as multipart uploads too, through a rescale, with no upload left in progress. Skipped, saying so, when
//! no garage binary is installed and `WEIR_GARAGE` is not set (`scripts/setup.sh --garage`
//! installs one; CI does, and sets `WEIR_GARAGE`, so there a missing binary fails the test).

use weir_crds::S3Location;
use weir_e2e::garage::{garage_bin, Garage};
use weir_e2e::{example_job_on_endpoint, kill_at_random_points, reference_retail_revenue};
use weir_runtime::connectors::file_sink::committed_lines_in;
use weir_runtime::storage::{CheckpointStorage, S3Storage};

#[test]
fn multipart_uploads_and_exactly_once_recovery_on_garage() {
    let Some(bin) = garage_bin() else {
        eprintln!(
            "SKIPPED: no garage binary (install with scripts/setup.sh --garage, or set WEIR_GARAGE)"
        );
        return;
    };
    let garage = Garage::start(bin);
    for (k, v) in garage.env() {
        std::env::set_var(k, v);
    }

    // Multipart: 40 MiB in 8 MiB parts, no part checksums (Garage rejects unexpected ones).
    let open = |prefix: &str| {
        S3Storage::open(&S3Location {
            bucket: garage.bucket.clone(),
            prefix: prefix.into(),
            endpoint: Some(garage.endpoint()),
            region: Some("garage".into()),
            path_style: true,
        })
        .expect("S3 client")
    };
    let storage = open("multipart");
    let big: Vec<u8> = (0..40u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    storage
        .write("dir/big", &big)
        .expect("multipart upload to garage");
    assert_eq!(
        storage.read("dir/big").expect("read").as_deref(),
        Some(big.as_slice())
    );
    assert_eq!(storage.list("dir").unwrap(), vec!["big".to_string()]);
    storage.delete_all("dir").unwrap();
    assert_eq!(storage.read("dir/big").unwrap(), None);

    // Exactly once with incremental checkpoints and the output on Garage, through a rescale.
    let output = format!("s3://{}/eo/output", garage.bucket);
    let job = example_job_on_endpoint(
        &garage.endpoint(),
        &garage.bucket,
        "eo",
        garage.env(),
        |d| {
            d["spec"]["checkpointing"]["interval"] = "300ms".into();
            d["spec"]["checkpointing"]["incremental"] = true.into();
            d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "60000".into();
            d["spec"]["job"]["args"]["output"] = output.clone().into();
        },
    );
    let seed = fastrand::u64(..);
    eprintln!("kill schedule seed: {seed}");
    let kills = kill_at_random_points(&job, 3, seed);
    job.edit(|d| d["spec"]["job"]["parallelism"] = 3.into());
    let more = kill_at_random_points(&job, 2, seed ^ 1);
    assert!(kills.total + more.total >= 4, "{kills:?} {more:?}");
    let summary = job.run_summarized(&[]);
    assert_eq!(summary["restoredKind"], "checkpoint", "{summary}");
    let out = open("eo/output");
    let mut lines = committed_lines_in(&out).expect("read the output");
    lines.sort();
    assert_eq!(lines, reference_retail_revenue());
    // Uploads the killed runs began after their last completed checkpoint were aborted on
    // restore; the last run committed all of its own.
    assert_eq!(out.list_uploads("").expect("list uploads"), Some(vec![]));
}
