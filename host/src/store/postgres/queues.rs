//! Queues and `ENQUEUED` runs on a shared database. A host dequeues a
//! queue in a transaction that holds the queue's row `FOR UPDATE`: hosts
//! take turns per queue, each counting what the others committed before
//! it, so the limits hold across all of them with no coordinator. The runs
//! of no queue (waiting only for their start time) need no turn: each host
//! takes the due ones `FOR UPDATE SKIP LOCKED`.

use sqlx::PgConnection;

use super::PgStore;
use super::checkout::Checkout;
use crate::domain::{NewRun, QueueInfo, QueueName, QueueSettings, RunRecord};
use crate::store::queueing::{DequeuePass, Dequeued, Lane, LaneCounts};
use crate::store::rows::{
    Columns, QUEUE_COLUMNS, RUN_COLUMNS, corrupt, queue_from_row, run_from_row,
};
use crate::store::statements::{
    DEDUPLICATED_RUN, DELETE_QUEUE, ENQUEUED_IN_QUEUE, NEXT_DELAYED_START,
};
use crate::store::{CreateRun, DeleteQueue, Result};

/// PostgreSQL's unique_violation.
const UNIQUE_VIOLATION: &str = "23505";

impl PgStore {
    pub(super) async fn put_queue_row(
        &self,
        name: &QueueName,
        settings: QueueSettings,
        now: i64,
    ) -> Result<QueueInfo> {
        let rate = settings.rate_limit;
        let row = sqlx::query(&format!(
            "INSERT INTO queues (name, concurrency, per_host_concurrency, rate_limit, rate_period_ms, priority, partitioned, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
             ON CONFLICT (name) DO UPDATE SET
                 concurrency = excluded.concurrency, per_host_concurrency = excluded.per_host_concurrency,
                 rate_limit = excluded.rate_limit, rate_period_ms = excluded.rate_period_ms,
                 priority = excluded.priority, partitioned = excluded.partitioned, updated_at = excluded.updated_at
             RETURNING {QUEUE_COLUMNS}"
        ))
        .bind(name.as_str())
        .bind(settings.concurrency.map(i64::from))
        .bind(settings.per_host_concurrency.map(i64::from))
        .bind(rate.map(|r| i64::from(r.limit)))
        .bind(rate.map(|r| i64::try_from(r.period_ms).unwrap_or(i64::MAX)))
        .bind(settings.priority)
        .bind(settings.partitioned)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        queue_from_row(&row)
    }

    pub(super) async fn delete_queue_row(&self, name: &QueueName) -> Result<DeleteQueue> {
        let mut conn = Checkout::take(&self.pool).await?;
        let mut tx = conn.begin().await?;
        // The queue's turn: no host dequeues it meanwhile.
        let exists = sqlx::query("SELECT 1 FROM queues WHERE name = $1 FOR UPDATE")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Ok(DeleteQueue::Missing);
        }
        let waiting: i64 = sqlx::query_scalar(ENQUEUED_IN_QUEUE)
            .bind(name.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if waiting > 0 {
            return Ok(DeleteQueue::Busy(waiting as u64));
        }
        sqlx::query(DELETE_QUEUE)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(DeleteQueue::Deleted)
    }

