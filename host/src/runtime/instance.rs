//! The store state of one guest instance and the host imports it sees.
//!
//! The imports only adapt the WIT signatures: what a call means for a run
//! (journaling, replay, waking readers) is decided by the [`WorkflowHost`]
//! that the executor installs, so this module knows nothing of the database.

use std::sync::Arc;

use async_trait::async_trait;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::cairn::workflow::{children, context, events, messages, steps, timers, types};
use super::bindings::{Level, WitError};
use super::environment::{GuestEnvironment, LiveEnvironment, OutgoingHttp};
use super::handler::RunResult;
use super::limits::InstanceLimiter;

/// Why the host refused a guest's call; the guest sees it as `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestError {
    pub code: GuestErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestErrorCode {
    InvalidJson,
    TooLarge,
    InvalidArgument,
    NotAllowed,
    NotFound,
    Unavailable,
}

impl GuestError {
    pub fn new(code: GuestErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A call the host would not or could not serve: the guest traps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostFailure {
    /// The run itself is at fault (e.g. a replay that does not match its
    /// journal): it ends `ERROR` with this message.
    #[error("{0}")]
    Run(String),
    /// The host is at fault (e.g. the database failed): the run stays
    /// `PENDING`, to be recovered, rather than being blamed.
    #[error("{0}")]
    Host(String),
}

pub type HostResult<T> = Result<Result<T, GuestError>, HostFailure>;

/// When and how often a failed step is tried again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_interval_ms: u64,
    pub backoff_factor: f64,
    pub max_interval_ms: u64,
}

/// Where a step stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    /// Run attempt number n (from 1) now.
    Attempt(u32),
    /// The step's output, or the error of its last attempt.
    Finished(Result<String, String>),
}

/// What the host imports do for the run an instance executes.
#[async_trait]
pub trait WorkflowHost: Send + 'static {
    fn workflow_id(&self) -> String;
    async fn set_event(&mut self, key: String, value: String) -> HostResult<()>;
    async fn get_event(
        &mut self,
        workflow_id: String,
        key: String,
        timeout_ms: u64,
    ) -> HostResult<Option<String>>;
    async fn send(
        &mut self,
        workflow_id: String,
        topic: String,
        message: String,
        idempotency_key: Option<String>,
    ) -> HostResult<()>;
    async fn recv(&mut self, topic: String, timeout_ms: u64) -> HostResult<Option<String>>;
    async fn sleep(&mut self, duration_ms: u64) -> Result<(), HostFailure>;
    async fn start_child(
        &mut self,
        module: String,
        workflow: String,
        input: String,
        id: Option<String>,
    ) -> HostResult<String>;
    async fn await_child(
        &mut self,
        workflow_id: String,
        timeout_ms: u64,
    ) -> HostResult<Option<RunResult>>;
    async fn begin_step(&mut self, name: String, policy: RetryPolicy) -> HostResult<StepState>;
    async fn end_attempt(&mut self, outcome: Result<String, String>) -> HostResult<StepState>;
    fn log(&mut self, level: tracing::Level, message: &str, fields: &[(String, String)]);
    /// The clocks, random numbers and network the run's guest sees.
    fn environment(&self) -> Arc<dyn GuestEnvironment>;
}

/// The `T` of `Store<T>`: WASI state that grants nothing, the run's host,
/// and the instance's limits.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutgoingHttp,
    table: ResourceTable,
    host: Box<dyn WorkflowHost>,
    pub(super) limiter: InstanceLimiter,
    /// Epoch ticks the guest has run since it last called the host.
    pub(super) busy_ticks: u32,
}

impl std::fmt::Debug for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceState")
            .field("workflow_id", &self.host.workflow_id())
            .finish_non_exhaustive()
    }
}

impl InstanceState {
    pub(super) fn new(
        wasi: WasiCtx,
        host: Box<dyn WorkflowHost>,
        limiter: InstanceLimiter,
    ) -> Self {
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            hooks: OutgoingHttp(host.environment()),
            table: ResourceTable::new(),
            host,
            limiter,
            busy_ticks: 0,
        }
    }

    /// The guest called the host: its CPU slice starts again.
    fn host_called(&mut self) {
        self.busy_ticks = 0;
    }
}

impl super::limits::Metered for InstanceState {
    fn limiter(&mut self) -> &mut InstanceLimiter {
        &mut self.limiter
    }

