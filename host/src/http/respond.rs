//! What every route shares: reading a request's body, parsing its JSON and
//! its ids, and making JSON answers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::ApiError;
use super::query::encode_segment;
use super::router::{ApiLimits, Body};
use crate::domain::{ErrorKind, ModuleName, RunRecord, WorkflowId};

pub(super) type ApiResult = Result<Response<Body>, ApiError>;

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

pub(super) fn static_response(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The answer to a request that started (or forked) a run: 202 with the
/// run's id, status and `Location`, or 200 for a run that existed already.
pub(super) fn run_accepted(run: &RunRecord, created: bool) -> Response<Body> {
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let mut response = json_response(
        status,
        &serde_json::json!({"id": run.id.as_str(), "status": run.status.as_str()}),
    );
    if let Ok(location) = HeaderValue::from_str(&format!(
        "/v1/workflows/{}",
        encode_segment(run.id.as_str())
    )) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

pub(super) fn raw_json(text: String) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(text).map_err(ApiError::internal)
}

pub(super) fn run_not_found(id: &WorkflowId) -> ApiError {
    ApiError::not_found("run_not_found", format!("run {id} does not exist"))
}

pub(super) fn parse_module_name(name: &str) -> Result<ModuleName, ApiError> {
    ModuleName::parse(name).map_err(|e| ApiError::bad_request("invalid_module_name", e.0))
}

pub(super) fn parse_workflow_id(id: &str) -> Result<WorkflowId, ApiError> {
    WorkflowId::parse(id).map_err(|e| ApiError::bad_request("invalid_id", e.0))
}

pub(super) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the request body is not the expected JSON: {e}"),
        )
    })
}

/// The request's W3C trace context, if it carries a well-formed one.
pub(super) fn traceparent<B>(request: &Request<B>) -> Option<String> {
    request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(crate::telemetry::parse_traceparent)
}

pub(super) fn request_has_body<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

/// The body of a route that takes JSON, within the JSON size limit, sent
/// as JSON (see [`guard::check_json_content_type`]).
pub(super) async fn read_json_body<B>(
    request: Request<B>,
    limits: &ApiLimits,
) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    super::guard::check_json_content_type(request.headers())?;
    // `too_large`, as for an input or a message over the value limit: a
    // client sees one code for "too big" whichever limit it passed.
    read_body(request, limits, (limits.max_json_body_bytes, "too_large")).await
}

/// The body of a request, within `limit` bytes (refused past it with
/// `code`, 413).
pub(super) async fn read_body<B>(
    request: Request<B>,
    limits: &ApiLimits,
    (limit, code): (usize, &'static str),
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
        if length <= DRAIN_BYTES {
            drain(request.into_body(), limits.body_read_timeout).await;
        }
        return Err(body_too_large(limit, code));
    }
    let timeout = limits.body_read_timeout;
    let collected =
        tokio::time::timeout(timeout, Limited::new(request.into_body(), limit).collect())
            .await
            .map_err(|_| {
                ApiError::with_status(
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
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(body_too_large(limit, code))
        }
        Err(error) => Err(ApiError::bad_request(
            "bad_body",
            format!("the request body could not be read: {error}"),
        )),
    }
}

/// The most of a refused body read (and dropped) before the refusal is
/// sent: a client still sending a body the host closed the connection on
/// would see a reset instead of the answer. Larger ones are refused unread.
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;

/// Read what the client sends of `body` and drop it, within `timeout`.
async fn drain<B>(body: B, timeout: std::time::Duration)
where
    B: hyper::body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let _ = tokio::time::timeout(timeout, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

fn body_too_large(limit: usize, code: &'static str) -> ApiError {
    ApiError::of(
        ErrorKind::TooLarge,
        code,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;

    fn request(bytes: usize, content_type: &str) -> Request<Full<Bytes>> {
        Request::builder()
            .method("POST")
            .uri("/v1/workflows")
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, bytes)
            .body(Full::new(Bytes::from(vec![b' '; bytes])))
            .unwrap()
    }

    #[tokio::test]
    async fn a_json_body_over_its_limit_is_too_large_like_a_value_and_an_upload_body_too_large() {
        let limits = ApiLimits {
            max_json_body_bytes: 1000,
            ..ApiLimits::default()
        };
        let json = read_json_body(request(1001, "application/json"), &limits)
            .await
            .unwrap_err();
        assert_eq!(
            (json.status, json.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
        );
        let upload = read_body(
            request(1001, "application/wasm"),
            &limits,
            (1000, "body_too_large"),
        )
        .await
        .unwrap_err();
        assert_eq!(upload.code, "body_too_large");
        assert!(
            read_json_body(request(1000, "application/json"), &limits)
                .await
                .is_ok()
        );
    }
}
