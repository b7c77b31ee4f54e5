//! What the store tests share: a fresh store of each backend, on a real
//! SQLite file and (when one is configured) a real PostgreSQL schema, and
//! small builders of the records they write.
#![allow(dead_code, reason = "each test binary uses a part")]

use std::sync::Arc;
use std::time::Duration;

use cairn::domain::{JournalWrite, ModuleDigest, ModuleName, NewRun, WorkflowId};
use cairn::store::{PgOptions, PgStore, SqliteOptions, SqliteStore, Store};

/// A fresh store of each backend (PostgreSQL when one is configured); the
/// directory keeps the files alive.
pub async fn backends() -> Vec<(tempfile::TempDir, Arc<dyn Store>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(SqliteOptions::new(dir.path().join("cairn.db")))
        .await
        .unwrap();
    let mut backends: Vec<(tempfile::TempDir, Arc<dyn Store>)> = vec![(dir, Arc::new(sqlite))];
    if postgres_configured() {
        // Leases of 0 ms: every pending run is claimable, as on SQLite.
        let postgres = postgres(&fresh_schema(), "host-a", Duration::ZERO).await;
        backends.push((tempfile::tempdir().unwrap(), Arc::new(postgres)));
    }
    backends
}

/// The test database; `scripts/test.sh` starts PostgreSQL and sets it.
pub fn postgres_url() -> String {
    std::env::var("CAIRN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://cairn:cairn@127.0.0.1:5432/cairn_test".into())
}

/// Whether a PostgreSQL server is configured (`CAIRN_TEST_POSTGRES_URL`):
/// without one, `cargo test -p cairn-host` runs the SQLite cases alone and
/// says what it skipped. A configured server that cannot be reached fails.
pub fn postgres_configured() -> bool {
    let configured = std::env::var_os("CAIRN_TEST_POSTGRES_URL").is_some();
    if !configured {
        eprintln!(
            "CAIRN_TEST_POSTGRES_URL is not set: PostgreSQL cases skipped (bash scripts/test.sh runs them)"
        );
    }
    configured
}

pub fn fresh_schema() -> String {
    format!("t_{}", uuid::Uuid::now_v7().simple())
}

pub async fn postgres(schema: &str, executor: &str, lease: Duration) -> PgStore {
    let mut options = PgOptions::new(postgres_url());
    options.schema = schema.into();
    options.executor_id = executor.into();
    options.lease = lease;
    options.max_connections = 8;
    PgStore::open(options).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {} is not reachable ({e}); run the tests with `bash scripts/test.sh`, which starts it", postgres_url())
    })
}

pub fn id(text: &str) -> WorkflowId {
    WorkflowId::parse(text).unwrap()
}

pub fn new_run(run: &str, now: i64) -> NewRun {
    NewRun {
        id: id(run),
        module: ModuleName::parse("steps").unwrap(),
        version: ModuleDigest::of(b"v1"),
        workflow: "steps_workflow".into(),
        input: "null".into(),
        now,
        deadline: None,
        parent: None,
        admission: None,
        timeout_ms: None,
        traceparent: None,
    }
}

pub fn set_event(op: u32, key: &str, value: &str) -> JournalWrite {
    JournalWrite::SetEvent {
        op,
        key: key.into(),
        value: value.into(),
    }
}
