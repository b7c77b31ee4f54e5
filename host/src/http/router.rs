//! Routing and handlers of the `/v1` API.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::access::{AccessControl, required_role};
use super::error::ApiError;
use super::multipart;
use super::routes::allowed_methods;
use super::stream::{Framing, StreamRequest, event_stream};
use super::triggers::PREFIX;
use super::views::{DeployedView, EventView, ModuleView, RunView, StepView};
use crate::domain::{Delivery, InvalidName, ModuleName, ModuleSettings, RunFilter, WorkflowId};
use crate::executor::{EventWait, Executor, StartRequest};
use crate::triggers::Manifest;

/// The response body type of every route.
pub type Body = BoxBody<Bytes, Infallible>;

pub(super) type ApiResult = Result<Response<Body>, ApiError>;

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
    /// Long-polls (events, results) and event streams open at once; past
    /// it, 503.
    pub max_pending_waits: usize,
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
    /// One permit per pending long-poll.
    wait_slots: Arc<Semaphore>,
}

impl Api {
    pub fn new(executor: Executor, limits: ApiLimits, access: AccessControl) -> Self {
        Self {
            executor,
            wait_slots: Arc::new(Semaphore::new(limits.max_pending_waits)),
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

    /// A permit to wait, or 503 when too many clients already do.
    pub(super) fn wait_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.wait_slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "{} requests are already waiting on this host, its limit; retry later",
                    self.limits.max_pending_waits
                ),
            )
        })
    }

    /// Answer one request. Never fails: errors become JSON error responses.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Body>
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
                    tracing::warn!(%method, %path, status = %error.status, "request failed");
                }
                let mut response = json_response(error.status, &error.body());
                if error.status == StatusCode::SERVICE_UNAVAILABLE {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                if error.status == StatusCode::METHOD_NOT_ALLOWED
                    && let Some(allow) = error.message.strip_prefix("allowed: ")
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
        let query = request.uri().query().unwrap_or("").to_owned();
        let method = request.method().clone();
        self.access
            .check(&request, required_role(&method, &segments))?;
        if let [PREFIX, route @ ..] = segments.as_slice() {
            return self.serve_trigger(request, route).await;
        }
        match (segments.as_slice(), &method) {
            (["healthz"], &Method::GET) => {
                let load = self.executor.load();
                let pending_waits =
                    self.limits.max_pending_waits - self.wait_slots.available_permits();
                Ok(json_response(
                    StatusCode::OK,
                    &serde_json::json!({
                        "status": "ok",
                        "live_instances": load.live_instances,
                        "queued_runs": load.queued_runs,
                        "pending_waits": pending_waits,
                    }),
                ))
            }
            (["openapi.json"], &Method::GET) => Ok(static_response(
                "application/json",
                include_str!("assets/openapi.json"),
            )),
            (["ui", "runs", _], &Method::GET) => {
                let mut response =
                    static_response("text/html; charset=utf-8", include_str!("assets/run.html"));
                // The page is self-contained: its inline script may only
                // talk to this host.
                response.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
                    ),
                );
                Ok(response)
            }
            (["v1", "modules"], &Method::GET) => self.list_modules().await,
            (["v1", "modules", name], &Method::GET) => self.get_module(name).await,
            (["v1", "modules", name], &Method::PUT) => {
                let name = parse_module_name(name)?;
                let form = upload_form(&request)?;
                let settings = module_settings(&query)?;
                let body = read_body(request, &self.limits, self.limits.max_upload_bytes).await?;
                let (component, manifest) = match form {
                    None => (body.to_vec(), Manifest::default()),
                    Some(boundary) => upload_parts(&body, &boundary)?,
                };
                self.put_module(name, component, settings, manifest).await
            }
            (["v1", "workflows"], &Method::POST) => {
                let body =
                    read_body(request, &self.limits, self.limits.max_json_body_bytes).await?;
                self.start(&body).await
            }
            (["v1", "workflows"], &Method::GET) => self.list_runs(&query).await,
            (["v1", "workflows", id], &Method::GET) => self.get_run(id).await,
            (["v1", "workflows", id, "cancel"], &Method::POST) => {
                let id = parse_workflow_id(id)?;
                let run = self.executor.cancel(&id).await?;
                Ok(json_response(StatusCode::OK, &RunView::from(&run)))
            }
            (["v1", "workflows", id, "resume"], &Method::POST) => {
                let id = parse_workflow_id(id)?;
                let run = self.executor.resume(&id).await?;
                Ok(json_response(StatusCode::ACCEPTED, &RunView::from(&run)))
            }
            (["v1", "workflows", id, "fork"], &Method::POST) => {
                let source = parse_workflow_id(id)?;
                let body =
                    read_body(request, &self.limits, self.limits.max_json_body_bytes).await?;
                let fork: ForkBody = parse_json(&body)?;
                let id = fork
                    .id
                    .as_deref()
                    .map(WorkflowId::parse)
                    .transpose()
                    .map_err(|e| ApiError::bad_request("invalid_id", e.0))?;
                let run = self.executor.fork(&source, fork.from_step, id).await?;
                let mut response = json_response(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({"id": run.id.as_str(), "status": run.status.as_str()}),
                );
                if let Ok(location) = HeaderValue::from_str(&format!(
                    "/v1/workflows/{}",
                    encode_segment(run.id.as_str())
                )) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                Ok(response)
            }
            (["v1", "workflows", id, "messages"], &Method::POST) => {
                let body =
                    read_body(request, &self.limits, self.limits.max_json_body_bytes).await?;
                self.send_message(id, &body).await
            }
            (["v1", "workflows", id, "result"], &Method::GET) => self.wait_result(id, &query).await,
            (["v1", "workflows", id, "steps"], &Method::GET) => self.list_steps(id).await,
            (["v1", "workflows", id, "events"], &Method::GET) if wants_event_stream(&request) => {
                self.stream_events(id, &request, &query).await
            }
            (["v1", "workflows", id, "events"], &Method::GET) => self.list_events(id).await,
            (["v1", "workflows", id, "events", key], &Method::GET) => {
                self.wait_event(id, key, &query).await
            }
            (segments, _) => match allowed_methods(segments) {
                Some(allowed) => Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("allowed: {allowed}"),
                )),
                None => Err(ApiError::not_found(
                    "not_found",
                    format!(
                        "no route for {method} {}; see the API table in the README",
                        request.uri().path()
                    ),
                )),
            },
        }
    }

    /// The id of a run that exists, or a 404.
    async fn existing_run(&self, id: &str) -> Result<WorkflowId, ApiError> {
        let id = parse_workflow_id(id)?;
        match self.executor.get_run(&id).await? {
            Some(_) => Ok(id),
            None => Err(run_not_found(&id)),
        }
    }

    async fn list_modules(&self) -> ApiResult {
        let modules = self.executor.list_modules().await?;
        let routes: Vec<Manifest> = modules
            .iter()
            .map(|m| self.executor.module_routes(&m.name))
            .collect();
        let views: Vec<ModuleView> = modules
            .iter()
            .zip(&routes)
            .map(|(module, routes)| ModuleView::new(module, routes))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "modules": views }),
        ))
    }

    async fn get_module(&self, name: &str) -> ApiResult {
        let name = parse_module_name(name)?;
        match self.executor.get_module(&name).await? {
            Some(module) => {
                let routes = self.executor.module_routes(&name);
                Ok(json_response(
                    StatusCode::OK,
                    &ModuleView::new(&module, &routes),
                ))
            }
            None => Err(ApiError::not_found(
                "module_not_found",
                format!("module {name} is not deployed"),
            )),
        }
    }

    async fn put_module(
        &self,
        name: ModuleName,
        component: Vec<u8>,
        settings: ModuleSettings,
        manifest: Manifest,
    ) -> ApiResult {
        let put = self
            .executor
            .deploy(name, component, settings, manifest)
            .await?;
        let status = if put.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let routes = self.executor.module_routes(&put.module.name);
        Ok(json_response(
            status,
            &DeployedView::new(&put.module, &routes),
        ))
    }

    async fn start(&self, body: &[u8]) -> ApiResult {
        let request: StartBody = parse_json(body)?;
        let module = parse_module_name(&request.module)?;
        let id = request
            .id
            .as_deref()
            .map(WorkflowId::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_id", e.0))?;
        let input = request
            .input
            .map(|raw| raw.get().to_owned())
            .unwrap_or_else(|| "null".to_owned());
        let started = self
            .executor
            .start(StartRequest {
                module,
                workflow: request.workflow,
                input,
                id,
                timeout: request.timeout_ms.map(Duration::from_millis),
                parent: None,
            })
            .await?;
        let status = if started.created {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        let mut response = json_response(
            status,
            &serde_json::json!({"id": started.run.id.as_str(), "status": started.run.status.as_str()}),
        );
        if let Ok(location) = HeaderValue::from_str(&format!(
            "/v1/workflows/{}",
            encode_segment(started.run.id.as_str())
        )) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    }

    async fn send_message(&self, id: &str, body: &[u8]) -> ApiResult {
        let id = parse_workflow_id(id)?;
        let request: MessageBody = parse_json(body)?;
        let delivery = self
            .executor
            .send_message(
                &id,
                request.topic,
                request.message.get().to_owned(),
                request.idempotency_key,
            )
            .await?;
        Ok(match delivery {
            Delivery::Delivered => json_response(
                StatusCode::ACCEPTED,
                &serde_json::json!({"delivered": true}),
            ),
            // Sent before under this key: delivered once, then, not now.
            Delivery::Duplicate => json_response(
                StatusCode::OK,
                &serde_json::json!({"delivered": false, "duplicate": true}),
            ),
        })
    }

    async fn list_runs(&self, query: &str) -> ApiResult {
        let mut filter = run_filter(query)?;
        // One more than asked tells whether there is a next page.
        let limit = filter.limit as usize;
        filter.limit += 1;
        let mut runs = self.executor.list_runs(&filter).await?;
        let next_cursor = if runs.len() > limit {
            runs.truncate(limit);
            runs.last()
                .map(|run| encode_cursor(run.created_at, &run.id))
        } else {
            None
        };
        let views: Vec<RunView> = runs.iter().map(RunView::from).collect();
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({"workflows": views, "next_cursor": next_cursor}),
        ))
    }

    async fn get_run(&self, id: &str) -> ApiResult {
        let id = parse_workflow_id(id)?;
        match self.executor.get_run(&id).await? {
            Some(run) => Ok(json_response(StatusCode::OK, &RunView::from(&run))),
            None => Err(run_not_found(&id)),
        }
    }

    async fn list_events(&self, id: &str) -> ApiResult {
        let id = self.existing_run(id).await?;
        let events = self.executor.list_events(&id).await?;
        let mut object = serde_json::Map::new();
        for (key, value) in events {
            let value: serde_json::Value =
                serde_json::from_str(&value).map_err(ApiError::internal)?;
            object.insert(key, value);
        }
        Ok(json_response(
            StatusCode::OK,
            &serde_json::Value::Object(object),
        ))
    }

    async fn stream_events<B>(&self, id: &str, request: &Request<B>, query: &str) -> ApiResult {
        let run = self.existing_run(id).await?;
        let after_op = match request.headers().get("last-event-id") {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_last_event_id",
                            format!(
                                "Last-Event-ID must be the id of an event of this stream (a whole number), got {value:?}"
                            ),
                        )
                    })?,
            ),
        };
        let framing = match query_param(query, "envelope")?.as_deref() {
            None | Some("false") => Framing::Named,
            Some("true") => Framing::Envelope,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("envelope must be true or false, got {other:?}"),
                ));
            }
        };
        let permit = self.wait_slot()?;
        Ok(event_stream(
            self.executor.clone(),
            StreamRequest {
                run,
                after_op,
                framing,
                keep_alive: self.limits.stream_keep_alive,
            },
            permit,
        ))
    }

    /// `timeout_ms` of a long-poll: the default when absent, capped.
    fn timeout(&self, query: &str) -> Result<Duration, ApiError> {
        let Some(text) = query_param(query, "timeout_ms")? else {
            return Ok(self.limits.default_event_timeout);
        };
        let max = self.limits.max_event_timeout.as_millis();
        let ms: u64 = text
            .parse()
            .ok()
            .filter(|&ms| u128::from(ms) <= max)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_timeout",
                    format!("timeout_ms must be a whole number from 0 to {max}, got {text:?}"),
                )
            })?;
        Ok(Duration::from_millis(ms))
    }

    async fn wait_result(&self, id: &str, query: &str) -> ApiResult {
        let id = parse_workflow_id(id)?;
        let timeout = self.timeout(query)?;
        let _slot = self.wait_slot()?;
        match self.executor.wait_result(&id, timeout).await? {
            // 200 once finished; 202 with the run as it is while it runs on.
            Some(run) if run.status.is_terminal() => {
                Ok(json_response(StatusCode::OK, &RunView::from(&run)))
            }
            Some(run) => Ok(json_response(StatusCode::ACCEPTED, &RunView::from(&run))),
            None => Err(run_not_found(&id)),
        }
    }

    async fn list_steps(&self, id: &str) -> ApiResult {
        let id = self.existing_run(id).await?;
        let journal = self.executor.journal(&id).await?;
        let steps: Vec<StepView> = journal.iter().map(StepView::from).collect();
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "steps": steps }),
        ))
    }

    async fn wait_event(&self, id: &str, key: &str, query: &str) -> ApiResult {
        let id = parse_workflow_id(id)?;
        let timeout = self.timeout(query)?;
        let _slot = self.wait_slot()?;
        match self.executor.wait_event(&id, key, timeout).await? {
            EventWait::Set(value) => Ok(json_response(
                StatusCode::OK,
                &EventView {
                    key,
                    value: raw_json(value)?,
                },
            )),
            EventWait::TimedOut => Err(ApiError::not_found(
                "event_not_set",
                format!(
                    "event {key:?} of run {id} was not set within {} ms",
                    timeout.as_millis()
                ),
            )),
            EventWait::Finished(status) => Err(ApiError::not_found(
                "workflow_finished",
                format!("run {id} ended {status} without setting event {key:?}"),
            )),
        }
    }
}

