//! Running HTTP handler modules: one request, one fresh instance, and the
//! `client` interface served by the executor. Nothing here is journaled:
//! a handler is a client of workflows, like any HTTP caller.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::reach::Reach;
use super::{EventWait, Executor, ExecutorError, StartRequest, StreamSpan};
use crate::domain::{Delivery, ModuleName, WorkflowId};
use crate::runtime::wit::types::StreamRead;
use crate::runtime::{
    GuestError, GuestErrorCode, HandlerBounds, HandlerClient, HandlerFailure, HyperOutgoingBody,
    RunResult,
};

impl Executor {
    /// Answer `request` with the current version of handler module `module`.
    pub async fn handle_http<B>(
        &self,
        module: &ModuleName,
        request: hyper::Request<B>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, HandlerFailure>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        // Handlers have instance slots of their own: a handler waiting for
        // a workflow must never hold the slot that workflow needs.
        let slot = self
            .inner
            .handler_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                HandlerFailure::Busy(format!(
                    "{} handler instances are already running, the limit; retry later",
                    self.inner.limits.max_live_instances
                ))
            })?;
        let current = self.current_module(module).ok_or_else(|| {
            HandlerFailure::Host(format!("module {module} is no longer deployed"))
        })?;
        let inner = &self.inner;
        let settings = inner.module_settings(module, &current.version).await;
        let limits = inner.guest_limits(&settings);
        let client = Box::new(ExecutorClient {
            executor: self.clone(),
            module: module.clone(),
            reach: Reach::of(module, &settings),
        });
        let version = &current.version;
        inner
            .runtime
            .handle(
                version,
                async || inner.module_bytes(version).await,
                client,
                request,
                HandlerBounds {
                    limits,
                    wall_clock: inner.limits.handler_timeout,
                    slot: Box::new(slot),
                },
            )
            .await
    }
}

/// The `client` interface of one handler instance.
struct ExecutorClient {
    executor: Executor,
    module: ModuleName,
    reach: Option<Reach>,
}

impl ExecutorClient {
    /// Whether run `id` is hidden from this handler: it exists, in a module
    /// outside the handler module's reach. (A run that does not exist yet
    /// is checked again when it answers.)
    async fn hidden(&self, id: &WorkflowId) -> Result<bool, GuestError> {
        let Some(reach) = &self.reach else {
            return Ok(false);
        };
        let run = self
            .executor
            .get_run(id)
            .await
            .map_err(ExecutorError::into_guest_error)?;
        Ok(run.is_some_and(|run| !reach.covers(&run.module)))
    }

    fn absent(id: &WorkflowId) -> GuestError {
        GuestError::new(GuestErrorCode::NotFound, format!("run {id} does not exist"))
    }

    /// A handler may wait as long as a trigger route may.
    fn wait(&self, timeout_ms: u64) -> Duration {
        Duration::from_millis(timeout_ms.min(self.executor.limits().max_trigger_wait_ms))
    }
}

fn invalid(message: String) -> GuestError {
    GuestError::new(GuestErrorCode::InvalidArgument, message)
}

#[async_trait]
impl HandlerClient for ExecutorClient {
    async fn start_workflow(
        &mut self,
        module: String,
        workflow: String,
        input: String,
        id: Option<String>,
    ) -> Result<String, GuestError> {
        let module = ModuleName::parse(&module).map_err(|e| invalid(e.0))?;
        if self
            .reach
            .as_ref()
            .is_some_and(|reach| !reach.covers(&module))
        {
            return Err(GuestError::new(
                GuestErrorCode::NotAllowed,
                format!(
                    "module {module} is outside this module's reach (its deployment's `reach` setting)"
                ),
            ));
        }
        let id = id
            .as_deref()
            .map(WorkflowId::parse)
            .transpose()
            .map_err(|e| invalid(e.0))?;
        let started = self
            .executor
            .start(StartRequest {
                module,
                workflow,
                input,
                id,
                timeout: None,
                parent: None,
                deadline_cap: None,
                admission: None,
                traceparent: None,
            })
            .await
            .map_err(ExecutorError::into_guest_error)?;
        Ok(started.run.id.to_string())
    }

