//! PostgreSQL: for several hosts on one database.
//!
//! About 700 lines: the `Store` trait's implementation is one `impl` block
//! that forwards each method to the module of its concern (journal.rs,
//! leases.rs, queues.rs, schedules.rs, retention.rs, ...) or runs a one-line
//! read; what is left here is the connection set-up and those reads.
//!
//! Everything lives in the schema `cairn` (migrations included), so Cairn can
//! share a database with other applications. The hot writes (a run's
//! creation, a single journal write, a run's end) are group-committed
//! (`group_commit.rs`, on a connection and a thread of the writer's own);
//! every other write is one transaction on a pooled
//! connection (`checkout.rs` says why a connection is sometimes closed
//! instead of given back). The parts: `journal.rs` (journal writes with
//! more effects, messages, forks), `leases.rs` (renewing and claiming runs,
//! epochs), `notifications.rs` (announcing committed changes to every
//! host), `modules.rs` (deployments), `streams.rs`, `waits.rs`. The `Store`
//! implementation and the reads are here.
//!
//! Lease times are each host's wall clock: hosts' clocks must agree to well
//! within a lease (NTP does).

mod checkout;
mod group_commit;
mod identity;
mod journal;
mod leases;
mod modules;
mod notifications;
mod queues;
mod retention;
mod schedules;
mod streams;
mod waits;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio::sync::{Notify, mpsc};

use super::queueing::Dequeued;
use super::rows::{
    MODULE_COLUMNS, RUN_COLUMNS, event_and_status_from_row, event_and_status_query,
    event_record_from_row, journal_entry_from_row, modules_from_rows, parked_wait_from_row,
    routes_from_row, run_from_row,
};
use super::rows::{
    QUEUE_DEPTHS, position_keys, queue_depth_from_row, queue_from_row, queue_position_query,
};
use super::{
    Change, CreateRun, DeleteQueue, NewModuleVersion, Parking, PutModule, RecoveryClaim, Result,
    Store, StoreError, StoreHealth, WriteHealth,
};
use crate::domain::{
    Delivery, EventRecord, JournalEntry, JournalWrite, Message, MessageRecord, ModuleDigest,
    ModuleInfo, ModuleName, NewMessage, NewRun, ParkedWait, QueueDepth, QueueInfo, QueueName,
    QueueSettings, RunFilter, RunOutcome, RunRecord, RunStatus, RunWait, ScheduleInfo,
    ScheduleName, ScheduleSpec, StreamEntry, StreamInfo, WorkflowId,
};
use crate::store::statements::{
    EARLIEST_WAKE, EVENT_HISTORY_PAGE, EVENT_VALUE, EVENTS, JOURNAL, JOURNAL_ENTRY, JOURNAL_PAGE,
    MODULE_BLOB, PENDING_CHILDREN, QUEUE, QUEUES, ROUTES, RUN_BY_ID, WAIT_COUNT, WAITS_OF_RUN,
};
use checkout::Checkout;
use identity::claim_executor_id;
use notifications::start_announcer;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// The schema Cairn's tables live in, and the name of the channel its
    /// changes are announced on: `cairn` unless several Cairn deployments
    /// share a database.
    pub schema: String,
    /// This host's executor id: the owner of the runs it executes.
    pub executor_id: String,
    /// How long a run's lease lasts without renewal.
    pub lease: Duration,
    pub max_connections: u32,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "cairn".into(),
            executor_id: uuid::Uuid::now_v7().to_string(),
            lease: Duration::from_secs(10),
            max_connections: 10,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Connections of their own for renewing and claiming leases, so that a
    /// busy main pool cannot delay a renewal past the lease.
    lease_pool: PgPool,
    /// The schema, and the channel of change notifications.
    schema: String,
    executor_id: String,
    lease_ms: i64,
    /// Changes to announce, committed.
    announcer: mpsc::UnboundedSender<Change>,
    /// Whether `claim_recovery` ran since the store was opened.
    claimed_once: Arc<AtomicBool>,
    /// Notified when a trigger announces that a parked run is due.
    woken: Arc<Notify>,
    /// Whether the writes of runs (starts, journal writes, ends) succeed.
    health: Arc<WriteHealth>,
    /// The group-commit writer's queue: runs' creations, single journal
    /// writes and ends.
    writer: mpsc::Sender<group_commit::Job>,
    /// The connection that holds this host's executor id (see
    /// [`claim_executor_id`]); kept open, never used.
    _identity: Arc<tokio::sync::Mutex<PgConnection>>,
}

