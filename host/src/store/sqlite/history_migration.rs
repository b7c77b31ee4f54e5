//! Migration 0015 moved the event history into a b-tree keyed by
//! (run_id, op); a database made before it keeps its history, and set-events
//! after it still publish and wake.

use std::path::Path;

use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::{SqliteOptions, SqliteStore};
use crate::domain::WorkflowId;
use crate::store::Store;
use crate::store::statements::INSERT_EVENT_HISTORY;

/// A database at `path` with the migrations before 0015 applied, as a host
/// of the release before made it.
async fn database_before_0015(path: &Path, scratch: &Path) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let before = scratch.join("migrations");
    std::fs::create_dir_all(&before).unwrap();
    for entry in std::fs::read_dir(&here).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().as_ref() < "0015" {
            std::fs::copy(entry.path(), before.join(entry.file_name())).unwrap();
        }
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    Migrator::new(before.as_path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(
        "INSERT INTO event_history (run_id, op, key, value, recorded_at) VALUES
            ('run-a', 5, 'progress', '2', 11),
            ('run-a', 2, 'progress', '1', 10),
            ('run-a', 3, 'result', '\"done\"', 12),
            ('run-b', 1, 'progress', '9', 13)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_history_from_before_the_migration_is_kept_in_its_runs_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.db");
    database_before_0015(&path, dir.path()).await;

    let store = SqliteStore::open(SqliteOptions::new(path)).await.unwrap();
    let run = WorkflowId::parse("run-a").unwrap();
    let history = store.event_history(&run, None, 10).await.unwrap();
    let written: Vec<(u32, &str, &str)> = history
        .iter()
        .map(|r| (r.op, r.key.as_str(), r.value.as_str()))
        .collect();
    assert_eq!(
        written,
        [
            (2, "progress", "1"),
            (3, "result", "\"done\""),
            (5, "progress", "2")
        ]
    );
    let after_3 = store.event_history(&run, Some(3), 10).await.unwrap();
    assert_eq!(after_3.iter().map(|r| r.op).collect::<Vec<_>>(), [5]);

    // The triggers were made again: a write to the history publishes.
    write_progress(&store, 7, "3").await.unwrap();
    assert_eq!(
        store.get_event(&run, "progress").await.unwrap().as_deref(),
        Some("3")
    );
    // (run_id, op) is still one write per operation.
    let again = write_progress(&store, 7, "4").await;
    assert!(
        again.is_err(),
        "a second write of the same operation is refused"
    );
}

/// Record `value` as run-a's `progress` at operation `op`, straight into
/// the history with the journal's own statement.
async fn write_progress(
    store: &SqliteStore,
    op: u32,
    value: &'static str,
) -> crate::store::Result<u64> {
    store
        .write(Box::new(move |conn| {
            Ok(conn
                .query(INSERT_EVENT_HISTORY)
                .bind("run-a")
                .bind(op)
                .bind("progress")
                .bind(value)
                .bind(14_i64)
                .execute()?)
        }))
        .await
}
