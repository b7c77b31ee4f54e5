//! The journal and the writes that go with it: journal entries and their
//! effects (events, messages sent, messages received), fenced by the run's
//! epoch, a run's end, messages from outside, and forks. Each is one
//! transaction, announced after its commit.

use sqlx::PgConnection;

use super::checkout::Checkout;
use super::{PgStore, select_run};
use crate::domain::{
    Delivery, JournalWrite, NewMessage, RunRecord, SEND_DUPLICATE_OUTCOME, WorkflowId,
};
use crate::store::rows::{StreamAppend, completes_a_wait, corrupt, journal_row, run_refusal};
use crate::store::statements::{
    CONSUME_MESSAGE, FORK_EVENT_HISTORY, FORK_JOURNAL, FORK_STREAM_ENTRIES, INSERT_EVENT_HISTORY,
    INSERT_MESSAGE, RUN_EXISTS, RUN_STATUS_AND_EPOCH, SET_JOURNAL_OUTCOME,
};
use crate::store::{Change, Result, StoreError};

impl PgStore {
    pub(super) async fn write_entries(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        writes: Vec<JournalWrite>,
        now: i64,
    ) -> Result<()> {
        if let [write] = writes.as_slice()
            && super::group_commit::is_single(write)
        {
            let write = writes.into_iter().next().expect("one write");
            return self.write_single(id, fence, write, now).await;
        }
        let started = std::time::Instant::now();
        let written = self.write_transaction(id, fence, writes, now).await;
        self.record(written, started)
    }

    /// `result` of a write of a run begun at `started`, recorded in the
    /// store's health.
    fn record<T>(&self, result: Result<T>, started: std::time::Instant) -> Result<T> {
        match &result {
            Ok(_) => self.health.committed(1, started),
            Err(error @ (StoreError::Database(_) | StoreError::StorageFull(_))) => {
                self.health.failed(error);
            }
            Err(_) => {}
        }
        result
    }

    /// Several journal writes of one run, in one transaction of their own.
    async fn write_transaction(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        writes: Vec<JournalWrite>,
        now: i64,
    ) -> Result<()> {
        let mut conn = Checkout::take(&self.pool).await?;
        let mut tx = conn.begin().await?;
        if let Some(mine) = fence {
            // Hold the run's row for the transaction: a claim (an UPDATE,
            // which skips locked rows) cannot hand the run to another
            // execution between this check and the commit.
            let row: Option<(String, i64)> =
                sqlx::query_as("SELECT status, epoch FROM runs WHERE id = $1 FOR SHARE")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(refusal) = run_refusal(id, row, Some(mine)) {
                return Err(refusal);
            }
        }
        let mut changes = Vec::new();
        for write in writes {
            self.write_journal_in(&mut tx, &mut changes, id, fence, write, now)
                .await?;
        }
        tx.commit().await?;
        self.announce(changes);
        Ok(())
    }

