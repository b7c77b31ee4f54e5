-- Parked runs: a PENDING run that waits (for an event, a message, a child's
-- end, a timer or a step's next attempt) without holding a guest instance.
-- Its row says what it waits for and when it must wake at the latest. A
-- commit that delivers what a parked run waits for sets its `wake_at` to 0
-- (due now) in the same transaction, by the triggers below, so no path that
-- sets an event, delivers a message or ends a run can forget to wake its
-- waiters. Whoever claims a due row deletes it and executes the run again
-- by replay; a run that leaves PENDING (cancelled) loses its row.
CREATE TABLE run_waits (
    run_id    TEXT PRIMARY KEY REFERENCES runs(id),
    kind      TEXT NOT NULL,            -- event | message | child | sleep | retry
    on_run    TEXT,                     -- whose event or end is awaited; for a message, the waiting run
    on_key    TEXT NOT NULL,            -- the event key or message topic; '' for a child
    deadline  INTEGER,                  -- the wait's own journaled deadline
    wake_at   INTEGER NOT NULL,         -- the latest time to wake (ms); 0 once it is due
    parked_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX run_waits_due ON run_waits (wake_at);
CREATE INDEX run_waits_on ON run_waits (on_run, on_key) WHERE on_run IS NOT NULL;

CREATE TRIGGER event_wakes_waiters AFTER INSERT ON event_history
BEGIN
    UPDATE run_waits SET wake_at = 0
    WHERE on_run = NEW.run_id AND on_key = NEW.key AND kind = 'event' AND wake_at <> 0;
END;

CREATE TRIGGER message_wakes_waiter AFTER INSERT ON messages
BEGIN
    UPDATE run_waits SET wake_at = 0
    WHERE on_run = NEW.run_id AND on_key = NEW.topic AND kind = 'message' AND wake_at <> 0;
END;

CREATE TRIGGER end_wakes_waiters AFTER UPDATE OF status ON runs
WHEN OLD.status = 'PENDING' AND NEW.status <> 'PENDING'
BEGIN
    UPDATE run_waits SET wake_at = 0
    WHERE on_run = NEW.id AND on_key = '' AND kind = 'child' AND wake_at <> 0;
    DELETE FROM run_waits WHERE run_id = NEW.id;
END;
