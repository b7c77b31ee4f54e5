//! The embedded default backend: SQLite in WAL mode.
//!
//! SQLite admits one writer at a time, and each commit costs an fsync. So all
//! writes go through one writer thread that owns the only write connection
//! and applies whatever writes are queued in one transaction: group commit.
//! Every caller is answered only after the commit that made its write
//! durable. The writer drives its connection through SQLite's C API, without
//! sqlx's per-statement thread hop (raw.rs says why). Reads go through sqlx on
//! separate read-only connections (reads.rs), which WAL lets run beside the
//! writer.
//!
//! A write is refused (a duplicate operation, a run that is no longer
//! pending) by its first statement, which then changes nothing, so a refusal
//! needs no savepoint: the batch goes on. Any other database error aborts the
//! whole batch, and every write in it is answered with the error.

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::rows::{
    Columns, JOURNAL_COLUMNS, MODULE_COLUMNS, RUN_COLUMNS, completes_a_wait, corrupt,
    event_and_status_from_row, event_and_status_query, event_record_from_row,
    journal_entry_from_row, journal_row, module_version_from_row, modules_from_rows,
    outcome_columns, routes_from_row, run_from_row, run_refusal,
};
use super::{CreateRun, NewModuleVersion, PutModule, RecoveryClaim, Result, Store, StoreError};
use crate::domain::{
    Delivery, EventRecord, JournalEntry, JournalWrite, Message, ModuleInfo, ModuleName, NewMessage,
    NewRun, RunFilter, RunOutcome, RunRecord, RunStatus, WorkflowId,
};

mod messages;
#[allow(unsafe_code)]
mod raw;
mod reads;

use raw::RawConnection;
use reads::ReadConnections;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Most writes applied in one transaction.
const MAX_BATCH: usize = 512;

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

/// One queued write: applied by the writer inside the batch transaction, then
/// answered once the batch has committed (or failed).
trait WriteJob: Send {
    /// Apply the write. An error means the batch's transaction is spoilt;
    /// a refusal is kept as the job's result and is not an error here.
    fn apply(&mut self, conn: &mut RawConnection) -> Result<(), String>;
    /// Answer the caller with the write's result, or with the commit failure.
    fn answer(self: Box<Self>, commit: Result<(), &str>);
}

type WriteFn<T> = Box<dyn FnOnce(&mut RawConnection) -> Result<T> + Send>;

struct TypedJob<T> {
    write: Option<WriteFn<T>>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send + 'static> WriteJob for TypedJob<T> {
    fn apply(&mut self, conn: &mut RawConnection) -> Result<(), String> {
        let write = self.write.take().expect("a write job is applied once");
        let result = write(conn);
        let spoilt = match &result {
            Err(
                error @ (StoreError::Database(_) | StoreError::Sqlite(_) | StoreError::Corrupt(_)),
            ) => Err(error.to_string()),
            _ => Ok(()),
        };
        self.result = Some(result);
        spoilt
    }

    fn answer(self: Box<Self>, commit: Result<(), &str>) {
        let result = match commit {
            Ok(()) => self.result.unwrap_or(Err(StoreError::Closed)),
            Err(message) => Err(StoreError::Commit(message.to_owned())),
        };
        // The caller may have gone away (a dropped request); nothing to do then.
        let _ = self.reply.send(result);
    }
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    reads: Arc<ReadConnections>,
    writes: mpsc::Sender<Box<dyn WriteJob>>,
}