impl PgStore {
    /// Connect, create the schema if needed, and migrate it.
    pub async fn open(options: PgOptions) -> Result<Self> {
        let schema = options.schema;
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(StoreError::Corrupt(format!(
                "schema {schema:?} is not a plain name (a-z, 0-9, _)"
            )));
        }
        let connect: PgConnectOptions = options.url.parse()?;
        // The schema first, on a connection of its own: the migrations'
        // bookkeeping table goes into it.
        let mut conn = PgConnection::connect_with(&connect).await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let connect = connect.options([("search_path", schema.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect.clone())
            .await?;
        // sqlx takes an advisory lock: hosts starting together migrate once.
        MIGRATOR.run(&pool).await?;
        let lease_pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout((options.lease / 3).max(Duration::from_millis(100)))
            .connect_with(connect.clone())
            .await?;
        let identity = claim_executor_id(&connect, &schema, &options.executor_id).await?;
        let announcer = start_announcer(pool.clone(), schema.clone(), options.executor_id.clone());
        let health = Arc::new(WriteHealth::default());
        let lease_ms = i64::try_from(options.lease.as_millis()).unwrap_or(i64::MAX);
        // The writer opens a connection of its own, on which sequential
        // scans are refused. Its statement's plan is made once per
        // connection (sqlx prepares it), typically while the tables are
        // still small; with sequential scans allowed, that plan went on
        // scanning all of `runs` for every batch once it had grown: 1.8 of
        // a batch's 2.1 ms at 16 clients, 10 s into a benchmark.
        let writer = group_commit::spawn(group_commit::Writer {
            // Named, so an operator can tell it in `pg_stat_activity`.
            connect: connect
                .clone()
                .options([("enable_seqscan", "off")])
                .application_name(&format!("cairn writer {schema} {}", options.executor_id)),
            executor_id: options.executor_id.clone(),
            lease_ms,
            channel: schema.clone(),
            health: health.clone(),
        })?;
        Ok(Self {
            _identity: Arc::new(tokio::sync::Mutex::new(identity)),
            announcer,
            pool,
            lease_pool,
            schema,
            executor_id: options.executor_id,
            lease_ms,
            claimed_once: Arc::new(AtomicBool::new(false)),
            health,
            woken: Arc::new(Notify::new()),
            writer,
        })
    }

    pub fn executor_id(&self) -> &str {
        &self.executor_id
    }
}

async fn select_run(conn: &mut PgConnection, id: &str) -> Result<Option<RunRecord>> {
    let row = sqlx::query(RUN_BY_ID).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(run_from_row).transpose()
}

#[async_trait]
impl Store for PgStore {
    async fn put_module(&self, module: NewModuleVersion) -> Result<PutModule> {
        self.health.admit_new_work()?;
        PgStore::put_module(self, module).await
    }

