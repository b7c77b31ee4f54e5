//! The API's front door: [`Api::handle`] turns any request into a response,
//! [`Api`] dispatches it to its endpoint from the route table
//! (`api_routes.rs`) after access control, and errors become JSON answers.
//! The endpoints live with their resource: `modules.rs`, `runs.rs`,
//! `events.rs`, `triggers.rs`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use super::access::{AccessControl, Caller};
use super::api_routes::{self, Endpoint, UNROUTED};
use super::bulk::BulkAction;
use super::error::ApiError;
use super::guard;
use super::metrics;
use super::query::{Query, path_segments};
use super::respond::{
    ApiResult, json_response, parse_workflow_id, read_json_body, request_has_body, run_not_found,
    static_response,
};
use super::triggers::PREFIX;
use super::wait_slots::{WaitKind, WaitPools, WaitSlot};
use crate::domain::WorkflowId;
use crate::executor::Executor;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

/// The response body type of every route.
pub type Body = BoxBody<Bytes, Infallible>;

/// Size and time limits of the HTTP API.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest module upload, in bytes.
    pub max_upload_bytes: usize,
    /// Largest JSON request body, in bytes.
    pub max_json_body_bytes: usize,
    /// Default wait of the event long-poll.
    pub default_event_timeout: Duration,
    /// Longest wait a client may ask of the event long-poll.
    pub max_event_timeout: Duration,
    /// Requests of each kind waiting at once (long-polls, event streams,
    /// trigger calls: a pool each); past it, 503.
    pub max_pending_waits: usize,
    /// Waiting requests one caller (token, or address) may hold across all
    /// kinds; past it, 429.
    pub max_waits_per_client: usize,
    /// Longest life of an event stream; the client reconnects with
    /// `Last-Event-ID` and loses nothing.
    pub max_stream_lifetime: Duration,
    /// How long a response write may make no progress (a client that
    /// stopped reading) before the connection is closed.
    pub write_stall_timeout: Duration,
    /// Idle time after which an event stream sends a keep-alive comment.
    pub stream_keep_alive: Duration,
    /// How long a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request body.
    pub body_read_timeout: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 * 1024 * 1024,
            max_json_body_bytes: 2 * 1024 * 1024,
            default_event_timeout: Duration::from_secs(60),
            max_event_timeout: Duration::from_secs(300),
            max_pending_waits: 10_000,
            max_waits_per_client: 1_000,
            max_stream_lifetime: Duration::from_secs(3600),
            write_stall_timeout: Duration::from_secs(30),
            stream_keep_alive: Duration::from_secs(15),
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// The HTTP API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Api {
    executor: Executor,
    limits: ApiLimits,
    access: AccessControl,
    /// Places for waiting requests.
    wait_slots: Arc<WaitPools>,
}

impl Api {
    pub fn new(executor: Executor, limits: ApiLimits, access: AccessControl) -> Self {
        Self {
            executor,
            wait_slots: Arc::new(WaitPools::new(
                limits.max_pending_waits,
                limits.max_waits_per_client,
            )),
            limits,
            access,
        }
    }

    pub fn limits(&self) -> &ApiLimits {
        &self.limits
    }

    pub(super) fn executor(&self) -> &Executor {
        &self.executor
    }

    /// How many requests of each kind wait now.
    pub(super) fn wait_counts(&self) -> super::wait_slots::WaitCounts {
        self.wait_slots.counts()
    }

    /// A place to wait as `kind` for `caller`: 503 when too many requests
    /// of the kind already wait, 429 when the caller holds its share.
    pub(super) fn wait_slot(&self, kind: WaitKind, caller: Caller) -> Result<WaitSlot, ApiError> {
        self.wait_slots.acquire(kind, caller)
    }

