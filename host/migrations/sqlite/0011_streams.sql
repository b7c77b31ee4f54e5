-- Streams: each run's named, append-only sequences of JSON values, read
-- from an offset (`position`). An entry's `op` is the operation that wrote
-- it (the step's, for a write from inside a step), so a fork copies the
-- entries written before its operation. The entry whose value is NULL
-- closes its stream; nothing follows it.
CREATE TABLE stream_entries (
    run_id      TEXT NOT NULL,
    stream      TEXT NOT NULL,
    position    INTEGER NOT NULL,
    value       TEXT,
    op          INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, stream, position)
) WITHOUT ROWID;

-- A parked `read-stream` waits for the value at this offset.
ALTER TABLE run_waits ADD COLUMN on_offset INTEGER;

-- The run a run was forked from.
ALTER TABLE runs ADD COLUMN forked_from TEXT;

CREATE TRIGGER stream_wakes_waiters AFTER INSERT ON stream_entries
BEGIN
    UPDATE run_waits SET wake_at = 0
    WHERE on_run = NEW.run_id AND on_key = NEW.stream AND kind = 'stream' AND wake_at <> 0;
END;

-- A run's end ends its streams (a cancelled run may be resumed: not yet).
CREATE TRIGGER end_wakes_stream_waiters AFTER UPDATE OF status ON runs
WHEN OLD.status = 'PENDING' AND NEW.status NOT IN ('PENDING', 'CANCELLED')
BEGIN
    UPDATE run_waits SET wake_at = 0
    WHERE on_run = NEW.id AND kind = 'stream' AND wake_at <> 0;
END;

-- A run's messages, received or not, in the order they were sent.
CREATE INDEX messages_by_run ON messages (run_id, seq);
