//! Parked runs on a shared database: a parked run has no owner, so any host
//! may claim it once it is due. A park and a commit that would wake it are
//! ordered by the wait's advisory lock (migration 0004 says why); the
//! triggers make a parked run due and notify every host.

use super::PgStore;
use super::checkout::Checkout;
use crate::domain::{RunRecord, RunWait, WaitKind, WorkflowId};
use crate::store::rows::{RUN_COLUMNS, awaited_query, run_from_row, run_refusal};
use crate::store::statements::RUN_STATUS_AND_EPOCH;
use crate::store::{Parking, Result};

impl PgStore {
    pub(super) async fn park(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        wait: RunWait,
        now: i64,
    ) -> Result<Parking> {
        let mut conn = Checkout::take(&self.pool).await?;
        let mut tx = conn.begin().await?;
        let fence = fence.map(|e| e as i64);
        // The run's own row first, then the wait's lock: the order a waking
        // commit takes its locks in, so the two cannot deadlock.
        let parked = sqlx::query(
            "UPDATE runs SET owner = NULL, lease_expires_at = NULL, updated_at = $1
             WHERE id = $2 AND status = 'PENDING' AND ($3::BIGINT IS NULL OR epoch = $3)",
        )
        .bind(now)
        .bind(id.as_str())
        .bind(fence)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if parked == 0 {
            let row: Option<(String, i64)> = sqlx::query_as(RUN_STATUS_AND_EPOCH)
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            return Err(
                run_refusal(id, row, fence.map(|e| e as u64)).unwrap_or_else(|| {
                    crate::store::StoreError::Corrupt(format!("run {id} could not be parked"))
                }),
            );
        }
        if let (Some(on_run), Some(query)) = (&wait.on_run, awaited_query(wait.kind, '$')) {
            // Every stream wait of a run shares one lock (migration 0006).
            let lock_key = match wait.kind {
                WaitKind::Stream => "",
                _ => wait.on_key.as_str(),
            };
            sqlx::query("SELECT pg_advisory_xact_lock(wait_lock($1, $2, $3))")
                .bind(wait.kind.as_str())
                .bind(on_run.as_str())
                .bind(lock_key)
                .execute(&mut *tx)
                .await?;
            // A statement after the lock: its snapshot has every commit
            // that took the lock before this park did.
            let happened: i32 = sqlx::query_scalar(&query)
                .bind(on_run.as_str())
                .bind(&wait.on_key)
                .bind(wait.on_offset.unwrap_or(0) as i64)
                .fetch_one(&mut *tx)
                .await?;
            if happened == 1 {
                tx.rollback().await?;
                return Ok(Parking::Happened);
            }
        }
        sqlx::query(
            "INSERT INTO run_waits (run_id, kind, on_run, on_key, on_offset, deadline, wake_at, parked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (run_id) DO UPDATE SET kind = excluded.kind, on_run = excluded.on_run,
                 on_key = excluded.on_key, on_offset = excluded.on_offset, deadline = excluded.deadline,
                 wake_at = excluded.wake_at, parked_at = excluded.parked_at",
        )
        .bind(id.as_str())
        .bind(wait.kind.as_str())
        .bind(wait.on_run.as_ref().map(WorkflowId::as_str))
        .bind(&wait.on_key)
        .bind(wait.on_offset.map(|o| o as i64))
        .bind(wait.deadline)
        .bind(wait.wake_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Parking::Parked)
    }

    pub(super) async fn claim_due(&self, now: i64, limit: u32) -> Result<Vec<RunRecord>> {
        let columns = RUN_COLUMNS
            .split(", ")
            .map(|c| format!("runs.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        // SKIP LOCKED: hosts claiming at once take different runs.
        let rows = sqlx::query(&format!(
            "WITH due AS (
                 SELECT run_id FROM run_waits WHERE wake_at <= $1
                 ORDER BY wake_at LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ), gone AS (
                 DELETE FROM run_waits USING due WHERE run_waits.run_id = due.run_id
                 RETURNING run_waits.run_id
             )
             UPDATE runs SET epoch = epoch + 1, updated_at = $1, owner = $3, lease_expires_at = $4
             FROM gone WHERE runs.id = gone.run_id AND runs.status = 'PENDING'
             RETURNING {columns}"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .bind(&self.executor_id)
        .bind(now.saturating_add(self.lease_ms))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }
}
