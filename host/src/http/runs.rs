//! `/v1/workflows`: starting runs, listing and reading them, their results
//! and journals, messages to them, and cancelling, resuming and forking.

use std::time::Duration;

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::access::Caller;
use super::error::ApiError;
use super::query::Query;
use super::respond::{
    ApiResult, json_response, parse_json, parse_module_name, parse_workflow_id, run_accepted,
    run_not_found,
};
use super::router::Api;
use super::views::RunView;
use super::wait_slots::WaitKind;
use crate::domain::{
    Admission, Delivery, InvalidValue, QueueName, RunFilter, RunStatus, WorkflowId,
};
use crate::executor::StartRequest;

impl Api {
    /// `POST /v1/workflows`; `traceparent`: the request's trace context,
    /// the parent of the run's spans.
    pub(super) async fn start(&self, body: &[u8], traceparent: Option<String>) -> ApiResult {
        let request: StartBody = parse_json(body)?;
        let admission = request.admission().into_admission(self.executor().now())?;
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
            .executor()
            .start(StartRequest {
                module,
                workflow: request.workflow,
                input,
                id,
                timeout: request.timeout_ms.map(Duration::from_millis),
                parent: None,
                deadline_cap: None,
                admission,
                traceparent,
            })
            .await?;
        Ok(run_accepted(&started.run, started.created))
    }

    pub(super) async fn list_runs(&self, query: &Query) -> ApiResult {
        let filter = run_filter(query)?;
        let (runs, more) = self.runs_page(filter).await?;
        self.runs_page_response(&runs, more, |run| encode_cursor(run.created_at, &run.id))
            .await
    }

    pub(super) async fn get_run(&self, id: &str) -> ApiResult {
        let id = parse_workflow_id(id)?;
        match self.executor().get_run(&id).await? {
            Some(run) => {
                let mut view = RunView::from(&run);
                if run.status == RunStatus::Pending {
                    view.waiting = self.executor().waiting(&id).await?.map(Into::into);
                }
                view.position = self.executor().queue_position(&run).await?;
                Ok(json_response(StatusCode::OK, &view))
            }
            None => Err(run_not_found(&id)),
        }
    }

    /// `POST /v1/workflows/{id}/cancel`, with an optional body
    /// `{"tree": false}` to cancel the run alone, not its descendants.
    pub(super) async fn cancel(&self, id: &str, body: Option<&[u8]>) -> ApiResult {
        let id = parse_workflow_id(id)?;
        let tree = match body {
            Some(body) => parse_json::<CancelBody>(body)?.tree.unwrap_or(true),
            None => true,
        };
        let run = self.executor().cancel(&id, tree).await?;
        Ok(json_response(StatusCode::OK, &RunView::from(&run)))
    }

    /// `POST /v1/workflows/{id}/resume`, with an optional body
    /// `{"timeout_ms": N}`: the resumed run's new time limit.
    pub(super) async fn resume(&self, id: &str, body: Option<&[u8]>) -> ApiResult {
        let id = parse_workflow_id(id)?;
        let timeout = match body {
            Some(body) => parse_json::<ResumeBody>(body)?
                .timeout_ms
                .map(Duration::from_millis),
            None => None,
        };
        let run = self.executor().resume(&id, timeout).await?;
        Ok(json_response(StatusCode::ACCEPTED, &RunView::from(&run)))
    }

    pub(super) async fn fork(&self, id: &str, body: &[u8]) -> ApiResult {
        let source = parse_workflow_id(id)?;
        let fork: ForkBody = parse_json(body)?;
        let id = fork
            .id
            .as_deref()
            .map(WorkflowId::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_id", e.0))?;
        let run = self.executor().fork(&source, fork.from_step, id).await?;
        Ok(run_accepted(&run, true))
    }

    pub(super) async fn wait_result(&self, id: &str, query: &Query, caller: Caller) -> ApiResult {
        let id = parse_workflow_id(id)?;
        let timeout = self.timeout(query)?;
        let _slot = self.wait_slot(WaitKind::Poll, caller)?;
        match self.executor().wait_result(&id, timeout).await? {
            // 200 once finished; 202 with the run as it is while it runs on.
            Some(run) if run.status.is_terminal() => {
                Ok(json_response(StatusCode::OK, &RunView::from(&run)))
            }
            Some(run) => Ok(json_response(StatusCode::ACCEPTED, &RunView::from(&run))),
            None => Err(run_not_found(&id)),
        }
    }

    pub(super) async fn send_message(&self, id: &str, body: &[u8]) -> ApiResult {
        let id = parse_workflow_id(id)?;
        let request: MessageBody = parse_json(body)?;
        let delivery = self
            .executor()
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// Whether the run's `PENDING` descendants are cancelled with it
    /// (default true).
    tree: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
    /// The resumed run's time limit, from now (within its module's).
    timeout_ms: Option<u64>,
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
    /// Absent: the default topic, `""`.
    #[serde(default)]
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
    // The admission (see `AdmissionBody`), inline: flattening would lose
    // `deny_unknown_fields`.
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default)]
    deduplication_id: Option<String>,
    #[serde(default)]
    partition_key: Option<String>,
    #[serde(default)]
    start_at: Option<serde_json::Value>,
    #[serde(default)]
    delay_ms: Option<u64>,
}