/// Whether the client asks for Server-Sent Events rather than JSON.
fn wants_event_stream<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| media.split(';').next().unwrap_or("").trim() == "text/event-stream")
}

fn request_has_body<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkBody {
    /// The first operation to run again; those before it are copied.
    from_step: u32,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    topic: String,
    message: Box<RawValue>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    module: String,
    workflow: String,
    #[serde(default)]
    input: Option<Box<RawValue>>,
    #[serde(default)]
    id: Option<String>,
    /// Wall-clock limit of the run; the module's default when absent.
    #[serde(default)]
    timeout_ms: Option<u64>,
}

fn raw_json(text: String) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(text).map_err(ApiError::internal)
}

fn run_not_found(id: &WorkflowId) -> ApiError {
    ApiError::not_found("run_not_found", format!("run {id} does not exist"))
}

fn parse_module_name(name: &str) -> Result<ModuleName, ApiError> {
    ModuleName::parse(name).map_err(|e| ApiError::bad_request("invalid_module_name", e.0))
}

fn parse_workflow_id(id: &str) -> Result<WorkflowId, ApiError> {
    WorkflowId::parse(id).map_err(|e| ApiError::bad_request("invalid_id", e.0))
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the request body is not the expected JSON: {e}"),
        )
    })
}

pub(super) async fn read_body<B>(
    request: Request<B>,
    limits: &ApiLimits,
    limit: usize,
) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if let Some(length) = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > limit as u64
    {
        return Err(body_too_large(limit));
    }
    let timeout = limits.body_read_timeout;
    let collected =
        tokio::time::timeout(timeout, Limited::new(request.into_body(), limit).collect())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {} ms",
                        timeout.as_millis()
                    ),
                )
            })?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(body_too_large(limit)),
        Err(error) => Err(ApiError::bad_request(
            "bad_body",
            format!("the request body could not be read: {error}"),
        )),
    }
}