impl std::fmt::Debug for dyn WriteJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteJob")
    }
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
        let mut writer = SqliteConnection::connect_with(&connect).await?;
        MIGRATOR.run(&mut writer).await?;
        let reads = Arc::new(ReadConnections::open(&connect, options.read_connections).await?);
        let (writes, queue) = mpsc::channel(4 * MAX_BATCH);
        spawn_writer(writer, queue).await?;
        Ok(Self { reads, writes })
    }

    async fn write<T: Send + 'static>(&self, write: WriteFn<T>) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let job = TypedJob {
            write: Some(write),
            result: None,
            reply,
        };
        self.writes
            .send(Box::new(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

#[allow(unsafe_code)]
/// Start the writer thread: it takes `conn`'s handle from sqlx and applies
/// queued writes, batch by batch, until every sender is gone. Returns once
/// the writer holds the handle, or with why it could not take it.
async fn spawn_writer(
    conn: SqliteConnection,
    queue: mpsc::Receiver<Box<dyn WriteJob>>,
) -> Result<()> {
    let (started, start) = oneshot::channel();
    std::thread::Builder::new()
        .name("cairn-sqlite-writer".into())
        .spawn(move || {
            let mut conn = conn;
            // sqlx's lock is async; a small runtime of this thread's own
            // waits for it.
            let locked = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| StoreError::Commit(format!("cannot start the writer: {e}")))
                .and_then(|runtime| Ok(runtime.block_on(conn.lock_handle())?));
            let mut locked = match locked {
                Ok(locked) => locked,
                Err(error) => {
                    let _ = started.send(Err(error));
                    return;
                }
            };
            // SAFETY: sqlx's thread leaves the handle alone while `locked`
            // lives, and `raw` is dropped first.
            let mut raw = unsafe { RawConnection::new(locked.as_raw_handle()) };
            let _ = started.send(Ok(()));
            run_writer(&mut raw, queue);
            drop(raw);
            drop(locked);
        })
        .map_err(|e| StoreError::Commit(format!("cannot start the writer: {e}")))?;
    start.await.map_err(|_| StoreError::Closed)?
}

fn run_writer(conn: &mut RawConnection, mut queue: mpsc::Receiver<Box<dyn WriteJob>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH
            && let Ok(next) = queue.try_recv()
        {
            batch.push(next);
        }
        apply_batch(conn, &mut batch);
    }
}

/// Apply `jobs` in one transaction, then answer them all.
fn apply_batch(conn: &mut RawConnection, jobs: &mut Vec<Box<dyn WriteJob>>) {
    let commit = (|| {
        conn.query("BEGIN IMMEDIATE")
            .execute()
            .map_err(|e| StoreError::from(e).to_string())?;
        for job in jobs.iter_mut() {
            // A panicking write spoils its batch, not the writer: every
            // later write would fail with it.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.apply(conn)))
                .map_err(|_| "a write panicked; see the log".to_owned())??;
        }
        conn.query("COMMIT")
            .execute()
            .map_err(|e| StoreError::from(e).to_string())?;
        Ok::<(), String>(())
    })();
    let commit = match commit {
        Ok(()) => Ok(()),
        Err(error) => {
            tracing::error!(%error, writes = jobs.len(), "a batch of writes failed to commit");
            // Leave no transaction open for the next batch (if there is
            // none, this fails harmlessly): otherwise every later BEGIN
            // would fail.
            let _ = conn.query("ROLLBACK").execute();
            if !conn.is_autocommit()
                && let Err(failure) = conn.query("ROLLBACK").execute()
            {
                tracing::error!(?failure, "the writer cannot roll back its transaction");
            }
            Err(error)
        }
    };
    for job in jobs.drain(..) {
        job.answer(commit.as_ref().map(|_| ()).map_err(String::as_str));
    }
}

fn select_run(conn: &mut RawConnection, id: &str) -> Result<Option<RunRecord>> {
    let row = conn
        .query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"))
        .bind(id)
        .fetch_optional()?;
    row.as_ref().map(run_from_row).transpose()
}

fn put_module(conn: &mut RawConnection, m: NewModuleVersion) -> Result<PutModule> {
    conn.query("INSERT INTO module_blobs (version, bytes) VALUES (?, ?) ON CONFLICT DO NOTHING")
        .bind(&m.version)
        .bind(&m.bytes)
        .execute()?;
    let current: Option<String> = conn
        .query("SELECT version FROM module_versions WHERE name = ? ORDER BY deployed_at DESC, rowid DESC LIMIT 1")
        .bind(m.name.as_str())
        .fetch_optional()?
        .and_then(|row| row.first().clone().into_text());
    let known = conn
        .query("SELECT EXISTS (SELECT 1 FROM module_versions WHERE name = ? AND version = ?)")
        .bind(m.name.as_str())
        .bind(&m.version)
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
        .bind(&m.version)
        .execute()?;
    } else {
        conn.query(
            "INSERT INTO module_versions (name, version, kind, workflows, size, deployed_at, settings)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(m.name.as_str())
        .bind(&m.version)
        .bind(m.kind.as_str())
        .bind(serde_json::to_string(&m.workflows).map_err(corrupt)?)
        .bind(m.bytes.len() as i64)
        .bind(m.now)
        .bind(&settings)
        .execute()
        ?;
    }
    // The deployment's routes replace the module's old ones.
    conn.query("INSERT OR REPLACE INTO module_routes (name, manifest) VALUES (?, ?)")
        .bind(m.name.as_str())
        .bind(&m.routes)
        .execute()?;
    let row = conn
        .query(&format!(
            "SELECT {MODULE_COLUMNS} FROM module_versions WHERE name = ? AND version = ?"
        ))
        .bind(m.name.as_str())
        .bind(&m.version)
        .fetch_one()?;
    Ok(PutModule {
        created: !known,
        module: module_version_from_row(&row)?,
    })
}

