//! PostgreSQL: for several hosts on one database.
//!
//! Everything lives in the schema `cairn` (migrations included), so Cairn can
//! share a database with other applications. Each write is one transaction
//! on a pooled connection; PostgreSQL commits concurrent transactions
//! together by itself.
//!
//! Runs are held under leases: the host that starts (or claims) a run owns
//! it until `lease_expires_at`, renewed by [`Store::renew_leases`]; a host
//! claims runs whose lease expired. Lease times are each host's wall clock:
//! hosts' clocks must agree to well within a lease (NTP does). Every claim increments the run's epoch,
//! and journal writes are fenced by it, so a host that lost a run (paused
//! past its lease, not dead) can journal nothing more for it.
//!
//! Changes are announced with `NOTIFY` on the schema's channel after the
//! writing transaction commits, by one announcer task that sends whatever
//! has queued up in one statement. Not inside the transaction: PostgreSQL
//! serialises the commits of notifying transactions on a global lock,
//! which costs more than the commits. A host that dies between a commit and
//! its announcement loses it; the waiters' polling fallback covers that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::mpsc;

use super::rows::{
    JOURNAL_COLUMNS, MODULE_COLUMNS, RUN_COLUMNS, completes_a_wait, corrupt,
    event_and_status_from_row, event_and_status_query, event_record_from_row,
    journal_entry_from_row, journal_row, module_version_from_row, modules_from_rows,
    outcome_columns, routes_from_row, run_from_row, run_refusal,
};
use super::{
    Change, CreateRun, NewModuleVersion, PutModule, RecoveryClaim, Result, Store, StoreError,
};
use crate::domain::{
    Delivery, EventRecord, JournalEntry, JournalWrite, Message, ModuleInfo, ModuleName, NewMessage,
    NewRun, RunFilter, RunOutcome, RunRecord, RunStatus, WorkflowId,
};

mod checkout;

use checkout::Checkout;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Most runs claimed at once.
const CLAIM_BATCH: i64 = 1000;

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
        Ok(Self {
            announcer: start_announcer(pool.clone(), schema.clone()),
            pool,
            lease_pool,
            schema,
            executor_id: options.executor_id,
            lease_ms: i64::try_from(options.lease.as_millis()).unwrap_or(i64::MAX),
            claimed_once: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn executor_id(&self) -> &str {
        &self.executor_id
    }

    /// Announce `changes`, which are committed.
    fn announce(&self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            // The announcer lives as long as the store's pool.
            let _ = self.announcer.send(change);
        }
    }
}

/// Most changes announced by one statement.
const ANNOUNCE_BATCH: usize = 256;

/// Send the changes queued on `queue` as notifications on `channel`, as
/// many at a time as have queued up.
fn start_announcer(pool: PgPool, channel: String) -> mpsc::UnboundedSender<Change> {
    let (sender, mut queue) = mpsc::unbounded_channel::<Change>();
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while queue.recv_many(&mut batch, ANNOUNCE_BATCH).await > 0 {
            let payloads: Vec<String> = batch.drain(..).map(|c| encode_change(&c)).collect();
            let sent =
                sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::TEXT[]) AS payload")
                    .bind(&channel)
                    .bind(&payloads)
                    .execute(&pool)
                    .await;
            if let Err(error) = sent {
                // Waiters find the changes at their next poll.
                tracing::warn!(%error, changes = payloads.len(), "cannot announce changes");
            }
        }
    });
    sender
}

/// A notification's payload: a JSON array, well under PostgreSQL's 8000
/// bytes (ids and keys are bounded).
fn encode_change(change: &Change) -> String {
    let payload = match change {
        Change::Event { run, key } => serde_json::json!(["e", run.as_str(), key]),
        Change::Message { run, topic } => serde_json::json!(["m", run.as_str(), topic]),
        Change::Finished(run) => serde_json::json!(["f", run.as_str()]),
        Change::Deployed(module) => serde_json::json!(["d", module.as_str()]),
    };
    payload.to_string()
}

