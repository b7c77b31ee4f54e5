-- Streams: each run's named, append-only sequences of JSON values, read
-- from an offset (`position`). An entry's `op` is the operation that wrote
-- it (the step's, for a write from inside a step), so a fork copies the
-- entries written before its operation. The entry whose value is NULL
-- closes its stream; nothing follows it.
CREATE TABLE stream_entries (
    run_id      TEXT NOT NULL,
    stream      TEXT NOT NULL,
    position    BIGINT NOT NULL,
    value       TEXT,
    op          BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, stream, position)
);

-- A parked `read-stream` waits for the value at this offset.
ALTER TABLE run_waits ADD COLUMN on_offset BIGINT;

-- The run a run was forked from.
ALTER TABLE runs ADD COLUMN forked_from TEXT;

-- A parked stream reader is woken by a new entry of its stream and by its
-- run's end, which does not know the streams' names: so every stream wait
-- of a run shares one lock, (stream, run, ''), taken by the park (see
-- migration 0004) and by both of these.
CREATE FUNCTION stream_wakes_waiters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(wait_lock('stream', NEW.run_id, ''));
    UPDATE run_waits SET wake_at = 0
    WHERE on_run = NEW.run_id AND on_key = NEW.stream AND kind = 'stream' AND wake_at <> 0;
    IF FOUND THEN
        PERFORM pg_notify(current_schema(), '["w"]');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER stream_wakes_waiters AFTER INSERT ON stream_entries
    FOR EACH ROW EXECUTE FUNCTION stream_wakes_waiters();

-- A run's end ends its streams (a cancelled run may be resumed: not yet).
CREATE FUNCTION end_wakes_stream_waiters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(wait_lock('stream', NEW.id, ''));
    UPDATE run_waits SET wake_at = 0
    WHERE on_run = NEW.id AND kind = 'stream' AND wake_at <> 0;
    IF FOUND THEN
        PERFORM pg_notify(current_schema(), '["w"]');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER end_wakes_stream_waiters AFTER UPDATE OF status ON runs
    FOR EACH ROW WHEN (OLD.status = 'PENDING' AND NEW.status NOT IN ('PENDING', 'CANCELLED'))
    EXECUTE FUNCTION end_wakes_stream_waiters();

-- A run's messages, received or not, in the order they were sent.
CREATE INDEX messages_by_run ON messages (run_id, seq);
