//! A run's events: all of them, one awaited by a long-poll, or every write
//! as a live stream (Server-Sent Events).

use std::time::Duration;

use hyper::{Request, StatusCode, header};

use super::access::Caller;
use super::error::ApiError;
use super::query::Query;
use super::respond::{ApiResult, json_response, parse_workflow_id, raw_json};
use super::router::Api;
use super::stream::{Framing, StreamRequest, event_stream};
use super::views::EventView;
use super::wait_slots::WaitKind;
use crate::executor::EventWait;

impl Api {
    /// `GET /v1/workflows/{id}/events`: JSON, or a stream for a client that
    /// asks for one.
    pub(super) async fn events<B>(
        &self,
        id: &str,
        request: &Request<B>,
        query: &Query,
        caller: Caller,
    ) -> ApiResult {
        if wants_event_stream(request) {
            self.stream_events(id, request, query, caller).await
        } else {
            self.list_events(id).await
        }
    }

    pub(super) async fn list_events(&self, id: &str) -> ApiResult {
        let id = self.existing_run(id).await?;
        let events = self.executor().list_events(&id).await?;
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

    pub(super) async fn stream_events<B>(
        &self,
        id: &str,
        request: &Request<B>,
        query: &Query,
        caller: Caller,
    ) -> ApiResult {
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
        let framing = match query.get("envelope") {
            None | Some("false") => Framing::Named,
            Some("true") => Framing::Envelope,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("envelope must be true or false, got {other:?}"),
                ));
            }
        };
        let slot = self.wait_slot(WaitKind::Stream, caller)?;
        Ok(event_stream(
            self.executor().clone(),
            StreamRequest {
                run,
                after_op,
                framing,
                keep_alive: self.limits().stream_keep_alive,
                lifetime: self.limits().max_stream_lifetime,
            },
            slot,
        ))
    }

    pub(super) async fn wait_event(
        &self,
        id: &str,
        key: &str,
        query: &Query,
        caller: Caller,
    ) -> ApiResult {
        let id = parse_workflow_id(id)?;
        let timeout = self.timeout(query)?;
        let _slot = self.wait_slot(WaitKind::Poll, caller)?;
        match self.executor().wait_event(&id, key, timeout).await? {
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

    /// `timeout_ms` of a long-poll: the default when absent, capped.
    pub(super) fn timeout(&self, query: &Query) -> Result<Duration, ApiError> {
        let Some(text) = query.get("timeout_ms") else {
            return Ok(self.limits().default_event_timeout);
        };
        let max = self.limits().max_event_timeout.as_millis();
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
}

/// Whether the client asks for Server-Sent Events rather than JSON.
pub(super) fn wants_event_stream<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| media.split(';').next().unwrap_or("").trim() == "text/event-stream")
}
