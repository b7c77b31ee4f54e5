//! The embedded default backend: SQLite in WAL mode.
//!
//! About 850 lines: the `Store` trait's implementation is one `impl` block,
//! each method a job handed to the writer (writes.rs, queues.rs,
//! schedules.rs, retention.rs, ...) or a read on the read connections;
//! the trait's size sets the file's. The writes themselves live apart.
//!
//! SQLite admits one writer at a time, and each commit costs an fsync. So all
//! writes go through one writer thread that owns the only write connection
//! and applies whatever writes are queued in one transaction: group commit.
//! Every caller is answered only after the commit that made its write
//! durable. The writer has a rusqlite connection of its own, without sqlx's
//! per-statement thread hop (connection.rs says why). Reads go through sqlx on
//! separate read-only connections (reads.rs), which WAL lets run beside the
//! writer.
//!
//! A write is refused (a duplicate operation, a run that is no longer
//! pending) by its first statement, which then changes nothing, so a refusal
//! needs no savepoint: the batch goes on. Any other database error aborts the
//! whole batch, and every write in it is answered with the error.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::mpsc;

use tokio::sync::Notify;

use super::queueing::Dequeued;
use super::rows::{
    MODULE_COLUMNS, RUN_COLUMNS, StreamAppend, event_and_status_from_row, event_and_status_query,
    event_record_from_row, journal_entry_from_row, list_messages_query, list_streams_query,
    message_record_from_row, modules_from_rows, parked_wait_from_row, routes_from_row,
    run_from_row, stream_info_from_row,
};
use super::rows::{
    QUEUE_DEPTHS, SCHEDULE_COLUMNS, position_keys, queue_depth_from_row, queue_from_row,
    queue_position_query, schedule_from_row,
};
use super::{
    CreateRun, DeleteQueue, NewModuleVersion, Parking, PutModule, RecoveryClaim, Result, Store,
    StoreHealth, WriteHealth,
};
use crate::domain::{
    Delivery, EventRecord, JournalEntry, JournalWrite, Message, MessageRecord, ModuleDigest,
    ModuleInfo, ModuleName, NewMessage, NewRun, ParkedWait, QueueDepth, QueueInfo, QueueName,
    QueueSettings, RunFilter, RunOutcome, RunRecord, RunStatus, RunWait, ScheduleInfo,
    ScheduleName, ScheduleSpec, StreamEntry, StreamInfo, WorkflowId,
};

pub mod backup;
mod connection;
mod messages;
mod queues;
// Asks sqlx's handle whether it is inside a transaction.
#[allow(unsafe_code)]
mod reads;
mod retention;
mod schedules;
mod streams;
mod waits;
mod writer;
mod writes;

#[cfg(test)]
mod history_migration;

use crate::store::statements::{
    EARLIEST_WAKE, EVENT_HISTORY_PAGE, EVENT_VALUE, EVENTS, JOURNAL, JOURNAL_ENTRY, JOURNAL_PAGE,
    MODULE_BLOB, PENDING_CHILDREN, QUEUE, QUEUES, ROUTES, RUN_BY_ID, WAIT_COUNT, WAITS_OF_RUN,
};
use reads::ReadConnections;
use writer::{MAX_BATCH, WriteJob, spawn_writer};
use writes::{
    claim_recovery, create_run, finish_run, fork_run, put_module, select_run, write_journal,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How durable a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync on every commit: a committed write survives power loss. Default.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a crash of the host process, may
    /// lose the last commits on power loss. Faster.
    Normal,
}