fn parse_change(payload: &str) -> Option<Change> {
    let parts: Vec<String> = serde_json::from_str(payload).ok()?;
    let run = |i: usize| WorkflowId::parse(parts.get(i)?).ok();
    match parts.first()?.as_str() {
        "e" => Some(Change::Event {
            run: run(1)?,
            key: parts.get(2)?.clone(),
        }),
        "m" => Some(Change::Message {
            run: run(1)?,
            topic: parts.get(2)?.clone(),
        }),
        "f" => Some(Change::Finished(run(1)?)),
        "d" => Some(Change::Deployed(ModuleName::parse(parts.get(1)?).ok()?)),
        _ => None,
    }
}

async fn select_run(conn: &mut PgConnection, id: &str) -> Result<Option<RunRecord>> {
    let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(run_from_row).transpose()
}

impl PgStore {
    async fn put_module(&self, m: NewModuleVersion) -> Result<PutModule> {
        let mut conn = Checkout::take(&self.pool).await?;
        let mut tx = conn.begin().await?;
        sqlx::query(
            "INSERT INTO module_blobs (version, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&m.version)
        .bind(&m.bytes)
        .execute(&mut *tx)
        .await?;
        // Deployments of one module are serialised by this row lock.
        sqlx::query(
            "INSERT INTO module_routes (name, manifest) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET manifest = excluded.manifest",
        )
        .bind(m.name.as_str())
        .bind(&m.routes)
        .execute(&mut *tx)
        .await?;
        let current: Option<String> = sqlx::query_scalar(
            "SELECT version FROM module_versions WHERE name = $1 ORDER BY deployed_at DESC, seq DESC LIMIT 1",
        )
        .bind(m.name.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let known: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM module_versions WHERE name = $1 AND version = $2)",
        )
        .bind(m.name.as_str())
        .bind(&m.version)
        .fetch_one(&mut *tx)
        .await?;
        let settings = serde_json::to_string(&m.settings).map_err(corrupt)?;
        if known {
            let is_current = current.as_deref() == Some(m.version.as_str());
            sqlx::query(
                "UPDATE module_versions SET settings = $1,
                     deployed_at = CASE WHEN $2 THEN deployed_at ELSE $3 END,
                     seq = CASE WHEN $2 THEN seq ELSE nextval('module_versions_seq_seq') END
                 WHERE name = $4 AND version = $5",
            )
            .bind(&settings)
            .bind(is_current)
            .bind(m.now)
            .bind(m.name.as_str())
            .bind(&m.version)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO module_versions (name, version, kind, workflows, size, deployed_at, settings)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(m.name.as_str())
            .bind(&m.version)
            .bind(m.kind.as_str())
            .bind(serde_json::to_string(&m.workflows).map_err(corrupt)?)
            .bind(m.bytes.len() as i64)
            .bind(m.now)
            .bind(&settings)
            .execute(&mut *tx)
            .await?;
        }
        let row = sqlx::query(&format!(
            "SELECT {MODULE_COLUMNS} FROM module_versions WHERE name = $1 AND version = $2"
        ))
        .bind(m.name.as_str())
        .bind(&m.version)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        self.announce([Change::Deployed(m.name.clone())]);
        Ok(PutModule {
            created: !known,
            module: module_version_from_row(&row)?,
        })
    }

