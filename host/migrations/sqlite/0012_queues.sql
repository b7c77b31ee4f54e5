-- Flow control: queues, and runs that wait in one (or for their start
-- time) as ENQUEUED until some host dequeues them.
CREATE TABLE queues (
    name                 TEXT PRIMARY KEY,
    concurrency          INTEGER,          -- PENDING runs of the queue at once; NULL: no limit
    per_host_concurrency INTEGER,          -- executing on one host at once
    rate_limit           INTEGER,          -- runs leaving the queue per rate_period_ms
    rate_period_ms       INTEGER,
    priority             INTEGER NOT NULL, -- 1: runs leave by priority, then arrival
    partitioned          INTEGER NOT NULL, -- 1: the limits hold per partition_key
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
) WITHOUT ROWID;

ALTER TABLE runs ADD COLUMN queue TEXT;
ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN partition_key TEXT;
ALTER TABLE runs ADD COLUMN deduplication_id TEXT;
-- The earliest an ENQUEUED run may start; its own time limit, counted
-- from when it leaves the queue; and when it left it.
ALTER TABLE runs ADD COLUMN start_at INTEGER;
ALTER TABLE runs ADD COLUMN timeout_ms INTEGER;
ALTER TABLE runs ADD COLUMN dequeued_at INTEGER;

-- The runs waiting to leave each queue (and partition), in the order they
-- leave it.
CREATE INDEX runs_enqueued ON runs (queue, partition_key, priority, created_at, id)
    WHERE status = 'ENQUEUED';
-- The runs of a queue that left it: the recent ones count against its
-- rate limit, the PENDING ones against its concurrency.
CREATE INDEX runs_dequeued ON runs (queue, partition_key, dequeued_at)
    WHERE queue IS NOT NULL AND dequeued_at IS NOT NULL;
-- One ENQUEUED or PENDING run per deduplication id and queue.
CREATE INDEX runs_queue_pending ON runs (queue, partition_key)
    WHERE status = 'PENDING' AND queue IS NOT NULL;
CREATE UNIQUE INDEX runs_deduplicated ON runs (queue, deduplication_id)
    WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');

-- A run that ends while still ENQUEUED (cancelled) wakes the runs that
-- await it as a child, as the end of a PENDING run does (migration 0009).
CREATE TRIGGER enqueued_end_wakes_waiters AFTER UPDATE OF status ON runs
WHEN OLD.status = 'ENQUEUED' AND NEW.status NOT IN ('ENQUEUED', 'PENDING')
BEGIN
    UPDATE run_waits SET wake_at = 0
    WHERE on_run = NEW.id AND on_key = '' AND kind = 'child' AND wake_at <> 0;
END;
