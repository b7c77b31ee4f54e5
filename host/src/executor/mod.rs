//! The executor: what the HTTP layer and the runtime's imports use to work
//! with modules and runs. [`Executor`] is the facade; its state ([`Inner`])
//! is shared by the parts, one file each:
//!
//! - `catalog.rs`: deployments, module settings, trigger-route lookups;
//! - `lifecycle.rs`: start, recover, cancel, resume, fork;
//! - `waits.rs`: reading runs, waiting for results and events, messages;
//! - `execution.rs`: a run's execution in a guest instance, and its end;
//! - `wakeups.rs`: a committed change turned into wake-ups, for this host's
//!   writes and other hosts' announcements alike;
//! - `run_host.rs`: the journaled host imports of an executing run;
//! - `cluster.rs`: leases, claims and notifications on a shared database.

mod catalog;
mod children;
mod clock;
mod cluster;
mod cursor;
mod error;
mod execution;
mod handlers;
mod known_events;
mod lifecycle;
mod parking;
mod queues;
mod reach;
mod retention;
mod run_host;
mod schedules;
mod steps;
mod stranded;
mod streams;
mod trigger_routes;
mod waiters;
mod waits;
mod wakeups;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;

pub use crate::domain::AllowList;
pub use clock::{Clock, ManualClock, SystemClock};
pub use cluster::ClusterOptions;
pub use error::{ExecutorError, Result};
pub use parking::Waiting;
pub use queues::QueueView;
pub use schedules::MAX_TICKS;
pub use streams::StreamSpan;
pub use waiters::{Subscription, WaitKey, Waiters};

use crate::domain::{ModuleName, ModuleVersion, RunRecord, RunStatus, WorkflowId};
use crate::runtime::Runtime;
use crate::store::Store;
use catalog::load_catalog;
pub use run_host::RunHost;
use trigger_routes::Routes;

/// Limits on what guests and clients may hand the host.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest event value, workflow input or output, in bytes.
    pub max_value_bytes: usize,
    /// Recoveries of one run before it is given up as
    /// `MAX_RECOVERY_ATTEMPTS_EXCEEDED`.
    pub max_recovery_attempts: u32,
    /// Journaled operations one run may make; past it the run fails.
    pub max_journal_entries: u32,
    /// Bytes one run may store: journal, events, messages sent and
    /// received (see `domain/budget.rs`).
    pub max_run_bytes: u64,
    /// Guest instances alive at once; further runs queue for a slot.
    pub max_live_instances: usize,
    /// Runs queued for an instance slot; past it, start requests are refused
    /// as overloaded (HTTP 503) rather than queued without bound.
    pub max_queued_runs: usize,
    /// Longest wait a trigger route may declare, in ms.
    pub max_trigger_wait_ms: u64,
    /// The hosts that modules' steps may be allowed to call over HTTP
    /// (`cairn serve --allow-outbound`); empty: none.
    pub allowed_hosts: AllowList,
    /// The longest a handler instance lives (its request, its waits on
    /// workflows and its response body): a client that hangs up mid-wait
    /// cannot keep an instance.
    pub handler_timeout: Duration,
    /// How long a run's wait keeps its instance before the run parks:
    /// gives up the instance and its slot, to be woken and replayed.
    pub park_after: Duration,
    /// How long finished runs are kept (`None`: for ever); see
    /// `retention.rs`.
    pub retention: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: 1024 * 1024,
            max_recovery_attempts: 10,
            max_journal_entries: 10_000,
            max_run_bytes: 64 * 1024 * 1024,
            max_live_instances: 1000,
            max_queued_runs: 10_000,
            max_trigger_wait_ms: 300_000,
            allowed_hosts: AllowList::default(),
            park_after: Duration::from_secs(1),
            retention: None,
            // The longest wait a handler may make, and time to answer.
            handler_timeout: Duration::from_secs(330),
        }
    }
}

/// A request to start a run.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub module: ModuleName,
    pub workflow: String,
    /// JSON text.
    pub input: String,
    pub id: Option<WorkflowId>,
    /// Wall-clock limit of the run, from now; the module's default if none.
    pub timeout: Option<Duration>,
    /// The run starting this one, for a child workflow.
    pub parent: Option<WorkflowId>,
    /// The latest the run may end, whatever its own limit: its parent's
    /// deadline, for a child.
    pub deadline_cap: Option<crate::domain::Millis>,
    /// How the run is admitted if not at once (a queue, a start time): it
    /// is stored `ENQUEUED` and started when it may.
    pub admission: Option<crate::domain::Admission>,
    /// The W3C trace context the run starts in (see `telemetry.rs`).
    pub traceparent: Option<String>,
}

/// The run a start request refers to, and whether this request created it.
#[derive(Debug, Clone)]
pub struct Started {
    pub run: RunRecord,
    pub created: bool,
}

