//! Leases: the host that creates or claims a run holds it until its lease
//! expires, renews the leases of the runs it executes, and claims runs
//! whose lease ran out (their host died, or stalled past it). Every claim
//! increments the run's epoch, which fences the writes of whoever held it
//! before.

use std::sync::atomic::Ordering;

use super::PgStore;
use super::checkout::Checkout;
use crate::domain::{RunRecord, WorkflowId};
use crate::store::rows::{RUN_COLUMNS, corrupt, run_from_row};
use crate::store::{Change, RecoveryClaim, Result};

/// Most runs claimed at once.
const CLAIM_BATCH: i64 = 1000;

impl PgStore {
    pub(super) async fn claim(
        &self,
        max_recovery_attempts: u32,
        now: i64,
    ) -> Result<RecoveryClaim> {
        let mut conn = Checkout::take(&self.lease_pool).await?;
        let mut tx = conn.begin().await?;
        // The first claim also takes this executor's own runs: a host
        // restarted under the same executor id executes none of them yet,
        // so it recovers them at once instead of waiting out their leases.
        let first = !self.claimed_once.swap(true, Ordering::SeqCst);
        // Runs nobody holds: their host died (or lost touch) and its lease
        // ran out. SKIP LOCKED: hosts claiming at once take different runs.
        let rows = sqlx::query(&format!(
            "WITH claimable AS (
                 SELECT id FROM runs
                 WHERE status = 'PENDING'
                   AND (lease_expires_at IS NULL OR lease_expires_at <= $1 OR ($5 AND owner = $3))
                   -- Parked runs hold no lease on purpose; they are woken.
                   AND NOT EXISTS (SELECT 1 FROM run_waits w WHERE w.run_id = runs.id)
                 ORDER BY created_at
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE runs SET attempts = attempts + 1, epoch = epoch + 1, updated_at = $1,
                 owner = $3, lease_expires_at = $4
             FROM claimable WHERE runs.id = claimable.id
             RETURNING {}",
            RUN_COLUMNS
                .split(", ")
                .map(|c| format!("runs.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(now)
        .bind(CLAIM_BATCH)
        .bind(&self.executor_id)
        .bind(now.saturating_add(self.lease_ms))
        .bind(first)
        .fetch_all(&mut *tx)
        .await?;
        let claimed = rows.iter().map(run_from_row).collect::<Result<Vec<_>>>()?;
        // attempts = 1 + recoveries so far, this one included.
        let max_attempts = max_recovery_attempts + 1;
        let (exceeded, resume): (Vec<RunRecord>, Vec<RunRecord>) = claimed
            .into_iter()
            .partition(|run| run.attempts > max_attempts);
        let exceeded: Vec<WorkflowId> = exceeded.into_iter().map(|run| run.id).collect();
        if !exceeded.is_empty() {
            let ids: Vec<&str> = exceeded.iter().map(WorkflowId::as_str).collect();
            sqlx::query(
                "UPDATE runs SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', updated_at = $1,
                     error = 'the run was recovered more than ' || $2 || ' times without finishing',
                     owner = NULL, lease_expires_at = NULL
                 WHERE id = ANY($3)",
            )
            .bind(now)
            .bind(i64::from(max_recovery_attempts))
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.announce(exceeded.iter().cloned().map(Change::Finished));
        Ok(RecoveryClaim { resume, exceeded })
    }

    pub(super) async fn renew(&self, running: &[WorkflowId], now: i64) -> Result<Vec<WorkflowId>> {
        let ids: Vec<&str> = running.iter().map(WorkflowId::as_str).collect();
        // The rows are locked in the order of their ids, as every statement
        // that locks several runs does (see `group_commit.rs`): two such
        // statements never wait on each other in a cycle.
        let renewed: Vec<String> = sqlx::query_scalar(
            "WITH mine AS (
                 SELECT id FROM runs
                 WHERE owner = $2 AND status = 'PENDING' AND id = ANY($3)
                 ORDER BY id
                 FOR NO KEY UPDATE
             )
             UPDATE runs SET lease_expires_at = $1
             FROM mine WHERE runs.id = mine.id
             RETURNING runs.id",
        )
        .bind(now.saturating_add(self.lease_ms))
        .bind(&self.executor_id)
        .bind(&ids)
        .fetch_all(&self.lease_pool)
        .await?;
        renewed
            .iter()
            .map(|id| WorkflowId::parse(id).map_err(corrupt))
            .collect()
    }
}
