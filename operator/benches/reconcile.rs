//! Reconcile latency and memory with many StreamJobs against the fake API server of the
//! tests (tower-test mock service; no network). Prints figures, asserts nothing about time.
//!
//! `cargo bench -p weir-operator --bench reconcile` (WEIR_BENCH_JOBS, default 1000).
//!
//! Three passes over every job: create (finalizer, status, five applies), the job reported
//! running (status and an Event), steady state (two reads). The baseline in the same run is
//! the pure decide function on the same inputs, so the ratios show what the shell's requests
//! cost on top of the decision. Memory is the process's resident set (the operator's and the
//! fake server's stored objects together) before and after, and its peak.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{context, path, stream_job, FakeCoordinator, FakeKube};
use weir_operator::controller::reconcile;
use weir_operator::model::{Desired, Observed};
use weir_operator::resource::StreamJobObject;

const NS: &str = "bench";

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn summary(label: &str, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let n = times.len();
    let total: Duration = times.iter().sum();
    let mean = total / n as u32;
    println!(
        "{label:<28} n={n:<5} mean {:>8.1} µs  p50 {:>8.1} µs  p99 {:>8.1} µs  total {:>7.1} ms",
        mean.as_secs_f64() * 1e6,
        times[n / 2].as_secs_f64() * 1e6,
        times[(n * 99 / 100).min(n - 1)].as_secs_f64() * 1e6,
        total.as_secs_f64() * 1e3
    );
    mean
}

async fn pass(
    kube: &FakeKube,
    ctx: &Arc<weir_operator::controller::Context>,
    n: usize,
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let object: StreamJobObject = serde_json::from_value(
            kube.get(&path(
                "weir.dev/v1alpha1",
                NS,
                "streamjobs",
                &format!("job-{i}"),
            ))
            .unwrap(),
        )
        .unwrap();
        let started = Instant::now();
        reconcile(Arc::new(object), ctx.clone())
            .await
            .expect("reconcile");
        times.push(started.elapsed());
    }
    kube.take_calls();
    times
}

fn main() {
    let n: usize = std::env::var("WEIR_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rss_before = status_kib("VmRSS:");
        let kube = FakeKube::start();
        let coordinator = Arc::new(FakeCoordinator::default());
        let ctx = context(&kube, coordinator.clone());
        let spec = json!({
            "job": {"entry": "csv-window-aggregate", "parallelism": 2, "args": {"input": "/data/in.csv"}},
            "checkpointing": {"storage": "s3://bucket/jobs"},
        });
        for i in 0..n {
            let name = format!("job-{i}");
            kube.put(&path("weir.dev/v1alpha1", NS, "streamjobs", &name), stream_job(NS, &name, spec.clone()));
        }
        println!("reconcile benchmark: {n} StreamJobs against the fake API server");
        let create = summary("create", pass(&kube, &ctx, n).await);
        coordinator.set_job(Some("RUNNING"), Some(1));
        let running = summary("running (status + event)", pass(&kube, &ctx, n).await);
        let steady = summary("steady state", pass(&kube, &ctx, n).await);
        // Baseline: the decision alone, on the steady-state inputs.
        let object: StreamJobObject = serde_json::from_value(
            kube.get(&path("weir.dev/v1alpha1", NS, "streamjobs", "job-0")).unwrap(),
        )
        .unwrap();
        let status = object.parsed_status().unwrap();
        let desired = Desired { generation: 1, spec: object.manifest().unwrap().spec, deleting: false };
        let observed = Observed { pods_present: true, workloads_complete: true, ..Default::default() };
        let decide_times: Vec<Duration> = (0..n)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(weir_operator::decide::decide(
                    &desired,
                    &status,
                    &observed,
                    k8s_openapi::jiff::Timestamp::now(),
                ));
                started.elapsed()
            })
            .collect();
        let decide = summary("baseline: decide only", decide_times);
        let ratio = |d: Duration| d.as_secs_f64() / decide.as_secs_f64().max(1e-9);
        println!(
            "ratio to decide: create {:.1}x, running {:.1}x, steady {:.1}x",
            ratio(create),
            ratio(running),
            ratio(steady)
        );
        let rss_after = status_kib("VmRSS:");
        println!(
            "memory: RSS {} KiB before, {} KiB after ({:.1} KiB per StreamJob incl. the fake server's objects), peak {} KiB",
            rss_before,
            rss_after,
            (rss_after.saturating_sub(rss_before)) as f64 / n as f64,
            status_kib("VmHWM:")
        );
        let metrics = ctx.metrics.encode();
        let stable = metrics
            .lines()
            .find(|l| l.starts_with("weir_operator_jobs{state=\"Stable\"}"))
            .unwrap_or("weir_operator_jobs{state=\"Stable\"} (missing)");
        println!("{stable}");
    });
}
