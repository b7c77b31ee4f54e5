//! Group commit for PostgreSQL: the hot writes of runs (a run's creation,
//! a single journal write, a run's end) from every execution on this host
//! are queued to one writer, which applies whatever is queued as one
//! statement (`batch.sql`: rows passed as arrays and `UNNEST`ed, the epoch
//! fence checked for the whole batch inside it), and answers each caller
//! once the batch is durable. While one batch commits, the next gathers:
//! one WAL flush and one round trip for dozens of writes.
//!
//! Statements that lock several runs' rows lock them in the order of the
//! runs' ids (these, and the renewal of leases): otherwise two of them
//! could each hold a row the other waits for, and PostgreSQL would break
//! the cycle only after its `deadlock_timeout` (a second), failing one.
//!
//! A write that is refused (the run is gone, finished, or in another epoch;
//! the operation or the run's id exists already) changes nothing in the
//! statement and is told why after the commit. A batch that fails as a
//! whole is applied again one write at a time, so a failure is answered to
//! the write that caused it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgArguments, PgConnectOptions};
use sqlx::query::QueryAs;
use sqlx::{Connection, PgConnection, Postgres};
use tokio::sync::{mpsc, oneshot};

use super::notifications::encode_change;
use super::{PgStore, select_run};
use crate::domain::RunStatus;
use crate::domain::{JournalWrite, NewRun, RunOutcome, WorkflowId};
use crate::store::rows::{JournalRow, completes_a_wait, corrupt, journal_row, outcome_columns};
use crate::store::statements::RUN_EPOCH;
use crate::store::{Change, CreateRun, Result, StoreError, WriteHealth};

/// Whether `write` can be grouped: its effect, if any, is an event, and it
/// does not complete a wait journaled before (which wakes its waiter and
/// is written in a transaction of the run's own).
pub(super) fn is_single(write: &JournalWrite) -> bool {
    match write {
        JournalWrite::SetEvent { .. } => true,
        JournalWrite::Send { .. }
        | JournalWrite::RecvCompleted { .. }
        | JournalWrite::Stream { .. } => false,
        other => !completes_a_wait(other),
    }
}

/// The statement that applies a batch; [`Writer::write`] binds it.
const BATCH_STATEMENT: &str = include_str!("batch.sql");

/// What the statement returns per write that took effect: its part
/// (`created`, `journaled`, `ended`), the run's id and the operation.
type BatchQuery<'q> = QueryAs<'q, Postgres, (String, Option<String>, Option<i64>), PgArguments>;

/// Most writes applied in one batch.
const MAX_BATCH: usize = 256;

/// One queued write and where its answer goes.
#[derive(Debug)]
pub(super) enum Job {
    Create(CreateJob),
    Entry(EntryJob),
    Finish(FinishJob),
}

type CreateJob = (NewRun, oneshot::Sender<Result<CreateRun>>);

#[derive(Debug)]
pub(super) struct EntryJob {
    id: WorkflowId,
    fence: Option<u64>,
    write: JournalWrite,
    now: i64,
    reply: oneshot::Sender<Result<()>>,
}

#[derive(Debug)]
pub(super) struct FinishJob {
    id: WorkflowId,
    fence: Option<u64>,
    outcome: RunOutcome,
    now: i64,
    reply: oneshot::Sender<Result<()>>,
}

/// How long the writer keeps trying to open its connection (the server
/// restarting, say) before it fails the batch that waits: as long as a
/// pool's acquire would have waited.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// How long a connection has to answer a ping after a failed batch.
const PING_PATIENCE: Duration = Duration::from_secs(5);

/// What the writer needs of the store; not the store itself, whose queue
/// sender would keep the writer alive after the store is dropped.
pub(super) struct Writer {
    /// Where the writer's connection goes, with its session's settings.
    pub(super) connect: PgConnectOptions,
    pub(super) executor_id: String,
    pub(super) lease_ms: i64,
    /// The channel of change notifications (the schema).
    pub(super) channel: String,
    pub(super) health: Arc<WriteHealth>,
}

