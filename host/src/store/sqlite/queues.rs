//! Queues and `ENQUEUED` runs, as the writer applies them. One writer, one
//! host: a dequeue reads the counts and moves the runs in one transaction,
//! so the limits cannot be overrun between the two.

use super::connection::WriteConnection;
use crate::domain::{NewRun, QueueInfo, QueueName, QueueSettings, RunRecord};
use crate::store::queueing::{DequeuePass, Dequeued, Lane, LaneCounts};
use crate::store::rows::{Columns, RUN_COLUMNS, corrupt, queue_from_row, run_from_row};
use crate::store::{CreateRun, DeleteQueue, Result};

use super::writes::select_run;
use crate::store::statements::{
    DEDUPLICATED_RUN, DELETE_QUEUE, ENQUEUED_IN_QUEUE, NEXT_DELAYED_START, QUEUE,
};

pub(super) fn put_queue(
    conn: &mut WriteConnection,
    name: QueueName,
    settings: QueueSettings,
    now: i64,
) -> Result<QueueInfo> {
    let rate = settings.rate_limit;
    conn.query(
        "INSERT INTO queues (name, concurrency, per_host_concurrency, rate_limit, rate_period_ms, priority, partitioned, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (name) DO UPDATE SET
             concurrency = excluded.concurrency, per_host_concurrency = excluded.per_host_concurrency,
             rate_limit = excluded.rate_limit, rate_period_ms = excluded.rate_period_ms,
             priority = excluded.priority, partitioned = excluded.partitioned, updated_at = excluded.updated_at",
    )
    .bind(name.as_str())
    .bind(settings.concurrency)
    .bind(settings.per_host_concurrency)
    .bind(rate.map(|r| r.limit))
    .bind(rate.map(|r| i64::try_from(r.period_ms).unwrap_or(i64::MAX)))
    .bind(settings.priority)
    .bind(settings.partitioned)
    .bind(now)
    .execute()?;
    let row = conn.query(QUEUE).bind(name.as_str()).fetch_one()?;
    queue_from_row(&row)
}

/// Delete queue `name` unless runs wait in it.
pub(super) fn delete_queue(conn: &mut WriteConnection, name: QueueName) -> Result<DeleteQueue> {
    let waiting = conn
        .query(ENQUEUED_IN_QUEUE)
        .bind(name.as_str())
        .fetch_one()?
        .first()
        .as_int()
        .unwrap_or(0);
    if waiting > 0 {
        return Ok(DeleteQueue::Busy(waiting as u64));
    }
    let deleted = conn.query(DELETE_QUEUE).bind(name.as_str()).execute()?;
    Ok(if deleted == 1 {
        DeleteQueue::Deleted
    } else {
        DeleteQueue::Missing
    })
}