    /// Create an `ENQUEUED` run: it belongs to no host until dequeued.
    pub(super) async fn insert_enqueued(&self, run: NewRun) -> Result<CreateRun> {
        let admission = run
            .admission
            .clone()
            .ok_or_else(|| corrupt("an enqueued run without an admission"))?;
        let inserted = sqlx::query(
            "INSERT INTO runs (id, module, version, workflow, input, status, attempts, created_at, updated_at, deadline, parent, epoch,
                               queue, priority, partition_key, deduplication_id, start_at, timeout_ms, traceparent)
             VALUES ($1, $2, $3, $4, $5, 'ENQUEUED', 0, $6, $6, $7, $8, 1, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(run.id.as_str())
        .bind(run.module.as_str())
        .bind(run.version.as_str())
        .bind(&run.workflow)
        .bind(&run.input)
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
        .execute(&self.pool)
        .await;
        let mut conn = Checkout::take(&self.pool).await?;
        match inserted {
            Ok(done) if done.rows_affected() == 1 => Ok(CreateRun::Created(run.into_record())),
            Ok(_) => super::select_run(&mut conn, run.id.as_str())
                .await?
                .map(CreateRun::Existing)
                .ok_or_else(|| corrupt(format!("run {} vanished during its creation", run.id))),
            // The deduplication index: another run of the queue holds the id.
            Err(error)
                if error
                    .as_database_error()
                    .and_then(|e| e.code())
                    .is_some_and(|code| code == UNIQUE_VIOLATION) =>
            {
                let holder = sqlx::query(DEDUPLICATED_RUN)
                    .bind(admission.queue.as_ref().map(QueueName::as_str))
                    .bind(admission.deduplication_id.as_deref())
                    .fetch_optional(&mut *conn)
                    .await?;
                match holder {
                    Some(row) => Ok(CreateRun::Duplicate(run_from_row(&row)?)),
                    // It ended between the two statements: the id is free.
                    None => Box::pin(self.insert_enqueued(run)).await,
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    pub(super) async fn dequeue_runs(&self, now: i64, limit: u32) -> Result<Dequeued> {
        let mut conn = Checkout::take(&self.pool).await?;
        let lanes = sqlx::query(
            "SELECT DISTINCT queue, partition_key FROM runs
             WHERE status = 'ENQUEUED' AND (start_at IS NULL OR start_at <= $1)
             ORDER BY queue, partition_key",
        )
        .bind(now)
        .fetch_all(&mut *conn)
        .await?
        .iter()
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
            // One transaction per lane: a queue's turn lasts one lane.
            let mut tx = conn.begin().await?;
            let settings = match &lane.queue {
                Some(queue) => sqlx::query(&format!(
                    "SELECT {QUEUE_COLUMNS} FROM queues WHERE name = $1 FOR UPDATE"
                ))
                .bind(queue.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| queue_from_row(&row))
                .transpose()?
                .map(|info| info.settings),
                None => None,
            };
            let counts = if DequeuePass::needs_counts(settings.as_ref()) {
                self.lane_counts(&mut tx, &lane, pass.window_start(settings.as_ref()))
                    .await?
            } else {
                LaneCounts::default()
            };
            let room = pass.room(settings.as_ref(), &counts);
            if room == 0 {
                tx.commit().await?;
                continue;
            }
            let order = if settings.is_some_and(|s| s.priority) {
                "priority, created_at, id"
            } else {
                "created_at, id"
            };
            let lane_filter = if lane.queue.is_some() {
                "queue = $1"
            } else {
                "queue IS NULL AND $1::TEXT IS NULL"
            };
            let started = sqlx::query(&format!(
                "WITH chosen AS (
                     SELECT id AS chosen_id FROM runs
                     WHERE status = 'ENQUEUED' AND {lane_filter} AND partition_key IS NOT DISTINCT FROM $2
                       AND (start_at IS NULL OR start_at <= $3)
                     ORDER BY {order} LIMIT $4
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE runs r SET status = 'PENDING', attempts = 1, epoch = epoch + 1,
                     owner = $5, lease_expires_at = $6, dequeued_at = $3, updated_at = $3,
                     deadline = CASE WHEN timeout_ms IS NULL THEN deadline
                                     ELSE LEAST(COALESCE(deadline, $3 + timeout_ms), $3 + timeout_ms) END
                 FROM chosen WHERE r.id = chosen.chosen_id AND r.status = 'ENQUEUED'
                 RETURNING {RUN_COLUMNS}"
            ))
            .bind(lane.queue.as_ref().map(QueueName::as_str))
            .bind(lane.partition.as_deref())
            .bind(now)
            .bind(i64::try_from(room).unwrap_or(i64::MAX))
            .bind(&self.executor_id)
            .bind(now.saturating_add(self.lease_ms))
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            let mut runs = started
                .iter()
                .map(run_from_row)
                .collect::<Result<Vec<RunRecord>>>()?;
            // RETURNING has no order: the lane's, for who starts first.
            runs.sort_by_key(|run| {
                let priority = settings
                    .filter(|s| s.priority)
                    .and(run.admission.as_ref().map(|a| a.priority));
                (priority, run.created_at, run.id.as_str().to_owned())
            });
            for run in runs {
                pass.started(run);
            }
        }
        let next_start: Option<i64> = sqlx::query_scalar(NEXT_DELAYED_START)
            .bind(now)
            .fetch_one(&mut *conn)
            .await?;
        Ok(pass.finish(next_start))
    }

    /// What a lane's limits are measured against; the runs this host
    /// executes are those it owns (a parked run has no owner).
    async fn lane_counts(
        &self,
        conn: &mut PgConnection,
        lane: &Lane,
        window_start: i64,
    ) -> Result<LaneCounts> {
        let row = sqlx::query(
            "SELECT
                 (SELECT COUNT(*) FROM runs WHERE status = 'PENDING' AND queue = $1 AND partition_key IS NOT DISTINCT FROM $2) AS pending,
                 (SELECT COUNT(*) FROM runs WHERE status = 'PENDING' AND queue = $1 AND partition_key IS NOT DISTINCT FROM $2
                     AND owner = $4) AS pending_here,
                 (SELECT COUNT(*) FROM runs WHERE queue = $1 AND partition_key IS NOT DISTINCT FROM $2 AND dequeued_at > $3) AS started,
                 (SELECT MIN(dequeued_at) FROM runs WHERE queue = $1 AND partition_key IS NOT DISTINCT FROM $2 AND dequeued_at > $3) AS oldest",
        )
        .bind(lane.queue.as_ref().map(QueueName::as_str))
        .bind(lane.partition.as_deref())
        .bind(window_start)
        .bind(&self.executor_id)
        .fetch_one(conn)
        .await?;
        Ok(LaneCounts {
            pending: row.int("pending")? as u64,
            pending_here: row.int("pending_here")? as u64,
            started_in_window: row.int("started")? as u64,
            oldest_in_window: row.maybe_int("oldest")?,
        })
    }
}
