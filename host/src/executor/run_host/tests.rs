//! The journaled host imports, checked on a real SQLite store with a manual clock.

use super::*;
use crate::domain::{ModuleDigest, ModuleName, NewRun};
use crate::executor::{Executor, Limits, ManualClock};
use crate::runtime::Runtime;
use crate::runtime::wit::children::Host as _;
use crate::runtime::wit::events::Host as _;
use crate::runtime::wit::steps::Host as _;
use crate::runtime::wit::steps::{RetryPolicy, StepState};
use crate::store::{SqliteOptions, SqliteStore};

/// When the tests' clock starts.
const START: i64 = 1_700_000_000_000;

async fn executor(dir: &std::path::Path) -> Executor {
    executor_on(dir, Arc::new(ManualClock::at(START))).await
}

async fn executor_on(dir: &std::path::Path, clock: Arc<ManualClock>) -> Executor {
    let store = SqliteStore::open(SqliteOptions::new(dir.join("cairn.db")))
        .await
        .unwrap();
    Executor::new(
        Arc::new(store),
        Runtime::new(None, crate::runtime::GuestLimits::default()).unwrap(),
        clock,
        Limits::default(),
    )
    .await
    .unwrap()
}

/// A host for run `id` that replays `journal` (empty: a first execution).
fn host(exec: &Executor, id: &WorkflowId, journal: Vec<JournalEntry>) -> RunHost {
    RunHost::new(
        exec.inner.clone(),
        id.clone(),
        journal,
        AllowList::default(),
    )
}

async fn pending_run(exec: &Executor, id: &str) -> WorkflowId {
    pending_child(exec, id, None).await
}

/// A pending run, the child of `parent` if there is one.
async fn pending_child(exec: &Executor, id: &str, parent: Option<&WorkflowId>) -> WorkflowId {
    let id = WorkflowId::parse(id).unwrap();
    exec.inner
        .store
        .create_run(NewRun {
            id: id.clone(),
            module: ModuleName::parse("m").unwrap(),
            version: ModuleDigest::of(b"x"),
            workflow: "w".into(),
            input: "null".into(),
            now: 0,
            deadline: None,
            parent: parent.cloned(),
            admission: None,
            timeout_ms: None,
            traceparent: None,
        })
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn a_replayed_set_event_writes_nothing_again() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path()).await;
    let run = pending_run(&exec, "r").await;
    let mut first = host(&exec, &run, Vec::new());
    first.set_event("k".into(), "1".into()).await.unwrap();

    let journal = exec.journal(&run).await.unwrap();
    let mut replay = host(&exec, &run, journal);
    assert!(replay.replaying());
    replay.set_event("k".into(), "1".into()).await.unwrap();
    assert_eq!(exec.event_history(&run, None, 100).await.unwrap().len(), 1);
    // Past the journal, calls are new operations again.
    replay.set_event("k".into(), "2".into()).await.unwrap();
    let history = exec.event_history(&run, None, 100).await.unwrap();
    assert_eq!(history.iter().map(|e| e.op).collect::<Vec<_>>(), [0, 1]);
}

#[tokio::test]
async fn a_replay_that_departs_from_the_journal_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path()).await;
    let run = pending_run(&exec, "r").await;
    let mut first = host(&exec, &run, Vec::new());
    first.set_event("step1".into(), "1".into()).await.unwrap();

    let journal = exec.journal(&run).await.unwrap();
    let mut replay = RunHost::new(
        exec.inner.clone(),
        run.clone(),
        journal.clone(),
        AllowList::default(),
    );
    let failure = replay
        .get_event("other".into(), "k".into(), 0)
        .await
        .unwrap_err();
    let Some(HostFailure::Run(message)) = failure.failure().cloned() else {
        panic!("non-determinism is the run's fault: {failure:?}");
    };
    assert!(message.contains("non-determinism"), "{message}");
    assert!(message.contains("set-event(\"step1\")"), "{message}");
    assert!(message.contains("get-event(\"other/k\")"), "{message}");

    let mut other_key = host(&exec, &run, journal);
    let failure = other_key
        .set_event("step2".into(), "1".into())
        .await
        .unwrap_err();
    assert!(matches!(failure.failure(), Some(HostFailure::Run(_))));
}