/// The writer at work: its connection is its own, not a pool's. A pool
/// pings a connection each time it is given back and again when it is
/// taken: two round trips per batch beside the statement's one, on the
/// path every durable write waits on.
struct Running {
    writer: Writer,
    /// `None` until the first batch, and after a failed batch left it
    /// unanswering: the next batch opens a fresh one.
    conn: Option<PgConnection>,
}

/// Start the writer; it stops when every sender of its queue is gone.
///
/// One batch in flight, not several: with two cores shared by the host
/// and PostgreSQL, two or three (each on a connection of its own) made
/// batches of 6.4 and 4.8 writes instead of 10.8 and cost 2–15% of the
/// throughput at 16 clients (`bench`, interleaved, 2026-12-03).
///
/// On a thread of its own, with a runtime of its own: every durable write
/// waits on this loop, and on the host's runtime its wake-ups queued
/// behind the guests and requests that the workers were running.
pub(super) fn spawn(writer: Writer) -> Result<mpsc::Sender<Job>> {
    let (sender, mut queue) = mpsc::channel::<Job>(4 * MAX_BATCH);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| StoreError::Database(format!("starting the writer: {error}")))?;
    let work = async move {
        let mut running = Running { writer, conn: None };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            running.apply(std::mem::take(&mut batch)).await;
        }
        if let Some(conn) = running.conn {
            let _ = conn.close().await;
        }
    };
    std::thread::Builder::new()
        .name("cairn-pg-writer".to_owned())
        .spawn(move || runtime.block_on(work))
        .map_err(|error| StoreError::Database(format!("starting the writer: {error}")))?;
    Ok(sender)
}

