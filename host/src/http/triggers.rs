//! Serving the routes that modules declare, under `/app/`: a workflow route
//! starts a run and answers at once, with the run's result, or with one of
//! its events; a handler route hands the request to the module's
//! `wasi:http` handler.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::value::RawValue;

use super::access::Caller;
use super::error::ApiError;
use super::query::Query;
use super::respond::{ApiResult, read_json_body, run_accepted};
use super::router::{Api, Body};
use super::wait_slots::WaitKind;
use crate::domain::{RunStatus, WorkflowId};
use crate::executor::{EventWait, StartRequest};
use crate::runtime::HandlerFailure;
use crate::triggers::{InputShape, Respond, RouteMatch, Target, fill_template};

/// The path prefix of trigger routes; `/app/orders/1` is route `/orders/1`.
pub const PREFIX: &str = "app";

impl Api {
    /// Serve a request under `/app/`; `segments` follow the prefix.
    pub(super) async fn serve_trigger<B>(
        &self,
        request: Request<B>,
        segments: &[&str],
        caller: Caller,
    ) -> ApiResult
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let method = request.method().as_str().to_owned();
        let Some(found) = self.executor().find_route(&method, segments) else {
            let methods = self.executor().route_methods(segments);
            return Err(if methods.is_empty() {
                ApiError::not_found(
                    "route_not_found",
                    format!(
                        "no module has a route for {method} /{}; the routes are listed with each module at /v1/modules",
                        segments.join("/")
                    ),
                )
            } else {
                ApiError::method_not_allowed(methods.join(", "))
            });
        };
        match &found.route.target {
            Target::Workflow { .. } => self.trigger_workflow(request, found, caller).await,
            Target::Handler => self.trigger_handler(request, found, caller).await,
        }
    }

    async fn trigger_workflow<B>(
        &self,
        request: Request<B>,
        found: RouteMatch,
        caller: Caller,
    ) -> ApiResult
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let Target::Workflow {
            workflow,
            id,
            input,
            respond,
            event,
            timeout_ms,
            admission,
        } = &found.route.target
        else {
            unreachable!("called for workflow routes only");
        };
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let traceparent = super::respond::traceparent(&request);
        let body = read_json_body(request, self.limits()).await?;
        let body: Box<RawValue> = if body.is_empty() {
            RawValue::from_string("null".into()).expect("null is JSON")
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(
                    "invalid_json",
                    format!("this route takes a JSON body (or none): {e}"),
                )
            })?
        };
        let input = match input {
            InputShape::Body => body.get().to_owned(),
            InputShape::Request => serde_json::json!({
                "method": method,
                "path": path,
                "params": found.params.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect::<serde_json::Map<_, _>>(),
                "query": query_object(&query)?,
                "body": body,
            })
            .to_string(),
        };
        let id = id
            .as_deref()
            .map(|template| WorkflowId::parse(&fill_template(template, &found.params)))
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_id", e.0))?;
        let started = self
            .executor()
            .start(StartRequest {
                module: found.module.clone(),
                workflow: workflow.clone(),
                input,
                id,
                timeout: None,
                parent: None,
                deadline_cap: None,
                admission: admission
                    .as_ref()
                    .map(|a| a.fill(&found.params, self.executor().now())),
                traceparent,
            })
            .await?;
        let run = started.run.id.clone();
        let timeout = Duration::from_millis(*timeout_ms);
        match respond {
            Respond::Accepted => Ok(run_accepted(&started.run, started.created)),
            Respond::Result => {
                let _slot = self.wait_slot(WaitKind::Trigger, caller)?;
                match self.executor().wait_result(&run, timeout).await? {
                    Some(done) if done.status == RunStatus::Success => Ok(raw_response(
                        StatusCode::OK,
                        done.output.unwrap_or_else(|| "null".into()),
                    )),
                    Some(done) if done.status.is_terminal() => Err(run_failed(
                        &run,
                        done.status,
                        done.error.as_deref().unwrap_or(""),
                    )),
                    _ => Ok(run_accepted(&started.run, started.created)),
                }
            }
            Respond::Event => {
                let key = event.as_deref().expect("checked at deploy");
                let _slot = self.wait_slot(WaitKind::Trigger, caller)?;
                match self.executor().wait_event(&run, key, timeout).await? {
                    EventWait::Set(value) => Ok(raw_response(StatusCode::OK, value)),
                    EventWait::TimedOut => Ok(run_accepted(&started.run, started.created)),
                    EventWait::Finished(status) => {
                        let error = self
                            .executor()
                            .get_run(&run)
                            .await?
                            .and_then(|r| r.error)
                            .unwrap_or_else(|| format!("it never set event {key:?}"));
                        Err(run_failed(&run, status, &error))
                    }
                }
            }
        }
    }
}

