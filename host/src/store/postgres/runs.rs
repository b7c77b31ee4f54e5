//! Creating runs, and recording whether the writes of runs succeed.

use super::checkout::Checkout;
use super::{PgStore, select_run};
use crate::domain::{NewRun, WorkflowId};
use crate::store::rows::corrupt;
use crate::store::{CreateRun, Result, StoreError};

impl PgStore {
    /// `result` of a write of a run, recorded in the store's health.
    pub(super) fn record<T>(&self, result: Result<T>) -> Result<T> {
        match &result {
            Ok(_) => self.health.committed(),
            Err(error @ (StoreError::Database(_) | StoreError::StorageFull(_))) => {
                self.health.failed(error);
            }
            Err(_) => {}
        }
        result
    }

    /// Insert a new run (taking its lease), or find the one with its id.
    pub(super) async fn insert_run(&self, run: NewRun) -> Result<CreateRun> {
        let mut conn = Checkout::take(&self.pool).await?;
        // The host that creates a run executes it: it takes the lease.
        let inserted = sqlx::query(
            "INSERT INTO runs (id, module, version, workflow, input, status, attempts, created_at, updated_at, deadline, parent, epoch, owner, lease_expires_at)
             VALUES ($1, $2, $3, $4, $5, 'PENDING', 1, $6, $6, $7, $8, 1, $9, $10)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(run.id.as_str())
        .bind(run.module.as_str())
        .bind(&run.version)
        .bind(&run.workflow)
        .bind(&run.input)
        .bind(run.now)
        .bind(run.deadline)
        .bind(run.parent.as_ref().map(WorkflowId::as_str))
        .bind(&self.executor_id)
        .bind(run.now.saturating_add(self.lease_ms))
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(CreateRun::Created(run.into_record()));
        }
        let existing = select_run(&mut conn, run.id.as_str())
            .await?
            .ok_or_else(|| corrupt(format!("run {} vanished during its creation", run.id)))?;
        Ok(CreateRun::Existing(existing))
    }
}
