//! The statements both backends run as the same text, written once.
//!
//! They use `$1`-style parameters: PostgreSQL reads them as positions;
//! SQLite reads `$1` as a named parameter and numbers it where it first
//! appears. The two agree as long as `$1`, `$2`, … first appear in that
//! order, which the test below checks for every statement here. What a
//! backend says in its own dialect (SQLite's `json_each`, PostgreSQL's
//! arrays and `FOR UPDATE`) stays in that backend.

use super::rows::{
    journal_columns, module_columns, queue_columns, run_columns, stream_entry_columns, wait_columns,
};

// Runs.

pub const RUN_BY_ID: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1");
pub const RUN_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)";
pub const RUN_STATUS: &str = "SELECT status FROM runs WHERE id = $1";
pub const RUN_STATUS_AND_EPOCH: &str = "SELECT status, epoch FROM runs WHERE id = $1";
pub const RUN_EPOCH: &str = "SELECT epoch FROM runs WHERE id = $1";
/// A parent's children still going, to cancel with it.
pub const PENDING_CHILDREN: &str = "SELECT id FROM runs WHERE parent = $1 AND status = 'PENDING'";

// Modules.

pub const INSERT_MODULE_BLOB: &str =
    "INSERT INTO module_blobs (version, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING";
pub const MODULE_BLOB: &str = "SELECT bytes FROM module_blobs WHERE version = $1";
pub const MODULE_VERSION_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM module_versions WHERE name = $1 AND version = $2)";
pub const INSERT_MODULE_VERSION: &str = "INSERT INTO module_versions
    (name, version, kind, workflows, size, deployed_at, settings)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub const MODULE_VERSION: &str = concat!(
    "SELECT ",
    module_columns!(),
    " FROM module_versions WHERE name = $1 AND version = $2"
);
pub const ROUTES: &str = "SELECT name, manifest FROM module_routes ORDER BY name";

// The journal, and what a fork copies of it: the entries, event history
// and stream entries of `$2` before operation `$3`, as run `$1`'s.

pub const JOURNAL: &str = concat!(
    "SELECT ",
    journal_columns!(),
    " FROM journal WHERE run_id = $1 ORDER BY op"
);
pub const JOURNAL_PAGE: &str = concat!(
    "SELECT ",
    journal_columns!(),
    " FROM journal WHERE run_id = $1 AND op > $2 ORDER BY op LIMIT $3"
);
pub const JOURNAL_ENTRY: &str = concat!(
    "SELECT ",
    journal_columns!(),
    " FROM journal WHERE run_id = $1 AND op = $2"
);
pub const SET_JOURNAL_OUTCOME: &str =
    "UPDATE journal SET outcome = $1 WHERE run_id = $2 AND op = $3";
pub const FORK_JOURNAL: &str = "INSERT INTO journal
    (run_id, op, kind, name, outcome, deadline, completed, error, attempt, started_at, recorded_at)
    SELECT $1, op, kind, name, outcome, deadline, completed, error, attempt, started_at, recorded_at
    FROM journal WHERE run_id = $2 AND op < $3";
pub const FORK_EVENT_HISTORY: &str =
    "INSERT INTO event_history (run_id, op, key, value, recorded_at)
    SELECT $1, op, key, value, recorded_at
    FROM event_history WHERE run_id = $2 AND op < $3 ORDER BY op";
pub const FORK_STREAM_ENTRIES: &str = "INSERT INTO stream_entries
    (run_id, stream, position, value, op, recorded_at)
    SELECT $1, stream, position, value, op, recorded_at
    FROM stream_entries WHERE run_id = $2 AND op < $3";

// Events.

pub const EVENT_VALUE: &str = "SELECT value FROM events WHERE run_id = $1 AND key = $2";
pub const EVENTS: &str = "SELECT key, value FROM events WHERE run_id = $1 ORDER BY key";
pub const INSERT_EVENT_HISTORY: &str =
    "INSERT INTO event_history (run_id, op, key, value, recorded_at)
    VALUES ($1, $2, $3, $4, $5)";
pub const EVENT_HISTORY_PAGE: &str = "SELECT op, key, value, recorded_at FROM event_history
    WHERE run_id = $1 AND op > $2 ORDER BY op LIMIT $3";

// Messages.

/// A message, unless its idempotency key was delivered to the run before.
pub const INSERT_MESSAGE: &str = "INSERT INTO messages
    (run_id, topic, message, idempotency_key, sent_at) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (run_id, idempotency_key) DO NOTHING";
pub const NEXT_MESSAGE: &str = "SELECT seq, message FROM messages
    WHERE run_id = $1 AND topic = $2 AND consumed_op IS NULL
    ORDER BY seq LIMIT 1";