fn body_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

fn static_response(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(super) fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("API views serialise to JSON");
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Split a path into percent-decoded segments. Empty segments, `.` and `..`
/// are refused rather than normalised: no route has them.
fn path_segments(path: &str) -> Result<Vec<String>, ApiError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    trimmed
        .split('/')
        .map(|raw| {
            let segment = percent_decode(raw).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_path",
                    format!("path segment {raw:?} is not valid percent-encoded UTF-8"),
                )
            })?;
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(ApiError::not_found(
                    "not_found",
                    format!("no route for path {path:?}"),
                ));
            }
            Ok(segment)
        })
        .collect()
}

/// Uploads are component bytes (`application/wasm`,
/// `application/octet-stream` or no content type at all), or a
/// `multipart/form-data` form with the component and its routes: then the
/// form's boundary. Any other body is a mistake worth naming.
fn upload_form<B>(request: &Request<B>) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    if let Some(boundary) = multipart::boundary(value.to_str().unwrap_or("")) {
        return boundary
            .map(Some)
            .map_err(|e| ApiError::bad_request("invalid_form", e));
    }
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/wasm" || essence == "application/octet-stream" {
        return Ok(None);
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "a module upload is the component's bytes with Content-Type application/wasm (or application/octet-stream), or a multipart/form-data form with parts \"module\" and \"routes\"; not {value:?}"
        ),
    ))
}

