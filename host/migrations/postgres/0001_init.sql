-- Cairn schema, PostgreSQL; it lives in the schema `cairn` (the connection's
-- search_path). Migrations are append-only: never edit a released one.
-- Times are ms since the epoch (BIGINT).

-- Module bytes by content digest; one row per distinct component.
CREATE TABLE module_blobs (
    version   TEXT PRIMARY KEY,
    bytes     BYTEA NOT NULL
);

-- Each deployment of a version under a name; the current version of a
-- module is its most recently deployed one.
CREATE TABLE module_versions (
    seq         BIGSERIAL UNIQUE,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL REFERENCES module_blobs(version),
    kind        TEXT NOT NULL DEFAULT 'workflow',
    workflows   TEXT NOT NULL,
    size        BIGINT NOT NULL,
    deployed_at BIGINT NOT NULL,
    settings    TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (name, version)
);

-- The routes manifest of each module's latest deployment (JSON).
CREATE TABLE module_routes (
    name      TEXT PRIMARY KEY,
    manifest  TEXT NOT NULL
);

-- Runs. `owner` is the executor that holds the run's lease until
-- `lease_expires_at`; `epoch` counts the executions the run was handed to,
-- and fences their writes.
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    module           TEXT NOT NULL,
    version          TEXT NOT NULL,
    workflow         TEXT NOT NULL,
    input            TEXT NOT NULL,
    status           TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    attempts         BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    deadline         BIGINT,
    parent           TEXT,
    epoch            BIGINT NOT NULL DEFAULT 1,
    owner            TEXT,
    lease_expires_at BIGINT
);
CREATE INDEX runs_pending ON runs (lease_expires_at) WHERE status = 'PENDING';
CREATE INDEX runs_by_owner ON runs (owner) WHERE status = 'PENDING';
CREATE INDEX runs_newest_first ON runs (created_at DESC, id DESC);

-- The journal: one row per host call that has an effect or is not
-- deterministic, numbered per run in call order.
CREATE TABLE journal (
    run_id      TEXT NOT NULL,
    op          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    outcome     TEXT,
    deadline    BIGINT,
    completed   BOOLEAN NOT NULL,
    error       TEXT,
    attempt     BIGINT,
    started_at  BIGINT,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, op)
);

-- Current value of each event.
CREATE TABLE events (
    run_id      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    op          BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (run_id, key)
);

-- Every event write, so a run's events can be rebuilt as of any operation.
CREATE TABLE event_history (
    seq         BIGSERIAL PRIMARY KEY,
    run_id      TEXT NOT NULL,
    op          BIGINT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    UNIQUE (run_id, op)
);

-- Messages to runs; `consumed_op` is the `recv` that took one.
CREATE TABLE messages (
    seq              BIGSERIAL PRIMARY KEY,
    run_id           TEXT NOT NULL,
    topic            TEXT NOT NULL,
    message          TEXT NOT NULL,
    idempotency_key  TEXT,
    sent_at          BIGINT NOT NULL,
    consumed_op      BIGINT,
    UNIQUE (run_id, idempotency_key)
);
CREATE INDEX messages_waiting ON messages (run_id, topic, seq) WHERE consumed_op IS NULL;