/// Message `$2` of run `$3`, taken by operation `$1`.
pub const CONSUME_MESSAGE: &str = "UPDATE messages SET consumed_op = $1
    WHERE seq = $2 AND run_id = $3 AND consumed_op IS NULL";

// Streams.

pub const STREAM_ENTRIES: &str = concat!(
    "SELECT ",
    stream_entry_columns!(),
    " FROM stream_entries WHERE run_id = $1 AND stream = $2 AND position >= $3
    ORDER BY position LIMIT $4"
);

// Waits.

pub const WAITS_OF_RUN: &str = concat!(
    "SELECT ",
    wait_columns!(),
    " FROM run_waits WHERE run_id = $1"
);
pub const EARLIEST_WAKE: &str = "SELECT MIN(wake_at) FROM run_waits";
pub const WAIT_COUNT: &str = "SELECT COUNT(*) FROM run_waits";

// Queues.

pub const QUEUES: &str = concat!("SELECT ", queue_columns!(), " FROM queues ORDER BY name");
pub const QUEUE: &str = concat!("SELECT ", queue_columns!(), " FROM queues WHERE name = $1");
pub const DELETE_QUEUE: &str = "DELETE FROM queues WHERE name = $1";
pub const ENQUEUED_IN_QUEUE: &str =
    "SELECT COUNT(*) FROM runs WHERE status = 'ENQUEUED' AND queue = $1";
/// The run a deduplication id in a queue already names, while it goes on.
pub const DEDUPLICATED_RUN: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE queue = $1 AND deduplication_id = $2 AND status IN ('ENQUEUED', 'PENDING')"
);
/// When the next run delayed past `$1` may start.
pub const NEXT_DELAYED_START: &str =
    "SELECT MIN(start_at) FROM runs WHERE status = 'ENQUEUED' AND start_at > $1";

// Schedules.

/// A schedule's next tick, moved on from `$3` only if no one moved it first.
pub const ADVANCE_SCHEDULE: &str =
    "UPDATE schedules SET next_tick = $1 WHERE name = $2 AND next_tick = $3";
pub const DELETE_SCHEDULE: &str = "DELETE FROM schedules WHERE name = $1";

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = &[
        RUN_BY_ID,
        RUN_EXISTS,
        RUN_STATUS,
        RUN_STATUS_AND_EPOCH,
        RUN_EPOCH,
        PENDING_CHILDREN,
        INSERT_MODULE_BLOB,
        MODULE_BLOB,
        MODULE_VERSION_EXISTS,
        INSERT_MODULE_VERSION,
        MODULE_VERSION,
        ROUTES,
        JOURNAL,
        JOURNAL_PAGE,
        JOURNAL_ENTRY,
        SET_JOURNAL_OUTCOME,
        FORK_JOURNAL,
        FORK_EVENT_HISTORY,
        FORK_STREAM_ENTRIES,
        EVENT_VALUE,
        EVENTS,
        INSERT_EVENT_HISTORY,
        EVENT_HISTORY_PAGE,
        INSERT_MESSAGE,
        NEXT_MESSAGE,
        CONSUME_MESSAGE,
        STREAM_ENTRIES,
        WAITS_OF_RUN,
        EARLIEST_WAKE,
        WAIT_COUNT,
        QUEUES,
        QUEUE,
        DELETE_QUEUE,
        ENQUEUED_IN_QUEUE,
        DEDUPLICATED_RUN,
        NEXT_DELAYED_START,
        ADVANCE_SCHEDULE,
        DELETE_SCHEDULE,
        crate::store::retention::DOOMED_RUNS,
        crate::store::retention::UNUSED_VERSIONS,
        crate::store::retention::UNUSED_BLOBS,
    ];

    /// The parameter numbers of `sql`, in the order they appear.
    fn parameters(sql: &str) -> Vec<u32> {
        let mut found = Vec::new();
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            found.push(rest[..digits].parse().expect("a number after $"));
        }
        found
    }

    #[test]
    fn parameters_first_appear_in_their_numbers_order() {
        for sql in ALL {
            assert!(!sql.contains('?'), "only $n parameters: {sql}");
            let mut next = 1;
            for number in parameters(sql) {
                assert!(
                    number <= next,
                    "${number} appears before ${next} in {sql}: SQLite would number it {next}"
                );
                if number == next {
                    next += 1;
                }
            }
        }
    }

    #[test]
    fn the_check_finds_parameters_out_of_order() {
        assert_eq!(parameters("a = $2 AND b = $1 OR c = $12"), [2, 1, 12]);
    }
}
