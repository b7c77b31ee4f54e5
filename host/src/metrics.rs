//! The host's metrics, served at `GET /metrics` in the OpenMetrics text
//! format (`prometheus-client` encodes them).
//!
//! One set per process: the store's writers, the runtime and the executor
//! record into it wherever the thing happens, without a handle passed
//! down to them. Label values stay bounded: modules, workflows, statuses,
//! host-call kinds and route templates, never run ids or raw paths.
//! Gauges of what is in flight (live instances, parked runs, queue depths,
//! open waits) are read when `/metrics` is asked for, not kept up to date.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// A run's module and workflow.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub module: String,
    pub workflow: String,
}

/// A run's module, workflow and how it ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndLabels {
    pub module: String,
    pub workflow: String,
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The queue's name; `""` for delayed starts outside any queue.
    pub queue: String,
}

/// Every metric of the host.
pub struct Metrics {
    registry: Registry,
    runs_started: Family<RunLabels, Counter>,
    runs_finished: Family<EndLabels, Counter>,
    /// Runs executing, waiting in memory, parked, waiting for an instance.
    pub runs: Family<StateLabels, Gauge>,
    /// `ENQUEUED` runs by queue.
    pub queued: Family<QueueLabels, Gauge>,
    host_calls: Family<KindLabels, Histogram>,
    wake_ups: Histogram,
    journal_writes: Counter,
    commits: Counter,
    batch_sizes: Histogram,
    commit_latency: Histogram,
    instantiations: Histogram,
    compiled_modules: Family<ResultLabels, Counter>,
    http_requests: Family<ResponseLabels, Counter>,
    http_latency: Family<RouteLabels, Histogram>,
    /// Long-polls, event streams and trigger waits open.
    pub open_waits: Family<KindLabels, Gauge>,
    /// Runs this host holds the lease of (PostgreSQL).
    pub leases_held: Gauge,
    claims: Counter,
    notification_lag: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Latencies from 50 µs to about 26 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 20)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("cairn");
        let runs_started = Family::<RunLabels, Counter>::default();
        registry.register(
            "runs_started",
            "Runs started, by module and workflow",
            runs_started.clone(),
        );
        let runs_finished = Family::<EndLabels, Counter>::default();
        registry.register(
            "runs_finished",
            "Runs ended, by module, workflow and status",
            runs_finished.clone(),
        );
        let runs = Family::<StateLabels, Gauge>::default();
        registry.register(
            "runs",
            "Runs in flight on this host: executing (in an instance), waiting (for an instance), parked (waiting in the database)",
            runs.clone(),
        );
        let queued = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queued_runs",
            "ENQUEUED runs by queue (\"\" for delayed starts)",
            queued.clone(),
        );
        let host_calls = Family::<KindLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(latency_buckets())) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "host_call_duration",
            "Time in a host call of a workflow, by kind (waits included)",
            Unit::Seconds,
            host_calls.clone(),
        );
        let wake_ups = Histogram::new(latency_buckets());
        registry.register_with_unit(
            "wake_up_latency",
            "From a change being published on this host to a waiter on it running",
            Unit::Seconds,
            wake_ups.clone(),
        );
        let journal_writes = Counter::default();
        registry.register(
            "journal_writes",
            "Writes committed (a start, a call's journal entries, an end, ...)",
            journal_writes.clone(),
        );
        let commits = Counter::default();
        registry.register(
            "commits",
            "Transactions that committed the writes",
            commits.clone(),
        );
        let batch_sizes = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "commit_batch_size",
            "Writes per committed transaction (group commit)",
            batch_sizes.clone(),
        );
        let commit_latency = Histogram::new(latency_buckets());
        registry.register_with_unit(
            "commit_duration",
            "Time to apply and commit one batch of writes",
            Unit::Seconds,
            commit_latency.clone(),
        );
        let instantiations = Histogram::new(latency_buckets());
        registry.register_with_unit(
            "instantiation_duration",
            "Time to instantiate a workflow or handler instance",
            Unit::Seconds,
            instantiations.clone(),
        );
        let compiled_modules = Family::<ResultLabels, Counter>::default();
        registry.register(
            "compiled_module_lookups",
            "Lookups of a module's compiled form: memory, disk (cache hits) or compiled (miss)",
            compiled_modules.clone(),
        );
        let http_requests = Family::<ResponseLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        let http_latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(latency_buckets())) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer a request (to its headers), by method and route template",
            Unit::Seconds,
            http_latency.clone(),
        );
        let open_waits = Family::<KindLabels, Gauge>::default();
        registry.register(
            "open_waits",
            "Requests waiting: long-polls (poll), event streams (stream), trigger waits (trigger)",
            open_waits.clone(),
        );
        let leases_held = Gauge::default();
        registry.register(
            "leases_held",
            "Runs this host holds the lease of (PostgreSQL)",
            leases_held.clone(),
        );
        let claims = Counter::default();
        registry.register(
            "claims",
            "Runs of hosts that stopped, claimed by this host (PostgreSQL)",
            claims.clone(),
        );
        let notification_lag = Histogram::new(latency_buckets());
        registry.register_with_unit(
            "notification_lag",
            "From a host handing a change to PostgreSQL (a commit's notification) to this host hearing it (PostgreSQL; across machines it includes their clocks' offset)",
            Unit::Seconds,
            notification_lag.clone(),
        );
        Self {
            registry,
            runs_started,
            runs_finished,
            runs,
            queued,
            host_calls,
            wake_ups,
            journal_writes,
            commits,
            batch_sizes,
            commit_latency,
            instantiations,
            compiled_modules,
            http_requests,
            http_latency,
            open_waits,
            leases_held,
            claims,
            notification_lag,
        }
    }

    /// Everything, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    pub fn run_started(&self, module: &str, workflow: &str) {
        self.runs_started
            .get_or_create(&RunLabels {
                module: module.to_owned(),
                workflow: workflow.to_owned(),
            })
            .inc();
    }

    pub fn run_finished(&self, module: &str, workflow: &str, status: &'static str) {
        self.runs_finished
            .get_or_create(&EndLabels {
                module: module.to_owned(),
                workflow: workflow.to_owned(),
                status,
            })
            .inc();
    }

    /// Time a host call of `kind` until the guard is dropped (its span is
    /// the run host's: `RunHost::host_call`).
    pub fn host_call(&'static self, kind: &'static str) -> Timer {
        Timer {
            started: Instant::now(),
            record: Record::HostCall(self, kind),
        }
    }

    pub fn woken(&self, after: Duration) {
        self.wake_ups.observe(after.as_secs_f64());
    }

    /// One transaction committed `writes` writes, `took` from its start.
    pub fn committed(&self, writes: u64, took: Duration) {
        self.journal_writes.inc_by(writes);
        self.commits.inc();
        self.batch_sizes.observe(writes as f64);
        self.commit_latency.observe(took.as_secs_f64());
    }

    pub fn instantiated(&self, took: Duration) {
        self.instantiations.observe(took.as_secs_f64());
    }

    /// Where a module's compiled form came from: `memory`, `disk` or
    /// `compiled`.
    pub fn compiled_module(&self, result: &'static str) {
        self.compiled_modules
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// One request answered; labels from [`crate::http`]'s route table, so
    /// nothing is allocated to count it.
    pub fn answered(&self, method: &'static str, route: &'static str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&ResponseLabels {
                method,
                route,
                status,
            })
            .inc();
        self.http_latency
            .get_or_create(&RouteLabels { method, route })
            .observe(took.as_secs_f64());
    }

    pub fn claimed(&self, runs: u64) {
        self.claims.inc_by(runs);
    }

    /// A change notification heard `lag` after it was sent.
    pub fn notified(&self, lag: Duration) {
        self.notification_lag.observe(lag.as_secs_f64());
    }
}

/// The metrics of this process.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

#[derive(Debug)]
enum Record {
    HostCall(&'static Metrics, &'static str),
}

/// Records the time since it was made when dropped (on every path out of
/// the call, errors and traps included).
#[derive(Debug)]
pub struct Timer {
    started: Instant,
    record: Record,
}

impl Drop for Timer {
    fn drop(&mut self) {
        let took = self.started.elapsed().as_secs_f64();
        match self.record {
            Record::HostCall(metrics, kind) => metrics
                .host_calls
                .get_or_create(&KindLabels { kind })
                .observe(took),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_as_openmetrics_text_with_their_labels() {
        let metrics = Metrics::new();
        metrics.run_started("steps", "steps_workflow");
        metrics.run_finished("steps", "steps_workflow", "SUCCESS");
        metrics.committed(4, Duration::from_micros(300));
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"cairn_runs_started_total{module="steps",workflow="steps_workflow"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"cairn_runs_finished_total{module="steps",workflow="steps_workflow",status="SUCCESS"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("cairn_journal_writes_total 4"), "{text}");
        assert!(text.contains("cairn_commit_batch_size_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
