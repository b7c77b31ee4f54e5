//! Streams in SQLite: appends (journaled with the workflow's call, or
//! fenced on their own from inside a step), reads from an offset, and a
//! run's list of streams.

use sqlx::SqliteConnection;

use super::connection::WriteConnection;
use crate::domain::{RunStatus, StreamEntry, WorkflowId};
use crate::store::rows::{Columns, StreamAppend, corrupt, run_refusal, stream_entry_from_row};
use crate::store::statements::{RUN_STATUS, RUN_STATUS_AND_EPOCH, STREAM_ENTRIES};
use crate::store::{Result, StoreError};

/// Write `append` at its stream's next position when `writable` (SQL on
/// `?1`, the run, and `?6`, the fence) holds; how many rows it wrote.
fn insert(
    conn: &mut WriteConnection,
    append: StreamAppend<'_>,
    fence: Option<u64>,
    writable: &str,
) -> Result<u64> {
    Ok(conn
        .query(&format!(
            "INSERT INTO stream_entries (run_id, stream, position, value, op, recorded_at)
             SELECT ?1, ?2, COALESCE((SELECT MAX(position) + 1 FROM stream_entries WHERE run_id = ?1 AND stream = ?2), 0), ?3, ?4, ?5
             WHERE {writable}"
        ))
        .bind(append.id.as_str())
        .bind(append.stream)
        .bind(append.value)
        .bind(append.op)
        .bind(append.now)
        .bind(fence.map(|e| e as i64))
        .execute()?)
}

/// The append of a journaled `write-stream` or `close-stream`: its journal
/// entry, written just before in the same transaction, checked the run.
pub(super) fn append_journaled(conn: &mut WriteConnection, append: StreamAppend<'_>) -> Result<()> {
    insert(conn, append, None, "?6 IS NULL")?;
    Ok(())
}

/// An append from inside a step: only while the run is `PENDING` and, with
/// `fence`, in that epoch.
pub(super) fn append_fenced(
    conn: &mut WriteConnection,
    append: StreamAppend<'_>,
    fence: Option<u64>,
) -> Result<()> {
    let (id, stream) = (append.id, append.stream);
    let writable = "EXISTS (SELECT 1 FROM runs WHERE id = ?1 AND status = 'PENDING' AND (?6 IS NULL OR epoch = ?6))";
    if insert(conn, append, fence, writable)? == 1 {
        return Ok(());
    }
    let row = conn
        .query(RUN_STATUS_AND_EPOCH)
        .bind(id.as_str())
        .fetch_optional()?
        .map(|row| Ok::<_, StoreError>((row.text("status")?, row.int("epoch")?)))
        .transpose()?;
    Err(run_refusal(id, row, fence)
        .unwrap_or_else(|| corrupt(format!("stream {stream:?} of run {id} refused an append"))))
}

/// The status of run `id` (read first: an ended run's entries are all
/// there by then) and up to `limit` entries of `stream` from `from`.
pub(super) async fn read(
    conn: &mut SqliteConnection,
    id: &WorkflowId,
    stream: &str,
    from: u64,
    limit: u32,
) -> Result<(Vec<StreamEntry>, Option<RunStatus>)> {
    let status: Option<String> = sqlx::query_scalar(RUN_STATUS)
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let status = status.map(|s| s.parse().map_err(corrupt)).transpose()?;
    let rows = sqlx::query(STREAM_ENTRIES)
        .bind(id.as_str())
        .bind(stream)
        .bind(i64::try_from(from).unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    let entries = rows
        .iter()
        .map(stream_entry_from_row)
        .collect::<Result<_>>()?;
    Ok((entries, status))
}
