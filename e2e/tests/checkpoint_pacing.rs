//! Checkpoint pacing: `maxConcurrent` lets checkpoints overlap (and the output stays exactly
//! once), `minPause` keeps a gap between the end of one checkpoint and the next trigger. Both
//! read from the run summary (`checkpointsInFlightMax`, `checkpointPauseMinMs`).

use weir_e2e::{example_job, reference_retail_revenue};

#[test]
fn max_concurrent_checkpoints_overlap_and_stay_exactly_once() {
    let job = example_job(|d| {
        d["spec"]["checkpointing"]["interval"] = "10ms".into();
        d["spec"]["checkpointing"]["maxConcurrent"] = 3.into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "200000".into();
    });
    let summary = job.run_summarized(&[]);
    let in_flight = summary["checkpointsInFlightMax"].as_u64().unwrap_or(0);
    assert!(
        (2..=3).contains(&in_flight),
        "up to 3 checkpoints in flight, got {in_flight}: {summary}"
    );
    assert_eq!(job.output_lines(), reference_retail_revenue());

    let serial = example_job(|d| {
        d["spec"]["checkpointing"]["interval"] = "10ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "200000".into();
    });
    let summary = serial.run_summarized(&[]);
    assert_eq!(summary["checkpointsInFlightMax"], 1, "{summary}");
    assert!(
        summary["checkpointsCompleted"].as_u64() > Some(2),
        "{summary}"
    );
}

#[test]
fn min_pause_separates_checkpoints() {
    let job = example_job(|d| {
        d["spec"]["checkpointing"]["interval"] = "10ms".into();
        d["spec"]["checkpointing"]["minPause"] = "400ms".into();
        d["spec"]["checkpointing"]["maxConcurrent"] = 3.into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "200000".into();
    });
    let summary = job.run_summarized(&[]);
    // The first checkpoint has no pause before it and the final one (input exhausted) does
    // not wait: at least three make at least one paced gap.
    assert!(
        summary["checkpointsCompleted"].as_u64() >= Some(4),
        "{summary}"
    );
    let pause = summary["checkpointPauseMinMs"].as_f64().unwrap_or(0.0);
    assert!(pause >= 399.0, "shortest pause {pause} ms: {summary}");
    assert_eq!(
        summary["checkpointsInFlightMax"], 1,
        "minPause keeps one in flight"
    );
    assert_eq!(job.output_lines(), reference_retail_revenue());
}