impl Api {
    /// Hand the request to the module's handler, as the route's own path
    /// (`/app/events` reaches the handler as `/events`), and pass its
    /// response on, buffered up to [`MAX_HANDLER_RESPONSE_BYTES`].
    async fn trigger_handler<B>(
        &self,
        request: Request<B>,
        found: RouteMatch,
        caller: Caller,
    ) -> ApiResult
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let _slot = self.wait_slot(WaitKind::Trigger, caller)?;
        let (mut parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .strip_prefix(&format!("/{PREFIX}"))
            .unwrap_or("/");
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query.to_owned()
        } else {
            format!("/{path_and_query}")
        };
        // The client's `Host` header is not the authority: a value like
        // `x/admin?` would become part of the path the handler sees.
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<hyper::http::uri::Authority>().ok())
            .filter(|authority| {
                authority.as_str() == authority.host() || authority.port().is_some()
            })
            .map_or_else(|| "localhost".to_owned(), |authority| authority.to_string());
        parts.uri = format!("http://{host}{path_and_query}")
            .parse()
            .map_err(|e| ApiError::bad_request("invalid_path", format!("{e}")))?;
        let limit = self.limits().max_json_body_bytes;
        let body = Limited::new(body, limit).map_err(move |e| {
            wasmtime_wasi_http::Error::InternalError(Some(format!(
                "the request body could not be read (at most {limit} bytes): {e}"
            )))
        });
        let response = self
            .executor()
            .handle_http(&found.module, Request::from_parts(parts, body))
            .await
            .map_err(|failure| match failure {
                HandlerFailure::Guest(message) => {
                    tracing::info!(module = %found.module, %message, "handler failed");
                    ApiError::with_status(
                        StatusCode::BAD_GATEWAY,
                        "handler_failed",
                        format!("the handler of module {} failed: {message}", found.module),
                    )
                }
                HandlerFailure::Host(message) => ApiError::internal(message),
                HandlerFailure::Busy(message) => ApiError::overloaded(message),
            })?;
        let (parts, body) = response.into_parts();
        let collected = tokio::time::timeout(
            self.limits().body_read_timeout,
            Limited::new(body, MAX_HANDLER_RESPONSE_BYTES).collect(),
        )
        .await
        .map_err(|_| handler_broke(&found, "did not finish its response in time".into()))?
        .map_err(|e| handler_broke(&found, format!("broke off its response: {e}")))?;
        Ok(Response::from_parts(
            parts,
            Full::new(collected.to_bytes()).boxed(),
        ))
    }
}

/// Largest response body a handler may send.
pub const MAX_HANDLER_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

fn handler_broke(found: &RouteMatch, what: String) -> ApiError {
    ApiError::with_status(
        StatusCode::BAD_GATEWAY,
        "handler_failed",
        format!(
            "the handler of module {} {what} (responses are at most {MAX_HANDLER_RESPONSE_BYTES} bytes)",
            found.module
        ),
    )
}

fn raw_response(status: StatusCode, json: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(json)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The run a route started ended without the answer the route waits for.
/// The workflow's own error is the application's to show, not a host fault.
fn run_failed(run: &WorkflowId, status: RunStatus, error: &str) -> ApiError {
    ApiError::with_status(
        StatusCode::BAD_GATEWAY,
        "workflow_failed",
        format!("run {run} ended {status}: {error}"),
    )
}

/// The query string as a JSON object (the last of repeated keys wins).
fn query_object(query: &str) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    Ok(Query::parse(query)?
        .pairs()
        .map(|(key, value)| (key.to_owned(), serde_json::Value::String(value.to_owned())))
        .collect())
}
