//! The operator's Prometheus metrics (prometheus-client), every label bounded: error
//! categories and lifecycle states are fixed sets, never names or messages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use weir_crds::LifecycleState;

/// Label of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    /// [`crate::error::Error::category`].
    category: String,
}

/// Label of the jobs gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    /// A lifecycle state, e.g. `Stable`.
    state: String,
}

/// The metrics and their registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    jobs: Family<StateLabels, Gauge>,
    savepoint_duration: Histogram,
    /// The lifecycle state last counted for each StreamJob (`namespace/name`).
    states: Mutex<HashMap<String, LifecycleState>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("weir_operator");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let jobs = Family::<StateLabels, Gauge>::default();
        let savepoint_duration = Histogram::new(exponential_buckets(0.5, 2.0, 12));
        registry.register("reconciles", "Reconciles of StreamJobs", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by category (kube, coordinator, invalid_spec)",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile (observe, decide, act)",
            duration.clone(),
        );
        registry.register("jobs", "StreamJobs per lifecycle state", jobs.clone());
        registry.register(
            "savepoint_duration_seconds",
            "Time from a savepoint's trigger to its completion as the operator saw it",
            savepoint_duration.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            jobs,
            savepoint_duration,
            states: Mutex::new(HashMap::new()),
        }
    }
}

impl Metrics {
    /// Counts one reconcile that took `took` and failed with `error_category`, if it did.
    pub fn reconciled(&self, took: Duration, error_category: Option<&'static str>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(category) = error_category {
            self.errors
                .get_or_create(&ErrorLabels {
                    category: category.into(),
                })
                .inc();
        }
    }

    /// Records the lifecycle state of StreamJob `key` (`namespace/name`); `None` when it is
    /// gone.
    pub fn set_state(&self, key: &str, state: Option<LifecycleState>) {
        let mut states = self
            .states
            .lock()
            .expect("invariant: metrics lock not poisoned");
        let before = match state {
            Some(s) => states.insert(key.to_string(), s),
            None => states.remove(key),
        };
        if before == state {
            return;
        }
        let gauge = |s: LifecycleState| {
            self.jobs.get_or_create(&StateLabels {
                state: format!("{s:?}"),
            })
        };
        if let Some(b) = before {
            gauge(b).dec();
        }
        if let Some(s) = state {
            gauge(s).inc();
        }
    }

    /// Records a completed savepoint that took `took` from its trigger.
    pub fn savepoint_completed(&self, took: Duration) {
        self.savepoint_duration.observe(took.as_secs_f64());
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("invariant: writing to a String cannot fail");
        text
    }
}
