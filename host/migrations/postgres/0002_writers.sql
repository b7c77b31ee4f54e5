-- Who wrote what, under which epoch. Each journal row names the executor
-- that wrote it and the epoch it held (NULL for a row copied by a fork or
-- written without a fence); every hand-over of a run (its creation, a claim
-- after an expired lease, a resume) is kept in run_leases. Together they
-- show that no host wrote for a run while another held it.
ALTER TABLE journal ADD COLUMN epoch BIGINT, ADD COLUMN writer TEXT;

CREATE TABLE run_leases (
    run_id   TEXT NOT NULL,
    epoch    BIGINT NOT NULL,
    owner    TEXT,
    taken_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);

-- A trigger, not a statement of each writer: every path that hands a run
-- over is covered, with no extra round trip.
CREATE FUNCTION record_run_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_leases (run_id, epoch, owner, taken_at)
    VALUES (NEW.id, NEW.epoch, NEW.owner, NEW.updated_at);
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_created AFTER INSERT ON runs
    FOR EACH ROW EXECUTE FUNCTION record_run_lease();
CREATE TRIGGER runs_handed_over AFTER UPDATE OF epoch ON runs
    FOR EACH ROW WHEN (OLD.epoch IS DISTINCT FROM NEW.epoch)
    EXECUTE FUNCTION record_run_lease();
