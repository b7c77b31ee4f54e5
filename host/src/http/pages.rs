//! Reads that could be large, served a page at a time with the page bounded
//! by count and by bytes: a run listing (inputs and outputs of up to
//! `--max-value-bytes` each) and a run's journal (`/steps`). Each is read
//! from the store in small chunks, so no request holds more than about
//! [`PAGE_BYTES`] of them in memory.

use hyper::StatusCode;

use super::error::ApiError;
use super::query::Query;
use super::respond::{ApiResult, json_response};
use super::router::Api;
use super::views::{RunView, StepView};
use crate::domain::{JournalEntry, RunFilter, RunRecord};

/// A page stops growing once it holds this many bytes of values (it always
/// holds at least one item).
pub const PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Items read from the store at a time.
const CHUNK: u32 = 16;
/// Most journal entries one page of `/steps` may have.
const MAX_STEPS_LIMIT: u32 = 1000;

fn run_bytes(run: &RunRecord) -> usize {
    run.input.len()
        + run.output.as_deref().map_or(0, str::len)
        + run.error.as_deref().map_or(0, str::len)
}

impl Api {
    /// Runs matching `filter`, newest first: up to `filter.limit`, fewer
    /// when their values pass [`PAGE_BYTES`]; and whether more follow.
    pub(super) async fn runs_page(
        &self,
        mut filter: RunFilter,
    ) -> Result<(Vec<RunRecord>, bool), ApiError> {
        let limit = filter.limit as usize;
        let mut runs: Vec<RunRecord> = Vec::new();
        let mut bytes = 0;
        loop {
            filter.limit = CHUNK.min((limit - runs.len()) as u32 + 1);
            let chunk = self.executor().list_runs(&filter).await?;
            let exhausted = chunk.len() < filter.limit as usize;
            for run in chunk {
                if runs.len() == limit || (bytes >= PAGE_BYTES && !runs.is_empty()) {
                    return Ok((runs, true));
                }
                bytes += run_bytes(&run);
                filter.after = Some((run.created_at, run.id.clone()));
                runs.push(run);
            }
            if exhausted {
                return Ok((runs, false));
            }
        }
    }

    /// `GET /v1/workflows/{id}/steps?after_op=N&limit=M`: the journal from
    /// operation `after_op + 1`, and `next_after_op` when more follow.
    pub(super) async fn list_steps(&self, id: &str, query: &Query) -> ApiResult {
        const ACCEPTED: &str = "after_op, limit";
        let invalid = |message: String| ApiError::bad_request("invalid_query", message);
        let mut after_op: Option<u32> = None;
        let mut limit = MAX_STEPS_LIMIT;
        for (key, value) in query.pairs() {
            match key {
                "after_op" => {
                    after_op = Some(value.parse().map_err(|_| {
                        invalid(format!(
                            "after_op must be an operation number, got {value:?}"
                        ))
                    })?);
                }
                "limit" => {
                    limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_STEPS_LIMIT).contains(n))
                        .ok_or_else(|| {
                            invalid(format!(
                                "limit must be a whole number from 1 to {MAX_STEPS_LIMIT}, got {value:?}"
                            ))
                        })?;
                }
                other => {
                    return Err(invalid(format!(
                        "unknown query parameter {other:?}; accepted: {ACCEPTED}"
                    )));
                }
            }
        }
        let id = self.existing_run(id).await?;
        let mut steps: Vec<JournalEntry> = Vec::new();
        let (mut bytes, mut more) = (0, false);
        let mut cursor = after_op;
        'pages: loop {
            let chunk = self
                .executor()
                .journal_page(&id, cursor, CHUNK.min(limit - steps.len() as u32 + 1))
                .await?;
            let exhausted = (chunk.len() as u32) < CHUNK.min(limit - steps.len() as u32 + 1);
            for entry in chunk {
                if steps.len() as u32 == limit || (bytes >= PAGE_BYTES && !steps.is_empty()) {
                    more = true;
                    break 'pages;
                }
                bytes += entry.stored_bytes() as usize;
                cursor = Some(entry.op);
                steps.push(entry);
            }
            if exhausted {
                break;
            }
        }
        let next_after_op = if more { cursor } else { None };
        let steps: Vec<StepView> = steps.iter().map(StepView::from).collect();
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "steps": steps, "next_after_op": next_after_op }),
        ))
    }

    /// The page of a listing as JSON, with the cursor of the next one.
    pub(super) async fn runs_page_response(
        &self,
        runs: &[RunRecord],
        more: bool,
        encode_cursor: impl Fn(&RunRecord) -> String,
    ) -> ApiResult {
        let next_cursor = if more {
            runs.last().map(encode_cursor)
        } else {
            None
        };
        let mut views: Vec<RunView> = Vec::with_capacity(runs.len());
        for run in runs {
            let mut view = RunView::from(run);
            // Where each waiting run stands in its queue.
            view.position = self.executor().queue_position(run).await?;
            views.push(view);
        }
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({"workflows": views, "next_cursor": next_cursor}),
        ))
    }
}
