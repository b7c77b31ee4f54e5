//! The store state of one instance, a workflow's or a handler's: WASI that
//! grants nothing, the instance's limits and CPU metering, its outgoing
//! HTTP, and the host that implements the generated `Host` traits of the
//! Cairn imports itself (a run's host, or a handler's client). What a call
//! means for a run (journaling, replay, waking readers) is the executor's
//! business; this module knows nothing of the database.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::cairn::workflow::{
    children, context, events, messages, steps, streams, timers, types,
};
use super::environment::{GuestEnvironment, OutgoingHttp};
use super::limits::InstanceLimiter;

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
    /// The run parked: it waits without an instance, and is executed again
    /// by replay when woken. Nothing failed; the instance is only dropped.
    #[error("the run parked")]
    Parked,
}

/// What serves the Cairn imports of a workflow instance: every interface
/// of the `workflow` world, as generated from the WIT.
pub trait WorkflowImports:
    events::Host
    + messages::Host
    + children::Host
    + streams::Host
    + timers::Host
    + steps::Host
    + context::Host
    + types::Host
    + Send
    + 'static
{
    /// The run the instance executes (its output is tagged with it).
    fn run_id(&self) -> String;
    /// The clocks, random numbers and network the run's guest sees.
    fn environment(&self) -> Arc<dyn GuestEnvironment>;
}

/// The `T` of an instance's `Store<T>`: WASI state that grants nothing, the
/// instance's limits, the host `H` that serves its Cairn imports, and `N`,
/// what its outgoing HTTP requests meet (a workflow's steps go through
/// the run's environment; a handler's are refused).
pub struct InstanceState<H, N = OutgoingHttp> {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: N,
    table: ResourceTable,
    pub(super) host: H,
    pub(super) limiter: InstanceLimiter,
    /// Epoch ticks the guest has run since it last called the host.
    pub(super) busy_ticks: u32,
}

impl<H, N> std::fmt::Debug for InstanceState<H, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceState").finish_non_exhaustive()
    }
}

impl<H> InstanceState<H> {
    /// The state of a workflow instance whose imports `host` serves, seeing
    /// the clocks, randomness and network of `environment`.
    pub(super) fn new(
        wasi: WasiCtx,
        host: H,
        environment: Arc<dyn GuestEnvironment>,
        limiter: InstanceLimiter,
    ) -> Self {
        Self::with_network(wasi, host, OutgoingHttp(environment), limiter)
    }
}

impl<H, N> InstanceState<H, N> {
    /// The state of an instance whose imports `host` serves and whose
    /// outgoing requests go to `network`.
    pub(super) fn with_network(
        wasi: WasiCtx,
        host: H,
        network: N,
        limiter: InstanceLimiter,
    ) -> Self {
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            hooks: network,
            table: ResourceTable::new(),
            host,
            limiter,
            busy_ticks: 0,
        }
    }

    /// The host, for one of its imports: the guest called the host, so its
    /// CPU slice starts again. (The linker reaches the host only through
    /// this.)
    pub(super) fn host_called(&mut self) -> &mut H {
        self.busy_ticks = 0;
        &mut self.host
    }
}

impl<H: Send + 'static, N: Send + 'static> super::limits::Metered for InstanceState<H, N> {
    fn limiter(&mut self) -> &mut InstanceLimiter {
        &mut self.limiter
    }

    fn busy_ticks(&mut self) -> &mut u32 {
        &mut self.busy_ticks
    }
}

impl<H: Send + 'static, N: Send + 'static> WasiView for InstanceState<H, N> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl<H: Send + 'static, N: WasiHttpHooks + Send + 'static> WasiHttpView for InstanceState<H, N> {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
