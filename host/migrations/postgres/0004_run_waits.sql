-- Parked runs: a PENDING run that waits (for an event, a message, a child's
-- end, a timer or a step's next attempt) without holding a guest instance,
-- and without an owner: any host may wake it. Its row says what it waits
-- for and when it must wake at the latest. A commit that delivers what a
-- parked run waits for sets its `wake_at` to 0 (due now) in the same
-- transaction, by the triggers below, and notifies every host; whoever
-- claims a due row deletes it and executes the run again by replay. A run
-- that leaves PENDING (cancelled) loses its row.
CREATE TABLE run_waits (
    run_id    TEXT PRIMARY KEY REFERENCES runs(id),
    kind      TEXT NOT NULL,            -- event | message | child | sleep | retry
    on_run    TEXT,                     -- whose event or end is awaited; for a message, the waiting run
    on_key    TEXT NOT NULL,            -- the event key or message topic; '' for a child
    deadline  BIGINT,                   -- the wait's own journaled deadline
    wake_at   BIGINT NOT NULL,          -- the latest time to wake (ms); 0 once it is due
    parked_at BIGINT NOT NULL
);
CREATE INDEX run_waits_due ON run_waits (wake_at);
CREATE INDEX run_waits_on ON run_waits (on_run, on_key) WHERE on_run IS NOT NULL;

-- The lock that orders a park against a commit that would wake it. Under
-- READ COMMITTED neither sees the other's uncommitted row, so without it a
-- park could check for its message just before the message commits while
-- the message's trigger looks for parked runs just before the park commits,
-- and the run would sleep to its deadline. A park takes the lock of its key
-- exclusively (after its own row); a waking trigger takes it shared (after
-- the rows its statement wrote), then looks with a fresh snapshot.
CREATE FUNCTION wait_lock(kind TEXT, on_run TEXT, on_key TEXT) RETURNS BIGINT
    LANGUAGE sql IMMUTABLE AS $$ SELECT hashtextextended(kind || ' ' || on_run || ' ' || on_key, 0) $$;

CREATE FUNCTION wake_waiters(waited_kind TEXT, waited_run TEXT, waited_key TEXT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(wait_lock(waited_kind, waited_run, waited_key));
    UPDATE run_waits SET wake_at = 0
    WHERE on_run = waited_run AND on_key = waited_key AND kind = waited_kind AND wake_at <> 0;
    IF FOUND THEN
        -- Only when a parked run was woken: rare next to the commits that
        -- wake nobody, which stay off the notification lock.
        PERFORM pg_notify(current_schema(), '["w"]');
    END IF;
END
$$;

CREATE FUNCTION event_wakes_waiters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM wake_waiters('event', NEW.run_id, NEW.key);
    RETURN NULL;
END
$$;
CREATE TRIGGER event_wakes_waiters AFTER INSERT ON event_history
    FOR EACH ROW EXECUTE FUNCTION event_wakes_waiters();

CREATE FUNCTION message_wakes_waiter() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM wake_waiters('message', NEW.run_id, NEW.topic);
    RETURN NULL;
END
$$;
CREATE TRIGGER message_wakes_waiter AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION message_wakes_waiter();

CREATE FUNCTION end_wakes_waiters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM wake_waiters('child', NEW.id, '');
    DELETE FROM run_waits WHERE run_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER end_wakes_waiters AFTER UPDATE OF status ON runs
    FOR EACH ROW WHEN (OLD.status = 'PENDING' AND NEW.status <> 'PENDING')
    EXECUTE FUNCTION end_wakes_waiters();