    fn busy_ticks(&mut self) -> &mut u32 {
        &mut self.busy_ticks
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

fn trap(failure: HostFailure) -> wasmtime::Error {
    wasmtime::Error::new(failure)
}

impl types::Host for InstanceState {}

impl events::Host for InstanceState {
    async fn set_event(
        &mut self,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<(), WitError>> {
        self.host_called();
        match self.host.set_event(key, value).await {
            Ok(result) => Ok(result.map_err(WitError::from)),
            Err(failure) => Err(trap(failure)),
        }
    }

    async fn get_event(
        &mut self,
        workflow_id: String,
        key: String,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<Option<String>, WitError>> {
        self.host_called();
        match self.host.get_event(workflow_id, key, timeout_ms).await {
            Ok(result) => Ok(result.map_err(WitError::from)),
            Err(failure) => Err(trap(failure)),
        }
    }
}

impl messages::Host for InstanceState {
    async fn send(
        &mut self,
        workflow_id: String,
        topic: String,
        message: String,
        idempotency_key: Option<String>,
    ) -> wasmtime::Result<Result<(), WitError>> {
        self.host_called();
        match self
            .host
            .send(workflow_id, topic, message, idempotency_key)
            .await
        {
            Ok(result) => Ok(result.map_err(WitError::from)),
            Err(failure) => Err(trap(failure)),
        }
    }

    async fn recv(
        &mut self,
        topic: String,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<Option<String>, WitError>> {
        self.host_called();
        match self.host.recv(topic, timeout_ms).await {
            Ok(result) => Ok(result.map_err(WitError::from)),
            Err(failure) => Err(trap(failure)),
        }
    }
}

impl children::Host for InstanceState {
    async fn start_child(
        &mut self,
        module: String,
        workflow: String,
        input: String,
        id: Option<String>,
    ) -> wasmtime::Result<Result<String, WitError>> {
        self.host_called();
        match self.host.start_child(module, workflow, input, id).await {
            Ok(result) => Ok(result.map_err(WitError::from)),
            Err(failure) => Err(trap(failure)),
        }
    }

    async fn await_child(
        &mut self,
        workflow_id: String,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<Option<types::RunResult>, WitError>> {
        self.host_called();
        match self.host.await_child(workflow_id, timeout_ms).await {
            Ok(result) => Ok(result
                .map(|done| done.map(types::RunResult::from))
                .map_err(WitError::from)),
            Err(failure) => Err(trap(failure)),
        }
    }
}

impl timers::Host for InstanceState {
    async fn sleep(&mut self, duration_ms: u64) -> wasmtime::Result<()> {
        self.host_called();
        self.host.sleep(duration_ms).await.map_err(trap)
    }
}

impl steps::Host for InstanceState {
    async fn begin_step(
        &mut self,
        name: String,
        policy: steps::RetryPolicy,
    ) -> wasmtime::Result<Result<steps::StepState, WitError>> {
        self.host_called();
        let policy = RetryPolicy {
            max_attempts: policy.max_attempts,
            initial_interval_ms: policy.initial_interval_ms,
            backoff_factor: policy.backoff_factor,
            max_interval_ms: policy.max_interval_ms,
        };
        match self.host.begin_step(name, policy).await {
            Ok(result) => Ok(result.map(step_state).map_err(WitError::from)),
            Err(failure) => Err(trap(failure)),
        }
    }

    async fn end_attempt(
        &mut self,
        outcome: Result<String, String>,
    ) -> wasmtime::Result<Result<steps::StepState, WitError>> {
        self.host_called();
        match self.host.end_attempt(outcome).await {
            Ok(result) => Ok(result.map(step_state).map_err(WitError::from)),
            Err(failure) => Err(trap(failure)),
        }
    }
}

fn step_state(state: StepState) -> steps::StepState {
    match state {
        StepState::Attempt(n) => steps::StepState::Attempt(n),
        StepState::Finished(outcome) => steps::StepState::Finished(outcome),
    }
}

impl context::Host for InstanceState {
    async fn workflow_id(&mut self) -> wasmtime::Result<String> {
        self.host_called();
        Ok(self.host.workflow_id())
    }

    async fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.host_called();
        self.host.log(level.into(), &message, &fields);
        Ok(())
    }
}

/// The host of an instance that is not executing a run (an upload being
/// validated): it refuses every call.
#[derive(Debug)]
pub struct NoRun;

#[async_trait]
impl WorkflowHost for NoRun {
    fn workflow_id(&self) -> String {
        String::new()
    }

    async fn set_event(&mut self, _key: String, _value: String) -> HostResult<()> {
        Ok(Err(not_in_a_run()))
    }

    async fn get_event(&mut self, _: String, _: String, _: u64) -> HostResult<Option<String>> {
        Ok(Err(not_in_a_run()))
    }

    async fn send(&mut self, _: String, _: String, _: String, _: Option<String>) -> HostResult<()> {
        Ok(Err(not_in_a_run()))
    }

    async fn recv(&mut self, _: String, _: u64) -> HostResult<Option<String>> {
        Ok(Err(not_in_a_run()))
    }

    async fn start_child(
        &mut self,
        _: String,
        _: String,
        _: String,
        _: Option<String>,
    ) -> HostResult<String> {
        Ok(Err(not_in_a_run()))
    }

    async fn await_child(&mut self, _: String, _: u64) -> HostResult<Option<RunResult>> {
        Ok(Err(not_in_a_run()))
    }

    async fn sleep(&mut self, _: u64) -> Result<(), HostFailure> {
        Err(HostFailure::Run(
            "a module may not sleep while it is inspected".into(),
        ))
    }

    async fn begin_step(&mut self, _: String, _: RetryPolicy) -> HostResult<StepState> {
        Ok(Err(not_in_a_run()))
    }

    async fn end_attempt(&mut self, _: Result<String, String>) -> HostResult<StepState> {
        Ok(Err(not_in_a_run()))
    }

    fn log(&mut self, _: tracing::Level, _: &str, _: &[(String, String)]) {}

    fn environment(&self) -> Arc<dyn GuestEnvironment> {
        Arc::new(LiveEnvironment)
    }
}

fn not_in_a_run() -> GuestError {
    GuestError::new(
        GuestErrorCode::NotAllowed,
        "events and messages are only available while a workflow runs, not while the module is inspected",
    )
}