impl FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            other => Err(format!(
                "unknown synchronous mode {other:?}; expected \"full\" or \"normal\""
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    pub read_connections: u32,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            synchronous: Synchronous::Full,
            read_connections: 4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    reads: Arc<ReadConnections>,
    writes: mpsc::Sender<Box<dyn WriteJob>>,
    woken: Arc<Notify>,
    health: Arc<WriteHealth>,
}

impl SqliteStore {
    /// Open (creating if needed) the database file and run the migrations.
    pub async fn open(options: SqliteOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::new()
            .filename(&options.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let mut migrating = SqliteConnection::connect_with(&connect).await?;
        MIGRATOR.run(&mut migrating).await?;
        migrating.close().await?;
        let reads = Arc::new(ReadConnections::open(&connect, options.read_connections).await?);
        let (writes, queue) = mpsc::channel(4 * MAX_BATCH);
        let woken = Arc::new(Notify::new());
        let health = Arc::new(WriteHealth::default());
        spawn_writer(
            &options.path,
            options.synchronous,
            queue,
            woken.clone(),
            health.clone(),
        )
        .await?;
        Ok(Self {
            reads,
            writes,
            woken,
            health,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_module(&self, module: NewModuleVersion) -> Result<PutModule> {
        self.health.admit_new_work()?;
        self.write(Box::new(move |conn| put_module(conn, module)))
            .await
    }

    async fn list_modules(&self) -> Result<Vec<ModuleInfo>> {
        let rows = self.reads.read(async |conn| sqlx::query(
            &format!("SELECT {MODULE_COLUMNS} FROM module_versions ORDER BY name, deployed_at DESC, rowid DESC"),
        )
        .fetch_all(conn).await).await?;
        modules_from_rows(&rows)
    }

    async fn get_module(&self, name: &ModuleName) -> Result<Option<ModuleInfo>> {
        let rows = self.reads.read(async |conn| sqlx::query(
            &format!("SELECT {MODULE_COLUMNS} FROM module_versions WHERE name = ? ORDER BY deployed_at DESC, rowid DESC"),
        )
        .bind(name.as_str())
        .fetch_all(conn).await).await?;
        Ok(modules_from_rows(&rows)?.pop())
    }

    async fn list_routes(&self) -> Result<Vec<(ModuleName, String)>> {
        let rows = self
            .reads
            .read(async |conn| sqlx::query(ROUTES).fetch_all(conn).await)
            .await?;
        rows.iter().map(routes_from_row).collect()
    }

    async fn module_bytes(&self, version: &ModuleDigest) -> Result<Option<Vec<u8>>> {
        Ok(self
            .reads
            .read(async |conn| {
                sqlx::query_scalar(MODULE_BLOB)
                    .bind(version.as_str())
                    .fetch_optional(conn)
                    .await
            })
            .await?)
    }

    async fn create_run(&self, run: NewRun) -> Result<CreateRun> {
        self.health.admit_new_work()?;
        if run.admission.is_some() {
            return self
                .write(Box::new(move |conn| queues::create_enqueued(conn, run)))
                .await;
        }
        self.write(Box::new(move |conn| create_run(conn, run)))
            .await
    }

    async fn put_queue(
        &self,
        name: &QueueName,
        settings: QueueSettings,
        now: i64,
    ) -> Result<QueueInfo> {
        let name = name.clone();
        self.write(Box::new(move |conn| {
            queues::put_queue(conn, name, settings, now)
        }))
        .await
    }

    async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        let rows = self
            .reads
            .read(async |conn| sqlx::query(QUEUES).fetch_all(conn).await)
            .await?;
        rows.iter().map(queue_from_row).collect()
    }

    async fn get_queue(&self, name: &QueueName) -> Result<Option<QueueInfo>> {
        let row = self
            .reads
            .read(async |conn| {
                sqlx::query(QUEUE)
                    .bind(name.as_str())
                    .fetch_optional(conn)
                    .await
            })
            .await?;
        row.as_ref().map(queue_from_row).transpose()
    }

    async fn delete_queue(&self, name: &QueueName) -> Result<DeleteQueue> {
        let name = name.clone();
        self.write(Box::new(move |conn| queues::delete_queue(conn, name)))
            .await
    }

    async fn queue_depths(&self) -> Result<Vec<(Option<QueueName>, QueueDepth)>> {
        let rows = self
            .reads
            .read(async |conn| sqlx::query(QUEUE_DEPTHS).fetch_all(conn).await)
            .await?;
        rows.iter().map(queue_depth_from_row).collect()
    }

    async fn dequeue(&self, now: i64, limit: u32) -> Result<Dequeued> {
        self.write(Box::new(move |conn| queues::dequeue(conn, now, limit)))
            .await
    }

    async fn put_schedule(
        &self,
        name: &ScheduleName,
        spec: ScheduleSpec,
        next_tick: Option<i64>,
        now: i64,
    ) -> Result<ScheduleInfo> {
        let name = name.clone();
        self.write(Box::new(move |conn| {
            schedules::put_schedule(conn, name, spec, next_tick, now)
        }))
        .await
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>> {
        let rows = self
            .reads
            .read(async |conn| {
                sqlx::query(&format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"
                ))
                .fetch_all(conn)
                .await
            })
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn get_schedule(&self, name: &ScheduleName) -> Result<Option<ScheduleInfo>> {
        let row = self
            .reads
            .read(async |conn| {
                sqlx::query(&format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?"
                ))
                .bind(name.as_str())
                .fetch_optional(conn)
                .await
            })
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn delete_schedule(&self, name: &ScheduleName) -> Result<bool> {
        let name = name.clone();
        self.write(Box::new(move |conn| schedules::delete(conn, name)))
            .await
    }

    async fn purge_runs(&self, before: i64, roots: u32) -> Result<u64> {
        self.write(Box::new(move |conn| {
            retention::purge_runs(conn, before, roots)
        }))
        .await
    }

    async fn purge_versions(&self) -> Result<Vec<ModuleDigest>> {
        self.write(Box::new(retention::purge_versions)).await
    }

    async fn pause_schedule(
        &self,
        name: &ScheduleName,
        paused: bool,
        next_tick: Option<i64>,
        now: i64,
    ) -> Result<Option<ScheduleInfo>> {
        let name = name.clone();
        self.write(Box::new(move |conn| {
            schedules::set_paused(conn, name, paused, next_tick, now)
        }))
        .await
    }

    async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleInfo>> {
        let rows = self
            .reads
            .read(async |conn| {
                sqlx::query(&format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM schedules
                     WHERE paused = 0 AND next_tick IS NOT NULL AND next_tick <= ? ORDER BY next_tick"
                ))
                .bind(now)
                .fetch_all(conn)
                .await
            })
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn advance_schedule(
        &self,
        name: &ScheduleName,
        from: i64,
        to: Option<i64>,
    ) -> Result<bool> {
        let name = name.clone();
        self.write(Box::new(move |conn| {
            schedules::advance(conn, name, from, to)
        }))
        .await
    }

    async fn next_schedule_tick(&self) -> Result<Option<i64>> {
        Ok(self
            .reads
            .read(async |conn| {
                sqlx::query_scalar(
                    "SELECT MIN(next_tick) FROM schedules WHERE paused = 0 AND next_tick IS NOT NULL",
                )
                .fetch_one(conn)
                .await
            })
            .await?)
    }

    async fn queue_position(&self, run: &RunRecord, by_priority: bool) -> Result<u64> {
        let (queue, partition, priority) = position_keys(run);
        let position: i64 = self
            .reads
            .read(async |conn| {
                sqlx::query_scalar(&queue_position_query('?'))
                    .bind(queue)
                    .bind(partition)
                    .bind(by_priority)
                    .bind(priority)
                    .bind(run.created_at)
                    .bind(run.id.as_str())
                    .fetch_one(conn)
                    .await
            })
            .await?;
        Ok(position as u64 + 1)
    }

    async fn get_run(&self, id: &WorkflowId) -> Result<Option<RunRecord>> {
        let row = self
            .reads
            .read(async |conn| {
                sqlx::query(RUN_BY_ID)
                    .bind(id.as_str())
                    .fetch_optional(conn)
                    .await
            })
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        // Absent filters are NULL and match everything.
        let (after_created, after_id) = match &filter.after {
            Some((created, id)) => (Some(*created), Some(id.as_str())),
            None => (None, None),
        };
        let rows = self
            .reads
            .read(async |conn| {
                sqlx::query(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs
             WHERE (?1 IS NULL OR status = ?1)
               AND (?2 IS NULL OR module = ?2)
               AND (?3 IS NULL OR workflow = ?3)
               AND (?4 IS NULL OR created_at < ?4 OR (created_at = ?4 AND id < ?5))
               AND (?7 IS NULL OR parent = ?7)
               AND (?8 IS NULL OR substr(id, 1, length(?8)) = ?8)
               AND (?9 IS NULL OR created_at >= ?9)
               AND (?10 IS NULL OR created_at < ?10)
               AND (?11 IS NULL OR queue = ?11)
             ORDER BY created_at DESC, id DESC
             LIMIT ?6"
                ))
                .bind(filter.status.map(RunStatus::as_str))
                .bind(filter.module.as_ref().map(ModuleName::as_str))
                .bind(filter.workflow.as_deref())
                .bind(after_created)
                .bind(after_id)
                .bind(i64::from(filter.limit))
                .bind(filter.parent.as_ref().map(WorkflowId::as_str))
                .bind(filter.id_prefix.as_deref())
                .bind(filter.created_from)
                .bind(filter.created_until)
                .bind(filter.queue.as_ref().map(QueueName::as_str))
                .fetch_all(conn)
                .await
            })
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn fork_run(
        &self,
        source: &WorkflowId,
        new: &WorkflowId,
        from_op: u32,
        now: i64,
    ) -> Result<RunRecord> {
        let (source, new) = (source.clone(), new.clone());
        self.write(Box::new(move |conn| {
            fork_run(conn, source, new, from_op, now)
        }))
        .await
    }

    async fn transition_run(
        &self,
        id: &WorkflowId,
        from: RunStatus,
        to: RunStatus,
        now: i64,
    ) -> Result<Option<(bool, RunRecord)>> {
        let id = id.clone();
        self.write(Box::new(move |conn| {
            let moved = conn
                .query(
                    "UPDATE runs SET status = ?, updated_at = ?,
                         attempts = attempts + CASE WHEN ? = 'PENDING' THEN 1 ELSE 0 END,
                         epoch = epoch + CASE WHEN ? = 'PENDING' THEN 1 ELSE 0 END
                     WHERE id = ? AND status = ?",
                )
                .bind(to.as_str())
                .bind(now)
                .bind(to.as_str())
                .bind(to.as_str())
                .bind(id.as_str())
                .bind(from.as_str())
                .execute()?
                == 1;
            Ok(select_run(conn, id.as_str())?.map(|run| (moved, run)))
        }))
        .await
    }

    async fn resume_run(
        &self,
        id: &WorkflowId,
        deadline: Option<i64>,
        now: i64,
    ) -> Result<Option<(bool, RunRecord)>> {
        let id = id.clone();
        self.write(Box::new(move |conn| {
            let moved = conn
                .query(
                    "UPDATE runs SET status = 'PENDING', updated_at = ?, attempts = 1, epoch = epoch + 1,
                         error = NULL, output = NULL, deadline = ?
                     WHERE id = ? AND status = 'CANCELLED'",
                )
                .bind(now)
                .bind(deadline)
                .bind(id.as_str())
                .execute()?
                == 1;
            Ok(select_run(conn, id.as_str())?.map(|run| (moved, run)))
        }))
        .await
    }

    async fn finish_run_fenced(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        outcome: RunOutcome,
        now: i64,
    ) -> Result<()> {
        let id = id.clone();
        self.write(Box::new(move |conn| {
            finish_run(conn, id, fence, outcome, now)
        }))
        .await
    }

    async fn claim_recovery(&self, max_recovery_attempts: u32, now: i64) -> Result<RecoveryClaim> {
        self.write(Box::new(move |conn| {
            claim_recovery(conn, max_recovery_attempts, now)
        }))
        .await
    }

    async fn park_run(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        wait: RunWait,
        now: i64,
    ) -> Result<Parking> {
        let id = id.clone();
        self.write(Box::new(move |conn| {
            waits::park(conn, id, fence, wait, now)
        }))
        .await
    }

    async fn claim_woken(&self, now: i64, limit: u32) -> Result<Vec<RunRecord>> {
        self.write(Box::new(move |conn| waits::claim_woken(conn, now, limit)))
            .await
    }

    async fn next_wake_at(&self) -> Result<Option<i64>> {
        Ok(self
            .reads
            .read(async |conn| sqlx::query_scalar(EARLIEST_WAKE).fetch_one(conn).await)
            .await?)
    }

    async fn parked_wait(&self, id: &WorkflowId) -> Result<Option<ParkedWait>> {
        let row = self
            .reads
            .read(async |conn| {
                sqlx::query(WAITS_OF_RUN)
                    .bind(id.as_str())
                    .fetch_optional(conn)
                    .await
            })
            .await?;
        row.as_ref().map(parked_wait_from_row).transpose()
    }

    async fn parked_count(&self) -> Result<u64> {
        let count: i64 = self
            .reads
            .read(async |conn| sqlx::query_scalar(WAIT_COUNT).fetch_one(conn).await)
            .await?;
        Ok(count as u64)
    }

    fn woken(&self) -> Arc<Notify> {
        self.woken.clone()
    }

    fn health(&self) -> StoreHealth {
        self.health.snapshot()
    }

    async fn journal(&self, id: &WorkflowId) -> Result<Vec<JournalEntry>> {
        let rows = self
            .reads
            .read(async |conn| sqlx::query(JOURNAL).bind(id.as_str()).fetch_all(conn).await)
            .await?;
        rows.iter().map(journal_entry_from_row).collect()
    }

    async fn journal_page(
        &self,
        id: &WorkflowId,
        after_op: Option<u32>,
        limit: u32,
    ) -> Result<Vec<JournalEntry>> {
        let rows = self
            .reads
            .read(async |conn| {
                sqlx::query(JOURNAL_PAGE)
                    .bind(id.as_str())
                    .bind(after_op.map_or(-1, i64::from))
                    .bind(limit)
                    .fetch_all(conn)
                    .await
            })
            .await?;
        rows.iter().map(journal_entry_from_row).collect()
    }

    async fn journal_entry(&self, id: &WorkflowId, op: u32) -> Result<Option<JournalEntry>> {
        let row = self
            .reads
            .read(async |conn| {
                sqlx::query(JOURNAL_ENTRY)
                    .bind(id.as_str())
                    .bind(op)
                    .fetch_optional(conn)
                    .await
            })
            .await?;
        row.as_ref().map(journal_entry_from_row).transpose()
    }

    async fn write_journal_entries(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        writes: Vec<JournalWrite>,
        now: i64,
    ) -> Result<()> {
        let id = id.clone();
        self.write(Box::new(move |conn| {
            for write in writes {
                write_journal(conn, id.clone(), fence, write, now)?;
            }
            Ok(())
        }))
        .await
    }

    async fn send_message(&self, message: NewMessage, now: i64) -> Result<Delivery> {
        self.write(Box::new(move |conn| messages::send(conn, message, now)))
            .await
    }

    async fn next_message(&self, id: &WorkflowId, topic: &str) -> Result<Option<Message>> {
        self.reads
            .read(async |conn| messages::next(conn, id, topic).await)
            .await
    }

    async fn list_messages(
        &self,
        id: &WorkflowId,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>> {
        static QUERY: LazyLock<String> = LazyLock::new(|| list_messages_query('?'));
        let rows = self
            .reads
            .read(async |conn| {
                sqlx::query(&QUERY)
                    .bind(id.as_str())
                    .bind(after_seq.unwrap_or(0))
                    .bind(limit)
                    .fetch_all(conn)
                    .await
            })
            .await?;
        rows.iter().map(message_record_from_row).collect()
    }

    async fn append_stream(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        op: u32,
        stream: &str,
        value: &str,
        now: i64,
    ) -> Result<()> {
        let (id, stream, value) = (id.clone(), stream.to_owned(), value.to_owned());
        self.write(Box::new(move |conn| {
            let append = StreamAppend {
                id: &id,
                op,
                stream: &stream,
                value: Some(&value),
                now,
            };
            streams::append_fenced(conn, append, fence)
        }))
        .await
    }

    async fn read_stream(
        &self,
        id: &WorkflowId,
        stream: &str,
        from: u64,
        limit: u32,
    ) -> Result<(Vec<StreamEntry>, Option<RunStatus>)> {
        self.reads
            .read(async |conn| streams::read(conn, id, stream, from, limit).await)
            .await
    }

    async fn list_streams(&self, id: &WorkflowId) -> Result<Vec<StreamInfo>> {
        static QUERY: LazyLock<String> = LazyLock::new(|| list_streams_query('?'));
        let rows = self
            .reads
            .read(async |conn| sqlx::query(&QUERY).bind(id.as_str()).fetch_all(conn).await)
            .await?;
        rows.iter().map(stream_info_from_row).collect()
    }

    async fn pending_children(&self, parent: &WorkflowId) -> Result<Vec<WorkflowId>> {
        let ids: Vec<String> = self
            .reads
            .read(async |conn| {
                sqlx::query_scalar(PENDING_CHILDREN)
                    .bind(parent.as_str())
                    .fetch_all(conn)
                    .await
            })
            .await?;
        ids.iter()
            .map(|id| WorkflowId::parse(id).map_err(|e| crate::store::rows::corrupt(e.0)))
            .collect()
    }

    async fn pending_message_bytes(&self, id: &WorkflowId) -> Result<u64> {
        let bytes: i64 = self
            .reads
            .read(async |conn| {
                sqlx::query_scalar(
                    "SELECT COALESCE(SUM(length(CAST(message AS BLOB))), 0) FROM messages WHERE run_id = ? AND consumed_op IS NULL",
                )
                .bind(id.as_str())
                .fetch_one(conn)
                .await
            })
            .await?;
        Ok(bytes.max(0) as u64)
    }

    async fn get_event(&self, id: &WorkflowId, key: &str) -> Result<Option<String>> {
        Ok(self
            .reads
            .read(async |conn| {
                sqlx::query_scalar(EVENT_VALUE)
                    .bind(id.as_str())
                    .bind(key)
                    .fetch_optional(conn)
                    .await
            })
            .await?)
    }

    async fn event_and_status(
        &self,
        id: &WorkflowId,
        key: &str,
    ) -> Result<(Option<String>, Option<RunStatus>)> {
        static QUERY: LazyLock<String> = LazyLock::new(|| event_and_status_query('?'));
        let row = self
            .reads
            .read(async |conn| {
                sqlx::query_as(&QUERY)
                    .bind(id.as_str())
                    .bind(key)
                    .fetch_optional(conn)
                    .await
            })
            .await?;
        event_and_status_from_row(row)
    }

    async fn list_events(&self, id: &WorkflowId) -> Result<Vec<(String, String)>> {
        Ok(self
            .reads
            .read(async |conn| {
                sqlx::query_as(EVENTS)
                    .bind(id.as_str())
                    .fetch_all(conn)
                    .await
            })
            .await?)
    }

    async fn event_history(
        &self,
        id: &WorkflowId,
        after_op: Option<u32>,
        limit: u32,
    ) -> Result<Vec<EventRecord>> {
        // The history is keyed (run_id, op): this range is one seek.
        let rows = self
            .reads
            .read(async |conn| {
                sqlx::query(EVENT_HISTORY_PAGE)
                    .bind(id.as_str())
                    .bind(after_op.map_or(-1, i64::from))
                    .bind(limit)
                    .fetch_all(conn)
                    .await
            })
            .await?;
        rows.iter().map(event_record_from_row).collect()
    }
}
