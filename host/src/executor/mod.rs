//! The run lifecycle: deploying modules, starting runs, executing them in the
//! runtime, recovering `PENDING` runs after a restart, and serving readers
//! that wait on events.

mod children;
mod clock;
mod cluster;
mod cursor;
mod handlers;
mod outbound;
mod routes;
mod run_host;
mod steps;
mod waiters;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use clock::{Clock, SystemClock};
pub use cluster::ClusterOptions;
pub use outbound::AllowList;
pub use waiters::{Subscription, WaitKey, Waiters};

use crate::domain::{
    self, Delivery, EventRecord, InvalidName, JournalEntry, ModuleInfo, ModuleKind, ModuleName,
    ModuleSettings, ModuleVersion, NewMessage, NewRun, RunFilter, RunOutcome, RunRecord, RunStatus,
    WorkflowId,
};
use crate::runtime::{GuestLimits, GuestOutcome, HostFailure, Runtime, UploadError};
use crate::store::{CreateRun, NewModuleVersion, PutModule, Store, StoreError};
use crate::triggers::{Manifest, ModuleRole, RouteMatch};
use routes::Routes;
use run_host::RunHost;

pub type Result<T, E = ExecutorError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("module {0} is not deployed")]
    UnknownModule(String),
    #[error("run {0} does not exist")]
    UnknownRun(String),
    #[error("run {0} exists already; choose another id")]
    RunExists(String),
    #[error("module {module} has no workflow {workflow:?}; it has: {available}")]
    UnknownWorkflow {
        module: String,
        workflow: String,
        available: String,
    },
    #[error(
        "run {id} already exists for {existing_module}/{existing_workflow}, not {module}/{workflow}; use another id"
    )]
    Conflict {
        id: String,
        existing_module: String,
        existing_workflow: String,
        module: String,
        workflow: String,
    },
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    InvalidRoutes(String),
    /// The run is not in a status the operation applies to.
    #[error("run {id} is {status}; {what}")]
    WrongStatus {
        id: String,
        status: RunStatus,
        what: &'static str,
    },
    #[error("{0}")]
    RouteConflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// Too much work in flight; the client should retry later.
    #[error("{0}")]
    Overloaded(String),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<InvalidName> for ExecutorError {
    fn from(e: InvalidName) -> Self {
        Self::InvalidInput(e.0)
    }
}

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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: 1024 * 1024,
            max_recovery_attempts: 10,
            max_journal_entries: 10_000,
            max_live_instances: 1000,
            max_queued_runs: 10_000,
            max_trigger_wait_ms: 300_000,
            allowed_hosts: AllowList::default(),
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
    runtime: Runtime,
    waiters: Waiters,
    clock: Arc<dyn Clock>,
    limits: Limits,
    /// The current version of each module, kept in memory because every
    /// start request needs it.
    current: RwLock<HashMap<ModuleName, ModuleVersion>>,
    /// One permit per live guest instance.
    instance_slots: Arc<Semaphore>,
    /// One permit per live handler instance.
    handler_slots: Semaphore,
    /// Runs waiting for an instance slot.
    queued_runs: AtomicUsize,
    /// The routes of every module.
    routes: RwLock<Routes>,
    /// Held by a deployment from its route check to its commit.
    deploying: tokio::sync::Mutex<()>,
    /// The executions in progress, to stop one when its run is cancelled.
    executions: std::sync::Mutex<HashMap<WorkflowId, tokio::task::AbortHandle>>,
}