    pub(super) async fn send(&self, message: NewMessage, now: i64) -> Result<Delivery> {
        let mut conn = Checkout::take(&self.pool).await?;
        let mut tx = conn.begin().await?;
        let exists: bool = sqlx::query_scalar(RUN_EXISTS)
            .bind(message.run.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if !exists {
            return Err(StoreError::UnknownRun(message.run.to_string()));
        }
        let mut changes = Vec::new();
        let delivery = deliver(&mut tx, &mut changes, &message, now).await?;
        tx.commit().await?;
        self.announce(changes);
        Ok(delivery)
    }

    pub(super) async fn fork(
        &self,
        source: &WorkflowId,
        new: &WorkflowId,
        from_op: u32,
        now: i64,
    ) -> Result<RunRecord> {
        let mut conn = Checkout::take(&self.pool).await?;
        let mut tx = conn.begin().await?;
        let created = sqlx::query(
            "INSERT INTO runs (id, module, version, workflow, input, status, attempts, created_at, updated_at, epoch, owner, lease_expires_at, forked_from)
             SELECT $1, module, version, workflow, input, 'PENDING', 1, $2, $2, 1, $3, $4, id FROM runs WHERE id = $5
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(new.as_str())
        .bind(now)
        .bind(&self.executor_id)
        .bind(now.saturating_add(self.lease_ms))
        .bind(source.as_str())
        .execute(&mut *tx)
        .await?;
        if created.rows_affected() == 0 {
            let exists = select_run(&mut tx, new.as_str()).await?.is_some();
            return Err(if exists {
                StoreError::RunExists(new.to_string())
            } else {
                StoreError::UnknownRun(source.to_string())
            });
        }
        sqlx::query(FORK_JOURNAL)
            .bind(new.as_str())
            .bind(source.as_str())
            .bind(i64::from(from_op))
            .execute(&mut *tx)
            .await?;
        // The history's trigger rebuilds the copy's current events.
        sqlx::query(FORK_EVENT_HISTORY)
            .bind(new.as_str())
            .bind(source.as_str())
            .bind(i64::from(from_op))
            .execute(&mut *tx)
            .await?;
        sqlx::query(FORK_STREAM_ENTRIES)
            .bind(new.as_str())
            .bind(source.as_str())
            .bind(i64::from(from_op))
            .execute(&mut *tx)
            .await?;

        let run = select_run(&mut tx, new.as_str())
            .await?
            .ok_or_else(|| corrupt(format!("forked run {new} vanished")))?;
        tx.commit().await?;
        Ok(run)
    }

    /// Why a journal write of `op` changed nothing.
    pub(super) async fn refusal(
        conn: &mut PgConnection,
        id: &WorkflowId,
        fence: Option<u64>,
        op: u32,
    ) -> Result<StoreError> {
        let row: Option<(String, i64)> = sqlx::query_as(RUN_STATUS_AND_EPOCH)
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        // The run may be written to: then the operation was there already.
        Ok(
            run_refusal(id, row, fence).unwrap_or(StoreError::DuplicateOperation {
                run: id.to_string(),
                op,
            }),
        )
    }

    async fn write_journal_in(
        &self,
        conn: &mut PgConnection,
        changes: &mut Vec<Change>,
        id: &WorkflowId,
        fence: Option<u64>,
        write: JournalWrite,
        now: i64,
    ) -> Result<()> {
        let op = write.op();
        let row = journal_row(&write);
        let on_conflict = if completes_a_wait(&write) {
            // Complete a started wait, never one that is already complete.
            "ON CONFLICT (run_id, op) DO UPDATE
             SET outcome = excluded.outcome, completed = TRUE, recorded_at = excluded.recorded_at,
                 epoch = excluded.epoch, writer = excluded.writer
             WHERE journal.completed = FALSE AND journal.kind = excluded.kind"
        } else {
            "ON CONFLICT (run_id, op) DO NOTHING"
        };
        let inserted = sqlx::query(&format!(
            "INSERT INTO journal (run_id, op, kind, name, outcome, deadline, completed, recorded_at, error, attempt, started_at, epoch, writer)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
             WHERE EXISTS (SELECT 1 FROM runs WHERE id = $1 AND status = 'PENDING' AND ($12::BIGINT IS NULL OR epoch = $12))
             {on_conflict}"
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
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() != 1 {
            return Err(Self::refusal(conn, id, fence, op).await?);
        }
        // The effect, in the same transaction as its journal entry.
        match write {
            JournalWrite::SetEvent { key, value, .. } => {
                // The history's trigger publishes the value into `events`.
                sqlx::query(INSERT_EVENT_HISTORY)
                    .bind(id.as_str())
                    .bind(i64::from(op))
                    .bind(&key)
                    .bind(&value)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                changes.push(Change::Event {
                    run: id.clone(),
                    key,
                });
            }
            JournalWrite::Send {
                message,
                delivered: true,
                ..
            } => {
                deliver_sent(conn, changes, id, op, &message, now).await?;
            }
            JournalWrite::RecvCompleted {
                received: Some(received),
                ..
            } => {
                let updated = sqlx::query(CONSUME_MESSAGE)
                    .bind(i64::from(op))
                    .bind(received.seq)
                    .bind(id.as_str())
                    .execute(&mut *conn)
                    .await?;
                if updated.rows_affected() != 1 {
                    return Err(corrupt(format!(
                        "message {} of run {id} was received twice",
                        received.seq
                    )));
                }
            }
            JournalWrite::Stream { stream, value, .. } => {
                let append = StreamAppend {
                    id,
                    op,
                    stream: &stream,
                    value: value.as_deref(),
                    now,
                };
                super::streams::append_journaled(conn, changes, append).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Deliver `message` to its run, unless its idempotency key was delivered
/// before. The caller knows the run exists.
async fn deliver(
    conn: &mut PgConnection,
    changes: &mut Vec<Change>,
    message: &NewMessage,
    now: i64,
) -> Result<Delivery> {
    let inserted = sqlx::query(INSERT_MESSAGE)
        .bind(message.run.as_str())
        .bind(&message.topic)
        .bind(&message.message)
        .bind(&message.idempotency_key)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    if inserted.rows_affected() != 1 {
        return Ok(Delivery::Duplicate);
    }
    changes.push(Change::Message {
        run: message.run.clone(),
        topic: message.topic.clone(),
    });
    Ok(Delivery::Delivered)
}

/// Deliver the message of run `id`'s `send` (operation `op`); a duplicate
/// of one delivered before is journaled as such, for the sender and for
/// its replays.
async fn deliver_sent(
    conn: &mut PgConnection,
    changes: &mut Vec<Change>,
    id: &WorkflowId,
    op: u32,
    message: &NewMessage,
    now: i64,
) -> Result<()> {
    if deliver(conn, changes, message, now).await? == Delivery::Duplicate {
        sqlx::query(SET_JOURNAL_OUTCOME)
            .bind(SEND_DUPLICATE_OUTCOME)
            .bind(id.as_str())
            .bind(i64::from(op))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
