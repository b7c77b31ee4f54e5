//! Messages in SQLite: delivery (once per idempotency key) and the next
//! message of a (run, topic). Receiving is a journal write; see
//! `write_journal`.

use sqlx::{Row, SqliteConnection};

use super::connection::WriteConnection;
use crate::domain::{Delivery, Message, NewMessage, WorkflowId};
use crate::store::statements::{CONSUME_MESSAGE, INSERT_MESSAGE, NEXT_MESSAGE, RUN_EXISTS};
use crate::store::{Result, StoreError};

/// Deliver `message` to its run, unless its idempotency key was delivered
/// before. The caller knows the run exists.
pub(super) fn deliver(
    conn: &mut WriteConnection,
    message: &NewMessage,
    now: i64,
) -> Result<Delivery> {
    let inserted = conn
        .query(INSERT_MESSAGE)
        .bind(message.run.as_str())
        .bind(&message.topic)
        .bind(&message.message)
        .bind(&message.idempotency_key)
        .bind(now)
        .execute()?;
    Ok(if inserted == 1 {
        Delivery::Delivered
    } else {
        Delivery::Duplicate
    })
}

/// Deliver a message sent from outside a run (HTTP, a handler): refused
/// with [`StoreError::UnknownRun`], changing nothing, if the run does not
/// exist.
pub(super) fn send(conn: &mut WriteConnection, message: NewMessage, now: i64) -> Result<Delivery> {
    let exists = conn
        .query(RUN_EXISTS)
        .bind(message.run.as_str())
        .fetch_one()?
        .first()
        .as_int()
        == Some(1);
    if !exists {
        return Err(StoreError::UnknownRun(message.run.to_string()));
    }
    deliver(conn, &message, now)
}

/// Mark `received` as taken by operation `op` of `run`.
pub(super) fn consume(
    conn: &mut WriteConnection,
    run: &WorkflowId,
    op: u32,
    received: &Message,
) -> Result<()> {
    let updated = conn
        .query(CONSUME_MESSAGE)
        .bind(op)
        .bind(received.seq)
        .bind(run.as_str())
        .execute()?;
    // Only the run's own execution receives its messages, one call at a
    // time; a message gone from under it means the database was changed
    // behind the host's back.
    if updated != 1 {
        return Err(StoreError::Corrupt(format!(
            "message {} of run {run} was received twice",
            received.seq
        )));
    }
    Ok(())
}

/// The oldest message of `run` on `topic` not yet received.
pub(super) async fn next(
    reads: &mut SqliteConnection,
    run: &WorkflowId,
    topic: &str,
) -> Result<Option<Message>> {
    let row = sqlx::query(NEXT_MESSAGE)
        .bind(run.as_str())
        .bind(topic)
        .fetch_optional(reads)
        .await?;
    row.map(|row| {
        Ok(Message {
            seq: row.try_get("seq")?,
            message: row.try_get("message")?,
        })
    })
    .transpose()
}
