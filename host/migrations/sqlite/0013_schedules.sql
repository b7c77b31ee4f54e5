-- Schedules: a workflow started on every tick of a cron expression. The
-- run of a tick has the id `<name>@<tick>`, so a tick fired twice (two
-- hosts, or a crash between a start and `next_tick`'s advance) starts one.
CREATE TABLE schedules (
    name        TEXT PRIMARY KEY,
    module      TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    input       TEXT NOT NULL,
    cron        TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    overlap     TEXT NOT NULL,     -- skip | buffer_one | allow_all | cancel_running
    catch_up_ms INTEGER NOT NULL,
    paused      INTEGER NOT NULL,
    next_tick   INTEGER,           -- the next tick to fire (ms); NULL: none left
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX schedules_due ON schedules (next_tick) WHERE paused = 0 AND next_tick IS NOT NULL;
