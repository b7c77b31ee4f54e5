//! Persistence: the [`Store`] trait the executor and the HTTP layer use, and
//! its implementations. Every durable effect goes through here.
//!
//! The trait speaks in domain types only, so a backend can be added without
//! touching the runtime or HTTP code: SQLite, embedded, for one host;
//! PostgreSQL for several hosts on one database.

mod health;
mod postgres;
mod queueing;
mod retention;
mod rows;
mod sqlite;
mod statements;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};

pub use health::{FULL_RETRY_AFTER, StoreHealth, WriteHealth};
pub use postgres::{PgOptions, PgStore};
pub use queueing::{DEQUEUE_BATCH, Dequeued};
pub use sqlite::backup::{BackupReport, backup as backup_sqlite};
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};

use crate::domain::{
    Delivery, EventRecord, JournalEntry, JournalWrite, Message, MessageRecord, ModuleDigest,
    ModuleInfo, ModuleKind, ModuleName, ModuleSettings, ModuleVersion, NewMessage, NewRun,
    ParkedWait, QueueDepth, QueueInfo, QueueName, QueueSettings, RunFilter, RunOutcome, RunRecord,
    RunStatus, RunWait, ScheduleInfo, ScheduleName, ScheduleSpec, StreamEntry, StreamInfo,
    WorkflowId,
};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A failure of the database driver (the driver's own error, as text:
    /// which driver Cairn uses is not part of its API).
    #[error("database error: {0}")]
    Database(String),
    /// A failure of SQLite itself, through its C API (the writer's calls).
    #[error("database error: {0}")]
    Sqlite(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    /// A journal write for an operation that is already journaled: two
    /// executions of one run raced, and this one must stop.
    #[error("operation {op} of run {run} is already journaled")]
    DuplicateOperation { run: String, op: u32 },
    /// A journal write for a run that has finished (or was cancelled).
    #[error("run {run} is {status}, no longer PENDING")]
    RunNotPending { run: String, status: String },
    /// A write of an execution whose run was handed to another execution
    /// (recovered by another host after its lease expired, or resumed).
    #[error("run {run} was handed to another execution (epoch {current}; this one has {mine})")]
    Fenced {
        run: String,
        current: u64,
        mine: u64,
    },
    #[error("committing a batch of writes failed: {0}")]
    Commit(String),
    /// The database's disk (or its size limit) is full: nothing more can be
    /// written until space is freed.
    #[error("the database's disk is full: {0}")]
    StorageFull(String),
    #[error("run {0} does not exist")]
    UnknownRun(String),
    #[error("run {0} exists already")]
    RunExists(String),
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
    #[error("the store is shut down")]
    Closed,
    /// This host's executor id is held by another live host on the same
    /// database.
    #[error("{0}")]
    ExecutorIdInUse(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        // PostgreSQL's disk_full; SQLite's SQLITE_FULL through sqlx.
        let full = error
            .as_database_error()
            .and_then(|e| e.code())
            .is_some_and(|code| code == "53100" || code == "13");
        if full {
            Self::StorageFull(error.to_string())
        } else {
            Self::Database(error.to_string())
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migration(error.to_string())
    }
}

/// A module version to record.
#[derive(Debug, Clone)]
pub struct NewModuleVersion {
    pub name: ModuleName,
    pub version: ModuleDigest,
    pub bytes: Vec<u8>,
    pub kind: ModuleKind,
    pub workflows: Vec<String>,
    pub settings: ModuleSettings,
    /// The routes manifest (JSON) of this deployment; it replaces the
    /// module's routes.
    pub routes: String,
    pub now: i64,
}

/// Whether `put_module` added a version or found it there already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutModule {
    pub created: bool,
    pub module: ModuleVersion,
}

/// Whether `create_run` created the run or found one with that id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateRun {
    Created(RunRecord),
    Existing(RunRecord),
    /// Not created: this run of the same queue holds the deduplication id,
    /// `ENQUEUED` or `PENDING`.
    Duplicate(RunRecord),
}

/// What [`Store::delete_queue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteQueue {
    Deleted,
    Missing,
    /// Not deleted: this many runs still wait in it.
    Busy(u64),
}

/// A change committed to a shared database, as announced to every host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Event `key` of a run was written.
    Event { run: WorkflowId, key: String },
    /// A message was delivered to a run on `topic`.
    Message { run: WorkflowId, topic: String },
    /// Stream `stream` of a run was appended to (or closed).
    Stream { run: WorkflowId, stream: String },
    /// A run reached a terminal status (or was cancelled).
    Finished(WorkflowId),
    /// A module was deployed.
    Deployed(ModuleName),
}