    /// Why a journal write of `op` changed nothing.
    async fn refusal(
        conn: &mut PgConnection,
        id: &WorkflowId,
        fence: Option<u64>,
        op: u32,
    ) -> Result<StoreError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT status, epoch FROM runs WHERE id = $1")
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
                sqlx::query(
                    "INSERT INTO event_history (run_id, op, key, value, recorded_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id.as_str())
                .bind(i64::from(op))
                .bind(&key)
                .bind(&value)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "INSERT INTO events (run_id, key, value, op, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (run_id, key) DO UPDATE
                     SET value = excluded.value, op = excluded.op, updated_at = excluded.updated_at",
                )
                .bind(id.as_str())
                .bind(&key)
                .bind(&value)
                .bind(i64::from(op))
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
                deliver(conn, changes, &message, now).await?;
            }
            JournalWrite::RecvCompleted {
                received: Some(received),
                ..
            } => {
                let updated = sqlx::query(
                    "UPDATE messages SET consumed_op = $1 WHERE seq = $2 AND run_id = $3 AND consumed_op IS NULL",
                )
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
    let inserted = sqlx::query(
        "INSERT INTO messages (run_id, topic, message, idempotency_key, sent_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (run_id, idempotency_key) DO NOTHING",
    )
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

#[async_trait]
impl Store for PgStore {
    async fn put_module(&self, module: NewModuleVersion) -> Result<PutModule> {
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

    async fn module_bytes(&self, version: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT bytes FROM module_blobs WHERE version = $1")
                .bind(version)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn list_routes(&self) -> Result<Vec<(ModuleName, String)>> {
        let rows = sqlx::query("SELECT name, manifest FROM module_routes ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(routes_from_row).collect()
    }

    async fn create_run(&self, run: NewRun) -> Result<CreateRun> {
        let mut conn = Checkout::take(&self.pool).await?;
        // The host that creates a run executes it: it takes the lease.
        let inserted = sqlx::query(
            "INSERT INTO runs (id, module, version, workflow, input, status, attempts, created_at, updated_at, deadline, parent, epoch, owner, lease_expires_at)
             VALUES ($1, $2, $3, $4, $5, 'PENDING', 1, $6, $6, $7, $8, 1, $9, $10)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(run.id.as_str())
        .bind(run.module.as_str())
        .bind(&run.version)
        .bind(&run.workflow)
        .bind(&run.input)
        .bind(run.now)
        .bind(run.deadline)
        .bind(run.parent.as_ref().map(WorkflowId::as_str))
        .bind(&self.executor_id)
        .bind(run.now.saturating_add(self.lease_ms))
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(CreateRun::Created(RunRecord {
                id: run.id,
                module: run.module,
                version: run.version,
                workflow: run.workflow,
                input: run.input,
                status: RunStatus::Pending,
                output: None,
                error: None,
                attempts: 1,
                created_at: run.now,
                updated_at: run.now,
                deadline: run.deadline,
                parent: run.parent,
                epoch: 1,
            }));
        }
        let existing = select_run(&mut conn, run.id.as_str())
            .await?
            .ok_or_else(|| corrupt(format!("run {} vanished during its creation", run.id)))?;
        Ok(CreateRun::Existing(existing))
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
             ORDER BY created_at DESC, id DESC
             LIMIT $6"
        ))
        .bind(filter.status.map(RunStatus::as_str))
        .bind(filter.module.as_ref().map(ModuleName::as_str))
        .bind(filter.workflow.as_deref())
        .bind(after_created)
        .bind(after_id)
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn finish_run_fenced(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        outcome: RunOutcome,
        now: i64,
    ) -> Result<()> {
        let (status, output, error) = outcome_columns(outcome);
        let mut conn = Checkout::take(&self.pool).await?;
        let mut tx = conn.begin().await?;
        let updated = sqlx::query(
            "UPDATE runs SET status = $1, output = $2, error = $3, updated_at = $4, owner = NULL, lease_expires_at = NULL
             WHERE id = $5 AND status = 'PENDING' AND ($6::BIGINT IS NULL OR epoch = $6)",
        )
        .bind(status.as_str())
        .bind(output)
        .bind(error)
        .bind(now)
        .bind(id.as_str())
        .bind(fence.map(|e| e as i64))
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            let current: Option<i64> = sqlx::query_scalar("SELECT epoch FROM runs WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if let (Some(mine), Some(current)) = (fence, current)
                && current as u64 != mine
            {
                return Err(StoreError::Fenced {
                    run: id.to_string(),
                    current: current as u64,
                    mine,
                });
            }
            return Ok(());
        }
        tx.commit().await?;
        self.announce([Change::Finished(id.clone())]);
        Ok(())
    }

    async fn fork_run(
        &self,
        source: &WorkflowId,
        new: &WorkflowId,
        from_op: u32,
        now: i64,
    ) -> Result<RunRecord> {
        let mut conn = Checkout::take(&self.pool).await?;
        let mut tx = conn.begin().await?;
        let created = sqlx::query(
            "INSERT INTO runs (id, module, version, workflow, input, status, attempts, created_at, updated_at, epoch, owner, lease_expires_at)
             SELECT $1, module, version, workflow, input, 'PENDING', 1, $2, $2, 1, $3, $4 FROM runs WHERE id = $5
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
        sqlx::query(
            "INSERT INTO journal (run_id, op, kind, name, outcome, deadline, completed, error, attempt, started_at, recorded_at)
             SELECT $1, op, kind, name, outcome, deadline, completed, error, attempt, started_at, recorded_at
             FROM journal WHERE run_id = $2 AND op < $3",
        )
        .bind(new.as_str())
        .bind(source.as_str())
        .bind(i64::from(from_op))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO event_history (run_id, op, key, value, recorded_at)
             SELECT $1, op, key, value, recorded_at
             FROM event_history WHERE run_id = $2 AND op < $3 ORDER BY seq",
        )
        .bind(new.as_str())
        .bind(source.as_str())
        .bind(i64::from(from_op))
        .execute(&mut *tx)
        .await?;
        // The copy's current events: the last write of each key.
        sqlx::query(
            "INSERT INTO events (run_id, key, value, op, updated_at)
             SELECT DISTINCT ON (key) run_id, key, value, op, recorded_at
             FROM event_history WHERE run_id = $1 ORDER BY key, op DESC",
        )
        .bind(new.as_str())
        .execute(&mut *tx)
        .await?;
        let run = select_run(&mut tx, new.as_str())
            .await?
            .ok_or_else(|| corrupt(format!("forked run {new} vanished")))?;
        tx.commit().await?;
        Ok(run)
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

    async fn claim_recovery(&self, max_recovery_attempts: u32, now: i64) -> Result<RecoveryClaim> {
        let mut conn = Checkout::take(&self.lease_pool).await?;
        let mut tx = conn.begin().await?;
        // The first claim also takes this executor's own runs: a host
        // restarted under the same executor id executes none of them yet,
        // so it recovers them at once instead of waiting out their leases.
        let first = !self.claimed_once.swap(true, Ordering::SeqCst);
        // Runs nobody holds: their host died (or lost touch) and its lease
        // ran out. SKIP LOCKED: hosts claiming at once take different runs.
        let rows = sqlx::query(&format!(
            "WITH claimable AS (
                 SELECT id FROM runs
                 WHERE status = 'PENDING'
                   AND (lease_expires_at IS NULL OR lease_expires_at <= $1 OR ($5 AND owner = $3))
                 ORDER BY created_at
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE runs SET attempts = attempts + 1, epoch = epoch + 1, updated_at = $1,
                 owner = $3, lease_expires_at = $4
             FROM claimable WHERE runs.id = claimable.id
             RETURNING {}",
            RUN_COLUMNS
                .split(", ")
                .map(|c| format!("runs.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(now)
        .bind(CLAIM_BATCH)
        .bind(&self.executor_id)
        .bind(now.saturating_add(self.lease_ms))
        .bind(first)
        .fetch_all(&mut *tx)
        .await?;
        let claimed = rows.iter().map(run_from_row).collect::<Result<Vec<_>>>()?;
        // attempts = 1 + recoveries so far, this one included.
        let max_attempts = max_recovery_attempts + 1;
        let (exceeded, resume): (Vec<RunRecord>, Vec<RunRecord>) = claimed
            .into_iter()
            .partition(|run| run.attempts > max_attempts);
        let exceeded: Vec<WorkflowId> = exceeded.into_iter().map(|run| run.id).collect();
        if !exceeded.is_empty() {
            let ids: Vec<&str> = exceeded.iter().map(WorkflowId::as_str).collect();
            sqlx::query(
                "UPDATE runs SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', updated_at = $1,
                     error = 'the run was recovered more than ' || $2 || ' times without finishing',
                     owner = NULL, lease_expires_at = NULL
                 WHERE id = ANY($3)",
            )
            .bind(now)
            .bind(i64::from(max_recovery_attempts))
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.announce(exceeded.iter().cloned().map(Change::Finished));
        Ok(RecoveryClaim { resume, exceeded })
    }

    async fn journal(&self, id: &WorkflowId) -> Result<Vec<JournalEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id = $1 ORDER BY op"
        ))
        .bind(id.as_str())
        .fetch_all(&self.pool)
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

    async fn send_message(&self, message: NewMessage, now: i64) -> Result<Delivery> {
        let mut conn = Checkout::take(&self.pool).await?;
        let mut tx = conn.begin().await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)")
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

    async fn next_message(&self, id: &WorkflowId, topic: &str) -> Result<Option<Message>> {
        let row = sqlx::query(
            "SELECT seq, message FROM messages
             WHERE run_id = $1 AND topic = $2 AND consumed_op IS NULL
             ORDER BY seq LIMIT 1",
        )
        .bind(id.as_str())
        .bind(topic)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Message {
                seq: row.try_get("seq")?,
                message: row.try_get("message")?,
            })
        })
        .transpose()
    }

    async fn get_event(&self, id: &WorkflowId, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM events WHERE run_id = $1 AND key = $2")
                .bind(id.as_str())
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
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
        Ok(
            sqlx::query_as("SELECT key, value FROM events WHERE run_id = $1 ORDER BY key")
                .bind(id.as_str())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn event_history(
        &self,
        id: &WorkflowId,
        after_op: Option<u32>,
    ) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT seq, op, key, value, recorded_at FROM event_history WHERE run_id = $1 AND op > $2 ORDER BY op",
        )
        .bind(id.as_str())
        .bind(after_op.map_or(-1, i64::from))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_record_from_row).collect()
    }

    fn shared(&self) -> bool {
        true
    }

    async fn renew_leases(&self, running: &[WorkflowId], now: i64) -> Result<Vec<WorkflowId>> {
        let ids: Vec<&str> = running.iter().map(WorkflowId::as_str).collect();
        let renewed: Vec<String> = sqlx::query_scalar(
            "UPDATE runs SET lease_expires_at = $1
             WHERE owner = $2 AND status = 'PENDING' AND id = ANY($3)
             RETURNING id",
        )
        .bind(now.saturating_add(self.lease_ms))
        .bind(&self.executor_id)
        .bind(&ids)
        .fetch_all(&self.lease_pool)
        .await?;
        renewed
            .iter()
            .map(|id| WorkflowId::parse(id).map_err(corrupt))
            .collect()
    }

    async fn listen(&self) -> Result<Option<mpsc::Receiver<Change>>> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(&self.schema).await?;
        let (sender, receiver) = mpsc::channel(4096);
        tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a lost connection;
                // notifications sent meanwhile are lost, which the waiters'
                // polling fallback covers.
                match listener.recv().await {
                    Ok(notification) => {
                        let Some(change) = parse_change(notification.payload()) else {
                            tracing::warn!(
                                payload = notification.payload(),
                                "unknown change notification"
                            );
                            continue;
                        };
                        if sender.send(change).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "listening for changes failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Some(receiver))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_notifications_survive_their_encoding() {
        let run = WorkflowId::parse("a \"quoted\" run").unwrap();
        for change in [
            Change::Event {
                run: run.clone(),
                key: "k/1".into(),
            },
            Change::Message {
                run: run.clone(),
                topic: "t".into(),
            },
            Change::Finished(run.clone()),
            Change::Deployed(ModuleName::parse("m").unwrap()),
        ] {
            assert_eq!(parse_change(&encode_change(&change)), Some(change));
        }
        assert_eq!(parse_change("nonsense"), None);
    }
}
