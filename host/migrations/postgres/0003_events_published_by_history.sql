-- A write to the event history publishes it: `events` is the history's
-- latest value per key, kept by the database as on SQLite, so both backends
-- keep the table one way and a set-event (or a fork) is one statement less.
CREATE FUNCTION publish_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (run_id, key, value, op, updated_at)
    VALUES (NEW.run_id, NEW.key, NEW.value, NEW.op, NEW.recorded_at)
    ON CONFLICT (run_id, key) DO UPDATE
    SET value = excluded.value, op = excluded.op, updated_at = excluded.updated_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER event_history_publishes AFTER INSERT ON event_history
    FOR EACH ROW EXECUTE FUNCTION publish_event();