    async fn list_modules(&self) -> Result<Vec<ModuleInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {MODULE_COLUMNS} FROM module_versions ORDER BY name, deployed_at DESC, seq DESC"
        ))
        .fetch_all(&self.pool)
        .await?;
        modules_from_rows(&rows)
    }

    async fn get_module(&self, name: &ModuleName) -> Result<Option<ModuleInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {MODULE_COLUMNS} FROM module_versions WHERE name = $1 ORDER BY deployed_at DESC, seq DESC"
        ))
        .bind(name.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(modules_from_rows(&rows)?.pop())
    }

    async fn module_bytes(&self, version: &ModuleDigest) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(MODULE_BLOB)
            .bind(version.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn list_routes(&self) -> Result<Vec<(ModuleName, String)>> {
        let rows = sqlx::query(ROUTES).fetch_all(&self.pool).await?;
        rows.iter().map(routes_from_row).collect()
    }

    async fn create_run(&self, run: NewRun) -> Result<CreateRun> {
        self.health.admit_new_work()?;
        if run.admission.is_some() {
            return self.insert_enqueued(run).await;
        }
        // The group-commit writer records its own health.
        self.insert_run(run).await
    }

    async fn put_queue(
        &self,
        name: &QueueName,
        settings: QueueSettings,
        now: i64,
    ) -> Result<QueueInfo> {
        self.put_queue_row(name, settings, now).await
    }

    async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        let rows = sqlx::query(QUEUES).fetch_all(&self.pool).await?;
        rows.iter().map(queue_from_row).collect()
    }

    async fn get_queue(&self, name: &QueueName) -> Result<Option<QueueInfo>> {
        let row = sqlx::query(QUEUE)
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(queue_from_row).transpose()
    }

    async fn delete_queue(&self, name: &QueueName) -> Result<DeleteQueue> {
        self.delete_queue_row(name).await
    }

    async fn queue_depths(&self) -> Result<Vec<(Option<QueueName>, QueueDepth)>> {
        let rows = sqlx::query(QUEUE_DEPTHS).fetch_all(&self.pool).await?;
        rows.iter().map(queue_depth_from_row).collect()
    }

    async fn dequeue(&self, now: i64, limit: u32) -> Result<Dequeued> {
        self.dequeue_runs(now, limit).await
    }

    async fn put_schedule(
        &self,
        name: &ScheduleName,
        spec: ScheduleSpec,
        next_tick: Option<i64>,
        now: i64,
    ) -> Result<ScheduleInfo> {
        self.put_schedule_row(name, spec, next_tick, now).await
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>> {
        self.select_schedules(None).await
    }

    async fn get_schedule(&self, name: &ScheduleName) -> Result<Option<ScheduleInfo>> {
        Ok(self.select_schedules(Some(name)).await?.pop())
    }

    async fn delete_schedule(&self, name: &ScheduleName) -> Result<bool> {
        self.delete_schedule_row(name).await
    }

    async fn purge_runs(&self, before: i64, roots: u32) -> Result<u64> {
        self.purge_run_batch(before, roots).await
    }

    async fn purge_versions(&self) -> Result<Vec<ModuleDigest>> {
        self.purge_unused_versions().await
    }

    async fn pause_schedule(
        &self,
        name: &ScheduleName,
        paused: bool,
        next_tick: Option<i64>,
        now: i64,
    ) -> Result<Option<ScheduleInfo>> {
        self.set_schedule_paused(name, paused, next_tick, now).await
    }

    async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleInfo>> {
        self.due_schedule_rows(now).await
    }

    async fn advance_schedule(
        &self,
        name: &ScheduleName,
        from: i64,
        to: Option<i64>,
    ) -> Result<bool> {
        self.advance_schedule_row(name, from, to).await
    }

    async fn next_schedule_tick(&self) -> Result<Option<i64>> {
        self.next_schedule_tick_row().await
    }

    async fn queue_position(&self, run: &RunRecord, by_priority: bool) -> Result<u64> {
        let (queue, partition, priority) = position_keys(run);
        let position: i64 = sqlx::query_scalar(&queue_position_query('$'))
            .bind(queue)
            .bind(partition)
            .bind(by_priority)
            .bind(priority)
            .bind(run.created_at)
            .bind(run.id.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(position as u64 + 1)
    }

    async fn get_run(&self, id: &WorkflowId) -> Result<Option<RunRecord>> {
        let mut conn = Checkout::take(&self.pool).await?;
        select_run(&mut conn, id.as_str()).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let (after_created, after_id) = match &filter.after {
            Some((created, id)) => (Some(*created), Some(id.as_str())),
            None => (None, None),
        };
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE ($1::TEXT IS NULL OR status = $1)
               AND ($2::TEXT IS NULL OR module = $2)
               AND ($3::TEXT IS NULL OR workflow = $3)
               AND ($4::BIGINT IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5))
               AND ($7::TEXT IS NULL OR parent = $7)
               AND ($8::TEXT IS NULL OR starts_with(id, $8))
               AND ($9::BIGINT IS NULL OR created_at >= $9)
               AND ($10::BIGINT IS NULL OR created_at < $10)
               AND ($11::TEXT IS NULL OR queue = $11)
             ORDER BY created_at DESC, id DESC
             LIMIT $6"
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
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn transition_run(
        &self,
        id: &WorkflowId,
        from: RunStatus,
        to: RunStatus,
        now: i64,
    ) -> Result<Option<(bool, RunRecord)>> {
        let mut conn = Checkout::take(&self.pool).await?;
        let mut tx = conn.begin().await?;
        let resumed = to == RunStatus::Pending;
        // A resumed run is executed by the host that resumed it.
        let moved = sqlx::query(
            "UPDATE runs SET status = $1, updated_at = $2,
                 attempts = attempts + CASE WHEN $3 THEN 1 ELSE 0 END,
                 epoch = epoch + CASE WHEN $3 THEN 1 ELSE 0 END,
                 owner = CASE WHEN $3 THEN $4 ELSE NULL END,
                 lease_expires_at = CASE WHEN $3 THEN $5::BIGINT ELSE NULL END
             WHERE id = $6 AND status = $7",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(resumed)
        .bind(&self.executor_id)
        .bind(now.saturating_add(self.lease_ms))
        .bind(id.as_str())
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let run = select_run(&mut tx, id.as_str()).await?;
        tx.commit().await?;
        if moved && to.is_terminal() {
            self.announce([Change::Finished(id.clone())]);
        }
        Ok(run.map(|run| (moved, run)))
    }

    async fn resume_run(
        &self,
        id: &WorkflowId,
        deadline: Option<i64>,
        now: i64,
    ) -> Result<Option<(bool, RunRecord)>> {
        let mut conn = Checkout::take(&self.pool).await?;
        // A resumed run is executed by the host that resumed it.
        let moved = sqlx::query(
            "UPDATE runs SET status = 'PENDING', updated_at = $1, attempts = 1, epoch = epoch + 1,
                 error = NULL, output = NULL, deadline = $2, owner = $3, lease_expires_at = $4
             WHERE id = $5 AND status = 'CANCELLED'",
        )
        .bind(now)
        .bind(deadline)
        .bind(&self.executor_id)
        .bind(now.saturating_add(self.lease_ms))
        .bind(id.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        let run = select_run(&mut conn, id.as_str()).await?;
        Ok(run.map(|run| (moved, run)))
    }

    async fn park_run(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        wait: RunWait,
        now: i64,
    ) -> Result<Parking> {
        self.park(id, fence, wait, now).await
    }

    async fn claim_woken(&self, now: i64, limit: u32) -> Result<Vec<RunRecord>> {
        self.claim_due(now, limit).await
    }

    async fn next_wake_at(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(EARLIEST_WAKE)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn parked_wait(&self, id: &WorkflowId) -> Result<Option<ParkedWait>> {
        let row = sqlx::query(WAITS_OF_RUN)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(parked_wait_from_row).transpose()
    }

    async fn parked_count(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(WAIT_COUNT).fetch_one(&self.pool).await?;
        Ok(count as u64)
    }

    fn woken(&self) -> Arc<Notify> {
        self.woken.clone()
    }

    fn health(&self) -> StoreHealth {
        self.health.snapshot()
    }

    async fn journal(&self, id: &WorkflowId) -> Result<Vec<JournalEntry>> {
        let rows = sqlx::query(JOURNAL)
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(journal_entry_from_row).collect()
    }

    async fn journal_page(
        &self,
        id: &WorkflowId,
        after_op: Option<u32>,
        limit: u32,
    ) -> Result<Vec<JournalEntry>> {
        let rows = sqlx::query(JOURNAL_PAGE)
            .bind(id.as_str())
            .bind(after_op.map_or(-1, i64::from))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(journal_entry_from_row).collect()
    }

    async fn journal_entry(&self, id: &WorkflowId, op: u32) -> Result<Option<JournalEntry>> {
        let row = sqlx::query(JOURNAL_ENTRY)
            .bind(id.as_str())
            .bind(i64::from(op))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(journal_entry_from_row).transpose()
    }

    async fn list_messages(
        &self,
        id: &WorkflowId,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>> {
        self.messages_of(id, after_seq, limit).await
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
        self.append_fenced(id, fence, op, stream, value, now).await
    }

    async fn read_stream(
        &self,
        id: &WorkflowId,
        stream: &str,
        from: u64,
        limit: u32,
    ) -> Result<(Vec<StreamEntry>, Option<RunStatus>)> {
        self.read_stream_entries(id, stream, from, limit).await
    }

    async fn list_streams(&self, id: &WorkflowId) -> Result<Vec<StreamInfo>> {
        self.streams_of(id).await
    }

    async fn pending_children(&self, parent: &WorkflowId) -> Result<Vec<WorkflowId>> {
        let ids: Vec<String> = sqlx::query_scalar(PENDING_CHILDREN)
            .bind(parent.as_str())
            .fetch_all(&self.pool)
            .await?;
        ids.iter()
            .map(|id| WorkflowId::parse(id).map_err(|e| crate::store::rows::corrupt(e.0)))
            .collect()
    }

    async fn pending_message_bytes(&self, id: &WorkflowId) -> Result<u64> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(octet_length(message)), 0)::BIGINT FROM messages WHERE run_id = $1 AND consumed_op IS NULL",
        )
        .bind(id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(bytes.max(0) as u64)
    }

    async fn next_message(&self, id: &WorkflowId, topic: &str) -> Result<Option<Message>> {
        self.next_message_of(id, topic).await
    }

    async fn get_event(&self, id: &WorkflowId, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(EVENT_VALUE)
            .bind(id.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn event_and_status(
        &self,
        id: &WorkflowId,
        key: &str,
    ) -> Result<(Option<String>, Option<RunStatus>)> {
        static QUERY: LazyLock<String> = LazyLock::new(|| event_and_status_query('$'));
        let row = sqlx::query_as(&QUERY)
            .bind(id.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        event_and_status_from_row(row)
    }

    async fn list_events(&self, id: &WorkflowId) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(EVENTS)
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?)
    }

    async fn event_history(
        &self,
        id: &WorkflowId,
        after_op: Option<u32>,
        limit: u32,
    ) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query(EVENT_HISTORY_PAGE)
            .bind(id.as_str())
            .bind(after_op.map_or(-1, i64::from))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_record_from_row).collect()
    }

    async fn finish_run_fenced(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        outcome: RunOutcome,
        now: i64,
    ) -> Result<()> {
        self.finish(id, fence, outcome, now).await
    }

    async fn fork_run(
        &self,
        source: &WorkflowId,
        new: &WorkflowId,
        from_op: u32,
        now: i64,
    ) -> Result<RunRecord> {
        self.fork(source, new, from_op, now).await
    }

    async fn claim_recovery(&self, max_recovery_attempts: u32, now: i64) -> Result<RecoveryClaim> {
        self.claim(max_recovery_attempts, now).await
    }

    async fn write_journal_entries(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        writes: Vec<JournalWrite>,
        now: i64,
    ) -> Result<()> {
        self.write_entries(id, fence, writes, now).await
    }

    async fn send_message(&self, message: NewMessage, now: i64) -> Result<Delivery> {
        self.send(message, now).await
    }

    async fn renew_leases(&self, running: &[WorkflowId], now: i64) -> Result<Vec<WorkflowId>> {
        self.renew(running, now).await
    }

    async fn listen(&self) -> Result<Option<mpsc::Receiver<Change>>> {
        Ok(Some(self.listen_for_changes().await?))
    }

    fn shared(&self) -> bool {
        true
    }
}
