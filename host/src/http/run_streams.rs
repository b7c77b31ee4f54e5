//! A run's streams: their list, a read from an offset as JSON (a
//! long-poll: it waits for a value or the stream's end), and a live
//! Server-Sent Events stream that resumes with `Last-Event-ID`.
//!
//! An SSE stream sends each value as an unnamed event (`id:` its offset,
//! `data:` the value, so `EventSource.onmessage` gets every value) and
//! ends with a `cairn:closed` event when the stream ends.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Request, StatusCode};
use tokio::sync::mpsc;

use super::access::Caller;
use super::error::ApiError;
use super::events::wants_event_stream;
use super::pages::PAGE_BYTES;
use super::query::{Query, bounded_number};
use super::respond::{ApiResult, json_response, parse_workflow_id, raw_json};
use super::router::Api;
use super::stream::{PumpError, one_line, send_frame, serve_sse};
use super::wait_slots::WaitKind;
use crate::domain::{MAX_STREAM_READ, WorkflowId};
use crate::executor::{Executor, StreamSpan};

/// The name of the last event of a stream's SSE stream.
pub const CLOSED_EVENT: &str = "cairn:closed";

impl Api {
    /// `GET /v1/workflows/{id}/streams`: the run's streams.
    pub(super) async fn list_streams(&self, id: &str) -> ApiResult {
        let id = parse_workflow_id(id)?;
        let streams = self.executor().list_streams(&id).await?;
        let streams: Vec<serde_json::Value> = streams
            .into_iter()
            .map(|s| serde_json::json!({"name": s.name, "values": s.values, "closed": s.closed}))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "streams": streams }),
        ))
    }

    /// `GET /v1/workflows/{id}/streams/{name}?offset=&limit=&timeout_ms=`:
    /// JSON, or Server-Sent Events for a client that asks for them.
    pub(super) async fn read_stream<B>(
        &self,
        id: &str,
        name: &str,
        request: &Request<B>,
        query: &Query,
        caller: Caller,
    ) -> ApiResult {
        let id = parse_workflow_id(id)?;
        crate::domain::validate_stream_name(name)
            .map_err(|e| ApiError::bad_request("invalid_stream_name", e.0))?;
        let sse = wants_event_stream(request);
        let mut offset = 0;
        let mut limit = 100;
        let mut timeout = None;
        for (key, value) in query.pairs() {
            match key {
                "offset" => offset = bounded_number(key, value, 0, i64::MAX as u64)?,
                "limit" if !sse => limit = bounded_number(key, value, 1, MAX_STREAM_READ.into())?,
                "timeout_ms" if !sse => timeout = Some(self.timeout(query)?),
                other => {
                    let accepted = if sse {
                        "offset"
                    } else {
                        "offset, limit, timeout_ms"
                    };
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        format!("unknown query parameter {other:?}; accepted: {accepted}"),
                    ));
                }
            }
        }
        if sse {
            // A reconnecting client goes on after the last value it got.
            if let Some(last) = last_event_id(request)? {
                offset = last + 1;
            }
            return self.stream_values(id, name.to_owned(), offset, caller);
        }
        let timeout = match timeout {
            Some(timeout) => timeout,
            None => self.timeout(query)?,
        };
        let _slot = self.wait_slot(WaitKind::Poll, caller)?;
        let span = StreamSpan {
            name,
            offset,
            limit: limit as u32,
            max_bytes: PAGE_BYTES,
        };
        let read = self.executor().read_stream(&id, span, timeout).await?;
        let next_offset = read.next_offset(offset);
        let values = read
            .values
            .into_iter()
            .map(|(offset, value)| {
                Ok(serde_json::json!({"offset": offset, "value": raw_json(value)?}))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({
                "values": values,
                "next_offset": next_offset,
                "closed": read.closed,
            }),
        ))
    }

    fn stream_values(
        &self,
        run: WorkflowId,
        name: String,
        offset: u64,
        caller: Caller,
    ) -> ApiResult {
        let slot = self.wait_slot(WaitKind::Stream, caller)?;
        let executor = self.executor().clone();
        let keep_alive = self.limits().stream_keep_alive;
        let target = run.clone();
        Ok(serve_sse(
            slot,
            run,
            self.limits().max_stream_lifetime,
            async move |frames| pump(&executor, &target, &name, offset, keep_alive, &frames).await,
        ))
    }
}

/// The offset in a `Last-Event-ID` header, if there is one.
fn last_event_id<B>(request: &Request<B>) -> Result<Option<u64>, ApiError> {
    let Some(value) = request.headers().get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_last_event_id",
                format!(
                    "Last-Event-ID must be the id of a value of this stream (its offset, a whole number), got {value:?}"
                ),
            )
        })
}

/// Send the stream's values from `offset` as they come, until it ends.
async fn pump(
    executor: &Executor,
    run: &WorkflowId,
    name: &str,
    mut offset: u64,
    keep_alive: Duration,
    frames: &mpsc::Sender<Bytes>,
) -> Result<(), PumpError> {
    loop {
        let span = StreamSpan {
            name,
            offset,
            limit: 64,
            max_bytes: PAGE_BYTES,
        };
        let read = tokio::select! {
            read = executor.read_stream(run, span, keep_alive) => read?,
            () = frames.closed() => return Err(PumpError::Gone),
        };
        if !read.is_news() {
            send_frame(frames, ": keep-alive\n\n".to_owned()).await?;
            continue;
        }
        for (at, value) in read.values {
            offset = at + 1;
            send_frame(frames, format!("id: {at}\ndata: {}\n\n", one_line(&value))).await?;
        }
        if read.closed {
            let end = format!("event: {CLOSED_EVENT}\ndata: {{\"next_offset\":{offset}}}\n\n");
            return send_frame(frames, end).await;
        }
    }
}