impl PgStore {
    async fn queue<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(job(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Insert a new run (taking its lease), or find the one with its id.
    pub(super) async fn insert_run(&self, run: NewRun) -> Result<CreateRun> {
        self.queue(|reply| Job::Create((run, reply))).await
    }

    /// A journal write for which [`is_single`] holds.
    pub(super) async fn write_single(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        write: JournalWrite,
        now: i64,
    ) -> Result<()> {
        let id = id.clone();
        self.queue(|reply| {
            Job::Entry(EntryJob {
                id,
                fence,
                write,
                now,
                reply,
            })
        })
        .await
    }

    /// End a run, fenced by its epoch.
    pub(super) async fn finish(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        outcome: RunOutcome,
        now: i64,
    ) -> Result<()> {
        let id = id.clone();
        self.queue(|reply| {
            Job::Finish(FinishJob {
                id,
                fence,
                outcome,
                now,
                reply,
            })
        })
        .await
    }
}

/// A batch split by kind, in queue order. Only the first write of a run's
/// id (for creations and ends) or of a run's operation goes into the
/// statement: a second one in the same batch is refused as it would be in
/// the next batch.
#[derive(Default)]
struct Batch {
    creates: Vec<CreateJob>,
    entries: Vec<EntryJob>,
    finishes: Vec<FinishJob>,
}

impl Batch {
    fn of(jobs: Vec<Job>) -> Self {
        let mut batch = Batch::default();
        for job in jobs {
            match job {
                Job::Create(create) => batch.creates.push(create),
                Job::Entry(entry) => batch.entries.push(entry),
                Job::Finish(finish) => batch.finishes.push(finish),
            }
        }
        batch
    }

    fn len(&self) -> usize {
        self.creates.len() + self.entries.len() + self.finishes.len()
    }

    /// Back into single jobs, for applying them one at a time.
    fn into_jobs(self) -> Vec<Job> {
        let creates = self.creates.into_iter().map(Job::Create);
        let entries = self.entries.into_iter().map(Job::Entry);
        let finishes = self.finishes.into_iter().map(Job::Finish);
        creates.chain(entries).chain(finishes).collect()
    }
}

/// Which of a batch's writes changed the database.
struct Applied {
    /// Per creation: the run was inserted.
    created: Vec<bool>,
    /// Per journal write: the entry was journaled.
    journaled: Vec<bool>,
    /// Per end: the run was ended.
    finished: Vec<bool>,
}

impl Running {
    async fn apply(&mut self, jobs: Vec<Job>) {
        let batch = Batch::of(jobs);
        let count = batch.len() as u64;
        let started = Instant::now();
        let conn = match open(&mut self.conn, &self.writer.connect).await {
            Ok(conn) => conn,
            Err(error) => return self.writer.fail(batch, error),
        };
        let outcome = self.writer.write(conn, &batch).await;
        match outcome {
            Ok(applied) => {
                self.writer.health.committed(count, started);
                self.writer.answer(conn, batch, applied).await;
            }
            Err(error) => {
                // The server refusing the statement leaves the connection
                // as it was (no transaction is open); a broken one (the
                // server restarted, the socket closed) is dropped, and the
                // next batch opens a fresh one.
                if !still_works(conn).await {
                    self.conn = None;
                }
                if count == 1 {
                    return self.writer.fail(batch, error);
                }
                tracing::warn!(%error, writes = count, "a batch of writes failed; applying them one at a time");
                for job in batch.into_jobs() {
                    Box::pin(self.apply(vec![job])).await;
                }
            }
        }
    }
}

/// Whether `conn` still answers, within [`PING_PATIENCE`].
async fn still_works(conn: &mut PgConnection) -> bool {
    tokio::time::timeout(PING_PATIENCE, conn.ping())
        .await
        .is_ok_and(|pinged| pinged.is_ok())
}

/// The writer's connection, opened if there is none, retrying for up to
/// [`CONNECT_PATIENCE`].
async fn open<'c>(
    conn: &'c mut Option<PgConnection>,
    options: &PgConnectOptions,
) -> Result<&'c mut PgConnection> {
    if let Some(conn) = conn {
        return Ok(conn);
    }
    let deadline = Instant::now() + CONNECT_PATIENCE;
    let mut pause = Duration::from_millis(10);
    loop {
        match PgConnection::connect_with(options).await {
            Ok(opened) => return Ok(conn.insert(opened)),
            Err(error) if Instant::now() + pause >= deadline => return Err(error.into()),
            Err(error) => {
                tracing::debug!(%error, "the writer's connection could not be opened; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

impl Writer {
    /// Apply the batch as one statement (`batch.sql`): atomic on its own,
    /// so no `BEGIN` and `COMMIT` around it, and one round trip for the
    /// whole batch where a statement per kind took five.
    async fn write(&self, conn: &mut PgConnection, batch: &Batch) -> Result<Applied> {
        let creates = Chosen::of(&batch.creates, |(run, _)| run.id.as_str());
        let entries = Chosen::of(&batch.entries, |e| (e.id.as_str(), e.write.op()));
        let finishes = Chosen::of(&batch.finishes, |f| f.id.as_str());
        let mut locks: Vec<&str> = entries
            .chosen()
            .map(|e| e.id.as_str())
            .chain(finishes.chosen().map(|f| f.id.as_str()))
            .collect();
        locks.sort_unstable();
        locks.dedup();

        let runs: Vec<&NewRun> = creates.chosen().map(|(run, _)| run).collect();
        let journaled: Vec<&EntryJob> = entries.chosen().collect();
        let rows: Vec<_> = journaled.iter().map(|e| journal_row(&e.write)).collect();
        let ended: Vec<&FinishJob> = finishes.chosen().collect();
        let outcomes: Vec<_> = ended
            .iter()
            .map(|f| outcome_columns(f.outcome.clone()))
            .collect();

        let query = sqlx::query_as(BATCH_STATEMENT);
        let query = self.bind_creates(query, &runs);
        let query = self.bind_entries(query, &journaled, &rows);
        let query = self.bind_finishes(query, &ended, &outcomes);
        let effects: Vec<(String, Option<String>, Option<i64>)> = query
            .bind(&self.executor_id)
            .bind(&self.channel)
            .bind(&locks)
            .fetch_all(&mut *conn)
            .await?;

        let mut created = HashSet::new();
        let mut written = HashSet::new();
        let mut finished = HashSet::new();
        for (part, id, op) in effects {
            match (part.as_str(), id, op) {
                ("created", Some(id), _) => created.insert(id),
                ("journaled", Some(id), Some(op)) => written.insert((id, op)),
                ("ended", Some(id), _) => finished.insert(id),
                _ => false,
            };
        }
        Ok(Applied {
            created: creates.took_effect(|(run, _)| created.contains(run.id.as_str())),
            journaled: entries.took_effect(|e| {
                written.contains(&(e.id.as_str().to_owned(), i64::from(e.write.op())))
            }),
            finished: finishes.took_effect(|f| finished.contains(f.id.as_str())),
        })
    }

    /// The runs to create: parameters 1–10.
    fn bind_creates<'q>(&self, query: BatchQuery<'q>, runs: &[&'q NewRun]) -> BatchQuery<'q> {
        query
            .bind(column(runs, |r| r.id.as_str()))
            .bind(column(runs, |r| r.module.as_str()))
            .bind(column(runs, |r| r.version.as_str()))
            .bind(column(runs, |r| r.workflow.as_str()))
            .bind(column(runs, |r| r.input.as_str()))
            .bind(column(runs, |r| r.now))
            .bind(column(runs, |r| r.deadline))
            .bind(column(runs, |r| r.parent.as_ref().map(WorkflowId::as_str)))
            .bind(column(runs, |r| r.now.saturating_add(self.lease_ms)))
            .bind(column(runs, |r| r.traceparent.as_deref()))
    }

    /// The journal writes, with their rows: parameters 11–25.
    fn bind_entries<'q>(
        &self,
        query: BatchQuery<'q>,
        entries: &[&'q EntryJob],
        rows: &[JournalRow<'q>],
    ) -> BatchQuery<'q> {
        let event = |e: &&'q EntryJob| match &e.write {
            JournalWrite::SetEvent { key, value, .. } => Some((key, value)),
            _ => None,
        };
        // Each event's notification, sent by the statement for the events
        // it writes: delivered at its commit, with no statement of its own.
        let notice = |e: &&'q EntryJob| {
            event(e).map(|(key, _)| {
                let change = Change::Event {
                    run: e.id.clone(),
                    key: key.clone(),
                };
                encode_change(&change, &self.executor_id)
            })
        };
        query
            .bind(column(entries, |e| e.id.as_str()))
            .bind(column(entries, |e| i64::from(e.write.op())))
            .bind(column(rows, |r| r.kind.as_str()))
            .bind(column(rows, |r| r.name))
            .bind(column(rows, |r| r.outcome.clone()))
            .bind(column(rows, |r| r.deadline))
            .bind(column(rows, |r| r.completed))
            .bind(column(entries, |e| e.now))
            .bind(column(rows, |r| r.error.clone()))
            .bind(column(rows, |r| r.attempt.map(i64::from)))
            .bind(column(rows, |r| r.started_at))
            .bind(column(entries, |e| fence(e.fence)))
            .bind(column(entries, |e| event(e).map(|(key, _)| key.as_str())))
            .bind(column(entries, |e| {
                event(e).map(|(_, value)| value.as_str())
            }))
            .bind(column(entries, notice))
    }

    /// The ends, with their outcomes' columns: parameters 26–32.
    fn bind_finishes<'q>(
        &self,
        query: BatchQuery<'q>,
        finishes: &[&'q FinishJob],
        outcomes: &[(RunStatus, Option<String>, Option<String>)],
    ) -> BatchQuery<'q> {
        let notice =
            |f: &&'q FinishJob| encode_change(&Change::Finished(f.id.clone()), &self.executor_id);
        query
            .bind(column(finishes, |f| f.id.as_str()))
            .bind(column(outcomes, |(status, _, _)| status.as_str()))
            .bind(column(outcomes, |(_, output, _)| output.clone()))
            .bind(column(outcomes, |(_, _, error)| error.clone()))
            .bind(column(finishes, |f| f.now))
            .bind(column(finishes, |f| fence(f.fence)))
            .bind(column(finishes, notice))
    }
}

/// One parameter of the statement: a column of `items`, bound as an array.
fn column<T, U>(items: &[T], value: impl Fn(&T) -> U) -> Vec<U> {
    items.iter().map(value).collect()
}

/// An epoch fence as its column holds it.
fn fence(epoch: Option<u64>) -> Option<i64> {
    epoch.map(|e| e as i64)
}

impl Writer {
    /// Answer each write of a committed batch: done, or why not.
    async fn answer(&self, conn: &mut PgConnection, batch: Batch, applied: Applied) {
        for ((run, reply), created) in batch.creates.into_iter().zip(applied.created) {
            let answer = if created {
                Ok(CreateRun::Created(run.into_record()))
            } else {
                existing_run(conn, &run.id).await
            };
            let _ = reply.send(answer);
        }
        for (entry, journaled) in batch.entries.into_iter().zip(applied.journaled) {
            let answer = if journaled {
                // Other hosts were notified by the statement itself.
                Ok(())
            } else {
                let refusal =
                    PgStore::refusal(conn, &entry.id, entry.fence, entry.write.op()).await;
                Err(refusal.unwrap_or_else(|error| error))
            };
            let _ = entry.reply.send(answer);
        }
        for (finish, ended) in batch.finishes.into_iter().zip(applied.finished) {
            let answer = if ended {
                Ok(())
            } else {
                not_ended(conn, &finish.id, finish.fence).await
            };
            let _ = finish.reply.send(answer);
        }
    }

    /// Answer every write of `batch` with `error` (the first gets it, the
    /// others the same failure again).
    fn fail(&self, batch: Batch, error: StoreError) {
        if matches!(error, StoreError::Database(_) | StoreError::StorageFull(_)) {
            self.health.failed(&error);
        }
        let again = error.clone_failure();
        let mut first = Some(error);
        let mut next = || first.take().unwrap_or_else(|| again.clone_failure());
        for (_, reply) in batch.creates {
            let _ = reply.send(Err(next()));
        }
        for entry in batch.entries {
            let _ = entry.reply.send(Err(next()));
        }
        for finish in batch.finishes {
            let _ = finish.reply.send(Err(next()));
        }
    }
}

impl StoreError {
    /// The same failure again, for another write of a batch it failed.
    fn clone_failure(&self) -> StoreError {
        match self {
            StoreError::StorageFull(detail) => StoreError::StorageFull(detail.clone()),
            other => StoreError::Commit(other.to_string()),
        }
    }
}

/// A batch's writes of one kind, and which of them go into the statement:
/// the first with its key (a run's id, or a run's operation).
struct Chosen<'a, T> {
    items: &'a [T],
    first: Vec<bool>,
}

impl<'a, T> Chosen<'a, T> {
    fn of<K: std::hash::Hash + Eq>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Self {
        let mut seen = HashSet::new();
        let first = items.iter().map(|item| seen.insert(key(item))).collect();
        Chosen { items, first }
    }

    fn chosen(&self) -> impl Iterator<Item = &'a T> + '_ {
        self.items
            .iter()
            .zip(&self.first)
            .filter_map(|(item, first)| first.then_some(item))
    }

    /// Per item: it went into the statement and `applied` says it changed
    /// the database.
    fn took_effect(&self, applied: impl Fn(&T) -> bool) -> Vec<bool> {
        self.items
            .iter()
            .zip(&self.first)
            .map(|(item, first)| *first && applied(item))
            .collect()
    }
}

async fn existing_run(conn: &mut PgConnection, id: &WorkflowId) -> Result<CreateRun> {
    let existing = select_run(conn, id.as_str())
        .await?
        .ok_or_else(|| corrupt(format!("run {id} vanished during its creation")))?;
    Ok(CreateRun::Existing(existing))
}

/// Why an end changed nothing: another execution has the run (a fenced
/// error), or it had ended already (nothing to do).
async fn not_ended(conn: &mut PgConnection, id: &WorkflowId, fence: Option<u64>) -> Result<()> {
    // A run's epoch only grows: read after the update, it tells whether
    // another execution had it.
    let current: Option<i64> = sqlx::query_scalar(RUN_EPOCH)
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    match (fence, current) {
        (Some(mine), Some(current)) if current as u64 != mine => Err(StoreError::Fenced {
            run: id.to_string(),
            current: current as u64,
            mine,
        }),
        _ => Ok(()),
    }
}
