//! `GET /v1/workflows/{id}/messages`: the messages sent to a run, received
//! or not, oldest first, a page at a time.

use hyper::StatusCode;

use super::error::ApiError;
use super::query::{Query, bounded_number};
use super::respond::{ApiResult, json_response, parse_workflow_id, raw_json};
use super::router::Api;
use super::views::timestamp;

/// Most messages one page may have.
const MAX_MESSAGES_LIMIT: u64 = 1000;

impl Api {
    pub(super) async fn list_messages(&self, id: &str, query: &Query) -> ApiResult {
        let id = parse_workflow_id(id)?;
        let (mut after_seq, mut limit) = (None, 100);
        for (key, value) in query.pairs() {
            match key {
                "after_seq" => {
                    after_seq = Some(bounded_number(key, value, 0, i64::MAX as u64)? as i64)
                }
                "limit" => limit = bounded_number(key, value, 1, MAX_MESSAGES_LIMIT)? as u32,
                other => {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        format!("unknown query parameter {other:?}; accepted: after_seq, limit"),
                    ));
                }
            }
        }
        let messages = self
            .executor()
            .list_messages(&id, after_seq, limit + 1)
            .await?;
        let more = messages.len() > limit as usize;
        let views = messages
            .into_iter()
            .take(limit as usize)
            .map(|m| {
                Ok(serde_json::json!({
                    "seq": m.seq,
                    "topic": m.topic,
                    "message": raw_json(m.message)?,
                    "idempotency_key": m.idempotency_key,
                    "sent_at": timestamp(m.sent_at),
                    "received": m.received_by_op.is_some(),
                    "received_by_op": m.received_by_op,
                    "received_at": m.received_at.map(timestamp),
                }))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let next_after_seq = if more {
            views.last().and_then(|v| v["seq"].as_i64())
        } else {
            None
        };
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({"messages": views, "next_after_seq": next_after_seq}),
        ))
    }
}
