//! Cancelling and resuming many runs at once, for incident clean-up:
//! `POST /v1/bulk/cancel` and `POST /v1/bulk/resume` take the listing's
//! filters as query parameters and act on up to `limit` matching runs
//! (`more` says whether others match; call again to go on).

use std::time::Duration;

use hyper::StatusCode;
use serde::Deserialize;

use super::error::ApiError;
use super::query::Query;
use super::respond::{ApiResult, json_response, parse_json};
use super::router::Api;
use super::runs::run_filter;
use crate::domain::{RunFilter, RunStatus};
use crate::executor::ExecutorError;

/// What a bulk action does to each run.
#[derive(Debug, Clone, Copy)]
pub(super) enum BulkAction {
    Cancel,
    Resume,
}

impl BulkAction {
    /// The status of the runs it acts on.
    fn acts_on(self) -> RunStatus {
        match self {
            Self::Cancel => RunStatus::Pending,
            Self::Resume => RunStatus::Cancelled,
        }
    }

    fn done(self) -> &'static str {
        match self {
            Self::Cancel => "cancelled",
            Self::Resume => "resumed",
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    /// Cancel: whether each run's `PENDING` descendants go with it
    /// (default true).
    tree: Option<bool>,
    /// Resume: each resumed run's new time limit, from now.
    timeout_ms: Option<u64>,
}

impl Api {
    pub(super) async fn bulk(
        &self,
        action: BulkAction,
        query: &Query,
        body: Option<&[u8]>,
    ) -> ApiResult {
        let filter = bulk_filter(action, query)?;
        let body: BulkBody = match body {
            Some(body) => parse_json(body)?,
            None => BulkBody::default(),
        };
        let invalid = |field: &str| {
            ApiError::bad_request(
                "invalid_request",
                format!(
                    "{field} applies to /v1/bulk/{}, not here",
                    match action {
                        BulkAction::Cancel => "resume",
                        BulkAction::Resume => "cancel",
                    }
                ),
            )
        };
        match action {
            BulkAction::Cancel if body.timeout_ms.is_some() => return Err(invalid("timeout_ms")),
            BulkAction::Resume if body.tree.is_some() => return Err(invalid("tree")),
            _ => {}
        }
        let limit = filter.limit as usize;
        let mut runs = self
            .executor()
            .list_runs(&RunFilter {
                limit: filter.limit + 1,
                ..filter
            })
            .await?;
        let more = runs.len() > limit;
        runs.truncate(limit);
        let (mut done, mut skipped) = (Vec::new(), Vec::new());
        for run in runs {
            let acted = match action {
                BulkAction::Cancel => self
                    .executor()
                    .cancel(&run.id, body.tree.unwrap_or(true))
                    .await
                    .map(drop),
                BulkAction::Resume => self
                    .executor()
                    .resume(&run.id, body.timeout_ms.map(Duration::from_millis))
                    .await
                    .map(drop),
            };
            match acted {
                Ok(()) => done.push(run.id.to_string()),
                // It moved on meanwhile (it ended, or someone else acted):
                // say so, and go on with the others.
                Err(error @ (ExecutorError::WrongStatus { .. } | ExecutorError::UnknownRun(_))) => {
                    skipped.push(
                        serde_json::json!({"id": run.id.as_str(), "reason": error.to_string()}),
                    );
                }
                Err(error) => return Err(error.into()),
            }
        }
        let mut answer = serde_json::Map::new();
        answer.insert(action.done().into(), done.into());
        answer.insert("skipped".into(), skipped.into());
        answer.insert("more".into(), more.into());
        Ok(json_response(StatusCode::OK, &answer))
    }
}

/// The listing's filter from `query`, for the runs `action` may act on: it
/// must name at least one filter (acting on every run takes saying so, e.g.
/// `created_until=<now>`), and a status other than the one acted on is an
/// error rather than a silent no-op.
fn bulk_filter(action: BulkAction, query: &Query) -> Result<RunFilter, ApiError> {
    let mut filter = run_filter(query)?;
    if query.get("cursor").is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "cursor does not apply to a bulk action: call it again while `more` is true",
        ));
    }
    let status = action.acts_on();
    if filter.status.is_some_and(|asked| asked != status) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "only {status} runs can be {}; drop status or set it to {status}",
                action.done()
            ),
        ));
    }
    let narrowed = query
        .pairs()
        .any(|(key, _)| !matches!(key, "limit" | "status"));
    if !narrowed {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "name the runs to act on with at least one of module, workflow, parent, id_prefix, created_from, created_until (to take every {status} run, say created_until=<now>)"
            ),
        ));
    }
    filter.status = Some(status);
    if query.get("limit").is_none() {
        filter.limit = 100;
    }
    Ok(filter)
}
