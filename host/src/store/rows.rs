//! What both backends read from and write to their rows, in one place: the
//! domain records from a row, and the columns of a journal write.

use sqlx::Row;

use super::{Result, StoreError};
use crate::domain::{
    Admission, EventRecord, JournalEntry, JournalWrite, MessageRecord, ModuleDigest, ModuleInfo,
    ModuleName, ModuleVersion, OperationKind, ParkedWait, QueueDepth, QueueInfo, QueueName,
    QueueSettings, RateLimit, RunOutcome, RunRecord, RunStatus, RunWait, ScheduleInfo,
    ScheduleName, ScheduleSpec, StreamEntry, StreamInfo, WaitKind, WorkflowId,
};

/// The typed reads the records need, for the row types of both backends.
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<String>;
    fn maybe_text(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn maybe_int(&self, column: &str) -> Result<Option<i64>>;
    fn flag(&self, column: &str) -> Result<bool>;
}

macro_rules! columns_of {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String> {
                Ok(self.try_get(column)?)
            }
            fn maybe_text(&self, column: &str) -> Result<Option<String>> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> Result<i64> {
                Ok(self.try_get(column)?)
            }
            fn maybe_int(&self, column: &str) -> Result<Option<i64>> {
                Ok(self.try_get(column)?)
            }
            fn flag(&self, column: &str) -> Result<bool> {
                Ok(self.try_get(column)?)
            }
        }
    };
}