/// Most runs one page of a listing may have.
const MAX_LIST_LIMIT: u32 = 1000;

/// The filter of `GET /v1/workflows?status=&module=&workflow=&limit=&cursor=`.
fn run_filter(query: &str) -> Result<RunFilter, ApiError> {
    const ACCEPTED: &str = "status, module, workflow, limit, cursor";
    let invalid = |message: String| ApiError::bad_request("invalid_query", message);
    let mut filter = RunFilter {
        limit: 50,
        ..RunFilter::default()
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, _) = pair.split_once('=').unwrap_or((pair, ""));
        let value = query_param(pair, key)?.unwrap_or_default();
        match key {
            "status" => filter.status = Some(value.parse().map_err(|e: InvalidName| invalid(e.0))?),
            "module" => filter.module = Some(parse_module_name(&value)?),
            "workflow" => filter.workflow = Some(value),
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
                    .ok_or_else(|| {
                        invalid(format!(
                            "limit must be a whole number from 1 to {MAX_LIST_LIMIT}, got {value:?}"
                        ))
                    })?;
            }
            "cursor" => {
                filter.after = Some(decode_cursor(&value).ok_or_else(|| {
                    invalid("cursor is not one this host handed out as next_cursor".into())
                })?);
            }
            other => {
                return Err(invalid(format!(
                    "unknown query parameter {other:?}; accepted: {ACCEPTED}"
                )));
            }
        }
    }
    Ok(filter)
}

