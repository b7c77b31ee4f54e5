//! Schedules, as the writer applies them.

use super::connection::WriteConnection;
use crate::domain::{ScheduleInfo, ScheduleName, ScheduleSpec};
use crate::store::Result;
use crate::store::rows::{SCHEDULE_COLUMNS, schedule_from_row};
use crate::store::statements::{ADVANCE_SCHEDULE, DELETE_SCHEDULE};

pub(super) fn put_schedule(
    conn: &mut WriteConnection,
    name: ScheduleName,
    spec: ScheduleSpec,
    next_tick: Option<i64>,
    now: i64,
) -> Result<ScheduleInfo> {
    // A changed schedule keeps whether it is paused.
    conn.query(
        "INSERT INTO schedules (name, module, workflow, input, cron, timezone, overlap, catch_up_ms, paused, next_tick, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?10)
         ON CONFLICT (name) DO UPDATE SET
             module = excluded.module, workflow = excluded.workflow, input = excluded.input,
             cron = excluded.cron, timezone = excluded.timezone, overlap = excluded.overlap,
             catch_up_ms = excluded.catch_up_ms, next_tick = excluded.next_tick,
             updated_at = excluded.updated_at",
    )
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
    .execute()?;
    select(conn, &name)?.ok_or_else(|| crate::store::rows::corrupt("a stored schedule vanished"))
}

fn select(conn: &mut WriteConnection, name: &ScheduleName) -> Result<Option<ScheduleInfo>> {
    conn.query(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?"
    ))
    .bind(name.as_str())
    .fetch_optional()?
    .map(|row| schedule_from_row(&row))
    .transpose()
}

pub(super) fn set_paused(
    conn: &mut WriteConnection,
    name: ScheduleName,
    paused: bool,
    next_tick: Option<i64>,
    now: i64,
) -> Result<Option<ScheduleInfo>> {
    conn.query(
        "UPDATE schedules SET paused = ?, next_tick = COALESCE(?, next_tick), updated_at = ? WHERE name = ?",
    )
    .bind(paused)
    .bind(next_tick)
    .bind(now)
    .bind(name.as_str())
    .execute()?;
    select(conn, &name)
}

pub(super) fn advance(
    conn: &mut WriteConnection,
    name: ScheduleName,
    from: i64,
    to: Option<i64>,
) -> Result<bool> {
    Ok(conn
        .query(ADVANCE_SCHEDULE)
        .bind(to)
        .bind(name.as_str())
        .bind(from)
        .execute()?
        == 1)
}

pub(super) fn delete(conn: &mut WriteConnection, name: ScheduleName) -> Result<bool> {
    Ok(conn.query(DELETE_SCHEDULE).bind(name.as_str()).execute()? == 1)
}