    /// Answer one request. Never fails: errors become JSON error responses.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = std::time::Instant::now();
        let (method_label, route_label) =
            metrics::route_label(request.method(), request.uri().path());
        let response = self.answer(request).await;
        crate::metrics::metrics().answered(
            method_label,
            route_label,
            response.status().as_u16(),
            started.elapsed(),
        );
        response
    }

    async fn answer<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let has_body = request_has_body(&request);
        match self.route(request).await {
            Ok(response) => response,
            Err(error) => {
                if error.status.is_server_error() {
                    match &error.detail {
                        Some(detail) => {
                            tracing::error!(%method, %path, status = %error.status, %detail, "request failed")
                        }
                        None => {
                            tracing::warn!(%method, %path, status = %error.status, "request failed")
                        }
                    }
                }
                let mut response = json_response(error.status, &error.body());
                if matches!(
                    error.status,
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
                ) {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                if let Some(allow) = &error.allow
                    && let Ok(value) = HeaderValue::from_str(allow)
                {
                    response.headers_mut().insert(header::ALLOW, value);
                }
                if has_body {
                    // The body may be unread (refused before or while
                    // reading it): the connection cannot carry another
                    // request, and the client must know not to reuse it.
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        }
    }

    async fn route<B>(&self, request: Request<B>) -> ApiResult
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let segments = path_segments(request.uri().path())?;
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = request.method().clone();
        // Every method under `/app/` goes to the modules' routes, which
        // answer their own 405s.
        let route = match segments.as_slice() {
            [PREFIX, _, ..] => api_routes::find("POST", &segments),
            _ => api_routes::find(method.as_str(), &segments),
        };
        if self.access.is_open() {
            guard::check_open_host(request.headers())?;
        }
        // Browsers open event streams without headers: only there may the
        // token come in the query.
        let query_token = route
            .is_some_and(|route| matches!(route.endpoint, Endpoint::Events | Endpoint::Stream));
        let caller = self.access.check(
            &request,
            route.map_or(UNROUTED, |route| route.role),
            query_token,
        )?;
        let request = guard::without_credentials(request);
        let Some(route) = route else {
            return Err(match api_routes::allowed_methods(&segments) {
                Some(allowed) => ApiError::method_not_allowed(allowed),
                None => ApiError::not_found(
                    "not_found",
                    format!(
                        "no route for {method} {}; see the API table in the README",
                        request.uri().path()
                    ),
                ),
            });
        };
        let query = Query::parse(request.uri().query().unwrap_or(""))?;
        // The path parameters, in the order of the pattern.
        let param = |n: usize| -> &str {
            route
                .pattern
                .trim_start_matches('/')
                .split('/')
                .zip(&segments)
                .filter(|(part, _)| part.starts_with('{'))
                .nth(n)
                .map_or("", |(_, segment)| segment)
        };
        match route.endpoint {
            Endpoint::Health => self.health().await,
            Endpoint::Metrics => self.metrics().await,
            Endpoint::OpenApi => Ok(static_response(
                "application/json",
                include_str!("assets/openapi.json"),
            )),
            Endpoint::Console => Ok(console_page()),
            Endpoint::ListModules => self.list_modules().await,
            Endpoint::GetModule => self.get_module(param(0)).await,
            Endpoint::PutModule => {
                let name = param(0).to_owned();
                self.deploy(&name, request, &query).await
            }
            Endpoint::ListRuns => self.list_runs(&query).await,
            Endpoint::StartRun => {
                let traceparent = super::respond::traceparent(&request);
                let body = read_json_body(request, &self.limits).await?;
                self.start(&body, traceparent).await
            }
            Endpoint::GetRun => self.get_run(param(0)).await,
            Endpoint::SendMessage => {
                let id = param(0).to_owned();
                let body = read_json_body(request, &self.limits).await?;
                self.send_message(&id, &body).await
            }
            Endpoint::Cancel => {
                let id = param(0).to_owned();
                let body = self.optional_json_body(request).await?;
                self.cancel(&id, body.as_deref()).await
            }
            Endpoint::Resume => {
                let id = param(0).to_owned();
                let body = self.optional_json_body(request).await?;
                self.resume(&id, body.as_deref()).await
            }
            Endpoint::Fork => {
                let id = param(0).to_owned();
                let body = read_json_body(request, &self.limits).await?;
                self.fork(&id, &body).await
            }
            Endpoint::Result => self.wait_result(param(0), &query, caller).await,
            Endpoint::Steps => self.list_steps(param(0), &query).await,
            Endpoint::Events => self.events(param(0), &request, &query, caller).await,
            Endpoint::Event => self.wait_event(param(0), param(1), &query, caller).await,
            Endpoint::Messages => self.list_messages(param(0), &query).await,
            Endpoint::Streams => self.list_streams(param(0)).await,
            Endpoint::Stream => {
                self.read_stream(param(0), param(1), &request, &query, caller)
                    .await
            }
            Endpoint::BulkCancel | Endpoint::BulkResume => {
                let action = match route.endpoint {
                    Endpoint::BulkCancel => BulkAction::Cancel,
                    _ => BulkAction::Resume,
                };
                let body = self.optional_json_body(request).await?;
                self.bulk(action, &query, body.as_deref()).await
            }
            Endpoint::ListQueues => self.list_queues().await,
            Endpoint::GetQueue => self.get_queue(param(0)).await,
            Endpoint::PutQueue => {
                let name = param(0).to_owned();
                let body = read_json_body(request, &self.limits).await?;
                self.put_queue(&name, &body).await
            }
            Endpoint::DeleteQueue => self.delete_queue(param(0)).await,
            Endpoint::ListSchedules => self.list_schedules().await,
            Endpoint::GetSchedule => self.get_schedule(param(0)).await,
            Endpoint::PutSchedule => {
                let name = param(0).to_owned();
                let body = read_json_body(request, &self.limits).await?;
                self.put_schedule(&name, &body).await
            }
            Endpoint::DeleteSchedule => self.delete_schedule(param(0)).await,
            Endpoint::PauseSchedule => self.pause_schedule(param(0), true).await,
            Endpoint::ResumeSchedule => self.pause_schedule(param(0), false).await,
            Endpoint::TriggerSchedule => self.trigger_schedule(param(0)).await,
            Endpoint::BackfillSchedule => {
                let name = param(0).to_owned();
                let body = read_json_body(request, &self.limits).await?;
                self.backfill_schedule(&name, &body).await
            }
            Endpoint::Trigger => self.serve_trigger(request, &segments[1..], caller).await,
        }
    }

    async fn health(&self) -> ApiResult {
        let load = self.executor.load();
        let waits = self.wait_slots.counts();
        let parked_runs = self.executor.parked_count().await?;
        // Each queue's depth; `queue: null` counts the delayed starts.
        let queues: Vec<serde_json::Value> = self
            .executor
            .queue_depths()
            .await?
            .into_iter()
            .map(|(queue, depth)| {
                serde_json::json!({
                    "queue": queue.as_ref().map(|q| q.as_str()),
                    "enqueued": depth.enqueued,
                    "pending": depth.pending,
                })
            })
            .collect();
        // A host whose writes fail is not one to send work to: 503, so a
        // load balancer's check takes it out until they succeed again.
        let store = self.executor.store_health();
        let (status, text) = if store.ok {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "degraded")
        };
        Ok(json_response(
            status,
            &serde_json::json!({
                "status": text,
                "store": store,
                "live_instances": load.live_instances,
                "queued_runs": load.queued_runs,
                "parked_runs": parked_runs,
                "pending_waits": waits.total(),
                "waits": waits,
                "queues": queues,
                "process": { "cpu_us": crate::cpu::process_cpu_micros() },
            }),
        ))
    }

    /// The JSON body of a request whose body is optional (cancel, resume).
    async fn optional_json_body<B>(&self, request: Request<B>) -> Result<Option<Bytes>, ApiError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        if !request_has_body(&request) {
            return Ok(None);
        }
        Ok(Some(read_json_body(request, &self.limits).await?))
    }

    /// The id of a run that exists, or a 404.
    pub(super) async fn existing_run(&self, id: &str) -> Result<WorkflowId, ApiError> {
        let id = parse_workflow_id(id)?;
        match self.executor.get_run(&id).await? {
            Some(_) => Ok(id),
            None => Err(run_not_found(&id)),
        }
    }
}

/// The console: self-contained, its inline script may only talk to this
/// host, and no other site may frame it.
fn console_page() -> Response<Body> {
    let mut response = static_response(
        "text/html; charset=utf-8",
        include_str!("assets/console.html"),
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    response
        .headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The token never reaches the server with the page, but keep the
    // address (a run id) out of other sites' logs too.
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
