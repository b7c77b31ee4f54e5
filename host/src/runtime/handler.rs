//! HTTP handler modules: components that export the standard
//! `wasi:http/incoming-handler` and import Cairn's `client` interface.
//!
//! Each request gets a fresh instance under the same limits as a workflow's.
//! Handlers are not durable: what they ask of the `client` interface goes to
//! a [`HandlerClient`] that the HTTP layer installs, and nothing is
//! journaled. They get no file system, no sockets and no outgoing HTTP.

use std::future::Future;

use async_trait::async_trait;
use wasmtime_wasi_http::{WasiBody, WasiHttpHooks, WasiHttpView};

use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::bindings::cairn::workflow::context;
use super::bindings::cairn::workflow::types::StreamRead;
use super::bindings::handler::cairn::workflow::client;
use super::bindings::{HostError, Level, RunResult, WitError};
use super::guest_output::GuestOutput;
use super::instance::{InstanceState, WorkflowImports};
use super::limits::InstanceLimiter;
use crate::domain::ModuleDigest;

/// What the `client` imports do for one request.
#[async_trait]
pub trait HandlerClient: Send + 'static {
    async fn start_workflow(
        &mut self,
        module: String,
        workflow: String,
        input: String,
        id: Option<String>,
    ) -> Result<String, WitError>;
    async fn get_event(
        &mut self,
        workflow_id: String,
        key: String,
        timeout_ms: u64,
    ) -> Result<Option<String>, WitError>;
    async fn await_result(
        &mut self,
        workflow_id: String,
        timeout_ms: u64,
    ) -> Result<Option<RunResult>, WitError>;
    async fn send_message(
        &mut self,
        workflow_id: String,
        topic: String,
        message: String,
        idempotency_key: Option<String>,
    ) -> Result<(), WitError>;
    async fn read_stream(
        &mut self,
        workflow_id: String,
        name: String,
        offset: u64,
        timeout_ms: u64,
    ) -> Result<StreamRead, WitError>;
    fn log(&mut self, level: tracing::Level, message: &str, fields: &[(String, String)]);
}

/// Refuses every outgoing request: handlers have no network.
pub struct NoOutgoingHttp;

impl WasiHttpHooks for NoOutgoingHttp {
    fn send_request(
        &mut self,
        _request: hyper::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        hyper::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// What serves a handler's Cairn imports: the client the HTTP layer
/// installed for the request.
pub struct HandlerHost(Box<dyn HandlerClient>);

/// The `T` of a handler's `Store<T>`: the same instance state as a
/// workflow's, with no network.
pub type HandlerState = InstanceState<HandlerHost, NoOutgoingHttp>;

impl super::bindings::cairn::workflow::types::Host for HandlerHost {
    fn convert_error(&mut self, error: HostError) -> wasmtime::Result<WitError> {
        error.into_guest()
    }
}

/// A handler logs through `context`; it runs no workflow, so it has no
/// workflow id.
impl context::Host for HandlerHost {
    async fn workflow_id(&mut self) -> wasmtime::Result<String> {
        Ok(String::new())
    }

    async fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.0.log(level.into(), &message, &fields);
        Ok(())
    }
}

impl client::Host for HandlerHost {
    async fn send_message(
        &mut self,
        workflow_id: String,
        topic: String,
        message: String,
        idempotency_key: Option<String>,
    ) -> wasmtime::Result<Result<(), WitError>> {
        let sent = self
            .0
            .send_message(workflow_id, topic, message, idempotency_key)
            .await;
        Ok(sent)
    }

    async fn start_workflow(
        &mut self,
        module: String,
        workflow: String,
        input: String,
        id: Option<String>,
    ) -> wasmtime::Result<Result<String, WitError>> {
        let started = self.0.start_workflow(module, workflow, input, id).await;
        Ok(started)
    }

