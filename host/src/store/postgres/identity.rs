//! A host's executor id, held for its lifetime: two live hosts with one id
//! would renew the same leases and execute the same runs.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::store::{Result, StoreError};

/// How long a starting host waits for its executor id to come free: a host
/// restarted at once after a crash finds the id still held until
/// PostgreSQL notices the old connection is gone.
const EXECUTOR_ID_WAIT: Duration = Duration::from_secs(5);

/// Hold `executor_id` in `schema` for as long as the returned connection
/// lives, through a session advisory lock: two live hosts with one id would
/// both renew the same leases and execute the same runs. PostgreSQL
/// releases the lock when the connection ends, however the host ends.
pub(super) async fn claim_executor_id(
    connect: &PgConnectOptions,
    schema: &str,
    executor_id: &str,
) -> Result<PgConnection> {
    let mut conn = PgConnection::connect_with(connect).await?;
    let deadline = tokio::time::Instant::now() + EXECUTOR_ID_WAIT;
    loop {
        let held: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext('cairn executor ' || $1), hashtext($2))",
        )
        .bind(schema)
        .bind(executor_id)
        .fetch_one(&mut conn)
        .await?;
        if held {
            return Ok(conn);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::ExecutorIdInUse(format!(
                "executor id {executor_id:?} is held by another live host on this database (schema {schema}); give each host its own --executor-id, or none for a fresh one"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
