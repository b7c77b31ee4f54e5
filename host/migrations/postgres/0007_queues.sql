-- Flow control: queues, and runs that wait in one (or for their start
-- time) as ENQUEUED until some host dequeues them. A host dequeues a
-- queue holding its row FOR UPDATE, so hosts take turns per queue and
-- its limits hold across all of them with no coordinator.
CREATE TABLE queues (
    name                 TEXT PRIMARY KEY,
    concurrency          BIGINT,           -- PENDING runs of the queue at once; NULL: no limit
    per_host_concurrency BIGINT,           -- executing on one host at once
    rate_limit           BIGINT,           -- runs leaving the queue per rate_period_ms
    rate_period_ms       BIGINT,
    priority             BOOLEAN NOT NULL, -- runs leave by priority, then arrival
    partitioned          BOOLEAN NOT NULL, -- the limits hold per partition_key
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

ALTER TABLE runs
    ADD COLUMN queue TEXT,
    ADD COLUMN priority BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN partition_key TEXT,
    ADD COLUMN deduplication_id TEXT,
    -- The earliest an ENQUEUED run may start; its own time limit, counted
    -- from when it leaves the queue; and when it left it.
    ADD COLUMN start_at BIGINT,
    ADD COLUMN timeout_ms BIGINT,
    ADD COLUMN dequeued_at BIGINT;

CREATE INDEX runs_enqueued ON runs (queue, partition_key, priority, created_at, id)
    WHERE status = 'ENQUEUED';
CREATE INDEX runs_dequeued ON runs (queue, partition_key, dequeued_at)
    WHERE queue IS NOT NULL AND dequeued_at IS NOT NULL;
CREATE INDEX runs_queue_pending ON runs (queue, partition_key)
    WHERE status = 'PENDING' AND queue IS NOT NULL;
CREATE UNIQUE INDEX runs_deduplicated ON runs (queue, deduplication_id)
    WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');

-- A run that ends while still ENQUEUED (cancelled) wakes the runs that
-- await it as a child, as the end of a PENDING run does (migration 0004).
CREATE FUNCTION enqueued_end_wakes_waiters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM wake_waiters('child', NEW.id, '');
    RETURN NULL;
END
$$;
CREATE TRIGGER enqueued_end_wakes_waiters AFTER UPDATE OF status ON runs
    FOR EACH ROW WHEN (OLD.status = 'ENQUEUED' AND NEW.status NOT IN ('ENQUEUED', 'PENDING'))
    EXECUTE FUNCTION enqueued_end_wakes_waiters();
