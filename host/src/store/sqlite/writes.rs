//! The writes, as the writer thread applies them inside its batch
//! transaction: modules, runs and their ends, claims, forks, and the
//! journal with each entry's effect.

use std::borrow::Cow;

use super::connection::WriteConnection;
use super::{messages, streams};
use crate::domain::{
    Delivery, JournalWrite, NewRun, RunOutcome, RunRecord, SEND_DUPLICATE_OUTCOME, WorkflowId,
};
use crate::store::rows::{
    Columns, RUN_COLUMNS, StreamAppend, completes_a_wait, corrupt, journal_row,
    module_version_from_row, outcome_columns, run_from_row, run_refusal,
};
use crate::store::statements::{
    FORK_EVENT_HISTORY, FORK_JOURNAL, FORK_STREAM_ENTRIES, INSERT_EVENT_HISTORY,
    INSERT_MODULE_BLOB, INSERT_MODULE_VERSION, MODULE_VERSION, MODULE_VERSION_EXISTS, RUN_BY_ID,
    RUN_EPOCH, RUN_EXISTS, RUN_STATUS_AND_EPOCH, SET_JOURNAL_OUTCOME,
};
use crate::store::{CreateRun, NewModuleVersion, PutModule, RecoveryClaim, Result, StoreError};

pub(super) fn select_run(conn: &mut WriteConnection, id: &str) -> Result<Option<RunRecord>> {
    let row = conn.query(RUN_BY_ID).bind(id).fetch_optional()?;
    row.as_ref().map(run_from_row).transpose()
}

pub(super) fn put_module(conn: &mut WriteConnection, m: NewModuleVersion) -> Result<PutModule> {
    conn.query(INSERT_MODULE_BLOB)
        .bind(m.version.as_str())
        .bind(&m.bytes)
        .execute()?;
    let current: Option<String> = conn
        .query("SELECT version FROM module_versions WHERE name = ? ORDER BY deployed_at DESC, rowid DESC LIMIT 1")
        .bind(m.name.as_str())
        .fetch_optional()?
        .and_then(|row| row.first().clone().into_text());
    let known = conn
        .query(MODULE_VERSION_EXISTS)
        .bind(m.name.as_str())
        .bind(m.version.as_str())
        .fetch_one()?
        .first()
        .as_int()
        == Some(1);
    let settings = serde_json::to_string(&m.settings).map_err(corrupt)?;
    if known {
        // Deployed again: its settings are the latest ones, and an older
        // version becomes the current one.
        let is_current = current.as_deref() == Some(m.version.as_str());
        conn.query(
            "UPDATE module_versions SET settings = ?,
                 deployed_at = CASE WHEN ? THEN deployed_at ELSE ? END
             WHERE name = ? AND version = ?",
        )
        .bind(&settings)
        .bind(is_current)
        .bind(m.now)
        .bind(m.name.as_str())
        .bind(m.version.as_str())
        .execute()?;
    } else {
        conn.query(INSERT_MODULE_VERSION)
            .bind(m.name.as_str())
            .bind(m.version.as_str())
            .bind(m.kind.as_str())
            .bind(serde_json::to_string(&m.workflows).map_err(corrupt)?)
            .bind(m.bytes.len() as i64)
            .bind(m.now)
            .bind(&settings)
            .execute()?;
    }
    // The deployment's routes replace the module's old ones.
    conn.query("INSERT OR REPLACE INTO module_routes (name, manifest) VALUES (?, ?)")
        .bind(m.name.as_str())
        .bind(&m.routes)
        .execute()?;
    let row = conn
        .query(MODULE_VERSION)
        .bind(m.name.as_str())
        .bind(m.version.as_str())
        .fetch_one()?;
    Ok(PutModule {
        created: !known,
        module: module_version_from_row(&row)?,
    })
}

