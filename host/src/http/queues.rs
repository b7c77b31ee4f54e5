//! `/v1/queues`: creating, changing, reading and deleting queues, each
//! with how many runs wait in it and how many have left it and not ended.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::respond::{ApiResult, json_response, parse_json};
use super::router::Api;
use super::views::timestamp;
use crate::domain::{QueueName, QueueSettings, RateLimit};
use crate::executor::QueueView;

impl Api {
    pub(super) async fn list_queues(&self) -> ApiResult {
        let queues = self.executor().list_queues().await?;
        let views: Vec<QueueBody> = queues.iter().map(QueueBody::from).collect();
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "queues": views }),
        ))
    }

    pub(super) async fn get_queue(&self, name: &str) -> ApiResult {
        let queue = self.executor().get_queue(&parse_queue_name(name)?).await?;
        Ok(json_response(StatusCode::OK, &QueueBody::from(&queue)))
    }

    /// `PUT /v1/queues/{name}`: the whole of its settings (a field left out
    /// is no limit, or off).
    pub(super) async fn put_queue(&self, name: &str, body: &[u8]) -> ApiResult {
        let name = parse_queue_name(name)?;
        let settings: SettingsBody = parse_json(body)?;
        let existed = self.executor().get_queue(&name).await.is_ok();
        let queue = self
            .executor()
            .put_queue(&name, settings.into_settings())
            .await?;
        let status = if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok(json_response(status, &QueueBody::from(&queue)))
    }

    pub(super) async fn delete_queue(&self, name: &str) -> ApiResult {
        let name = parse_queue_name(name)?;
        self.executor().delete_queue(&name).await?;
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "deleted": name.as_str() }),
        ))
    }
}

fn parse_queue_name(name: &str) -> Result<QueueName, ApiError> {
    QueueName::parse(name).map_err(|e| ApiError::bad_request("invalid_name", e.0))
}

/// A queue's settings as the API reads and writes them.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    #[serde(default)]
    concurrency: Option<u32>,
    #[serde(default)]
    per_host_concurrency: Option<u32>,
    #[serde(default)]
    rate_limit: Option<RateBody>,
    #[serde(default)]
    priority: bool,
    #[serde(default)]
    partitioned: bool,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RateBody {
    limit: u32,
    period_ms: u64,
}

impl SettingsBody {
    fn into_settings(self) -> QueueSettings {
        QueueSettings {
            concurrency: self.concurrency,
            per_host_concurrency: self.per_host_concurrency,
            rate_limit: self.rate_limit.map(|r| RateLimit {
                limit: r.limit,
                period_ms: r.period_ms,
            }),
            priority: self.priority,
            partitioned: self.partitioned,
        }
    }
}

#[derive(Serialize)]
struct QueueBody {
    name: String,
    #[serde(flatten)]
    settings: SettingsBody,
    /// Runs waiting to leave the queue.
    enqueued: u64,
    /// Runs that left it and have not ended.
    pending: u64,
    created_at: String,
    updated_at: String,
}

impl From<&QueueView> for QueueBody {
    fn from(queue: &QueueView) -> Self {
        let s = queue.info.settings;
        Self {
            name: queue.info.name.to_string(),
            settings: SettingsBody {
                concurrency: s.concurrency,
                per_host_concurrency: s.per_host_concurrency,
                rate_limit: s.rate_limit.map(|r| RateBody {
                    limit: r.limit,
                    period_ms: r.period_ms,
                }),
                priority: s.priority,
                partitioned: s.partitioned,
            },
            enqueued: queue.depth.enqueued,
            pending: queue.depth.pending,
            created_at: timestamp(queue.info.created_at),
            updated_at: timestamp(queue.info.updated_at),
        }
    }
}