/// A page's cursor: where the next page starts, opaque to clients.
fn encode_cursor(created_at: i64, id: &WorkflowId) -> String {
    hex::encode(format!("{created_at}:{id}"))
}

fn decode_cursor(cursor: &str) -> Option<(i64, WorkflowId)> {
    let text = String::from_utf8(hex::decode(cursor).ok()?).ok()?;
    let (created_at, id) = text.split_once(':')?;
    Some((created_at.parse().ok()?, WorkflowId::parse(id).ok()?))
}

/// The component and the routes manifest of a form upload.
fn upload_parts(body: &[u8], boundary: &str) -> Result<(Vec<u8>, Manifest), ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_form", message);
    let mut component = None;
    let mut manifest = None;
    for part in multipart::parse(body, boundary).map_err(invalid)? {
        let slot_taken = match part.name.as_str() {
            "module" => component.replace(part.bytes.to_vec()).is_some(),
            "routes" => manifest
                .replace(
                    Manifest::parse(part.bytes)
                        .map_err(|e| ApiError::bad_request("invalid_routes", e))?,
                )
                .is_some(),
            other => {
                return Err(invalid(format!(
                    "unexpected form part {other:?}; a module upload has the parts \"module\" (the component) and \"routes\" (optional, the JSON routes manifest)"
                )));
            }
        };
        if slot_taken {
            return Err(invalid(format!(
                "the form part {:?} appears twice",
                part.name
            )));
        }
    }
    let component = component.ok_or_else(|| {
        invalid("the form has no part \"module\" with the component's bytes".into())
    })?;
    Ok((component, manifest.unwrap_or_default()))
}