fn create_run(conn: &mut RawConnection, run: NewRun) -> Result<CreateRun> {
    let inserted = conn.query(
        "INSERT INTO runs (id, module, version, workflow, input, status, attempts, created_at, updated_at, deadline, parent)
         VALUES (?, ?, ?, ?, ?, 'PENDING', 1, ?, ?, ?, ?)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(run.id.as_str())
    .bind(run.module.as_str())
    .bind(&run.version)
    .bind(&run.workflow)
    .bind(&run.input)
    .bind(run.now)
    .bind(run.now)
    .bind(run.deadline)
    .bind(run.parent.as_ref().map(WorkflowId::as_str))
    .execute()
    ?;
    if inserted == 1 {
        return Ok(CreateRun::Created(run.into_record()));
    }
    let existing = select_run(conn, run.id.as_str())?
        .ok_or_else(|| corrupt(format!("run {} vanished during its creation", run.id)))?;
    Ok(CreateRun::Existing(existing))
}

fn finish_run(
    conn: &mut RawConnection,
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

fn claim_recovery(
    conn: &mut RawConnection,
    max_recovery_attempts: u32,
    now: i64,
) -> Result<RecoveryClaim> {
    conn.query("UPDATE runs SET attempts = attempts + 1, epoch = epoch + 1, updated_at = ? WHERE status = 'PENDING'")
        .bind(now)
        .execute()
        ?;
    // attempts = 1 + recoveries so far, this one included.
    let max_attempts = i64::from(max_recovery_attempts) + 1;
    let exceeded: Vec<String> = conn
        .query(
            "UPDATE runs SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', updated_at = ?,
             error = 'the run was recovered more than ' || ? || ' times without finishing'
         WHERE status = 'PENDING' AND attempts > ?
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
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'PENDING' ORDER BY created_at"
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

fn fork_run(
    conn: &mut RawConnection,
    source: WorkflowId,
    new: WorkflowId,
    from_op: u32,
    now: i64,
) -> Result<RunRecord> {
    // Refusals come first and change nothing, so the batch goes on.
    let exists = conn
        .query("SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?)")
        .bind(new.as_str())
        .fetch_one()?
        .first()
        .as_int()
        == Some(1);
    if exists {
        return Err(StoreError::RunExists(new.to_string()));
    }
    let created = conn.query(
        "INSERT INTO runs (id, module, version, workflow, input, status, attempts, created_at, updated_at)
         SELECT ?, module, version, workflow, input, 'PENDING', 1, ?, ? FROM runs WHERE id = ?",
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
    conn.query(
        "INSERT INTO journal (run_id, op, kind, name, outcome, deadline, completed, error, attempt, started_at, recorded_at)
         SELECT ?, op, kind, name, outcome, deadline, completed, error, attempt, started_at, recorded_at
         FROM journal WHERE run_id = ? AND op < ?",
    )
    .bind(new.as_str())
    .bind(source.as_str())
    .bind(from_op)
    .execute()
    ?;
    // The history's trigger rebuilds the copy's current events.
    conn.query(
        "INSERT INTO event_history (run_id, op, key, value, recorded_at)
         SELECT ?, op, key, value, recorded_at
         FROM event_history WHERE run_id = ? AND op < ? ORDER BY seq",
    )
    .bind(new.as_str())
    .bind(source.as_str())
    .bind(from_op)
    .execute()?;
    select_run(conn, new.as_str())?.ok_or_else(|| corrupt(format!("forked run {new} vanished")))
}

/// Why a journal write of `op` for run `id` changed nothing: the run is not
/// pending (or does not exist), or the operation is already journaled.
fn refusal(
    conn: &mut RawConnection,
    id: &WorkflowId,
    fence: Option<u64>,
    op: u32,
) -> Result<StoreError> {
    let row = conn
        .query("SELECT status, epoch FROM runs WHERE id = ?")
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
fn current_epoch(conn: &mut RawConnection, id: &WorkflowId) -> Result<Option<u64>> {
    let row = conn
        .query("SELECT epoch FROM runs WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional()?;
    Ok(row.and_then(|row| row.first().as_int()).map(|e| e as u64))
}

/// Insert a journal row, only while its run is pending (and, with a fence,
/// in that epoch). On a conflict with an existing row, `upsert` completes a
/// started wait instead.
const INSERT_JOURNAL: &str =
    "INSERT INTO journal (run_id, op, kind, name, outcome, deadline, completed, recorded_at, error, attempt, started_at)
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11
     WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?1 AND status = 'PENDING' AND (?12 IS NULL OR epoch = ?12))";

fn write_journal(
    conn: &mut RawConnection,
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
            conn.query(
                "INSERT INTO event_history (run_id, op, key, value, recorded_at) VALUES (?, ?, ?, ?, ?)",
            )
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
            messages::deliver(conn, &message, now)?;
        }
        JournalWrite::RecvCompleted {
            received: Some(received),
            ..
        } => messages::consume(conn, &id, op, &received)?,
        _ => {}
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_module(&self, module: NewModuleVersion) -> Result<PutModule> {
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
            .read(async |conn| {
                sqlx::query("SELECT name, manifest FROM module_routes ORDER BY name")
                    .fetch_all(conn)
                    .await
            })
            .await?;
        rows.iter().map(routes_from_row).collect()
    }

    async fn module_bytes(&self, version: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .reads
            .read(async |conn| {
                sqlx::query_scalar("SELECT bytes FROM module_blobs WHERE version = ?")
                    .bind(version)
                    .fetch_optional(conn)
                    .await
            })
            .await?)
    }

    async fn create_run(&self, run: NewRun) -> Result<CreateRun> {
        self.write(Box::new(move |conn| create_run(conn, run)))
            .await
    }

    async fn get_run(&self, id: &WorkflowId) -> Result<Option<RunRecord>> {
        let row = self
            .reads
            .read(async |conn| {
                sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"))
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
             ORDER BY created_at DESC, id DESC
             LIMIT ?6"
                ))
                .bind(filter.status.map(RunStatus::as_str))
                .bind(filter.module.as_ref().map(ModuleName::as_str))
                .bind(filter.workflow.as_deref())
                .bind(after_created)
                .bind(after_id)
                .bind(i64::from(filter.limit))
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

    async fn journal(&self, id: &WorkflowId) -> Result<Vec<JournalEntry>> {
        let rows = self
            .reads
            .read(async |conn| {
                sqlx::query(&format!(
                    "SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id = ? ORDER BY op"
                ))
                .bind(id.as_str())
                .fetch_all(conn)
                .await
            })
            .await?;
        rows.iter().map(journal_entry_from_row).collect()
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

    async fn get_event(&self, id: &WorkflowId, key: &str) -> Result<Option<String>> {
        Ok(self
            .reads
            .read(async |conn| {
                sqlx::query_scalar("SELECT value FROM events WHERE run_id = ? AND key = ?")
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
                sqlx::query_as("SELECT key, value FROM events WHERE run_id = ? ORDER BY key")
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
    ) -> Result<Vec<EventRecord>> {
        // (run_id, op) is unique, so its index serves this range.
        let rows = self.reads.read(async |conn| sqlx::query(
            "SELECT seq, op, key, value, recorded_at FROM event_history WHERE run_id = ? AND op > ? ORDER BY op",
        )
        .bind(id.as_str())
        .bind(after_op.map_or(-1, i64::from))
        .fetch_all(conn).await).await?;
        rows.iter().map(event_record_from_row).collect()
    }
}
