//! The job's metrics in the Prometheus text format, as the admin API's `/metrics` serves
//! them: job-wide counters, checkpoint and storage figures, and per operator and subtask.

use super::Coordinator;
use crate::metrics::JobMetrics;

impl Coordinator<'_> {
    /// Per operator (every node of the job graph, by uid) and subtask: records in and out
    /// records dropped as late and records that did not deserialize; per subtask: time blocked on full exchange buffers.
    fn register_subtask_metrics(
        &self,
        r: &mut prometheus_client::registry::Registry,
        metrics: &JobMetrics,
    ) {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        type Labels = Vec<(String, String)>;
        let records_in = Family::<Labels, Counter>::default();
        let records_out = Family::<Labels, Counter>::default();
        let late = Family::<Labels, Counter>::default();
        let invalid = Family::<Labels, Counter>::default();
        let backpressure = Family::<Labels, Counter<f64>>::default();
        let labels = |uid: &str, subtask: u32| {
            vec![
                ("operator".to_string(), uid.to_string()),
                ("subtask".to_string(), subtask.to_string()),
            ]
        };
        for f in metrics.all_figures() {
            for o in &f.operators {
                let l = labels(&o.uid, f.subtask);
                records_in.get_or_create(&l).inc_by(o.records_in);
                records_out.get_or_create(&l).inc_by(o.records_out);
                late.get_or_create(&l).inc_by(o.late_records);
                if o.invalid_records > 0 {
                    invalid.get_or_create(&l).inc_by(o.invalid_records);
                }
            }
            backpressure
                .get_or_create(&vec![("subtask".to_string(), f.subtask.to_string())])
                .inc_by(f.backpressure_ns as f64 / 1e9);
        }
        r.register(
            "operator_records_in",
            "Records into an operator (read, for a source), per operator uid and subtask",
            records_in,
        );
        r.register(
            "operator_records_out",
            "Records out of an operator (main and side outputs), per operator uid and subtask",
            records_out,
        );
        r.register(
            "operator_late_records",
            "Records an operator dropped as late, per operator uid and subtask",
            late,
        );
        r.register(
            "operator_invalid_records",
            "Records a source read that did not deserialize (sent to its dead-letter output), per operator uid and subtask",
            invalid,
        );
        r.register(
            "backpressure_seconds",
            "Time a subtask's exchange outputs waited for buffer space downstream, per subtask",
            backpressure,
        );
    }

    /// The job's metrics in the Prometheus text format.
    pub(super) fn render_metrics(&self, metrics: &JobMetrics) -> String {
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let mut r = prometheus_client::registry::Registry::with_prefix("weir");
        let io = self.storage.stats();
        r.register(
            "records_in",
            "Records read by sources",
            ConstCounter::new(metrics.records_in()),
        );
        r.register(
            "records_out",
            "Records written by sinks",
            ConstCounter::new(metrics.records_out()),
        );
        r.register(
            "late_records",
            "Records dropped as late",
            ConstCounter::new(metrics.late_records()),
        );
        r.register(
            "invalid_records",
            "Records sources read that did not deserialize (sent to a dead-letter output)",
            ConstCounter::new(metrics.invalid_records()),
        );
        let refused = prometheus_client::metrics::family::Family::<
            Vec<(&'static str, &'static str)>,
            prometheus_client::metrics::counter::Counter,
        >::default();
        for port in crate::net::auth::Port::ALL {
            refused
                .get_or_create(&vec![("port", port.label())])
                .inc_by(crate::net::auth::refused(port));
        }
        r.register(
            "refused_connections",
            "Admin requests and worker connections this process refused for want of the job's token, by port (admin, control, data)",
            refused,
        );
        r.register(
            "checkpoints_completed",
            "Checkpoints completed",
            ConstCounter::new(self.history.stats.completed),
        );
        r.register(
            "checkpoints_failed",
            "Checkpoints aborted",
            ConstCounter::new(self.history.stats.failed),
        );
        let (duration, size) = self
            .history
            .stats
            .last_info
            .as_ref()
            .map(|c| (c.duration_ms as f64 / 1000.0, c.size_bytes as i64))
            .unwrap_or((0.0, 0));
        r.register(
            "last_checkpoint_duration_seconds",
            "Duration of the last completed checkpoint",
            ConstGauge::new(duration),
        );
        r.register(
            "last_checkpoint_size_bytes",
            "State bytes of the last completed checkpoint",
            ConstGauge::new(size),
        );
        r.register(
            "storage_requests",
            "Checkpoint storage requests",
            ConstCounter::new(io.requests),
        );
        r.register(
            "storage_written_bytes",
            "Bytes written to checkpoint storage",
            ConstCounter::new(io.bytes_written),
        );
        r.register(
            "storage_read_bytes",
            "Bytes read from checkpoint storage",
            ConstCounter::new(io.bytes_read),
        );
        let watermark = metrics.watermark();
        if watermark != i64::MIN && watermark != i64::MAX {
            r.register(
                "watermark_milliseconds",
                "Event-time watermark (ms since the epoch)",
                ConstGauge::new(watermark),
            );
            r.register(
                "watermark_lag_milliseconds",
                "Wall-clock time minus the event-time watermark",
                ConstGauge::new(chrono::Utc::now().timestamp_millis() - watermark),
            );
        }
        r.register(
            "restarts",
            "Restarts of the job after failures",
            ConstCounter::new(u64::from(self.info.restarts)),
        );
        self.register_subtask_metrics(&mut r, metrics);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r)
            .expect("invariant: writing to a String cannot fail");
        out
    }
}