/// What the host has in flight; served by `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub live_instances: usize,
    pub queued_runs: usize,
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
        runtime: Runtime,
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
                handler_slots: Semaphore::new(limits.max_live_instances),
                queued_runs: AtomicUsize::new(0),
                limits,
                current: RwLock::new(current),
                routes: RwLock::new(routes),
                deploying: tokio::sync::Mutex::new(()),
                executions: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub fn waiters(&self) -> &Waiters {
        &self.inner.waiters
    }

    pub fn load(&self) -> Load {
        Load {
            live_instances: self.inner.limits.max_live_instances
                - self.inner.instance_slots.available_permits(),
            queued_runs: self.inner.queued_runs.load(Ordering::Relaxed),
        }
    }

    /// Validate `bytes` and make them the current version of module `name`,
    /// with the routes of `manifest` in place of its old ones. Nothing is
    /// stored unless the module and its routes are valid.
    pub async fn deploy(
        &self,
        name: ModuleName,
        bytes: Vec<u8>,
        settings: ModuleSettings,
        manifest: Manifest,
    ) -> Result<PutModule> {
        self.check_settings(&settings)?;
        let validated = self.inner.runtime.validate(&bytes).await?;
        let role = match validated.kind {
            ModuleKind::Workflow => ModuleRole::Workflows(&validated.workflows),
            ModuleKind::Handler => ModuleRole::Handler,
        };
        let routes = manifest
            .check(role, self.inner.limits.max_trigger_wait_ms)
            .map_err(ExecutorError::InvalidRoutes)?;
        // One deployment at a time, so that no other can slip a conflicting
        // route in between this one's check and its commit.
        let _deploying = self.inner.deploying.lock().await;
        self.inner
            .routes
            .read()
            .expect("routes lock")
            .check(&name, &routes)
            .map_err(ExecutorError::RouteConflict)?;
        let version = domain::module_version(&bytes);
        self.inner.runtime.install(&version, &validated);
        let put = self
            .inner
            .store
            .put_module(NewModuleVersion {
                name: name.clone(),
                version,
                bytes,
                kind: validated.kind,
                workflows: validated.workflows,
                settings,
                routes: serde_json::to_string(&manifest).expect("a manifest serialises"),
                now: self.inner.clock.now(),
            })
            .await?;
        self.inner
            .routes
            .write()
            .expect("routes lock")
            .replace(&name, manifest, routes);
        self.inner
            .current
            .write()
            .expect("module map lock")
            .insert(name, put.module.clone());
        Ok(put)
    }

    /// The trigger route for a request, with its path parameters.
    pub fn find_route(&self, method: &str, segments: &[&str]) -> Option<RouteMatch> {
        self.inner
            .routes
            .read()
            .expect("routes lock")
            .find(method, segments)
    }

    /// The methods of the trigger routes whose paths fit `segments`.
    pub fn route_methods(&self, segments: &[&str]) -> Vec<String> {
        self.inner
            .routes
            .read()
            .expect("routes lock")
            .methods_for(segments)
    }

    /// The routes manifest module `name` was last deployed with.
    pub fn module_routes(&self, name: &ModuleName) -> Manifest {
        self.inner
            .routes
            .read()
            .expect("routes lock")
            .manifest(name)
    }

    /// The current version of module `name`.
    pub fn current_module(&self, name: &ModuleName) -> Option<ModuleVersion> {
        self.inner
            .current
            .read()
            .expect("module map lock")
            .get(name)
            .cloned()
    }

    /// A module may tighten the host's limits, or loosen them up to the
    /// host's bounds, not past them.
    fn check_settings(&self, settings: &ModuleSettings) -> Result<()> {
        let host = self.inner.runtime.limits();
        if let Some(bytes) = settings.max_memory_bytes
            && bytes > host.max_memory_bytes
        {
            return Err(ExecutorError::InvalidInput(format!(
                "max_memory_bytes {bytes} is above this host's limit of {} bytes",
                host.max_memory_bytes
            )));
        }
        if let Some(ms) = settings.cpu_slice_ms
            && u128::from(ms) > host.cpu_slice.as_millis()
        {
            return Err(ExecutorError::InvalidInput(format!(
                "cpu_slice_ms {ms} is above this host's limit of {} ms",
                host.cpu_slice.as_millis()
            )));
        }
        if settings.run_timeout_ms == Some(0) || settings.cpu_slice_ms == Some(0) {
            return Err(ExecutorError::InvalidInput(
                "run_timeout_ms and cpu_slice_ms must be at least 1".into(),
            ));
        }
        let allowed =
            AllowList::parse(&settings.allowed_hosts).map_err(ExecutorError::InvalidInput)?;
        let bound = &self.inner.limits.allowed_hosts;
        let outside = allowed.outside(bound);
        if !outside.is_empty() {
            return Err(ExecutorError::InvalidInput(format!(
                "allowed_hosts names {} outside this host's allow-list ({}); start the host with --allow-outbound to widen it",
                outside.join(", "),
                if bound.to_string().is_empty() {
                    "empty".to_owned()
                } else {
                    bound.to_string()
                },
            )));
        }
        Ok(())
    }

    pub async fn list_modules(&self) -> Result<Vec<ModuleInfo>> {
        Ok(self.inner.store.list_modules().await?)
    }

    pub async fn get_module(&self, name: &ModuleName) -> Result<Option<ModuleInfo>> {
        Ok(self.inner.store.get_module(name).await?)
    }

    /// Start a run on the current version of its module, or return the
    /// existing run with that id.
    pub async fn start(&self, request: StartRequest) -> Result<Started> {
        let mut module = self.current_module(&request.module);
        if module.is_none() && self.inner.store.shared() {
            // Perhaps deployed through another host a moment ago.
            self.inner.reload_catalog().await?;
            module = self.current_module(&request.module);
        }
        let module =
            module.ok_or_else(|| ExecutorError::UnknownModule(request.module.to_string()))?;
        if !module.workflows.contains(&request.workflow) {
            return Err(ExecutorError::UnknownWorkflow {
                module: request.module.to_string(),
                workflow: request.workflow,
                available: module.workflows.join(", "),
            });
        }
        let queued = self.inner.queued_runs.load(Ordering::Relaxed);
        if queued >= self.inner.limits.max_queued_runs {
            return Err(ExecutorError::Overloaded(format!(
                "{queued} runs are already queued for one of the {} instance slots; retry later",
                self.inner.limits.max_live_instances
            )));
        }
        let limit = self.inner.limits.max_value_bytes;
        if request.input.len() > limit {
            return Err(ExecutorError::TooLarge(format!(
                "the input is {} bytes; the limit is {limit} bytes",
                request.input.len()
            )));
        }
        domain::check_json(&request.input).map_err(|e| {
            ExecutorError::InvalidInput(format!("the input is not valid JSON: {e}"))
        })?;
        let now = self.inner.clock.now();
        let timeout_ms = match request.timeout {
            Some(timeout) => Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
            None => module.settings.run_timeout_ms,
        };
        let new_run = NewRun {
            deadline: timeout_ms
                .map(|ms| now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))),
            id: request.id.unwrap_or_else(WorkflowId::generate),
            module: request.module,
            version: module.version,
            workflow: request.workflow,
            input: request.input,
            parent: request.parent,
            now,
        };
        match self.inner.store.create_run(new_run.clone()).await? {
            CreateRun::Created(run) => {
                self.inner.spawn_execution(run.clone(), Vec::new());
                Ok(Started { run, created: true })
            }
            CreateRun::Existing(run)
                if run.module == new_run.module && run.workflow == new_run.workflow =>
            {
                Ok(Started {
                    run,
                    created: false,
                })
            }
            CreateRun::Existing(run) => Err(ExecutorError::Conflict {
                id: run.id.to_string(),
                existing_module: run.module.to_string(),
                existing_workflow: run.workflow,
                module: new_run.module.to_string(),
                workflow: new_run.workflow,
            }),
        }
    }

    /// Take on the duties of a host that shares its database with others
    /// (leases, claims, change notifications); see `cluster.rs`. Call once,
    /// after [`Executor::recover`], when the store is shared.
    pub async fn start_cluster_duties(&self, options: ClusterOptions) -> Result<()> {
        Ok(cluster::start(self.inner.clone(), options).await?)
    }

    /// Execute every `PENDING` run again, from its journal; give up on runs
    /// recovered too often.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        let inner = &self.inner;
        let claim = inner
            .store
            .claim_recovery(inner.limits.max_recovery_attempts, inner.clock.now())
            .await?;
        for id in &claim.exceeded {
            tracing::warn!(run = %id, "run exceeded its recovery attempts");
            inner.published_end(id);
        }
        let resumed = claim.resume.len();
        for run in claim.resume {
            let journal = inner.store.journal(&run.id).await?;
            tracing::info!(run = %run.id, attempt = run.attempts, journaled = journal.len(), "recovering run");
            inner.spawn_execution(run, journal);
        }
        Ok(RecoveryReport {
            resumed,
            exceeded: claim.exceeded.len(),
        })
    }

    /// Cancel a `PENDING` run: it ends `CANCELLED` at once, and its
    /// execution is stopped wherever it is (a sleep, a wait), its instance
    /// dropped. What it journaled stays; [`Executor::resume`] goes on from
    /// there.
    pub async fn cancel(&self, id: &WorkflowId) -> Result<RunRecord> {
        let inner = &self.inner;
        let run = self
            .transition(
                id,
                RunStatus::Pending,
                RunStatus::Cancelled,
                "only a PENDING run can be cancelled",
            )
            .await?;
        // The status is committed first: an execution that reaches its end
        // meanwhile cannot record it any more (only PENDING runs change).
        if let Some(execution) = inner.executions.lock().expect("executions lock").remove(id) {
            execution.abort();
        }
        tracing::info!(run = %id, "run cancelled");
        inner.published_end(id);
        Ok(run)
    }

    /// Resume a `CANCELLED` run: `PENDING` again, with one more attempt,
    /// executed from its journal.
    pub async fn resume(&self, id: &WorkflowId) -> Result<RunRecord> {
        let run = self
            .transition(
                id,
                RunStatus::Cancelled,
                RunStatus::Pending,
                "only a CANCELLED run can be resumed",
            )
            .await?;
        let journal = self.inner.store.journal(id).await?;
        tracing::info!(run = %id, journaled = journal.len(), "run resumed");
        self.inner.spawn_execution(run.clone(), journal);
        Ok(run)
    }

    /// A new run that re-runs run `source` from operation `from_op`: it
    /// gets the journal and the event writes of `source` before that
    /// operation, so what came before is replayed, not done again.
    pub async fn fork(
        &self,
        source: &WorkflowId,
        from_op: u32,
        id: Option<WorkflowId>,
    ) -> Result<RunRecord> {
        let inner = &self.inner;
        let id = id.unwrap_or_else(WorkflowId::generate);
        let run = match inner
            .store
            .fork_run(source, &id, from_op, inner.clock.now())
            .await
        {
            Ok(run) => run,
            Err(StoreError::UnknownRun(run)) => return Err(ExecutorError::UnknownRun(run)),
            Err(StoreError::RunExists(run)) => return Err(ExecutorError::RunExists(run)),
            Err(error) => return Err(error.into()),
        };
        let journal = inner.store.journal(&id).await?;
        tracing::info!(run = %id, %source, from_op, copied = journal.len(), "run forked");
        inner.spawn_execution(run.clone(), journal);
        Ok(run)
    }

    /// Move run `id` from `from` to `to`, or say why not.
    async fn transition(
        &self,
        id: &WorkflowId,
        from: RunStatus,
        to: RunStatus,
        what: &'static str,
    ) -> Result<RunRecord> {
        let now = self.inner.clock.now();
        match self.inner.store.transition_run(id, from, to, now).await? {
            None => Err(ExecutorError::UnknownRun(id.to_string())),
            Some((true, run)) => Ok(run),
            Some((false, run)) => Err(ExecutorError::WrongStatus {
                id: id.to_string(),
                status: run.status,
                what,
            }),
        }
    }

    /// Runs that pass `filter`, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        Ok(self.inner.store.list_runs(filter).await?)
    }

    pub async fn get_run(&self, id: &WorkflowId) -> Result<Option<RunRecord>> {
        Ok(self.inner.store.get_run(id).await?)
    }

    /// Run `id` once it has reached a terminal status, waiting up to
    /// `timeout`; its current record if it has not by then; `None` if there
    /// is no such run.
    pub async fn wait_result(
        &self,
        id: &WorkflowId,
        timeout: Duration,
    ) -> Result<Option<RunRecord>> {
        let store = &self.inner.store;
        let mut subscription = self.inner.waiters.subscribe(WaitKey::Finished(id.clone()));
        let Some(run) = store.get_run(id).await? else {
            return Ok(None);
        };
        if run.status.is_terminal() {
            return Ok(Some(run));
        }
        let finished = subscription
            .wait_for(
                Instant::now() + timeout,
                || async {
                    Ok::<_, StoreError>(
                        store
                            .get_run(id)
                            .await?
                            .filter(|run| run.status.is_terminal()),
                    )
                },
                |_| None,
            )
            .await?;
        match finished {
            Some(run) => Ok(Some(run)),
            None => Ok(store.get_run(id).await?),
        }
    }

    /// The value of event `key` of run `id`, waiting up to `timeout` for it.
    /// A run that does not exist yet is waited for like any other; a run
    /// that has finished without setting the key ends the wait at once.
    pub async fn wait_event(
        &self,
        id: &WorkflowId,
        key: &str,
        timeout: Duration,
    ) -> Result<EventWait> {
        let store = &self.inner.store;
        let deadline = Instant::now() + timeout;
        // Both subscriptions come before the first read, so neither a write
        // nor the run's end can slip in between a read and the wait.
        let mut event = self.inner.waiters.subscribe(WaitKey::Event {
            run: id.clone(),
            key: key.to_owned(),
        });
        let mut finished = self.inner.waiters.subscribe(WaitKey::Finished(id.clone()));
        loop {
            match store.event_and_status(id, key).await? {
                (Some(value), _) => return Ok(EventWait::Set(value)),
                (None, Some(status)) if status.is_terminal() => {
                    return Ok(EventWait::Finished(status));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Ok(EventWait::TimedOut);
            }
            tokio::select! {
                woken = event.changed_before(deadline) => {
                    if woken && let Some(value) = event.take_published() {
                        return Ok(EventWait::Set(value.to_string()));
                    }
                }
                _ = finished.changed_before(deadline) => {}
            }
        }
    }

    /// Follow run `id`: wake up whenever it writes an event or ends. Subscribe
    /// before reading what the run has done, so nothing falls in between.
    pub fn follow(&self, id: &WorkflowId) -> Subscription {
        self.inner.waiters.subscribe(WaitKey::Activity(id.clone()))
    }

    /// Send a message to run `id` from outside any run, once per
    /// idempotency key.
    pub async fn send_message(
        &self,
        id: &WorkflowId,
        topic: String,
        message: String,
        idempotency_key: Option<String>,
    ) -> Result<Delivery> {
        domain::validate_topic(&topic)?;
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.len() > domain::MAX_WORKFLOW_ID_LEN)
        {
            return Err(ExecutorError::InvalidInput(format!(
                "idempotency_key must be 1 to {} bytes long, got {}",
                domain::MAX_WORKFLOW_ID_LEN,
                key.len()
            )));
        }
        let limit = self.inner.limits.max_value_bytes;
        if message.len() > limit {
            return Err(ExecutorError::TooLarge(format!(
                "the message is {} bytes; the limit is {limit} bytes",
                message.len()
            )));
        }
        domain::check_json(&message).map_err(|e| {
            ExecutorError::InvalidInput(format!("the message is not valid JSON: {e}"))
        })?;
        let sent = NewMessage {
            run: id.clone(),
            topic: topic.clone(),
            message,
            idempotency_key,
        };
        match self
            .inner
            .store
            .send_message(sent, self.inner.clock.now())
            .await
        {
            Ok(delivery) => {
                if delivery == Delivery::Delivered {
                    self.inner.published_message(id, topic);
                }
                Ok(delivery)
            }
            Err(StoreError::UnknownRun(run)) => Err(ExecutorError::UnknownRun(run)),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn list_events(&self, id: &WorkflowId) -> Result<Vec<(String, String)>> {
        Ok(self.inner.store.list_events(id).await?)
    }

    /// The event writes of run `id`, oldest first: all of them, or those
    /// journaled after operation `after_op`.
    pub async fn event_history(
        &self,
        id: &WorkflowId,
        after_op: Option<u32>,
    ) -> Result<Vec<EventRecord>> {
        Ok(self.inner.store.event_history(id, after_op).await?)
    }

    pub async fn journal(&self, id: &WorkflowId) -> Result<Vec<JournalEntry>> {
        Ok(self.inner.store.journal(id).await?)
    }
}

/// The current version of every module, and the routes of all of them, as
/// the store has them.
async fn load_catalog(
    store: &dyn Store,
    limits: &Limits,
) -> Result<(HashMap<ModuleName, ModuleVersion>, Routes)> {
    let current: HashMap<ModuleName, ModuleVersion> = store
        .list_modules()
        .await?
        .into_iter()
        .map(|module| (module.name.clone(), module.current().clone()))
        .collect();
    let mut routes = Routes::default();
    for (name, manifest) in store.list_routes().await? {
        let Some(module) = current.get(&name) else {
            continue;
        };
        let checked = Manifest::parse(manifest.as_bytes()).and_then(|manifest| {
            let checked = manifest.check(routes::role_of(module), limits.max_trigger_wait_ms)?;
            routes.check(&name, &checked)?;
            Ok((manifest, checked))
        });
        match checked {
            Ok((manifest, checked)) => routes.replace(&name, manifest, checked),
            // Only a host started with tighter limits than the one that
            // accepted the routes gets here: serve the module without them.
            Err(error) => {
                tracing::error!(module = %name, %error, "not serving the routes of a module")
            }
        }
    }
    Ok((current, routes))
}

impl Inner {
    /// Take the modules and routes from the store again: another host may
    /// have deployed.
    pub(crate) async fn reload_catalog(&self) -> Result<()> {
        // Not while this host deploys: its commit and its update of the
        // maps go together.
        let _deploying = self.deploying.lock().await;
        let (current, routes) = load_catalog(self.store.as_ref(), &self.limits).await?;
        *self.current.write().expect("module map lock") = current;
        *self.routes.write().expect("routes lock") = routes;
        Ok(())
    }

    /// Execute `run` in a task of its own, which [`Executor::cancel`] can
    /// stop. An execution of the same run still going here (one that lost
    /// the run's lease and was given it again) is stopped.
    fn spawn_execution(self: &Arc<Self>, run: RunRecord, journal: Vec<JournalEntry>) {
        let id = run.id.clone();
        let mut executions = self.executions.lock().expect("executions lock");
        let inner = self.clone();
        let task = tokio::spawn(async move {
            let id = run.id.clone();
            inner.clone().execute(run, journal).await;
            // Inserted before this task could get here: the lock was held.
            // Only this task's own entry: a successor may have replaced it.
            let mut executions = inner.executions.lock().expect("executions lock");
            if executions
                .get(&id)
                .is_some_and(|handle| handle.id() == tokio::task::id())
            {
                executions.remove(&id);
            }
        });
        if let Some(previous) = executions.insert(id, task.abort_handle()) {
            previous.abort();
        }
    }

    /// Run `run` to its end in a fresh instance, replaying `journal`, and
    /// record how it ended.
    async fn execute(self: Arc<Self>, run: RunRecord, journal: Vec<JournalEntry>) {
        let settings = self.module_settings(&run.module, &run.version).await;
        let limits = self.guest_limits(&settings);
        // Checked against the host's list again: it may have narrowed since
        // the module was deployed.
        let allowed_hosts = AllowList::parse(&settings.allowed_hosts)
            .unwrap_or_default()
            .within(&self.limits.allowed_hosts);
        let host =
            RunHost::new(self.clone(), run.id.clone(), journal, allowed_hosts).fenced(run.epoch);
        let cursor = host.cursor();
        let attempt = async {
            self.queued_runs.fetch_add(1, Ordering::Relaxed);
            let slot = self.instance_slots.clone().acquire_owned().await;
            self.queued_runs.fetch_sub(1, Ordering::Relaxed);
            // The semaphore is never closed.
            let _slot = slot.expect("instance slots stay open");
            let version = &run.version;
            let bytes = async || self.module_bytes(version).await;
            self.runtime
                .run(
                    version,
                    bytes,
                    Box::new(host),
                    &run.workflow,
                    &run.input,
                    limits,
                )
                .await
        };
        let outcome = match run.deadline {
            None => Some(attempt.await),
            Some(deadline) => {
                let remaining = deadline.saturating_sub(self.clock.now()).max(0) as u64;
                // Past the deadline the instance is dropped wherever it is.
                tokio::time::timeout(Duration::from_millis(remaining), attempt)
                    .await
                    .ok()
            }
        };
        let outcome = match outcome {
            None => RunOutcome::Cancelled {
                message: format!(
                    "the run did not finish within its time limit of {} ms",
                    run.deadline.unwrap_or_default() - run.created_at
                ),
            },
            // A clock or random reading that did not match the journal.
            Some(_) if let Some(failure) = cursor.failure() => match failure {
                HostFailure::Run(message) => RunOutcome::Error { message },
                HostFailure::Host(message) => {
                    tracing::error!(run = %run.id, %message, "run interrupted by a host failure");
                    return;
                }
            },
            Some(outcome) => match outcome {
                GuestOutcome::Returned(output) => self.check_output(output),
                GuestOutcome::Failed(message) | GuestOutcome::Trapped(message) => {
                    RunOutcome::Error { message }
                }
                GuestOutcome::HostFailed(message) => {
                    // Not the run's fault: leave it PENDING for the next recovery.
                    tracing::error!(run = %run.id, %message, "run interrupted by a host failure");
                    return;
                }
            },
        };
        if let RunOutcome::Error { message } = &outcome {
            tracing::info!(run = %run.id, workflow = %run.workflow, %message, "run failed");
        }
        // Readings since the last write: not needed for a replay any more,
        // but part of the run's journal for whoever reads it.
        let readings = cursor.take_pending();
        if !readings.is_empty()
            && let Err(error) = self
                .store
                .write_journal_entries(&run.id, Some(run.epoch), readings, self.clock.now())
                .await
        {
            tracing::warn!(run = %run.id, %error, "cannot journal the run's last clock readings");
        }
        if let Err(error) = self
            .store
            .finish_run_fenced(&run.id, Some(run.epoch), outcome, self.clock.now())
            .await
        {
            tracing::error!(run = %run.id, %error, "cannot record the end of a run; it will be recovered");
            return;
        }
        self.published_end(&run.id);
    }

    /// Wake the readers of an event write. Call after its commit.
    pub(crate) fn published_event(&self, run: &WorkflowId, key: String, value: &str) {
        let run = run.clone();
        self.waiters.publish(&WaitKey::Activity(run.clone()), None);
        self.waiters
            .publish(&WaitKey::Event { run, key }, Some(value));
    }

    /// Wake the run waiting for messages on `topic`. Call after the commit.
    pub(crate) fn published_message(&self, run: &WorkflowId, topic: String) {
        self.waiters.publish(
            &WaitKey::Message {
                run: run.clone(),
                topic,
            },
            None,
        );
    }

    /// Wake the readers waiting for a run's end. Call after its commit.
    fn published_end(&self, run: &WorkflowId) {
        self.waiters.publish(&WaitKey::Finished(run.clone()), None);
        self.waiters.publish(&WaitKey::Activity(run.clone()), None);
    }

    /// The bytes of module `version`, for the runtime to compile.
    async fn module_bytes(&self, version: &str) -> Result<Vec<u8>, String> {
        match self.store.module_bytes(version).await {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!("module version {version} is not in the store")),
            Err(e) => Err(format!("cannot load module version {version}: {e}")),
        }
    }

    /// The host's guest limits, with the overrides of a module version
    /// (checked against the host's bounds when it was deployed).
    /// The settings module `version` was deployed with.
    async fn module_settings(&self, module: &ModuleName, version: &str) -> ModuleSettings {
        let current = self
            .current
            .read()
            .expect("module map lock")
            .get(module)
            .filter(|m| m.version == version)
            .map(|m| m.settings.clone());
        match current {
            Some(settings) => settings,
            None => match self.store.get_module(module).await {
                Ok(Some(module)) => module
                    .versions
                    .into_iter()
                    .find(|v| v.version == version)
                    .map(|v| v.settings)
                    .unwrap_or_default(),
                _ => ModuleSettings::default(),
            },
        }
    }

    fn guest_limits(&self, settings: &ModuleSettings) -> GuestLimits {
        let mut limits = self.runtime.limits().clone();
        if let Some(bytes) = settings.max_memory_bytes {
            limits.max_memory_bytes = bytes;
        }
        if let Some(ms) = settings.cpu_slice_ms {
            limits.cpu_slice = Duration::from_millis(ms);
        }
        limits
    }

    fn check_output(&self, output: String) -> RunOutcome {
        let limit = self.limits.max_value_bytes;
        if output.len() > limit {
            return RunOutcome::Error {
                message: format!(
                    "the workflow's output is {} bytes; the limit is {limit} bytes",
                    output.len()
                ),
            };
        }
        match domain::check_json(&output) {
            Ok(()) => RunOutcome::Success { output },
            Err(e) => RunOutcome::Error {
                message: format!("the workflow's output is not valid JSON: {e}"),
            },
        }
    }
}
