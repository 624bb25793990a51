//! Checkpoint pacing: `maxConcurrent` lets checkpoints overlap (and the output stays exactly
//! once), `minPause` keeps a gap between the end of one checkpoint and the next trigger.

use chrono::{DateTime, Utc};
use weir_e2e::{assert_success, example_job, reference_retail_revenue};

/// (time, "trigger" | "complete", checkpoint id) from a run's log.
fn events(log: &str) -> Vec<(DateTime<Utc>, &'static str, u64)> {
    log.lines()
        .filter_map(|l| {
            let time: DateTime<Utc> = l.split_whitespace().next()?.parse().ok()?;
            let (kind, rest) = if let Some(r) = l.split("triggering checkpoint ").nth(1) {
                ("trigger", r)
            } else if l.contains(" complete") {
                ("complete", l.split("checkpoint ").nth(1)?)
            } else {
                return None;
            };
            let id = rest.split_whitespace().next()?.parse().ok()?;
            Some((time, kind, id))
        })
        .collect()
}

/// Largest number of checkpoints in flight at once.
fn max_in_flight(events: &[(DateTime<Utc>, &'static str, u64)]) -> usize {
    let mut open = std::collections::BTreeSet::new();
    let mut max = 0;
    for (_, kind, id) in events {
        if *kind == "trigger" {
            open.insert(*id);
        } else {
            open.remove(id);
        }
        max = max.max(open.len());
    }
    max
}

#[test]
fn max_concurrent_checkpoints_overlap_and_stay_exactly_once() {
    let job = example_job(|d| {
        d["spec"]["checkpointing"]["interval"] = "10ms".into();
        d["spec"]["checkpointing"]["maxConcurrent"] = 3.into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "200000".into();
    });
    let out = job.run(&[]);
    assert_success(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    let ev = events(&log);
    let in_flight = max_in_flight(&ev);
    assert!(
        (2..=3).contains(&in_flight),
        "up to 3 checkpoints in flight, got {in_flight}:\n{log}"
    );
    assert_eq!(job.output_lines(), reference_retail_revenue());

    let serial = example_job(|d| {
        d["spec"]["checkpointing"]["interval"] = "10ms".into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "200000".into();
    });
    let out = serial.run(&[]);
    assert_success(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(max_in_flight(&events(&log)), 1, "{log}");
}

#[test]
fn min_pause_separates_checkpoints() {
    let job = example_job(|d| {
        d["spec"]["checkpointing"]["interval"] = "10ms".into();
        d["spec"]["checkpointing"]["minPause"] = "400ms".into();
        d["spec"]["checkpointing"]["maxConcurrent"] = 3.into();
        d["spec"]["job"]["args"]["maxRecordsPerSecond"] = "200000".into();
    });
    let out = job.run(&[]);
    assert_success(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    let ev = events(&log);
    let mut gaps = Vec::new();
    for w in ev.windows(2) {
        if let [(t0, "complete", _), (t1, "trigger", _)] = w {
            gaps.push((*t1 - *t0).num_milliseconds());
        }
    }
    assert!(gaps.len() >= 2, "{log}");
    // The final checkpoint (input exhausted) does not wait for the pause.
    let paced = &gaps[..gaps.len() - 1];
    assert!(paced.iter().all(|g| *g >= 390), "gaps {gaps:?}:\n{log}");
    assert_eq!(max_in_flight(&ev), 1, "minPause keeps one in flight");
    assert_eq!(job.output_lines(), reference_retail_revenue());
}
