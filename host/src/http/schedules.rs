//! `/v1/schedules`: cron schedules of workflows; pausing, resuming,
//! firing one by hand and backfilling a past range.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::ApiError;
use super::respond::{ApiResult, json_response, parse_json, parse_module_name};
use super::router::Api;
use super::runs::parse_time;
use super::views::timestamp;
use crate::domain::{
    DEFAULT_CATCH_UP_MS, Overlap, ScheduleInfo, ScheduleName, ScheduleSpec, parse_schedule_name,
};

impl Api {
    pub(super) async fn list_schedules(&self) -> ApiResult {
        let schedules = self.executor().list_schedules().await?;
        let views: Vec<ScheduleView> = schedules.iter().map(ScheduleView::from).collect();
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "schedules": views }),
        ))
    }

    pub(super) async fn get_schedule(&self, name: &str) -> ApiResult {
        let schedule = self.executor().get_schedule(&schedule_name(name)?).await?;
        Ok(json_response(
            StatusCode::OK,
            &ScheduleView::from(&schedule),
        ))
    }

    pub(super) async fn put_schedule(&self, name: &str, body: &[u8]) -> ApiResult {
        let name = schedule_name(name)?;
        let request: ScheduleBody = parse_json(body)?;
        let existed = self.executor().get_schedule(&name).await.is_ok();
        let overlap = match request.overlap.as_deref() {
            Some(policy) => policy
                .parse::<Overlap>()
                .map_err(|e| ApiError::bad_request("invalid_request", e.0))?,
            None => Overlap::default(),
        };
        let spec = ScheduleSpec {
            module: parse_module_name(&request.module)?,
            workflow: request.workflow,
            input: request
                .input
                .map(|raw| raw.get().to_owned())
                .unwrap_or_else(|| "null".to_owned()),
            cron: request.cron,
            timezone: request.timezone.unwrap_or_else(|| "UTC".to_owned()),
            overlap,
            catch_up_ms: request.catch_up_ms.unwrap_or(DEFAULT_CATCH_UP_MS),
        };
        let schedule = self.executor().put_schedule(&name, spec).await?;
        let status = if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok(json_response(status, &ScheduleView::from(&schedule)))
    }

    pub(super) async fn delete_schedule(&self, name: &str) -> ApiResult {
        let name = schedule_name(name)?;
        self.executor().delete_schedule(&name).await?;
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "deleted": name.as_str() }),
        ))
    }

    pub(super) async fn pause_schedule(&self, name: &str, paused: bool) -> ApiResult {
        let name = schedule_name(name)?;
        let schedule = self.executor().pause_schedule(&name, paused).await?;
        Ok(json_response(
            StatusCode::OK,
            &ScheduleView::from(&schedule),
        ))
    }

    pub(super) async fn trigger_schedule(&self, name: &str) -> ApiResult {
        let name = schedule_name(name)?;
        let id = self.executor().trigger_schedule(&name).await?;
        Ok(json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "id": id.as_str() }),
        ))
    }

    /// `POST /v1/schedules/{name}/backfill`, body `{"from", "to"}`: every
    /// tick in `[from, to)`.
    pub(super) async fn backfill_schedule(&self, name: &str, body: &[u8]) -> ApiResult {
        let name = schedule_name(name)?;
        let range: BackfillBody = parse_json(body)?;
        let from = time_field("from", &range.from)?;
        let until = time_field("to", &range.to)?;
        if until <= from {
            return Err(ApiError::bad_request(
                "invalid_request",
                "to must be after from",
            ));
        }
        let ids = self
            .executor()
            .backfill_schedule(&name, from, until)
            .await?;
        let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        Ok(json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "started": ids }),
        ))
    }
}

fn schedule_name(name: &str) -> Result<ScheduleName, ApiError> {
    parse_schedule_name(name).map_err(|e| ApiError::bad_request("invalid_name", e.0))
}

/// A time given as RFC 3339 text or milliseconds since the epoch.
fn time_field(name: &str, value: &serde_json::Value) -> Result<i64, ApiError> {
    match value {
        serde_json::Value::Number(ms) => ms.as_i64().ok_or_else(|| {
            ApiError::bad_request(
                "invalid_request",
                format!("{name} is not a whole number of ms"),
            )
        }),
        serde_json::Value::String(text) => parse_time(name, text),
        other => Err(ApiError::bad_request(
            "invalid_request",
            format!("{name} must be an RFC 3339 time or ms since the Unix epoch, got {other}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    module: String,
    workflow: String,
    #[serde(default)]
    input: Option<Box<RawValue>>,
    cron: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    overlap: Option<String>,
    #[serde(default)]
    catch_up_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillBody {
    from: serde_json::Value,
    to: serde_json::Value,
}

#[derive(Serialize)]
struct ScheduleView<'a> {
    name: &'a str,
    module: &'a str,
    workflow: &'a str,
    input: Option<Box<RawValue>>,
    cron: &'a str,
    timezone: &'a str,
    overlap: &'static str,
    catch_up_ms: u64,
    paused: bool,
    /// The next tick to fire; null when paused or when none is left.
    next_tick: Option<String>,
    created_at: String,
    updated_at: String,
}

impl<'a> From<&'a ScheduleInfo> for ScheduleView<'a> {
    fn from(schedule: &'a ScheduleInfo) -> Self {
        let spec = &schedule.spec;
        Self {
            name: schedule.name.as_str(),
            module: spec.module.as_str(),
            workflow: &spec.workflow,
            input: RawValue::from_string(spec.input.clone()).ok(),
            cron: &spec.cron,
            timezone: &spec.timezone,
            overlap: spec.overlap.as_str(),
            catch_up_ms: spec.catch_up_ms,
            paused: schedule.paused,
            next_tick: schedule
                .next_tick
                .filter(|_| !schedule.paused)
                .map(timestamp),
            created_at: timestamp(schedule.created_at),
            updated_at: timestamp(schedule.updated_at),
        }
    }
}