    async fn get_event(
        &mut self,
        workflow_id: String,
        key: String,
        timeout_ms: u64,
    ) -> Result<Option<String>, GuestError> {
        let id = WorkflowId::parse(&workflow_id).map_err(|e| invalid(e.0))?;
        crate::domain::validate_event_key(&key).map_err(|e| invalid(e.0))?;
        if self.hidden(&id).await? {
            return Ok(None);
        }
        match self
            .executor
            .wait_event(&id, &key, self.wait(timeout_ms))
            .await
            .map_err(ExecutorError::into_guest_error)?
        {
            // The run may have come into being while the handler waited.
            EventWait::Set(_) if self.hidden(&id).await? => Ok(None),
            EventWait::Set(value) => Ok(Some(value)),
            EventWait::TimedOut | EventWait::Finished(_) => Ok(None),
        }
    }

    async fn await_result(
        &mut self,
        workflow_id: String,
        timeout_ms: u64,
    ) -> Result<Option<RunResult>, GuestError> {
        let id = WorkflowId::parse(&workflow_id).map_err(|e| invalid(e.0))?;
        if self.hidden(&id).await? {
            return Err(Self::absent(&id));
        }
        let run = self
            .executor
            .wait_result(&id, self.wait(timeout_ms))
            .await
            .map_err(ExecutorError::into_guest_error)?
            .ok_or_else(|| Self::absent(&id))?;
        Ok(run.status.is_terminal().then(|| RunResult {
            status: run.status.as_str().to_owned(),
            output: run.output,
            error: run.error,
        }))
    }

    async fn send_message(
        &mut self,
        workflow_id: String,
        topic: String,
        message: String,
        idempotency_key: Option<String>,
    ) -> Result<(), GuestError> {
        let id = WorkflowId::parse(&workflow_id).map_err(|e| invalid(e.0))?;
        if self.hidden(&id).await? {
            return Err(Self::absent(&id));
        }
        let delivery = self
            .executor
            .send_message(&id, topic, message, idempotency_key)
            .await
            .map_err(ExecutorError::into_guest_error)?;
        match delivery {
            Delivery::Delivered => Ok(()),
            Delivery::Duplicate => Err(GuestError::new(
                GuestErrorCode::Duplicate,
                format!(
                    "a message with this idempotency key was delivered to run {id} before; it was not sent again"
                ),
            )),
        }
    }

    async fn read_stream(
        &mut self,
        workflow_id: String,
        name: String,
        offset: u64,
        timeout_ms: u64,
    ) -> Result<StreamRead, GuestError> {
        let id = WorkflowId::parse(&workflow_id).map_err(|e| invalid(e.0))?;
        if self.hidden(&id).await? {
            return Ok(StreamRead {
                values: Vec::new(),
                closed: false,
            });
        }
        let span = StreamSpan {
            name: &name,
            offset,
            limit: crate::domain::MAX_STREAM_READ,
            max_bytes: self.executor.limits().max_value_bytes,
        };
        let read = self
            .executor
            .read_stream(&id, span, self.wait(timeout_ms))
            .await
            .map_err(ExecutorError::into_guest_error)?;
        // The run may have come into being while the handler waited.
        if self.hidden(&id).await? {
            return Ok(StreamRead {
                values: Vec::new(),
                closed: false,
            });
        }
        Ok(StreamRead {
            values: read.values.into_iter().map(|(_, value)| value).collect(),
            closed: read.closed,
        })
    }

    fn log(&mut self, level: tracing::Level, message: &str, fields: &[(String, String)]) {
        super::emit_guest_log(level, &format!("module {}", self.module), message, fields);
    }
}