/// Emit a guest's log record, tagged with its `source` (`run <id>` or
/// `module <name>`) under the `cairn::guest` target.
pub(crate) fn emit_guest_log(
    level: tracing::Level,
    source: &str,
    message: &str,
    fields: &[(String, String)],
) {
    let fields = fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    match level {
        tracing::Level::ERROR => {
            tracing::error!(target: "cairn::guest", source, fields, "{message}")
        }
        tracing::Level::WARN => tracing::warn!(target: "cairn::guest", source, fields, "{message}"),
        tracing::Level::INFO => tracing::info!(target: "cairn::guest", source, fields, "{message}"),
        tracing::Level::DEBUG => {
            tracing::debug!(target: "cairn::guest", source, fields, "{message}")
        }
        tracing::Level::TRACE => {
            tracing::trace!(target: "cairn::guest", source, fields, "{message}")
        }
    }
}

/// How a wait for an event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventWait {
    /// The event's value (JSON text).
    Set(String),
    /// The time ran out.
    TimedOut,
    /// The run ended, with this status, without ever setting the event.
    Finished(RunStatus),
}

/// What start-up recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub resumed: usize,
    pub exceeded: usize,
}

/// Owns the run lifecycle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Executor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    store: Arc<dyn Store>,
    runtime: Runtime<RunHost>,
    waiters: Waiters,
    clock: Arc<dyn Clock>,
    limits: Limits,
    /// The current version of each module, kept in memory because every
    /// start request needs it.
    current: RwLock<HashMap<ModuleName, ModuleVersion>>,
    /// One permit per live guest instance.
    instance_slots: Arc<Semaphore>,
    /// One permit per live handler instance, held until the instance ends
    /// (its response body may stream after the response is handed over).
    handler_slots: Arc<Semaphore>,
    /// Runs waiting for an instance slot.
    queued_runs: AtomicUsize,
    /// The routes of every module.
    routes: RwLock<Routes>,
    /// Held by a deployment from its route check to its commit.
    deploying: tokio::sync::Mutex<()>,
    /// The executions in progress, to stop one when its run is cancelled.
    executions: std::sync::Mutex<HashMap<WorkflowId, tokio::task::AbortHandle>>,
    /// What executing runs wait for; the waker of parked runs.
    parking: parking::Parking,
    /// The dequeuer of `ENQUEUED` runs.
    queueing: queues::Queueing,
    /// The scheduler of cron schedules.
    scheduling: schedules::Scheduling,
    /// Retries so far of the runs stopped by a host failure.
    stranded: std::sync::Mutex<HashMap<WorkflowId, u32>>,
    /// The events of runs this host started, answered without a read.
    known: known_events::KnownEvents,
}

/// What the host has in flight; served by `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub live_instances: usize,
    pub queued_runs: usize,
}

/// The longest a waker (of parked runs, queues, schedules) sleeps on a
/// store no other host writes to: every time it waits for is known here,
/// so this is only a safety net.
const LONGEST_SLEEP: Duration = Duration::from_secs(60);

impl Inner {
    /// How long a waker sleeps at `now` until `next` (the earliest time it
    /// knows of), at most one poll interval on a shared store (another host
    /// may add an earlier time and not say so), else [`LONGEST_SLEEP`].
    fn time_to_look(
        &self,
        now: crate::domain::Millis,
        next: Option<crate::domain::Millis>,
    ) -> Duration {
        let longest = match self.waiters.poll_interval() {
            Some(poll) if self.store.shared() => poll,
            _ => LONGEST_SLEEP,
        };
        next.map_or(longest, |at| {
            Duration::from_millis(at.saturating_sub(now).max(0) as u64).min(longest)
        })
    }
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Executor {
    /// Load the deployed modules. Call [`Executor::recover`] next, before
    /// serving requests.
    pub async fn new(
        store: Arc<dyn Store>,
        runtime: Runtime<RunHost>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Result<Self> {
        let (current, routes) = load_catalog(store.as_ref(), &limits).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                runtime,
                waiters: Waiters::default(),
                clock,
                instance_slots: Arc::new(Semaphore::new(limits.max_live_instances)),
                handler_slots: Arc::new(Semaphore::new(limits.max_live_instances)),
                queued_runs: AtomicUsize::new(0),
                limits,
                current: RwLock::new(current),
                routes: RwLock::new(routes),
                deploying: tokio::sync::Mutex::new(()),
                executions: std::sync::Mutex::new(HashMap::new()),
                parking: parking::Parking::default(),
                queueing: queues::Queueing::default(),
                scheduling: schedules::Scheduling::default(),
                stranded: std::sync::Mutex::new(HashMap::new()),
                known: known_events::KnownEvents::default(),
            }),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The executor's clock: what start times and delays count from.
    pub fn now(&self) -> crate::domain::Millis {
        self.inner.clock.now()
    }

    pub fn waiters(&self) -> &Waiters {
        &self.inner.waiters
    }

    /// Whether the store's writes are succeeding.
    pub fn store_health(&self) -> crate::store::StoreHealth {
        self.inner.store.health()
    }

    pub fn load(&self) -> Load {
        Load {
            live_instances: self.inner.limits.max_live_instances
                - self.inner.instance_slots.available_permits(),
            queued_runs: self.inner.queued_runs.load(Ordering::Relaxed),
        }
    }
}