columns_of!(sqlx::sqlite::SqliteRow);
columns_of!(sqlx::postgres::PgRow);

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The columns [`run_from_row`] reads. (Each column list is a macro so
/// that `statements.rs` can `concat!` it into a constant statement.)
macro_rules! run_columns {
    () => {
        "id, module, version, workflow, input, status, output, error, attempts, created_at, updated_at, deadline, parent, forked_from, epoch, queue, priority, partition_key, deduplication_id, start_at, dequeued_at, traceparent"
    };
}
pub(super) use run_columns;
pub(super) const RUN_COLUMNS: &str = run_columns!();
/// The columns [`module_version_from_row`] reads.
macro_rules! module_columns {
    () => {
        "name, version, kind, workflows, size, deployed_at, settings"
    };
}
pub(super) use module_columns;
pub(super) const MODULE_COLUMNS: &str = module_columns!();
/// The columns [`journal_entry_from_row`] reads.
macro_rules! journal_columns {
    () => {
        "op, kind, name, outcome, deadline, completed, error, attempt, started_at, recorded_at"
    };
}
pub(super) use journal_columns;

pub(super) fn run_from_row(row: &impl Columns) -> Result<RunRecord> {
    Ok(RunRecord {
        parent: row
            .maybe_text("parent")?
            .map(|p| WorkflowId::parse(&p).map_err(corrupt))
            .transpose()?,
        forked_from: row
            .maybe_text("forked_from")?
            .map(|p| WorkflowId::parse(&p).map_err(corrupt))
            .transpose()?,
        id: WorkflowId::parse(&row.text("id")?).map_err(corrupt)?,
        module: ModuleName::parse(&row.text("module")?).map_err(corrupt)?,
        version: ModuleDigest::parse(&row.text("version")?).map_err(corrupt)?,
        workflow: row.text("workflow")?,
        input: row.text("input")?,
        status: row.text("status")?.parse().map_err(corrupt)?,
        output: row.maybe_text("output")?,
        error: row.maybe_text("error")?,
        attempts: row.int("attempts")? as u32,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        deadline: row.maybe_int("deadline")?,
        epoch: row.int("epoch")? as u64,
        admission: admission_from_row(row)?,
        dequeued_at: row.maybe_int("dequeued_at")?,
        traceparent: row.maybe_text("traceparent")?,
    })
}

/// The columns [`queue_from_row`] reads.
macro_rules! queue_columns {
    () => {
        "name, concurrency, per_host_concurrency, rate_limit, rate_period_ms, priority, partitioned, created_at, updated_at"
    };
}
pub(super) use queue_columns;
pub(super) const QUEUE_COLUMNS: &str = queue_columns!();

pub(super) fn queue_from_row(row: &impl Columns) -> Result<QueueInfo> {
    let limit = |column: &str| -> Result<Option<u32>> {
        row.maybe_int(column)?
            .map(|n| u32::try_from(n).map_err(corrupt))
            .transpose()
    };
    let rate_limit = match (limit("rate_limit")?, row.maybe_int("rate_period_ms")?) {
        (Some(limit), Some(period)) => Some(RateLimit {
            limit,
            period_ms: u64::try_from(period).map_err(corrupt)?,
        }),
        _ => None,
    };
    Ok(QueueInfo {
        name: QueueName::parse(&row.text("name")?).map_err(corrupt)?,
        settings: QueueSettings {
            concurrency: limit("concurrency")?,
            per_host_concurrency: limit("per_host_concurrency")?,
            rate_limit,
            priority: row.flag("priority")?,
            partitioned: row.flag("partitioned")?,
        },
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

/// Each queue's depth (and, under a NULL queue, the runs of none that wait
/// for their start time), for [`queue_depth_from_row`].
pub(super) const QUEUE_DEPTHS: &str = "SELECT queue,
         SUM(CASE WHEN status = 'ENQUEUED' THEN 1 ELSE 0 END) AS enqueued,
         SUM(CASE WHEN status = 'PENDING' THEN 1 ELSE 0 END) AS pending
     FROM runs WHERE status IN ('ENQUEUED', 'PENDING') AND (queue IS NOT NULL OR status = 'ENQUEUED')
     GROUP BY queue ORDER BY queue";

pub(super) fn queue_depth_from_row(row: &impl Columns) -> Result<(Option<QueueName>, QueueDepth)> {
    let queue = row
        .maybe_text("queue")?
        .map(|q| QueueName::parse(&q).map_err(corrupt))
        .transpose()?;
    Ok((
        queue,
        QueueDepth {
            enqueued: row.int("enqueued")? as u64,
            pending: row.int("pending")? as u64,
        },
    ))
}

/// How many `ENQUEUED` runs of a lane leave before a run: binds queue,
/// partition, by-priority, priority, created_at, id.
pub(super) fn queue_position_query(placeholder: char) -> String {
    let p = |n: u8| match placeholder {
        '$' => format!("${n}"),
        _ => format!("?{n}"),
    };
    let same = |column: &str, n: u8| match placeholder {
        '$' => format!("{column} IS NOT DISTINCT FROM {}", p(n)),
        _ => format!("{column} IS {}", p(n)),
    };
    format!(
        "SELECT COUNT(*) FROM runs
         WHERE status = 'ENQUEUED' AND {} AND {}
           AND (({by} AND priority < {prio})
                OR ((NOT {by} OR priority = {prio})
                    AND (created_at < {created} OR (created_at = {created} AND id < {id}))))",
        same("queue", 1),
        same("partition_key", 2),
        by = p(3),
        prio = p(4),
        created = p(5),
        id = p(6),
    )
}

/// The lane and priority of a run, for [`queue_position_query`].
pub(super) fn position_keys(run: &RunRecord) -> (Option<&str>, Option<&str>, i64) {
    let admission = run.admission.as_ref();
    (
        admission
            .and_then(|a| a.queue.as_ref())
            .map(QueueName::as_str),
        admission.and_then(|a| a.partition_key.as_deref()),
        admission.map_or(0, |a| i64::from(a.priority)),
    )
}

/// The columns [`schedule_from_row`] reads.
pub(super) const SCHEDULE_COLUMNS: &str = "name, module, workflow, input, cron, timezone, overlap, catch_up_ms, paused, next_tick, created_at, updated_at";

pub(super) fn schedule_from_row(row: &impl Columns) -> Result<ScheduleInfo> {
    Ok(ScheduleInfo {
        name: ScheduleName::parse(&row.text("name")?).map_err(corrupt)?,
        spec: ScheduleSpec {
            module: ModuleName::parse(&row.text("module")?).map_err(corrupt)?,
            workflow: row.text("workflow")?,
            input: row.text("input")?,
            cron: row.text("cron")?,
            timezone: row.text("timezone")?,
            overlap: row.text("overlap")?.parse().map_err(corrupt)?,
            catch_up_ms: u64::try_from(row.int("catch_up_ms")?).map_err(corrupt)?,
        },
        paused: row.flag("paused")?,
        next_tick: row.maybe_int("next_tick")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

/// A run's admission: `None` for a run admitted at once (no queue, no
/// start time).
fn admission_from_row(row: &impl Columns) -> Result<Option<Admission>> {
    let queue = row
        .maybe_text("queue")?
        .map(|q| QueueName::parse(&q).map_err(corrupt))
        .transpose()?;
    let start_at = row.maybe_int("start_at")?;
    if queue.is_none() && start_at.is_none() {
        return Ok(None);
    }
    Ok(Some(Admission {
        queue,
        priority: i32::try_from(row.int("priority")?).map_err(corrupt)?,
        deduplication_id: row.maybe_text("deduplication_id")?,
        partition_key: row.maybe_text("partition_key")?,
        start_at,
    }))
}

pub(super) fn module_version_from_row(row: &impl Columns) -> Result<ModuleVersion> {
    Ok(ModuleVersion {
        name: ModuleName::parse(&row.text("name")?).map_err(corrupt)?,
        version: ModuleDigest::parse(&row.text("version")?).map_err(corrupt)?,
        kind: row.text("kind")?.parse().map_err(corrupt)?,
        workflows: serde_json::from_str(&row.text("workflows")?).map_err(corrupt)?,
        size: row.int("size")? as u64,
        deployed_at: row.int("deployed_at")?,
        settings: serde_json::from_str(&row.text("settings")?).map_err(corrupt)?,
    })
}

/// Group version rows (ordered by name, then newest first) into modules.
pub(super) fn modules_from_rows(rows: &[impl Columns]) -> Result<Vec<ModuleInfo>> {
    let mut modules: Vec<ModuleInfo> = Vec::new();
    for row in rows {
        let version = module_version_from_row(row)?;
        match modules.last_mut() {
            Some(module) if module.name == version.name => module.versions.push(version),
            _ => modules.push(ModuleInfo {
                name: version.name.clone(),
                versions: vec![version],
            }),
        }
    }
    Ok(modules)
}

pub(super) fn journal_entry_from_row(row: &impl Columns) -> Result<JournalEntry> {
    Ok(JournalEntry {
        op: row.int("op")? as u32,
        kind: row.text("kind")?.parse().map_err(corrupt)?,
        name: row.text("name")?,
        outcome: row.maybe_text("outcome")?,
        deadline: row.maybe_int("deadline")?,
        completed: row.flag("completed")?,
        error: row.maybe_text("error")?,
        attempt: row.maybe_int("attempt")?.map(|n| n as u32),
        started_at: row.maybe_int("started_at")?,
        recorded_at: row.int("recorded_at")?,
    })
}

pub(super) fn event_record_from_row(row: &impl Columns) -> Result<EventRecord> {
    Ok(EventRecord {
        op: row.int("op")? as u32,
        key: row.text("key")?,
        value: row.text("value")?,
        recorded_at: row.int("recorded_at")?,
    })
}

/// `(name, manifest)` of a routes row.
pub(super) fn routes_from_row(row: &impl Columns) -> Result<(ModuleName, String)> {
    Ok((
        ModuleName::parse(&row.text("name")?).map_err(corrupt)?,
        row.text("manifest")?,
    ))
}

/// The `status`, `output` and `error` columns of a run that ended so.
pub(super) fn outcome_columns(outcome: RunOutcome) -> (RunStatus, Option<String>, Option<String>) {
    match outcome {
        RunOutcome::Success { output } => (RunStatus::Success, Some(output), None),
        RunOutcome::Error { message } => (RunStatus::Error, None, Some(message)),
        RunOutcome::Cancelled { message } => (RunStatus::Cancelled, None, Some(message)),
    }
}

/// Why a write for run `id` may not be made, from the run's status and
/// epoch (`None`: there is no such run), or `None` when it may: the run is
/// pending and, with a fence, still in that epoch.
pub(super) fn run_refusal(
    id: &WorkflowId,
    run: Option<(String, i64)>,
    fence: Option<u64>,
) -> Option<StoreError> {
    match run {
        None => Some(StoreError::UnknownRun(id.to_string())),
        Some((_, current)) if fence.is_some_and(|mine| mine != current as u64) => {
            Some(StoreError::Fenced {
                run: id.to_string(),
                current: current as u64,
                mine: fence.unwrap_or_default(),
            })
        }
        Some((status, _)) if status != RunStatus::Pending.as_str() => {
            Some(StoreError::RunNotPending {
                run: id.to_string(),
                status,
            })
        }
        Some(_) => None,
    }
}

/// Whether a journal write completes a wait that was journaled as started.
pub(super) fn completes_a_wait(write: &JournalWrite) -> bool {
    matches!(
        write,
        JournalWrite::GetEventCompleted { .. }
            | JournalWrite::RecvCompleted { .. }
            | JournalWrite::WaitCompleted { .. }
    )
}

/// The columns of a journal write's row.
pub(super) struct JournalRow<'a> {
    pub(super) kind: OperationKind,
    pub(super) name: &'a str,
    pub(super) outcome: Option<String>,
    pub(super) deadline: Option<i64>,
    pub(super) completed: bool,
    pub(super) error: Option<String>,
    pub(super) attempt: Option<u32>,
    pub(super) started_at: Option<i64>,
}

fn row(
    kind: OperationKind,
    name: &str,
    outcome: Option<String>,
    deadline: Option<i64>,
    completed: bool,
) -> JournalRow<'_> {
    JournalRow {
        kind,
        name,
        outcome,
        deadline,
        completed,
        error: None,
        attempt: None,
        started_at: None,
    }
}

pub(super) fn journal_row(write: &JournalWrite) -> JournalRow<'_> {
    match write {
        JournalWrite::SetEvent { key, .. } => row(OperationKind::SetEvent, key, None, None, true),
        JournalWrite::GetEventStarted { name, deadline, .. } => {
            row(OperationKind::GetEvent, name, None, Some(*deadline), false)
        }
        JournalWrite::GetEventCompleted {
            name,
            outcome,
            deadline,
            ..
        } => row(
            OperationKind::GetEvent,
            name,
            outcome.clone(),
            Some(*deadline),
            true,
        ),
        JournalWrite::Send {
            name, delivered, ..
        } => row(
            OperationKind::Send,
            name,
            Some(delivered.to_string()),
            None,
            true,
        ),
        JournalWrite::Sleep { name, deadline, .. } => {
            row(OperationKind::Sleep, name, None, Some(*deadline), true)
        }
        JournalWrite::Recorded {
            kind,
            name,
            outcome,
            ..
        } => row(*kind, name, outcome.clone(), None, true),
        JournalWrite::WaitStarted {
            kind,
            name,
            deadline,
            ..
        } => row(*kind, name, None, Some(*deadline), false),
        JournalWrite::WaitCompleted {
            kind,
            name,
            outcome,
            deadline,
            ..
        } => row(*kind, name, outcome.clone(), Some(*deadline), true),
        JournalWrite::RecvStarted { name, deadline, .. } => {
            row(OperationKind::Recv, name, None, Some(*deadline), false)
        }
        JournalWrite::RecvCompleted {
            name,
            received,
            deadline,
            ..
        } => row(
            OperationKind::Recv,
            name,
            received.as_ref().map(|m| m.message.clone()),
            Some(*deadline),
            true,
        ),
        JournalWrite::Stream {
            stream,
            value: Some(_),
            ..
        } => row(OperationKind::WriteStream, stream, None, None, true),
        JournalWrite::Stream {
            stream,
            value: None,
            ..
        } => row(OperationKind::CloseStream, stream, None, None, true),
        JournalWrite::StepAttempt {
            name,
            attempt,
            started_at,
            output,
            retry_at,
            ..
        } => JournalRow {
            kind: OperationKind::Step,
            name,
            outcome: output.as_ref().ok().cloned(),
            deadline: *retry_at,
            completed: true,
            error: output.as_ref().err().cloned(),
            attempt: Some(*attempt),
            started_at: Some(*started_at),
        },
    }
}

/// The query for [`super::Store::event_and_status`]: one row (value or NULL,
/// status) if the run exists, none if not. `?1`/`$1` is the run, `?2`/`$2`
/// the key; `{p}` is the placeholder sigil.
pub(super) fn event_and_status_query(p: char) -> String {
    format!(
        "SELECT e.value, r.status FROM runs r
         LEFT JOIN events e ON e.run_id = r.id AND e.key = {p}2
         WHERE r.id = {p}1"
    )
}

/// The row of [`event_and_status_query`].
pub(super) fn event_and_status_from_row(
    row: Option<(Option<String>, String)>,
) -> Result<(Option<String>, Option<RunStatus>)> {
    match row {
        None => Ok((None, None)),
        Some((value, status)) => Ok((value, Some(status.parse().map_err(corrupt)?))),
    }
}

/// The columns [`parked_wait_from_row`] reads.
macro_rules! wait_columns {
    () => {
        "kind, on_run, on_key, on_offset, deadline, wake_at, parked_at"
    };
}
pub(super) use wait_columns;

pub(super) fn parked_wait_from_row(row: &impl Columns) -> Result<ParkedWait> {
    Ok(ParkedWait {
        wait: RunWait {
            kind: row.text("kind")?.parse().map_err(corrupt)?,
            on_run: row
                .maybe_text("on_run")?
                .map(|id| WorkflowId::parse(&id).map_err(corrupt))
                .transpose()?,
            on_key: row.text("on_key")?,
            on_offset: row.maybe_int("on_offset")?.map(|o| o.max(0) as u64),
            deadline: row.maybe_int("deadline")?,
            wake_at: row.int("wake_at")?,
        },
        parked_at: row.int("parked_at")?,
    })
}

/// The query telling whether what a wait of `kind` waits for has happened
/// (one row: 1 or 0), with `{p}1` the run it is on, `{p}2` its key and
/// `{p}3` its offset (a stream's; 0 for the others, which ignore it); none
/// for a timer, which only time ends. `{p}` is the placeholder sigil.
pub(super) fn awaited_query(kind: WaitKind, p: char) -> Option<String> {
    let condition = match kind {
        WaitKind::Event => {
            format!("SELECT 1 FROM events WHERE run_id = {p}1 AND key = {p}2 AND {p}3 >= 0")
        }
        WaitKind::Message => format!(
            "SELECT 1 FROM messages WHERE run_id = {p}1 AND topic = {p}2 AND consumed_op IS NULL AND {p}3 >= 0"
        ),
        WaitKind::Child => format!(
            "SELECT 1 FROM runs WHERE id = {p}1 AND status <> 'PENDING' AND {p}2 = '' AND {p}3 >= 0"
        ),
        // A value at the offset, or the end of a run (not a cancelled one).
        WaitKind::Stream => format!(
            "SELECT 1 FROM stream_entries WHERE run_id = {p}1 AND stream = {p}2 AND position >= {p}3
             UNION ALL
             SELECT 1 FROM runs WHERE id = {p}1 AND status NOT IN ('PENDING', 'CANCELLED')"
        ),
        WaitKind::Sleep | WaitKind::Retry => return None,
    };
    Some(format!(
        "SELECT CASE WHEN EXISTS ({condition}) THEN 1 ELSE 0 END AS happened"
    ))
}

/// The statement listing a run's streams (`{p}1`: the run).
pub(super) fn list_streams_query(p: char) -> String {
    format!(
        "SELECT stream,
        CAST(SUM(CASE WHEN value IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS values_count,
        CAST(MAX(CASE WHEN value IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS closed
     FROM stream_entries WHERE run_id = {p}1 GROUP BY stream ORDER BY stream"
    )
}

/// The columns [`stream_entry_from_row`] reads.
macro_rules! stream_entry_columns {
    () => {
        "position, value, recorded_at"
    };
}
pub(super) use stream_entry_columns;

pub(super) fn stream_entry_from_row(row: &impl Columns) -> Result<StreamEntry> {
    Ok(StreamEntry {
        offset: row.int("position")?.max(0) as u64,
        value: row.maybe_text("value")?,
        recorded_at: row.int("recorded_at")?,
    })
}

pub(super) fn stream_info_from_row(row: &impl Columns) -> Result<StreamInfo> {
    Ok(StreamInfo {
        name: row.text("stream")?,
        values: row.int("values_count")?.max(0) as u64,
        closed: row.int("closed")? == 1,
    })
}

/// The statement listing a run's messages (`{p}1`: the run, `{p}2`: after
/// this seq, `{p}3`: how many), with the time of the `recv` that took each.
pub(super) fn list_messages_query(p: char) -> String {
    format!(
        "SELECT m.seq, m.topic, m.message, m.idempotency_key, m.sent_at, m.consumed_op, j.recorded_at AS received_at
     FROM messages m LEFT JOIN journal j ON j.run_id = m.run_id AND j.op = m.consumed_op
     WHERE m.run_id = {p}1 AND m.seq > {p}2 ORDER BY m.seq LIMIT {p}3"
    )
}

pub(super) fn message_record_from_row(row: &impl Columns) -> Result<MessageRecord> {
    Ok(MessageRecord {
        seq: row.int("seq")?,
        topic: row.text("topic")?,
        message: row.text("message")?,
        idempotency_key: row.maybe_text("idempotency_key")?,
        sent_at: row.int("sent_at")?,
        received_by_op: row.maybe_int("consumed_op")?.map(|op| op as u32),
        received_at: row.maybe_int("received_at")?,
    })
}

/// One append to a run's stream, as both backends write it.
#[derive(Debug, Clone, Copy)]
pub(super) struct StreamAppend<'a> {
    pub id: &'a WorkflowId,
    /// The operation that wrote it (a step's, from inside a step).
    pub op: u32,
    pub stream: &'a str,
    /// `None`: the entry that closes the stream.
    pub value: Option<&'a str>,
    pub now: i64,
}
