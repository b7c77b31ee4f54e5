-- Cairn schema, SQLite. Migrations are append-only: never edit a released one.

-- Module bytes by content digest; one row per distinct component.
CREATE TABLE module_blobs (
    version   TEXT PRIMARY KEY,         -- 'sha256:<hex>'
    bytes     BLOB NOT NULL
);

-- Each deployment of a version under a name. The current version of a module
-- is its most recently deployed one.
CREATE TABLE module_versions (
    name        TEXT NOT NULL,
    version     TEXT NOT NULL REFERENCES module_blobs(version),
    workflows   TEXT NOT NULL,          -- JSON array of workflow names
    size        INTEGER NOT NULL,
    deployed_at INTEGER NOT NULL,       -- ms since the epoch
    PRIMARY KEY (name, version)
);
CREATE INDEX module_versions_by_deploy ON module_versions (name, deployed_at DESC);

CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    module      TEXT NOT NULL,
    version     TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    input       TEXT NOT NULL,
    status      TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX runs_pending ON runs (status) WHERE status = 'PENDING';

-- The journal: one row per host call that has an effect or is not
-- deterministic, numbered per run in call order.
CREATE TABLE journal (
    run_id      TEXT NOT NULL,
    op          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    outcome     TEXT,
    deadline    INTEGER,
    completed   INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, op)
) WITHOUT ROWID;

-- Current value of each event.
CREATE TABLE events (
    run_id      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    op          INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;

-- Every event write, so a run's events can be rebuilt as of any operation.
CREATE TABLE event_history (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL,
    op          INTEGER NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (run_id, op)
);

-- A write to the history publishes it: `events` is the history's latest
-- value per key, kept by the database so a set-event is one statement less.
CREATE TRIGGER event_history_publishes AFTER INSERT ON event_history
BEGIN
    INSERT OR REPLACE INTO events (run_id, key, value, op, updated_at)
    VALUES (NEW.run_id, NEW.key, NEW.value, NEW.op, NEW.recorded_at);
END;
