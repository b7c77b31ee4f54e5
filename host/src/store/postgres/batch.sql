-- One batch of the group commit as one statement, committed on its own:
-- runs created ($1–$10), journal writes ($11–$25) and ends ($26–$32) of
-- this host ($33) with their notifications on channel $34. Every run of
-- the journal writes and ends ($35, sorted) is locked first, in the ids'
-- order, and held until the commit: no claim can hand one to another
-- execution between the fence's check and the commit, and two batches
-- (or a batch and a lease renewal) take their rows in one order.
-- Each part changes nothing for a write it refuses; the rows returned say
-- which writes took effect.
WITH locked AS MATERIALIZED (
    SELECT id, status, epoch FROM runs WHERE id = ANY($35::TEXT[])
    ORDER BY id
    FOR NO KEY UPDATE
), created AS (
    -- The host that creates a run executes it: it takes the lease. In the
    -- ids' order: two batches creating the same two runs at once take
    -- their keys in one order, so neither waits on the other.
    INSERT INTO runs (id, module, version, workflow, input, status, attempts, created_at, updated_at, deadline, parent, epoch, owner, lease_expires_at, traceparent)
    SELECT id, module, version, workflow, input, 'PENDING', 1, now, now, deadline, parent, 1, $33, lease, traceparent
    FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::BIGINT[], $8::TEXT[], $9::BIGINT[], $10::TEXT[])
        AS n(id, module, version, workflow, input, now, deadline, parent, lease, traceparent)
    ORDER BY id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), input AS (
    SELECT * FROM UNNEST($11::TEXT[], $12::BIGINT[], $13::TEXT[], $14::TEXT[], $15::TEXT[], $16::BIGINT[], $17::BOOLEAN[], $18::BIGINT[], $19::TEXT[], $20::BIGINT[], $21::BIGINT[], $22::BIGINT[], $23::TEXT[], $24::TEXT[], $25::TEXT[])
        WITH ORDINALITY AS i(run_id, op, kind, name, outcome, deadline, completed, recorded_at, error, attempt, started_at, epoch, event_key, event_value, notice, ord)
), allowed AS (
    SELECT i.* FROM input i JOIN locked r ON r.id = i.run_id
    WHERE r.status = 'PENDING' AND (i.epoch IS NULL OR r.epoch = i.epoch)
), entry AS (
    INSERT INTO journal (run_id, op, kind, name, outcome, deadline, completed, recorded_at, error, attempt, started_at, epoch, writer)
    SELECT run_id, op, kind, name, outcome, deadline, completed, recorded_at, error, attempt, started_at, epoch, $33
    FROM allowed ORDER BY ord
    ON CONFLICT (run_id, op) DO NOTHING
    RETURNING run_id, op
), published AS (
    -- The history's trigger publishes each value into `events`.
    INSERT INTO event_history (run_id, op, key, value, recorded_at)
    SELECT a.run_id, a.op, a.event_key, a.event_value, a.recorded_at
    FROM allowed a JOIN entry e ON e.run_id = a.run_id AND e.op = a.op
    WHERE a.event_key IS NOT NULL
    ORDER BY a.ord
), entry_notices AS (
    -- Each event's notification, delivered at the commit.
    SELECT count(pg_notify($34, a.notice)) AS sent
    FROM allowed a JOIN entry e ON e.run_id = a.run_id AND e.op = a.op
    WHERE a.notice IS NOT NULL
), ending AS (
    SELECT u.* FROM UNNEST($26::TEXT[], $27::TEXT[], $28::TEXT[], $29::TEXT[], $30::BIGINT[], $31::BIGINT[], $32::TEXT[])
        AS u(id, status, output, error, now, fence, notice)
    JOIN locked r ON r.id = u.id
    WHERE r.status = 'PENDING' AND (u.fence IS NULL OR r.epoch = u.fence)
), ended AS (
    UPDATE runs r SET status = u.status, output = u.output, error = u.error, updated_at = u.now, owner = NULL, lease_expires_at = NULL
    FROM ending u
    WHERE r.id = u.id
    RETURNING r.id, u.notice
), end_notices AS (
    SELECT count(pg_notify($34, notice)) AS sent FROM ended
)
SELECT 'created' AS part, id, NULL::BIGINT AS op FROM created
UNION ALL SELECT 'journaled', run_id, op FROM entry, entry_notices
UNION ALL SELECT 'ended', id, NULL FROM ended, end_notices
-- Reads all of `locked`, however little of it the joins read.
UNION ALL SELECT 'locked', NULL, count(*) FROM locked