/// A module's settings from the query of its upload:
/// `?max_memory_bytes=N&cpu_slice_ms=N&run_timeout_ms=N&allowed_hosts=A,B`,
/// each optional.
fn module_settings(query: &str) -> Result<ModuleSettings, ApiError> {
    const ACCEPTED: &str = "max_memory_bytes, cpu_slice_ms, run_timeout_ms, allowed_hosts";
    let mut settings = ModuleSettings::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value.parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_settings",
                    format!("{key} must be a whole number, got {value:?}"),
                )
            })
        };
        match key {
            "max_memory_bytes" => {
                settings.max_memory_bytes = Some(usize::try_from(number()?).unwrap_or(usize::MAX))
            }
            "cpu_slice_ms" => settings.cpu_slice_ms = Some(number()?),
            "run_timeout_ms" => settings.run_timeout_ms = Some(number()?),
            "allowed_hosts" => {
                let list = percent_decode(value).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_settings",
                        "allowed_hosts is not valid percent-encoded UTF-8",
                    )
                })?;
                settings.allowed_hosts.extend(
                    list.split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .map(str::to_owned),
                );
            }
            other => {
                return Err(ApiError::bad_request(
                    "invalid_settings",
                    format!("unknown module setting {other:?}; accepted: {ACCEPTED}"),
                ));
            }
        }
    }
    Ok(settings)
}

pub(super) fn query_param(query: &str, name: &str) -> Result<Option<String>, ApiError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name {
            return percent_decode(&value.replace('+', " "))
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("query parameter {name} is not valid percent-encoded UTF-8"),
                    )
                });
        }
    }
    Ok(None)
}

pub(super) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encode a path segment (for `Location` headers).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded_and_tricks_refused() {
        assert_eq!(
            path_segments("/v1/workflows/a%2Fb/events").unwrap(),
            ["v1", "workflows", "a/b", "events"]
        );
        assert!(path_segments("/v1/../modules").is_err());
        assert!(path_segments("/v1//modules").is_err());
        assert!(path_segments("/v1/%ff").is_err());
        assert!(path_segments("/v1/%4").is_err());
    }

    #[test]
    fn segments_round_trip_through_encoding() {
        let id = "order 42/ü?";
        let encoded = encode_segment(id);
        assert!(!encoded.contains('/'));
        assert_eq!(percent_decode(&encoded).unwrap(), id);
    }

    #[test]
    fn query_parameters_are_found_by_name() {
        assert_eq!(
            query_param("a=1&timeout_ms=250", "timeout_ms").unwrap(),
            Some("250".to_owned())
        );
        assert_eq!(query_param("", "timeout_ms").unwrap(), None);
    }
}
