//! Parked runs, as the writer applies them: parking a run (unless what it
//! waits for has happened: one writer, so the check and the park cannot
//! miss a commit between them) and handing out the due ones. The triggers
//! of migration 0009 make a parked run due when what it waits for commits.

use super::connection::WriteConnection;
use crate::domain::{RunRecord, RunWait, WorkflowId};
use crate::store::rows::{Columns, RUN_COLUMNS, awaited_query, corrupt, run_from_row, run_refusal};
use crate::store::statements::RUN_STATUS_AND_EPOCH;
use crate::store::{Parking, Result};

pub(super) fn park(
    conn: &mut WriteConnection,
    id: WorkflowId,
    fence: Option<u64>,
    wait: RunWait,
    now: i64,
) -> Result<Parking> {
    if let (Some(on_run), Some(query)) = (&wait.on_run, awaited_query(wait.kind, '?')) {
        let happened = conn
            .query(&query)
            .bind(on_run.as_str())
            .bind(wait.on_key.as_str())
            .bind(wait.on_offset.unwrap_or(0) as i64)
            .fetch_one()?
            .first()
            .as_int();
        if happened == Some(1) {
            return Ok(Parking::Happened);
        }
    }
    let fence = fence.map(|e| e as i64);
    let pending = conn
        .query(
            "UPDATE runs SET updated_at = ?1
             WHERE id = ?2 AND status = 'PENDING' AND (?3 IS NULL OR epoch = ?3)",
        )
        .bind(now)
        .bind(id.as_str())
        .bind(fence)
        .execute()?;
    if pending == 0 {
        let row = conn
            .query(RUN_STATUS_AND_EPOCH)
            .bind(id.as_str())
            .fetch_optional()?
            .map(|row| Ok::<_, crate::store::StoreError>((row.text("status")?, row.int("epoch")?)))
            .transpose()?;
        return Err(run_refusal(&id, row, fence.map(|e| e as u64))
            .unwrap_or_else(|| corrupt(format!("run {id} could not be parked"))));
    }
    conn.query(
        "INSERT OR REPLACE INTO run_waits (run_id, kind, on_run, on_key, on_offset, deadline, wake_at, parked_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id.as_str())
    .bind(wait.kind.as_str())
    .bind(wait.on_run.as_ref().map(WorkflowId::as_str))
    .bind(wait.on_key.as_str())
    .bind(wait.on_offset.map(|o| o as i64))
    .bind(wait.deadline)
    .bind(wait.wake_at)
    .bind(now)
    .execute()?;
    Ok(Parking::Parked)
}

pub(super) fn claim_woken(
    conn: &mut WriteConnection,
    now: i64,
    limit: u32,
) -> Result<Vec<RunRecord>> {
    let due: Vec<String> = conn
        .query(
            "DELETE FROM run_waits WHERE run_id IN
                 (SELECT run_id FROM run_waits WHERE wake_at <= ? ORDER BY wake_at LIMIT ?)
             RETURNING run_id",
        )
        .bind(now)
        .bind(limit)
        .fetch_all()?
        .into_iter()
        .filter_map(|row| row.first().clone().into_text())
        .collect();
    let claim = format!(
        "UPDATE runs SET epoch = epoch + 1, updated_at = ? WHERE id = ? AND status = 'PENDING'
         RETURNING {RUN_COLUMNS}"
    );
    let mut claimed = Vec::with_capacity(due.len());
    for id in due {
        if let Some(row) = conn.query(&claim).bind(now).bind(id).fetch_optional()? {
            claimed.push(run_from_row(&row)?);
        }
    }
    Ok(claimed)
}

/// Whether a parked run is due because a commit woke it (its `wake_at` is
/// 0): asked after each batch, one probe of an index.
pub(super) fn any_woken(conn: &mut WriteConnection) -> bool {
    conn.query("SELECT EXISTS (SELECT 1 FROM run_waits WHERE wake_at = 0)")
        .fetch_one()
        .ok()
        .and_then(|row| row.first().as_int())
        == Some(1)
}