pub(super) fn create_run(conn: &mut WriteConnection, run: NewRun) -> Result<CreateRun> {
    let inserted = conn.query(
        "INSERT INTO runs (id, module, version, workflow, input, status, attempts, created_at, updated_at, deadline, parent, traceparent)
         VALUES (?, ?, ?, ?, ?, 'PENDING', 1, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(run.id.as_str())
    .bind(run.module.as_str())
    .bind(run.version.as_str())
    .bind(&run.workflow)
    .bind(&run.input)
    .bind(run.now)
    .bind(run.now)
    .bind(run.deadline)
    .bind(run.parent.as_ref().map(WorkflowId::as_str))
    .bind(run.traceparent.as_deref())
    .execute()
    ?;
    if inserted == 1 {
        return Ok(CreateRun::Created(run.into_record()));
    }
    let existing = select_run(conn, run.id.as_str())?
        .ok_or_else(|| corrupt(format!("run {} vanished during its creation", run.id)))?;
    Ok(CreateRun::Existing(existing))
}

pub(super) fn finish_run(
    conn: &mut WriteConnection,
    id: WorkflowId,
    fence: Option<u64>,
    outcome: RunOutcome,
    now: i64,
) -> Result<()> {
    let (status, output, error) = outcome_columns(outcome);
    let updated = conn
        .query(
            "UPDATE runs SET status = ?, output = ?, error = ?, updated_at = ?
         WHERE id = ? AND status = 'PENDING' AND (? IS NULL OR epoch = ?)",
        )
        .bind(status.as_str())
        .bind(output)
        .bind(error)
        .bind(now)
        .bind(id.as_str())
        .bind(fence.map(|e| e as i64))
        .bind(fence.map(|e| e as i64))
        .execute()?;
    if updated == 0
        && let Some(mine) = fence
        && let Some(current) = current_epoch(conn, &id)?
        && current != mine
    {
        return Err(StoreError::Fenced {
            run: id.to_string(),
            current,
            mine,
        });
    }
    Ok(())
}

pub(super) fn claim_recovery(
    conn: &mut WriteConnection,
    max_recovery_attempts: u32,
    now: i64,
) -> Result<RecoveryClaim> {
    // Parked runs are not recovered: they hold no instance to lose, and are
    // woken when what they wait for happens.
    conn.query("UPDATE runs SET attempts = attempts + 1, epoch = epoch + 1, updated_at = ? WHERE status = 'PENDING' AND id NOT IN (SELECT run_id FROM run_waits)")
        .bind(now)
        .execute()
        ?;
    // attempts = 1 + recoveries so far, this one included.
    let max_attempts = i64::from(max_recovery_attempts) + 1;
    let exceeded: Vec<String> = conn
        .query(
            "UPDATE runs SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', updated_at = ?,
             error = 'the run was recovered more than ' || ? || ' times without finishing'
         WHERE status = 'PENDING' AND attempts > ? AND id NOT IN (SELECT run_id FROM run_waits)
         RETURNING id",
        )
        .bind(now)
        .bind(i64::from(max_recovery_attempts))
        .bind(max_attempts)
        .fetch_all()?
        .into_iter()
        .filter_map(|row| row.first().clone().into_text())
        .collect();
    let rows = conn
        .query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE status = 'PENDING' AND id NOT IN (SELECT run_id FROM run_waits)
             ORDER BY created_at"
        ))
        .fetch_all()?;
    Ok(RecoveryClaim {
        resume: rows.iter().map(run_from_row).collect::<Result<_>>()?,
        exceeded: exceeded
            .iter()
            .map(|id| WorkflowId::parse(id).map_err(corrupt))
            .collect::<Result<_>>()?,
    })
}

pub(super) fn fork_run(
    conn: &mut WriteConnection,
    source: WorkflowId,
    new: WorkflowId,
    from_op: u32,
    now: i64,
) -> Result<RunRecord> {
    // Refusals come first and change nothing, so the batch goes on.
    let exists = conn
        .query(RUN_EXISTS)
        .bind(new.as_str())
        .fetch_one()?
        .first()
        .as_int()
        == Some(1);
    if exists {
        return Err(StoreError::RunExists(new.to_string()));
    }
    let created = conn.query(
        "INSERT INTO runs (id, module, version, workflow, input, status, attempts, created_at, updated_at, forked_from)
         SELECT ?, module, version, workflow, input, 'PENDING', 1, ?, ?, id FROM runs WHERE id = ?",
    )
    .bind(new.as_str())
    .bind(now)
    .bind(now)
    .bind(source.as_str())
    .execute()
    ?;
    if created == 0 {
        return Err(StoreError::UnknownRun(source.to_string()));
    }
    conn.query(FORK_JOURNAL)
        .bind(new.as_str())
        .bind(source.as_str())
        .bind(from_op)
        .execute()?;
    // The history's trigger rebuilds the copy's current events.
    conn.query(FORK_EVENT_HISTORY)
        .bind(new.as_str())
        .bind(source.as_str())
        .bind(from_op)
        .execute()?;
    conn.query(FORK_STREAM_ENTRIES)
        .bind(new.as_str())
        .bind(source.as_str())
        .bind(from_op)
        .execute()?;
    select_run(conn, new.as_str())?.ok_or_else(|| corrupt(format!("forked run {new} vanished")))
}

