//! Group commit for PostgreSQL: the hot writes of runs (a run's creation,
//! a single journal write, a run's end) from every execution on this host
//! are queued to one writer, which applies whatever is queued as one
//! statement per kind (rows passed as arrays and `UNNEST`ed), the epoch
//! fence checked for the whole batch inside that statement, and answers
//! each caller once the batch is durable. While one batch commits, the next
//! gathers: one WAL flush and three round trips for dozens of writes,
//! where each was its own autocommitted statement before.
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

use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use super::checkout::Checkout;
use super::notifications::encode_change;
use super::{PgStore, select_run};
use crate::domain::{JournalWrite, NewRun, RunOutcome, WorkflowId};
use crate::store::rows::{completes_a_wait, corrupt, journal_row, outcome_columns};
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

/// What the writer needs of the store; not the store itself, whose queue
/// sender would keep the writer alive after the store is dropped.
pub(super) struct Writer {
    pub(super) pool: PgPool,
    pub(super) executor_id: String,
    pub(super) lease_ms: i64,
    /// The channel of change notifications (the schema).
    pub(super) channel: String,
    pub(super) health: Arc<WriteHealth>,
}

/// Start the writer; it stops when every sender of its queue is gone.
///
/// One writer, not several: with two cores shared by the host and
/// PostgreSQL, three writers (each batch on a connection of its own) made
/// batches of 4.3 writes instead of 10.8 and cost 15–50% of the throughput
/// at 16 clients (`bench`, interleaved): PostgreSQL's CPU per commit is
/// what runs out, not the writer's round trips.
pub(super) fn spawn(writer: Writer) -> mpsc::Sender<Job> {
    let (sender, mut queue) = mpsc::channel::<Job>(4 * MAX_BATCH);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            writer.apply(std::mem::take(&mut batch)).await;
        }
    });
    sender
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

    fn kinds(&self) -> usize {
        [
            self.creates.is_empty(),
            self.entries.is_empty(),
            self.finishes.is_empty(),
        ]
        .iter()
        .filter(|empty| !**empty)
        .count()
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

impl Writer {
    async fn apply(&self, jobs: Vec<Job>) {
        let batch = Batch::of(jobs);
        let count = batch.len() as u64;
        let started = std::time::Instant::now();
        let mut conn = match Checkout::take(&self.pool).await {
            Ok(conn) => conn,
            Err(error) => return self.fail(batch, error),
        };
        match self.write(&mut conn, &batch).await {
            Ok(applied) => {
                self.health.committed(count, started);
                self.answer(&mut conn, batch, applied).await;
            }
            Err(error) if count == 1 => self.fail(batch, error),
            Err(error) => {
                tracing::warn!(%error, writes = count, "a batch of writes failed; applying them one at a time");
                drop(conn);
                for job in batch.into_jobs() {
                    Box::pin(self.apply(vec![job])).await;
                }
            }
        }
    }

    /// Apply the batch: one statement per kind, in a transaction when there
    /// is more than one.
    async fn write(&self, conn: &mut Checkout, batch: &Batch) -> Result<Applied> {
        if batch.kinds() > 1 {
            let mut tx = conn.begin().await?;
            if !batch.entries.is_empty() && !batch.finishes.is_empty() {
                // The journal's statement and the ends' each lock their
                // runs in order, but one after the other they would not:
                // all of them first, in one order.
                let runs: Vec<&str> = batch
                    .entries
                    .iter()
                    .map(|e| e.id.as_str())
                    .chain(batch.finishes.iter().map(|f| f.id.as_str()))
                    .collect();
                sqlx::query("SELECT 1 FROM runs WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
                    .bind(&runs)
                    .execute(&mut *tx)
                    .await?;
            }
            let applied = self.statements(&mut tx, batch).await?;
            tx.commit().await?;
            Ok(applied)
        } else {
            self.statements(conn, batch).await
        }
    }

    async fn statements(&self, conn: &mut PgConnection, batch: &Batch) -> Result<Applied> {
        // Runs first, ends last: the order a run's own writes come in.
        Ok(Applied {
            created: self.create_runs(conn, &batch.creates).await?,
            journaled: self.journal(conn, &batch.entries).await?,
            finished: self.finish_runs(conn, &batch.finishes).await?,
        })
    }

    async fn create_runs(
        &self,
        conn: &mut PgConnection,
        creates: &[CreateJob],
    ) -> Result<Vec<bool>> {
        if creates.is_empty() {
            return Ok(Vec::new());
        }
        let first = first_of(creates.iter().map(|(run, _)| run.id.as_str().to_owned()));
        let runs = || {
            creates
                .iter()
                .zip(&first)
                .filter(|(_, first)| **first)
                .map(|((run, _), _)| run)
        };
        // The host that creates a run executes it: it takes the lease.
        // In the ids' order: two batches creating the same two runs at once
        // take their keys in one order, so neither waits on the other.
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO runs (id, module, version, workflow, input, status, attempts, created_at, updated_at, deadline, parent, epoch, owner, lease_expires_at, traceparent)
             SELECT id, module, version, workflow, input, 'PENDING', 1, now, now, deadline, parent, 1, $10, lease, traceparent
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::BIGINT[], $8::TEXT[], $9::BIGINT[], $11::TEXT[])
                 AS n(id, module, version, workflow, input, now, deadline, parent, lease, traceparent)
             ORDER BY id
             ON CONFLICT (id) DO NOTHING
             RETURNING id",
        )
        .bind(runs().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .bind(runs().map(|r| r.module.as_str()).collect::<Vec<_>>())
        .bind(runs().map(|r| r.version.as_str()).collect::<Vec<_>>())
        .bind(runs().map(|r| r.workflow.as_str()).collect::<Vec<_>>())
        .bind(runs().map(|r| r.input.as_str()).collect::<Vec<_>>())
        .bind(runs().map(|r| r.now).collect::<Vec<_>>())
        .bind(runs().map(|r| r.deadline).collect::<Vec<_>>())
        .bind(
            runs()
                .map(|r| r.parent.as_ref().map(WorkflowId::as_str))
                .collect::<Vec<_>>(),
        )
        .bind(
            runs()
                .map(|r| r.now.saturating_add(self.lease_ms))
                .collect::<Vec<_>>(),
        )
        .bind(&self.executor_id)
        .bind(
            runs()
                .map(|r| r.traceparent.as_deref())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *conn)
        .await?;
        let inserted: HashSet<String> = inserted.into_iter().collect();
        Ok(creates
            .iter()
            .zip(first)
            .map(|((run, _), first)| first && inserted.contains(run.id.as_str()))
            .collect())
    }

    async fn journal(&self, conn: &mut PgConnection, entries: &[EntryJob]) -> Result<Vec<bool>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let first = first_of(
            entries
                .iter()
                .map(|e| (e.id.as_str().to_owned(), e.write.op())),
        );
        let chosen: Vec<&EntryJob> = entries
            .iter()
            .zip(&first)
            .filter_map(|(entry, first)| first.then_some(entry))
            .collect();
        let rows: Vec<_> = chosen.iter().map(|e| journal_row(&e.write)).collect();
        let events: Vec<(Option<&str>, Option<&str>)> = chosen
            .iter()
            .map(|e| match &e.write {
                JournalWrite::SetEvent { key, value, .. } => {
                    (Some(key.as_str()), Some(value.as_str()))
                }
                _ => (None, None),
            })
            .collect();
        // Each event's notification, sent by the statement for the events
        // it writes: delivered at its commit, with no statement of its own.
        let notices: Vec<Option<String>> = chosen
            .iter()
            .map(|e| match &e.write {
                JournalWrite::SetEvent { key, .. } => Some(encode_change(
                    &Change::Event {
                        run: e.id.clone(),
                        key: key.clone(),
                    },
                    &self.executor_id,
                )),
                _ => None,
            })
            .collect();
        // Each row's run is held `FOR SHARE` until the commit, so no claim
        // can hand the run to another execution between the fence's check
        // and the commit.
        let written: Vec<(String, i64)> = sqlx::query_as(
            "WITH input AS (
                 SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::BOOLEAN[], $8::BIGINT[], $9::TEXT[], $10::BIGINT[], $11::BIGINT[], $12::BIGINT[], $13::TEXT[], $14::TEXT[], $16::TEXT[])
                     WITH ORDINALITY AS i(run_id, op, kind, name, outcome, deadline, completed, recorded_at, error, attempt, started_at, epoch, event_key, event_value, notice, ord)
             ), allowed AS (
                 SELECT i.* FROM input i JOIN runs r ON r.id = i.run_id
                 WHERE r.status = 'PENDING' AND (i.epoch IS NULL OR r.epoch = i.epoch)
                 ORDER BY r.id, i.ord
                 FOR SHARE OF r
             ), entry AS (
                 INSERT INTO journal (run_id, op, kind, name, outcome, deadline, completed, recorded_at, error, attempt, started_at, epoch, writer)
                 SELECT run_id, op, kind, name, outcome, deadline, completed, recorded_at, error, attempt, started_at, epoch, $15
                 FROM allowed ORDER BY ord
                 ON CONFLICT (run_id, op) DO NOTHING
                 RETURNING run_id, op
             ), published AS (
                 -- The history's trigger publishes each value into `events`.
                 INSERT INTO event_history (run_id, op, key, value, recorded_at)
                 SELECT a.run_id, a.op, a.event_key, a.event_value, a.recorded_at
                 FROM allowed a JOIN entry e ON e.run_id = a.run_id AND e.op = a.op
                 WHERE a.event_key IS NOT NULL
                 ORDER BY a.ord
             ), notified AS (
                 SELECT count(pg_notify($17, a.notice)) AS sent
                 FROM allowed a JOIN entry e ON e.run_id = a.run_id AND e.op = a.op
                 WHERE a.notice IS NOT NULL
             )
             SELECT run_id, op FROM entry, notified",
        )
        .bind(chosen.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
        .bind(chosen.iter().map(|e| i64::from(e.write.op())).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.name).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.outcome.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.deadline).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.completed).collect::<Vec<_>>())
        .bind(chosen.iter().map(|e| e.now).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.attempt.map(i64::from)).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.started_at).collect::<Vec<_>>())
        .bind(chosen.iter().map(|e| e.fence.map(|f| f as i64)).collect::<Vec<_>>())
        .bind(events.iter().map(|(key, _)| *key).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, value)| *value).collect::<Vec<_>>())
        .bind(&self.executor_id)
        .bind(&notices)
        .bind(&self.channel)
        .fetch_all(&mut *conn)
        .await?;
        let written: HashSet<(String, i64)> = written.into_iter().collect();
        Ok(entries
            .iter()
            .zip(first)
            .map(|(e, first)| {
                first && written.contains(&(e.id.as_str().to_owned(), i64::from(e.write.op())))
            })
            .collect())
    }

    async fn finish_runs(
        &self,
        conn: &mut PgConnection,
        finishes: &[FinishJob],
    ) -> Result<Vec<bool>> {
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        let first = first_of(finishes.iter().map(|f| f.id.as_str().to_owned()));
        let chosen: Vec<&FinishJob> = finishes
            .iter()
            .zip(&first)
            .filter_map(|(finish, first)| first.then_some(finish))
            .collect();
        let columns: Vec<_> = chosen
            .iter()
            .map(|f| outcome_columns(f.outcome.clone()))
            .collect();
        let notices: Vec<String> = chosen
            .iter()
            .map(|f| encode_change(&Change::Finished(f.id.clone()), &self.executor_id))
            .collect();
        let ended: Vec<String> = sqlx::query_scalar(
            "WITH u AS (
                 SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::TEXT[])
                     AS u(id, status, output, error, now, fence, notice)
             ), ending AS (
                 SELECT r.id FROM runs r JOIN u ON r.id = u.id
                 WHERE r.status = 'PENDING' AND (u.fence IS NULL OR r.epoch = u.fence)
                 ORDER BY r.id
                 FOR NO KEY UPDATE OF r
             ), ended AS (
                 UPDATE runs r SET status = u.status, output = u.output, error = u.error, updated_at = u.now, owner = NULL, lease_expires_at = NULL
                 FROM u JOIN ending ON ending.id = u.id
                 WHERE r.id = u.id
                 RETURNING r.id, u.notice
             ), notified AS (
                 SELECT count(pg_notify($8, notice)) AS sent FROM ended
             )
             SELECT id FROM ended, notified",
        )
        .bind(chosen.iter().map(|f| f.id.as_str()).collect::<Vec<_>>())
        .bind(columns.iter().map(|(status, _, _)| status.as_str()).collect::<Vec<_>>())
        .bind(columns.iter().map(|(_, output, _)| output.as_deref()).collect::<Vec<_>>())
        .bind(columns.iter().map(|(_, _, error)| error.as_deref()).collect::<Vec<_>>())
        .bind(chosen.iter().map(|f| f.now).collect::<Vec<_>>())
        .bind(chosen.iter().map(|f| f.fence.map(|e| e as i64)).collect::<Vec<_>>())
        .bind(&notices)
        .bind(&self.channel)
        .fetch_all(&mut *conn)
        .await?;
        let ended: HashSet<String> = ended.into_iter().collect();
        Ok(finishes
            .iter()
            .zip(first)
            .map(|(f, first)| first && ended.contains(f.id.as_str()))
            .collect())
    }

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

/// Per item, whether it is the first with its key.
fn first_of<K: std::hash::Hash + Eq>(keys: impl Iterator<Item = K>) -> Vec<bool> {
    let mut seen = HashSet::new();
    keys.map(|key| seen.insert(key)).collect()
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
    let current: Option<i64> = sqlx::query_scalar("SELECT epoch FROM runs WHERE id = $1")
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