/// What [`Store::park_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parking {
    /// The run is parked: it holds no lease and waits to be woken.
    Parked,
    /// What the run waits for has happened already: nothing changed, and
    /// the execution reads it and goes on.
    Happened,
}

/// What `claim_recovery` decided for each pending run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryClaim {
    /// Runs to execute again, with their attempts already counted.
    pub resume: Vec<RunRecord>,
    /// Runs that went past the maximum and are now
    /// `MAX_RECOVERY_ATTEMPTS_EXCEEDED`.
    pub exceeded: Vec<WorkflowId>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Record a module version under a name and make it the current one. The
    /// same bytes again under the same name are not stored twice; their
    /// settings are those of the latest deployment.
    async fn put_module(&self, module: NewModuleVersion) -> Result<PutModule>;
    async fn list_modules(&self) -> Result<Vec<ModuleInfo>>;
    async fn get_module(&self, name: &ModuleName) -> Result<Option<ModuleInfo>>;
    async fn module_bytes(&self, version: &ModuleDigest) -> Result<Option<Vec<u8>>>;
    /// The routes manifest (JSON) of every module that has one.
    async fn list_routes(&self) -> Result<Vec<(ModuleName, String)>>;

    /// Create a `PENDING` run with its first attempt counted (`ENQUEUED`,
    /// with none, when it has an admission), unless a run with that id
    /// exists: then return that one, unchanged; or a run of its queue holds
    /// its deduplication id: then that one, as a duplicate.
    async fn create_run(&self, run: NewRun) -> Result<CreateRun>;

    /// Create queue `name`, or change its settings (runs waiting in it are
    /// admitted under the new ones from the next dequeue on).
    async fn put_queue(
        &self,
        name: &QueueName,
        settings: QueueSettings,
        now: i64,
    ) -> Result<QueueInfo>;
    async fn list_queues(&self) -> Result<Vec<QueueInfo>>;
    async fn get_queue(&self, name: &QueueName) -> Result<Option<QueueInfo>>;
    /// Delete queue `name`, unless runs wait in it.
    async fn delete_queue(&self, name: &QueueName) -> Result<DeleteQueue>;
    /// How many runs each queue holds, by state; the runs of no queue that
    /// wait for their start time under `None`. Queues holding none are left
    /// out.
    async fn queue_depths(&self) -> Result<Vec<(Option<QueueName>, QueueDepth)>>;
    /// Move up to `limit` `ENQUEUED` runs whose start time came and whose
    /// queue (or partition) has room under its limits to `PENDING`, each
    /// with its first attempt, a new epoch and (on a shared store) this
    /// host's lease: this caller's to execute. No run leaves twice; on a
    /// shared store, hosts dequeueing one queue at once take turns.
    async fn dequeue(&self, now: i64, limit: u32) -> Result<Dequeued>;
    /// Where `ENQUEUED` run `run` stands in its queue (and partition): 1
    /// leaves next. `by_priority`: the queue orders by priority first.
    async fn queue_position(&self, run: &RunRecord, by_priority: bool) -> Result<u64>;

    /// Create schedule `name` (not paused) or replace what it starts and
    /// when (keeping whether it is paused), with `next_tick` to fire next.
    async fn put_schedule(
        &self,
        name: &ScheduleName,
        spec: ScheduleSpec,
        next_tick: Option<i64>,
        now: i64,
    ) -> Result<ScheduleInfo>;
    async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>>;
    async fn get_schedule(&self, name: &ScheduleName) -> Result<Option<ScheduleInfo>>;
    /// Whether it existed.
    async fn delete_schedule(&self, name: &ScheduleName) -> Result<bool>;

    /// Retention: delete up to `roots` finished top-level runs that ended
    /// before `before`, with their descendants and everything they hold
    /// (see `retention.rs`); how many runs went.
    async fn purge_runs(&self, before: i64, roots: u32) -> Result<u64>;
    /// Retention: delete the module versions that are not current and
    /// that no run uses, and their bytes; the versions whose bytes went.
    async fn purge_versions(&self) -> Result<Vec<ModuleDigest>>;
    /// Pause or resume a schedule; resuming, with its next tick.
    async fn pause_schedule(
        &self,
        name: &ScheduleName,
        paused: bool,
        next_tick: Option<i64>,
        now: i64,
    ) -> Result<Option<ScheduleInfo>>;
    /// The schedules not paused whose next tick is at or before `now`.
    async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleInfo>>;
    /// Move a schedule's next tick from `from` to `to`, unless another
    /// host (or a change) moved it first: whether this one did.
    async fn advance_schedule(
        &self,
        name: &ScheduleName,
        from: i64,
        to: Option<i64>,
    ) -> Result<bool>;
    /// The earliest next tick of the schedules not paused.
    async fn next_schedule_tick(&self) -> Result<Option<i64>>;
    async fn get_run(&self, id: &WorkflowId) -> Result<Option<RunRecord>>;
    /// Runs that pass `filter`, newest first, at most `filter.limit`.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;
    /// Record how a run ended. Only a `PENDING` run changes, and with
    /// `fence`, only while its epoch is that one ([`StoreError::Fenced`]
    /// otherwise).
    async fn finish_run_fenced(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        outcome: RunOutcome,
        now: i64,
    ) -> Result<()>;
    /// [`Store::finish_run_fenced`] without a fence.
    async fn finish_run(&self, id: &WorkflowId, outcome: RunOutcome, now: i64) -> Result<()> {
        self.finish_run_fenced(id, None, outcome, now).await
    }
    /// Create run `new` as a copy of run `source` (its module version,
    /// workflow and input) with the journal entries and event writes of
    /// `source` before operation `from_op`; [`StoreError::UnknownRun`] if
    /// `source` does not exist, [`StoreError::RunExists`] if `new` does.
    async fn fork_run(
        &self,
        source: &WorkflowId,
        new: &WorkflowId,
        from_op: u32,
        now: i64,
    ) -> Result<RunRecord>;
    /// Move run `id` from `from` to `to` (with one more attempt when it
    /// becomes `PENDING` again): whether it moved, and the run as it is
    /// afterwards; `None` if there is no such run.
    async fn transition_run(
        &self,
        id: &WorkflowId,
        from: RunStatus,
        to: RunStatus,
        now: i64,
    ) -> Result<Option<(bool, RunRecord)>>;
    /// Resume run `id` if it is `CANCELLED`: `PENDING` again with its
    /// error cleared, `deadline` as its new time limit, and its recovery
    /// count reset (a resume is an operator's decision, not a recovery);
    /// whether it moved, and the run as it is afterwards.
    async fn resume_run(
        &self,
        id: &WorkflowId,
        deadline: Option<i64>,
        now: i64,
    ) -> Result<Option<(bool, RunRecord)>>;
    /// Count a new attempt for every `PENDING` run; those past
    /// `max_recovery_attempts` recoveries become `MAX_RECOVERY_ATTEMPTS_EXCEEDED`.
    async fn claim_recovery(&self, max_recovery_attempts: u32, now: i64) -> Result<RecoveryClaim>;

    /// Park run `id` (only while it is `PENDING` and, with `fence`, in that
    /// epoch) in `wait`: it keeps its status and journal, holds no lease,
    /// and is handed out by [`Store::claim_woken`] once what it waits for
    /// happens (a commit sets the event, delivers the message or ends the
    /// child) or `wait.wake_at` passes. [`Parking::Happened`], changing
    /// nothing, when what it waits for has happened already: the check and
    /// the park are one step against every commit that would wake it.
    async fn park_run(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        wait: RunWait,
        now: i64,
    ) -> Result<Parking>;
    /// Take up to `limit` parked runs that are due at `now` (woken, or past
    /// their `wake_at`), earliest first: each leaves its parked state with a
    /// new epoch (and, on a shared store, this host's lease) and is this
    /// caller's to execute. No run is handed out twice.
    async fn claim_woken(&self, now: i64, limit: u32) -> Result<Vec<RunRecord>>;
    /// The earliest `wake_at` of the parked runs.
    async fn next_wake_at(&self) -> Result<Option<i64>>;
    /// What run `id` waits for, if it is parked.
    async fn parked_wait(&self, id: &WorkflowId) -> Result<Option<ParkedWait>>;
    async fn parked_count(&self) -> Result<u64>;
    /// Notified when a commit (this host's, or on a shared store any
    /// host's, as far as it is told) made a parked run due; a waiter also
    /// looks at the parked runs' `wake_at` itself.
    fn woken(&self) -> Arc<Notify>;
    /// Whether the store's writes are succeeding.
    fn health(&self) -> StoreHealth;

    async fn journal(&self, id: &WorkflowId) -> Result<Vec<JournalEntry>>;
    /// The first `limit` entries of run `id`'s journal after operation
    /// `after_op` (from the start without one).
    async fn journal_page(
        &self,
        id: &WorkflowId,
        after_op: Option<u32>,
        limit: u32,
    ) -> Result<Vec<JournalEntry>>;
    /// Operation `op` of run `id`'s journal, if it is journaled.
    async fn journal_entry(&self, id: &WorkflowId, op: u32) -> Result<Option<JournalEntry>>;
    /// Apply one journal write and its effect in one transaction.
    async fn write_journal(&self, id: &WorkflowId, write: JournalWrite, now: i64) -> Result<()> {
        self.write_journal_entries(id, None, vec![write], now).await
    }
    /// Several journal writes of run `id`, in order, in one transaction:
    /// all of them or none. With `fence`, only while the run's epoch is that
    /// one ([`StoreError::Fenced`] otherwise).
    async fn write_journal_entries(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        writes: Vec<JournalWrite>,
        now: i64,
    ) -> Result<()>;

    /// Deliver a message from outside a run, once per idempotency key;
    /// [`StoreError::UnknownRun`] if the run does not exist.
    async fn send_message(&self, message: NewMessage, now: i64) -> Result<Delivery>;
    /// The oldest message of run `id` on `topic` not yet received.
    async fn next_message(&self, id: &WorkflowId, topic: &str) -> Result<Option<Message>>;
    /// The messages sent to run `id`, received or not, oldest first: the
    /// first `limit` after `after_seq`.
    async fn list_messages(
        &self,
        id: &WorkflowId,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>>;

    /// Append `value` to stream `stream` of run `id` outside the journal:
    /// a write from inside step `op`, so at least once (a step run again
    /// writes again). Only while the run is `PENDING` and, with `fence`, in
    /// that epoch. (A workflow's own appends are journal writes.)
    async fn append_stream(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        op: u32,
        stream: &str,
        value: &str,
        now: i64,
    ) -> Result<()>;
    /// The status of run `id` (`None`: no such run), read first, and up to
    /// `limit` entries of its stream `stream` from offset `from`.
    async fn read_stream(
        &self,
        id: &WorkflowId,
        stream: &str,
        from: u64,
        limit: u32,
    ) -> Result<(Vec<StreamEntry>, Option<RunStatus>)>;
    /// The streams of run `id`, by name.
    async fn list_streams(&self, id: &WorkflowId) -> Result<Vec<StreamInfo>>;

    /// The `PENDING` children of run `parent`.
    async fn pending_children(&self, parent: &WorkflowId) -> Result<Vec<WorkflowId>>;
    /// The bytes of the messages sent to run `id` that it has not received.
    async fn pending_message_bytes(&self, id: &WorkflowId) -> Result<u64>;

    async fn get_event(&self, id: &WorkflowId, key: &str) -> Result<Option<String>>;
    /// Event `key` of run `id` and the run's status, as of one moment: a
    /// terminal status means the value (or its absence) is final. `None` for
    /// the status when there is no such run.
    async fn event_and_status(
        &self,
        id: &WorkflowId,
        key: &str,
    ) -> Result<(Option<String>, Option<RunStatus>)> {
        // Two reads: a run's end commits after its last event write, so the
        // event is read again after a terminal status.
        let value = self.get_event(id, key).await?;
        let status = self.get_run(id).await?.map(|run| run.status);
        if value.is_none() && status.is_some_and(RunStatus::is_terminal) {
            return Ok((self.get_event(id, key).await?, status));
        }
        Ok((value, status))
    }
    /// Current events of a run, by key.
    async fn list_events(&self, id: &WorkflowId) -> Result<Vec<(String, String)>>;
    /// The event writes of a run, oldest first: the first `limit` of them,
    /// or of those journaled after operation `after_op`.
    async fn event_history(
        &self,
        id: &WorkflowId,
        after_op: Option<u32>,
        limit: u32,
    ) -> Result<Vec<EventRecord>>;

    /// Whether other hosts share this database: then runs are held under
    /// leases that this host renews, runs whose lease expired are claimed
    /// periodically, and changes are announced through [`Store::listen`].
    fn shared(&self) -> bool {
        false
    }

    /// Extend the leases of `running`, the runs this host is executing, and
    /// return those it still holds: a run missing from the answer was
    /// taken over (or ended) and must not be executed here any more. Runs
    /// this host holds but does not execute (an execution that failed on
    /// the host's side) are left to expire, so some host recovers them.
    async fn renew_leases(&self, running: &[WorkflowId], _now: i64) -> Result<Vec<WorkflowId>> {
        Ok(running.to_vec())
    }

    /// The changes other hosts (and this one) commit, as they are announced;
    /// `None` for a store no other host writes to.
    async fn listen(&self) -> Result<Option<mpsc::Receiver<Change>>> {
        Ok(None)
    }
}
