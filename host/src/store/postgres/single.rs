//! One journal write in one statement: the common case of an execution's
//! write (a `set-event`, a wait's start, a recorded outcome) needs no
//! transaction of its own. The statement takes the run's row `FOR SHARE`
//! (so no claim can hand the run over before it commits, as the general
//! path's transaction does), journals the entry, and appends the event if
//! it is one; in autocommit, one round trip instead of five (BEGIN, the
//! check, the entry, the effect, COMMIT).

use super::PgStore;
use crate::domain::{JournalWrite, WorkflowId};
use crate::store::rows::{completes_a_wait, journal_row};
use crate::store::{Change, Result};

/// Whether `write` can take the one-statement path: its effect, if any,
/// is an event, and it does not complete a wait journaled before.
pub(super) fn is_single(write: &JournalWrite) -> bool {
    match write {
        JournalWrite::SetEvent { .. } => true,
        JournalWrite::Send { .. }
        | JournalWrite::RecvCompleted { .. }
        | JournalWrite::Stream { .. } => false,
        other => !completes_a_wait(other),
    }
}

impl PgStore {
    /// Write `write` (for which [`is_single`] holds) of run `id`.
    pub(super) async fn write_single(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        write: JournalWrite,
        now: i64,
    ) -> Result<()> {
        let op = write.op();
        let row = journal_row(&write);
        let (effect, event) = match &write {
            JournalWrite::SetEvent { key, value, .. } => (
                // The history's trigger publishes the value into `events`.
                "INSERT INTO event_history (run_id, op, key, value, recorded_at)
                 SELECT $1, op, $14, $15, $8 FROM entry RETURNING op",
                Some((key.clone(), value.clone())),
            ),
            _ => ("SELECT op FROM entry", None),
        };
        let (key, value) = event.clone().unzip();
        let written: Option<i64> = sqlx::query_scalar(&format!(
            "WITH run AS (
                 SELECT id FROM runs
                 WHERE id = $1 AND status = 'PENDING' AND ($12::BIGINT IS NULL OR epoch = $12)
                 FOR SHARE
             ), entry AS (
                 INSERT INTO journal (run_id, op, kind, name, outcome, deadline, completed, recorded_at, error, attempt, started_at, epoch, writer)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM run
                 ON CONFLICT (run_id, op) DO NOTHING
                 RETURNING op
             )
             {effect}"
        ))
        .bind(id.as_str())
        .bind(i64::from(op))
        .bind(row.kind.as_str())
        .bind(row.name)
        .bind(row.outcome)
        .bind(row.deadline)
        .bind(row.completed)
        .bind(now)
        .bind(row.error)
        .bind(row.attempt.map(i64::from))
        .bind(row.started_at)
        .bind(fence.map(|e| e as i64))
        .bind(&self.executor_id)
        .bind(key)
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        if written.is_none() {
            let mut conn = self.pool.acquire().await?;
            return Err(Self::refusal(&mut conn, id, fence, op).await?);
        }
        if let Some((key, _)) = event {
            self.announce([Change::Event {
                run: id.clone(),
                key,
            }]);
        }
        Ok(())
    }
}
