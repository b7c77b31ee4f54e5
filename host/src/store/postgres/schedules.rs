//! Schedules on a shared database: plain rows; firing a tick twice is
//! harmless (its run's id is fixed), so no host needs a turn.

use super::PgStore;
use crate::domain::{ScheduleInfo, ScheduleName, ScheduleSpec};
use crate::store::Result;
use crate::store::rows::{SCHEDULE_COLUMNS, schedule_from_row};
use crate::store::statements::{ADVANCE_SCHEDULE, DELETE_SCHEDULE};

impl PgStore {
    pub(super) async fn put_schedule_row(
        &self,
        name: &ScheduleName,
        spec: ScheduleSpec,
        next_tick: Option<i64>,
        now: i64,
    ) -> Result<ScheduleInfo> {
        // A changed schedule keeps whether it is paused.
        let row = sqlx::query(&format!(
            "INSERT INTO schedules (name, module, workflow, input, cron, timezone, overlap, catch_up_ms, paused, next_tick, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9, $10, $10)
             ON CONFLICT (name) DO UPDATE SET
                 module = excluded.module, workflow = excluded.workflow, input = excluded.input,
                 cron = excluded.cron, timezone = excluded.timezone, overlap = excluded.overlap,
                 catch_up_ms = excluded.catch_up_ms, next_tick = excluded.next_tick,
                 updated_at = excluded.updated_at
             RETURNING {SCHEDULE_COLUMNS}"
        ))
        .bind(name.as_str())
        .bind(spec.module.as_str())
        .bind(spec.workflow.as_str())
        .bind(spec.input.as_str())
        .bind(spec.cron.as_str())
        .bind(spec.timezone.as_str())
        .bind(spec.overlap.as_str())
        .bind(i64::try_from(spec.catch_up_ms).unwrap_or(i64::MAX))
        .bind(next_tick)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        schedule_from_row(&row)
    }

    pub(super) async fn select_schedules(
        &self,
        name: Option<&ScheduleName>,
    ) -> Result<Vec<ScheduleInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE ($1::TEXT IS NULL OR name = $1) ORDER BY name"
        ))
        .bind(name.map(ScheduleName::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    pub(super) async fn due_schedule_rows(&self, now: i64) -> Result<Vec<ScheduleInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules
             WHERE NOT paused AND next_tick IS NOT NULL AND next_tick <= $1 ORDER BY next_tick"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    pub(super) async fn set_schedule_paused(
        &self,
        name: &ScheduleName,
        paused: bool,
        next_tick: Option<i64>,
        now: i64,
    ) -> Result<Option<ScheduleInfo>> {
        let row = sqlx::query(&format!(
            "UPDATE schedules SET paused = $1, next_tick = COALESCE($2, next_tick), updated_at = $3
             WHERE name = $4 RETURNING {SCHEDULE_COLUMNS}"
        ))
        .bind(paused)
        .bind(next_tick)
        .bind(now)
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    pub(super) async fn advance_schedule_row(
        &self,
        name: &ScheduleName,
        from: i64,
        to: Option<i64>,
    ) -> Result<bool> {
        Ok(sqlx::query(ADVANCE_SCHEDULE)
            .bind(to)
            .bind(name.as_str())
            .bind(from)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    pub(super) async fn delete_schedule_row(&self, name: &ScheduleName) -> Result<bool> {
        Ok(sqlx::query(DELETE_SCHEDULE)
            .bind(name.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    pub(super) async fn next_schedule_tick_row(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_tick) FROM schedules WHERE NOT paused AND next_tick IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}
