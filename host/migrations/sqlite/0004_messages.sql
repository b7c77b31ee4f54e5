-- Messages to runs. A message is received once: `consumed_op` is the
-- operation of the `recv` that took it, set in the transaction that
-- journals that `recv`. Consumed messages stay, so that an idempotency key
-- delivers once for the life of the run, not just until it is received.
CREATE TABLE messages (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id           TEXT NOT NULL,
    topic            TEXT NOT NULL,
    message          TEXT NOT NULL,
    idempotency_key  TEXT,
    sent_at          INTEGER NOT NULL,
    consumed_op      INTEGER,
    UNIQUE (run_id, idempotency_key)
);
-- The next message of a (run, topic): the oldest one not yet received.
CREATE INDEX messages_waiting ON messages (run_id, topic, seq) WHERE consumed_op IS NULL;