/// Why a journal write of `op` for run `id` changed nothing: the run is not
/// pending (or does not exist), or the operation is already journaled.
fn refusal(
    conn: &mut WriteConnection,
    id: &WorkflowId,
    fence: Option<u64>,
    op: u32,
) -> Result<StoreError> {
    let row = conn
        .query(RUN_STATUS_AND_EPOCH)
        .bind(id.as_str())
        .fetch_optional()?
        .map(|row| Ok::<_, StoreError>((row.text("status")?, row.int("epoch")?)))
        .transpose()?;
    // The run may be written to: then the operation was there already.
    Ok(
        run_refusal(id, row, fence).unwrap_or(StoreError::DuplicateOperation {
            run: id.to_string(),
            op,
        }),
    )
}

/// The epoch of run `id`, if it exists.
fn current_epoch(conn: &mut WriteConnection, id: &WorkflowId) -> Result<Option<u64>> {
    let row = conn.query(RUN_EPOCH).bind(id.as_str()).fetch_optional()?;
    Ok(row.and_then(|row| row.first().as_int()).map(|e| e as u64))
}

/// Insert a journal row, only while its run is pending (and, with a fence,
/// in that epoch). On a conflict with an existing row, `upsert` completes a
/// started wait instead.
const INSERT_JOURNAL: &str =
    "INSERT INTO journal (run_id, op, kind, name, outcome, deadline, completed, recorded_at, error, attempt, started_at)
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11
     WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?1 AND status = 'PENDING' AND (?12 IS NULL OR epoch = ?12))";

pub(super) fn write_journal(
    conn: &mut WriteConnection,
    id: WorkflowId,
    fence: Option<u64>,
    write: JournalWrite,
    now: i64,
) -> Result<()> {
    let op = write.op();
    let row = journal_row(&write);
    let statement = if completes_a_wait(&write) {
        // Complete a started wait, never one that is already complete.
        Cow::Owned(format!(
            "{INSERT_JOURNAL}
             ON CONFLICT (run_id, op) DO UPDATE
             SET outcome = excluded.outcome, completed = 1, recorded_at = excluded.recorded_at
             WHERE journal.completed = 0 AND journal.kind = excluded.kind"
        ))
    } else {
        Cow::Borrowed(INSERT_JOURNAL)
    };
    let inserted = conn
        .query(&statement)
        .bind(id.as_str())
        .bind(op)
        .bind(row.kind.as_str())
        .bind(row.name)
        .bind(row.outcome)
        .bind(row.deadline)
        .bind(row.completed)
        .bind(now)
        .bind(row.error)
        .bind(row.attempt)
        .bind(row.started_at)
        .bind(fence.map(|e| e as i64))
        .execute();
    match inserted {
        Ok(1) => {}
        Ok(_) => return Err(refusal(conn, &id, fence, op)?),
        Err(error) if error.is_unique_violation() => {
            return Err(refusal(conn, &id, fence, op)?);
        }
        Err(error) => return Err(error.into()),
    }
    // The effect, in the same transaction as its journal entry.
    match write {
        JournalWrite::SetEvent { key, value, .. } => {
            // The history's trigger publishes the value into `events`.
            conn.query(INSERT_EVENT_HISTORY)
                .bind(id.as_str())
                .bind(op)
                .bind(&key)
                .bind(&value)
                .bind(now)
                .execute()?;
        }
        JournalWrite::Send {
            message,
            delivered: true,
            ..
        } => {
            deliver_sent(conn, &id, op, &message, now)?;
        }
        JournalWrite::RecvCompleted {
            received: Some(received),
            ..
        } => messages::consume(conn, &id, op, &received)?,
        JournalWrite::Stream { stream, value, .. } => {
            let append = StreamAppend {
                id: &id,
                op,
                stream: &stream,
                value: value.as_deref(),
                now,
            };
            streams::append_journaled(conn, append)?;
        }
        _ => {}
    }
    Ok(())
}

/// Deliver the message of run `id`'s `send` (operation `op`); a duplicate
/// of one delivered before is journaled as such, for the sender and for
/// its replays.
fn deliver_sent(
    conn: &mut WriteConnection,
    id: &WorkflowId,
    op: u32,
    message: &crate::domain::NewMessage,
    now: i64,
) -> Result<()> {
    if messages::deliver(conn, message, now)? == Delivery::Duplicate {
        conn.query(SET_JOURNAL_OUTCOME)
            .bind(SEND_DUPLICATE_OUTCOME)
            .bind(id.as_str())
            .bind(op)
            .execute()?;
    }
    Ok(())
}