#[tokio::test]
async fn a_replayed_get_event_returns_the_recorded_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path()).await;
    let target = pending_run(&exec, "target").await;
    let reader = pending_run(&exec, "reader").await;

    let mut writer = host(&exec, &target, Vec::new());
    writer
        .set_event("k".into(), "\"old\"".into())
        .await
        .unwrap();
    let mut first = host(&exec, &reader, Vec::new());
    let seen = first
        .get_event("target".into(), "k".into(), 0)
        .await
        .unwrap();
    assert_eq!(seen.as_deref(), Some("\"old\""));
    // Nothing there yet: journaled as none.
    let missing = first
        .get_event("target".into(), "later".into(), 0)
        .await
        .unwrap();
    assert_eq!(missing, None);

    // The events change; the replay still sees what the run saw.
    writer
        .set_event("k".into(), "\"new\"".into())
        .await
        .unwrap();
    writer.set_event("later".into(), "1".into()).await.unwrap();
    let journal = exec.journal(&reader).await.unwrap();
    let mut replay = host(&exec, &reader, journal);
    let replayed = replay
        .get_event("target".into(), "k".into(), 0)
        .await
        .unwrap();
    assert_eq!(replayed.as_deref(), Some("\"old\""));
    let replayed = replay
        .get_event("target".into(), "later".into(), 0)
        .await
        .unwrap();
    assert_eq!(replayed, None);
}

#[tokio::test]
async fn refused_values_are_guest_errors_that_take_no_operation() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path()).await;
    let run = pending_run(&exec, "r").await;
    let mut host = host(&exec, &run, Vec::new());
    let invalid = host
        .set_event("k".into(), "{nope".into())
        .await
        .unwrap_err()
        .guest()
        .cloned()
        .expect("a refusal");
    assert_eq!(invalid.code, GuestErrorCode::InvalidJson);
    assert!(
        invalid.message.contains("not valid JSON"),
        "{}",
        invalid.message
    );
    let big = format!("\"{}\"", "x".repeat(exec.limits().max_value_bytes));
    let too_large = host
        .set_event("k".into(), big)
        .await
        .unwrap_err()
        .guest()
        .cloned()
        .expect("a refusal");
    assert_eq!(too_large.code, GuestErrorCode::TooLarge);
    assert!(
        too_large.message.contains("limit is 1048576 bytes"),
        "{}",
        too_large.message
    );
    let empty = host
        .set_event(String::new(), "1".into())
        .await
        .unwrap_err()
        .guest()
        .cloned()
        .expect("a refusal");
    assert_eq!(empty.code, GuestErrorCode::InvalidArgument);
    // null is a value, and distinct from no event.
    host.set_event("k".into(), "null".into()).await.unwrap();
    assert_eq!(exec.journal(&run).await.unwrap().len(), 1);
    let value = host.get_event("r".into(), "k".into(), 0).await.unwrap();
    assert_eq!(value.as_deref(), Some("null"));
}

#[tokio::test]
async fn what_a_run_read_is_journaled_before_a_step_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path()).await;
    let run = pending_run(&exec, "r").await;
    let mut host = host(&exec, &run, Vec::new());
    // A random idempotency key, drawn outside the step...
    let mut key = [0u8; 8];
    host.environment().fill_random(&mut key);
    let policy = RetryPolicy {
        max_attempts: 1,
        initial_interval_ms: 0,
        backoff_factor: 1.0,
        max_interval_ms: 0,
    };
    let state = host.begin_step("charge".into(), policy).await.unwrap();
    assert!(matches!(state, StepState::Attempt(1)), "{state:?}");
    // ...is durable before the step's work sends it anywhere: a crash
    // during the work replays the same key.
    let journal = exec.journal(&run).await.unwrap();
    let kinds: Vec<_> = journal.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [OperationKind::Random]);
}

#[tokio::test]
async fn journaled_times_come_from_the_executor_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(START));
    let exec = executor_on(dir.path(), clock.clone()).await;
    let run = pending_run(&exec, "r").await;
    let mut host = host(&exec, &run, Vec::new());
    host.set_event("k".into(), "1".into()).await.unwrap();
    clock.advance(5_000);
    // A look that finds nothing: its deadline is the clock's now.
    let none = host
        .get_event("r".into(), "missing".into(), 0)
        .await
        .unwrap();
    assert_eq!(none, None);
    let journal = exec.journal(&run).await.unwrap();
    assert_eq!(journal[0].recorded_at, START);
    assert_eq!(journal[1].recorded_at, START + 5_000);
    assert_eq!(journal[1].deadline, Some(START + 5_000));
}

#[tokio::test]
async fn a_run_knows_its_parent_and_a_top_level_run_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path()).await;
    let parent = pending_run(&exec, "p").await;
    let child = pending_child(&exec, "p.0", Some(&parent)).await;
    let of_child = host(&exec, &child, Vec::new()).parent_id().await.unwrap();
    assert_eq!(of_child.as_deref(), Some("p"));
    let of_parent = host(&exec, &parent, Vec::new()).parent_id().await.unwrap();
    assert_eq!(of_parent, None);
    // Not an operation: nothing is journaled.
    assert!(exec.journal(&child).await.unwrap().is_empty());
}