    async fn get_event(
        &mut self,
        workflow_id: String,
        key: String,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<Option<String>, WitError>> {
        let value = self.0.get_event(workflow_id, key, timeout_ms).await;
        Ok(value)
    }

    async fn await_result(
        &mut self,
        workflow_id: String,
        timeout_ms: u64,
    ) -> wasmtime::Result<
        Result<Option<super::bindings::cairn::workflow::types::RunResult>, WitError>,
    > {
        Ok(self.0.await_result(workflow_id, timeout_ms).await)
    }

    async fn read_stream(
        &mut self,
        workflow_id: String,
        name: String,
        offset: u64,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<StreamRead, WitError>> {
        Ok(self
            .0
            .read_stream(workflow_id, name, offset, timeout_ms)
            .await)
    }
}

/// The linker of handler instances: WASI that grants nothing, `wasi:http`
/// (outgoing requests refused), and the `client` interface.
pub(super) fn linker(
    engine: &wasmtime::Engine,
) -> wasmtime::Result<wasmtime::component::Linker<HandlerState>> {
    let mut linker = wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    // The linker reaches the client only through `host_called`, which
    // starts the guest's CPU slice again, as for a workflow's host.
    super::bindings::handler::HandlerImports::add_to_linker::<
        _,
        wasmtime::component::HasSelf<HandlerHost>,
    >(&mut linker, InstanceState::host_called)?;
    Ok(linker)
}

/// Handlers are not durable: live clocks and randomness, no network.
fn handler_environment() -> std::sync::Arc<dyn super::GuestEnvironment> {
    std::sync::Arc::new(super::LiveEnvironment)
}

/// Why a handler gave no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerFailure {
    /// The handler trapped, or answered with an error instead of a response.
    #[error("{0}")]
    Guest(String),
    /// The host could not run it (its module could not be loaded).
    #[error("{0}")]
    Host(String),
    /// Too many handler instances are alive; retry later.
    #[error("{0}")]
    Busy(String),
}

/// What bounds one handler instance.
pub struct HandlerBounds {
    pub limits: super::GuestLimits,
    /// The longest the instance lives, its response body included.
    pub wall_clock: std::time::Duration,
    /// Held for as long as the instance lives (the caller's instance slot).
    pub slot: Box<dyn Send>,
}

impl std::fmt::Debug for HandlerBounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerBounds")
            .field("wall_clock", &self.wall_clock)
            .finish_non_exhaustive()
    }
}

impl<H: WorkflowImports> super::Runtime<H> {
    /// Answer `request` with handler module `version` in a fresh instance,
    /// its `client` calls served by `client`. The response's body may still
    /// be streaming from the instance when this returns; the instance (and
    /// `bounds.slot`) lives until it has written the body, or until its
    /// wall-clock limit.
    pub async fn handle<B>(
        &self,
        version: &ModuleDigest,
        bytes: impl AsyncFnOnce() -> Result<Vec<u8>, String>,
        client: Box<dyn HandlerClient>,
        request: hyper::Request<B>,
        bounds: HandlerBounds,
    ) -> Result<hyper::Response<HyperOutgoingBody>, HandlerFailure>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let pre = match self.module(version, bytes).await {
            Ok(super::Prepared::Handler(pre)) => pre,
            Ok(super::Prepared::Workflow(_)) => {
                return Err(HandlerFailure::Guest(format!(
                    "module version {version} is a workflow module, not an HTTP handler"
                )));
            }
            Err(message) => return Err(HandlerFailure::Host(message)),
        };
        let label = format!("handler {version}");
        let stderr = GuestOutput::new(&label, "stderr");
        let limits = &bounds.limits;
        let limiter = InstanceLimiter::new(limits.clone());
        let mut store = wasmtime::Store::new(
            &self.inner.engine,
            HandlerState::with_network(
                super::sealed_wasi(&label, stderr.clone(), &handler_environment()),
                HandlerHost(client),
                NoOutgoingHttp,
                limiter,
            ),
        );
        super::limits::meter(&mut store, limits);
        let host_error = |e: wasmtime::Error| HandlerFailure::Host(format!("{e:#}"));
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(host_error)?;
        let response = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(host_error)?;
        // The instance runs in a task of its own: it may go on writing the
        // body after the response has been handed over. Past its wall-clock
        // limit it is dropped wherever it is (a wait on a workflow, a body
        // nobody reads), and its slot with it.
        let HandlerBounds {
            wall_clock, slot, ..
        } = bounds;
        let task = tokio::spawn(async move {
            let _slot = slot;
            let serve = async {
                let instantiating = std::time::Instant::now();
                let proxy = pre.instantiate_async(&mut store).await?;
                crate::metrics::metrics().instantiated(instantiating.elapsed());
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, response)
                    .await
            };
            match tokio::time::timeout(wall_clock, serve).await {
                Ok(served) => served,
                Err(_) => Err(wasmtime::Error::msg(format!(
                    "the handler ran past its wall-clock limit of {} ms",
                    wall_clock.as_millis()
                ))),
            }
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(HandlerFailure::Guest(format!(
                "the handler answered with an error instead of a response: {code:?}"
            ))),
            Err(_) => Err(HandlerFailure::Guest(match task.await {
                Ok(Ok(())) => "the handler returned without setting a response".to_owned(),
                Ok(Err(trap)) => super::describe_trap(&trap, &stderr.tail()),
                Err(join) => format!("the handler's task failed: {join}"),
            })),
        }
    }
}