/// Create an `ENQUEUED` run, unless a run with its id exists (then that
/// one) or a run of its queue with its deduplication id is `ENQUEUED` or
/// `PENDING` (then that one, as a duplicate).
pub(super) fn create_enqueued(conn: &mut WriteConnection, run: NewRun) -> Result<CreateRun> {
    if let Some(existing) = select_run(conn, run.id.as_str())? {
        return Ok(CreateRun::Existing(existing));
    }
    let admission = run
        .admission
        .clone()
        .ok_or_else(|| corrupt("an enqueued run without an admission"))?;
    if let (Some(queue), Some(dedup)) = (&admission.queue, &admission.deduplication_id) {
        let duplicate = conn
            .query(DEDUPLICATED_RUN)
            .bind(queue.as_str())
            .bind(dedup.as_str())
            .fetch_optional()?;
        if let Some(row) = duplicate {
            return Ok(CreateRun::Duplicate(run_from_row(&row)?));
        }
    }
    conn.query(
        "INSERT INTO runs (id, module, version, workflow, input, status, attempts, created_at, updated_at, deadline, parent,
                           queue, priority, partition_key, deduplication_id, start_at, timeout_ms, traceparent)
         VALUES (?, ?, ?, ?, ?, 'ENQUEUED', 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(run.id.as_str())
    .bind(run.module.as_str())
    .bind(run.version.as_str())
    .bind(&run.workflow)
    .bind(&run.input)
    .bind(run.now)
    .bind(run.now)
    .bind(run.deadline)
    .bind(run.parent.as_ref().map(|p| p.as_str()))
    .bind(admission.queue.as_ref().map(QueueName::as_str))
    .bind(i64::from(admission.priority))
    .bind(admission.partition_key.as_deref())
    .bind(admission.deduplication_id.as_deref())
    .bind(admission.start_at)
    .bind(run.timeout_ms.map(|t| i64::try_from(t).unwrap_or(i64::MAX)))
    .bind(run.traceparent.as_deref())
    .execute()?;
    Ok(CreateRun::Created(run.into_record()))
}

/// Move the runs that may start now from `ENQUEUED` to `PENDING`, at most
/// `limit`.
pub(super) fn dequeue(conn: &mut WriteConnection, now: i64, limit: u32) -> Result<Dequeued> {
    let lanes = conn
        .query(
            "SELECT DISTINCT queue, partition_key FROM runs
             WHERE status = 'ENQUEUED' AND (start_at IS NULL OR start_at <= ?)",
        )
        .bind(now)
        .fetch_all()?
        .into_iter()
        .map(|row| {
            Ok(Lane {
                queue: row
                    .maybe_text("queue")?
                    .map(|q| QueueName::parse(&q).map_err(corrupt))
                    .transpose()?,
                partition: row.maybe_text("partition_key")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut pass = DequeuePass::new(now, limit);
    for lane in lanes {
        let settings = match &lane.queue {
            Some(queue) => conn
                .query(QUEUE)
                .bind(queue.as_str())
                .fetch_optional()?
                .map(|row| queue_from_row(&row))
                .transpose()?
                .map(|info| info.settings),
            None => None,
        };
        let counts = if DequeuePass::needs_counts(settings.as_ref()) {
            lane_counts(conn, &lane, pass.window_start(settings.as_ref()))?
        } else {
            LaneCounts::default()
        };
        let room = pass.room(settings.as_ref(), &counts);
        if room == 0 {
            continue;
        }
        let order = if settings.is_some_and(|s| s.priority) {
            "priority, created_at, id"
        } else {
            "created_at, id"
        };
        let ids: Vec<String> = conn
            .query(&format!(
                "SELECT id FROM runs
                 WHERE status = 'ENQUEUED' AND queue IS ?1 AND partition_key IS ?2
                   AND (start_at IS NULL OR start_at <= ?3)
                 ORDER BY {order} LIMIT ?4"
            ))
            .bind(lane.queue.as_ref().map(QueueName::as_str))
            .bind(lane.partition.as_deref())
            .bind(now)
            .bind(i64::try_from(room).unwrap_or(i64::MAX))
            .fetch_all()?
            .into_iter()
            .filter_map(|row| row.first().clone().into_text())
            .collect();
        for id in ids {
            if let Some(run) = start(conn, &id, now)? {
                pass.started(run);
            }
        }
    }
    let next_start: Option<i64> = conn
        .query(NEXT_DELAYED_START)
        .bind(now)
        .fetch_one()?
        .first()
        .as_int();
    Ok(pass.finish(next_start))
}

/// What a lane's limits are measured against. One host: the runs it
/// executes are the `PENDING` ones not parked.
fn lane_counts(conn: &mut WriteConnection, lane: &Lane, window_start: i64) -> Result<LaneCounts> {
    let row = conn
        .query(
            "SELECT
                 (SELECT COUNT(*) FROM runs WHERE status = 'PENDING' AND queue IS ?1 AND partition_key IS ?2) AS pending,
                 (SELECT COUNT(*) FROM runs r WHERE status = 'PENDING' AND queue IS ?1 AND partition_key IS ?2
                     AND NOT EXISTS (SELECT 1 FROM run_waits w WHERE w.run_id = r.id)) AS pending_here,
                 (SELECT COUNT(*) FROM runs WHERE queue IS ?1 AND partition_key IS ?2 AND dequeued_at > ?3) AS started,
                 (SELECT MIN(dequeued_at) FROM runs WHERE queue IS ?1 AND partition_key IS ?2 AND dequeued_at > ?3) AS oldest",
        )
        .bind(lane.queue.as_ref().map(QueueName::as_str))
        .bind(lane.partition.as_deref())
        .bind(window_start)
        .fetch_one()?;
    Ok(LaneCounts {
        pending: row.int("pending")? as u64,
        pending_here: row.int("pending_here")? as u64,
        started_in_window: row.int("started")? as u64,
        oldest_in_window: row.maybe_int("oldest")?,
    })
}

/// Run `id` leaves its queue: `PENDING`, its first attempt, its time limit
/// counted from now.
fn start(conn: &mut WriteConnection, id: &str, now: i64) -> Result<Option<RunRecord>> {
    conn.query(&format!(
        "UPDATE runs SET status = 'PENDING', attempts = 1, epoch = epoch + 1, dequeued_at = ?1, updated_at = ?1,
             deadline = CASE WHEN timeout_ms IS NULL THEN deadline ELSE MIN(COALESCE(deadline, ?1 + timeout_ms), ?1 + timeout_ms) END
         WHERE id = ?2 AND status = 'ENQUEUED'
         RETURNING {RUN_COLUMNS}"
    ))
    .bind(now)
    .bind(id)
    .fetch_optional()?
    .map(|row| run_from_row(&row))
    .transpose()
}