impl StartBody {
    fn admission(&self) -> AdmissionBody {
        AdmissionBody {
            queue: self.queue.clone(),
            priority: self.priority,
            deduplication_id: self.deduplication_id.clone(),
            partition_key: self.partition_key.clone(),
            start_at: self.start_at.clone(),
            delay_ms: self.delay_ms,
        }
    }
}

/// How a start asks to be admitted, if not at once: the fields of a start
/// request (and of a route) that name a queue or a start time.
#[derive(Deserialize, Default, Debug, Clone)]
pub(super) struct AdmissionBody {
    #[serde(default)]
    pub(super) queue: Option<String>,
    #[serde(default)]
    pub(super) priority: Option<i32>,
    #[serde(default)]
    pub(super) deduplication_id: Option<String>,
    #[serde(default)]
    pub(super) partition_key: Option<String>,
    /// RFC 3339, or milliseconds since the Unix epoch.
    #[serde(default)]
    pub(super) start_at: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) delay_ms: Option<u64>,
}

impl AdmissionBody {
    /// The admission asked for (`None`: at once), with a delay counted
    /// from `now`.
    pub(super) fn into_admission(self, now: i64) -> Result<Option<Admission>, ApiError> {
        let invalid = |message: String| ApiError::bad_request("invalid_request", message);
        let start_at = match (self.start_at, self.delay_ms) {
            (Some(_), Some(_)) => {
                return Err(invalid("give start_at or delay_ms, not both".into()));
            }
            (Some(serde_json::Value::Number(ms)), None) => Some(ms.as_i64().ok_or_else(|| {
                invalid(format!(
                    "start_at {ms} is not a whole number of milliseconds"
                ))
            })?),
            (Some(serde_json::Value::String(time)), None) => Some(parse_time("start_at", &time)?),
            (Some(other), None) => {
                return Err(invalid(format!(
                    "start_at must be an RFC 3339 time (2026-12-01T15:00:00Z) or milliseconds since the Unix epoch, got {other}"
                )));
            }
            (None, Some(delay)) => {
                Some(now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)))
            }
            (None, None) => None,
        };
        let queue = self
            .queue
            .as_deref()
            .map(QueueName::parse)
            .transpose()
            .map_err(|e| invalid(e.0))?;
        let admission = Admission {
            queue,
            priority: self.priority.unwrap_or(0),
            deduplication_id: self.deduplication_id,
            partition_key: self.partition_key,
            start_at,
        };
        if admission == Admission::default() {
            return Ok(None);
        }
        Ok(Some(admission))
    }
}

/// Most runs one page of a listing may have.
const MAX_LIST_LIMIT: u32 = 1000;

/// The filter of `GET /v1/workflows?status=&module=&workflow=&limit=&cursor=`.
pub(super) fn run_filter(query: &Query) -> Result<RunFilter, ApiError> {
    const ACCEPTED: &str = "status, module, workflow, parent, queue, id_prefix, created_from, created_until, limit, cursor";
    let invalid = |message: String| ApiError::bad_request("invalid_query", message);
    let mut filter = RunFilter {
        limit: 50,
        ..RunFilter::default()
    };
    for (key, value) in query.pairs() {
        let value = value.to_owned();
        match key {
            "status" => {
                filter.status = Some(value.parse().map_err(|e: InvalidValue| invalid(e.0))?)
            }
            "module" => filter.module = Some(parse_module_name(&value)?),
            "workflow" => filter.workflow = Some(value),
            "parent" => {
                filter.parent = Some(WorkflowId::parse(&value).map_err(|e| invalid(e.0))?);
            }
            "queue" => filter.queue = Some(QueueName::parse(&value).map_err(|e| invalid(e.0))?),
            "id_prefix" => filter.id_prefix = Some(value),
            "created_from" => filter.created_from = Some(parse_time(key, &value)?),
            "created_until" => filter.created_until = Some(parse_time(key, &value)?),
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

/// A time of a listing filter: RFC 3339 (`2026-12-01T15:00:00Z`, as runs
/// show their times) or milliseconds since the Unix epoch.
pub(super) fn parse_time(name: &str, value: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(value)
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|since| i64::try_from(since.as_millis()).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "{name} must be an RFC 3339 time (2026-12-01T15:00:00Z) or milliseconds since the Unix epoch, got {value:?}"
                ),
            )
        })
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
