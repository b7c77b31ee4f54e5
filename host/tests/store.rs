//! The `Store` contract, checked against every backend from one test body,
//! each on a real database (SQLite: a fresh file per test).

use std::sync::Arc;

use cairn::domain::{
    Delivery, JournalWrite, ModuleKind, ModuleName, NewMessage, NewRun, OperationKind, RunOutcome,
    RunStatus, WorkflowId,
};
use cairn::store::{CreateRun, NewModuleVersion, SqliteOptions, SqliteStore, Store, StoreError};

/// A fresh store of each backend; the directory keeps the files alive.
async fn backends() -> Vec<(tempfile::TempDir, Arc<dyn Store>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(SqliteOptions::new(dir.path().join("cairn.db")))
        .await
        .unwrap();
    vec![(dir, Arc::new(sqlite))]
}

fn id(text: &str) -> WorkflowId {
    WorkflowId::parse(text).unwrap()
}

fn new_run(run: &str, now: i64) -> NewRun {
    NewRun {
        id: id(run),
        module: ModuleName::parse("steps").unwrap(),
        version: "sha256:v1".into(),
        workflow: "steps_workflow".into(),
        input: "null".into(),
        now,
        deadline: None,
        parent: None,
    }
}

fn set_event(op: u32, key: &str, value: &str) -> JournalWrite {
    JournalWrite::SetEvent {
        op,
        key: key.into(),
        value: value.into(),
    }
}

#[tokio::test]
async fn a_run_is_created_once_per_id() {
    for (_dir, store) in backends().await {
        let CreateRun::Created(run) = store.create_run(new_run("r1", 10)).await.unwrap() else {
            panic!("the first create creates");
        };
        assert_eq!(run.status, RunStatus::Pending);
        assert_eq!(run.attempts, 1);
        let mut other = new_run("r1", 20);
        other.workflow = "other".into();
        let CreateRun::Existing(existing) = store.create_run(other).await.unwrap() else {
            panic!("the second create finds the first run");
        };
        assert_eq!(existing, run);
        assert_eq!(store.get_run(&id("r1")).await.unwrap(), Some(run));
        assert_eq!(store.get_run(&id("nope")).await.unwrap(), None);
    }
}

#[tokio::test]
async fn set_event_overwrites_the_value_and_appends_to_the_history() {
    for (_dir, store) in backends().await {
        store.create_run(new_run("r", 1)).await.unwrap();
        let run = id("r");
        store
            .write_journal(&run, set_event(0, "status", "\"placed\""), 2)
            .await
            .unwrap();
        store
            .write_journal(&run, set_event(1, "status", "\"paid\""), 3)
            .await
            .unwrap();
        store
            .write_journal(&run, set_event(2, "note", "null"), 4)
            .await
            .unwrap();

        assert_eq!(
            store.get_event(&run, "status").await.unwrap().as_deref(),
            Some("\"paid\"")
        );
        assert_eq!(
            store.get_event(&run, "note").await.unwrap().as_deref(),
            Some("null")
        );
        assert_eq!(store.get_event(&run, "missing").await.unwrap(), None);
        assert_eq!(
            store.list_events(&run).await.unwrap(),
            [
                ("note".into(), "null".into()),
                ("status".into(), "\"paid\"".into())
            ]
        );
        let history = store.event_history(&run, None).await.unwrap();
        let writes: Vec<_> = history
            .iter()
            .map(|e| (e.op, e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            writes,
            [
                (0, "status", "\"placed\""),
                (1, "status", "\"paid\""),
                (2, "note", "null")
            ]
        );
        assert!(history.windows(2).all(|w| w[0].seq < w[1].seq));
        let later: Vec<u32> = store
            .event_history(&run, Some(0))
            .await
            .unwrap()
            .iter()
            .map(|e| e.op)
            .collect();
        assert_eq!(later, [1, 2], "only the writes after operation 0");

        let journal = store.journal(&run).await.unwrap();
        assert_eq!(journal.len(), 3);
        assert!(
            journal
                .iter()
                .all(|e| e.kind == OperationKind::SetEvent && e.completed)
        );
    }
}

#[tokio::test]
async fn an_operation_is_journaled_once_and_its_effect_with_it() {
    for (_dir, store) in backends().await {
        store.create_run(new_run("r", 1)).await.unwrap();
        let run = id("r");
        store
            .write_journal(&run, set_event(0, "k", "1"), 2)
            .await
            .unwrap();
        let again = store.write_journal(&run, set_event(0, "k", "2"), 3).await;
        assert!(
            matches!(again, Err(StoreError::DuplicateOperation { op: 0, .. })),
            "{again:?}"
        );
        // The refused write changed nothing: neither the value nor the history.
        assert_eq!(
            store.get_event(&run, "k").await.unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(store.event_history(&run, None).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_wait_is_journaled_with_its_deadline_then_its_outcome() {
    for (_dir, store) in backends().await {
        store.create_run(new_run("r", 1)).await.unwrap();
        let run = id("r");
        let name = "other/step1".to_owned();
        store
            .write_journal(
                &run,
                JournalWrite::GetEventStarted {
                    op: 0,
                    name: name.clone(),
                    deadline: 500,
                },
                2,
            )
            .await
            .unwrap();
        let journal = store.journal(&run).await.unwrap();
        assert_eq!(
            (journal[0].completed, journal[0].deadline),
            (false, Some(500))
        );

        let complete = |outcome: Option<&str>| JournalWrite::GetEventCompleted {
            op: 0,
            name: name.clone(),
            outcome: outcome.map(Into::into),
            deadline: 500,
        };
        store
            .write_journal(&run, complete(Some("\"done\"")), 3)
            .await
            .unwrap();
        let journal = store.journal(&run).await.unwrap();
        assert!(journal[0].completed);
        assert_eq!(journal[0].outcome.as_deref(), Some("\"done\""));
        // A completed wait is never completed again with another outcome.
        let again = store.write_journal(&run, complete(None), 4).await;
        assert!(
            matches!(again, Err(StoreError::DuplicateOperation { .. })),
            "{again:?}"
        );
        assert_eq!(
            store.journal(&run).await.unwrap()[0].outcome.as_deref(),
            Some("\"done\"")
        );
    }
}

#[tokio::test]
async fn a_finished_run_changes_no_more() {
    for (_dir, store) in backends().await {
        store.create_run(new_run("r", 1)).await.unwrap();
        let run = id("r");
        store
            .finish_run(
                &run,
                RunOutcome::Success {
                    output: "42".into(),
                },
                5,
            )
            .await
            .unwrap();
        store
            .finish_run(
                &run,
                RunOutcome::Error {
                    message: "late".into(),
                },
                6,
            )
            .await
            .unwrap();
        let record = store.get_run(&run).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.output.as_deref(), record.error),
            (RunStatus::Success, Some("42"), None)
        );
        assert_eq!(record.updated_at, 5);

        let late = store.write_journal(&run, set_event(0, "k", "1"), 7).await;
        assert!(
            matches!(late, Err(StoreError::RunNotPending { .. })),
            "{late:?}"
        );
        let unknown = store
            .write_journal(&id("ghost"), set_event(0, "k", "1"), 7)
            .await;
        assert!(
            matches!(unknown, Err(StoreError::UnknownRun(_))),
            "{unknown:?}"
        );
    }
}

#[tokio::test]
async fn recovery_counts_attempts_and_gives_up_past_the_maximum() {
    for (_dir, store) in backends().await {
        store.create_run(new_run("busy", 1)).await.unwrap();
        store.create_run(new_run("done", 1)).await.unwrap();
        store
            .finish_run(
                &id("done"),
                RunOutcome::Success {
                    output: "null".into(),
                },
                2,
            )
            .await
            .unwrap();

        // Two recoveries allowed: attempts 2 and 3 resume, attempt 4 gives up.
        for attempt in 2..=3 {
            let claim = store.claim_recovery(2, 10).await.unwrap();
            assert_eq!(claim.resume.len(), 1);
            assert_eq!(claim.resume[0].attempts, attempt);
            assert!(claim.exceeded.is_empty());
        }
        let claim = store.claim_recovery(2, 10).await.unwrap();
        assert!(claim.resume.is_empty());
        assert_eq!(claim.exceeded, [id("busy")]);
        let run = store.get_run(&id("busy")).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::MaxRecoveryAttemptsExceeded);
        assert!(run.error.unwrap().contains("more than 2 times"));
        assert_eq!(
            store.get_run(&id("done")).await.unwrap().unwrap().attempts,
            1
        );
    }
}

#[tokio::test]
async fn module_versions_are_stored_once_and_the_latest_deploy_is_current() {
    for (_dir, store) in backends().await {
        let name = ModuleName::parse("steps").unwrap();
        let module = |version: &str, bytes: &[u8], now| NewModuleVersion {
            name: name.clone(),
            version: version.into(),
            bytes: bytes.to_vec(),
            kind: ModuleKind::Workflow,
            workflows: vec!["a".into()],
            settings: Default::default(),
            routes: format!(r#"{{"routes":[],"deployed_at":{now}}}"#),
            now,
        };
        assert!(
            store
                .put_module(module("sha256:1", b"one", 1))
                .await
                .unwrap()
                .created
        );
        assert!(
            !store
                .put_module(module("sha256:1", b"one", 2))
                .await
                .unwrap()
                .created
        );
        assert!(
            store
                .put_module(module("sha256:2", b"two", 3))
                .await
                .unwrap()
                .created
        );
        let info = store.get_module(&name).await.unwrap().unwrap();
        assert_eq!(info.current().version, "sha256:2");
        // The old version deployed again becomes current, without a new row.
        assert!(
            !store
                .put_module(module("sha256:1", b"one", 4))
                .await
                .unwrap()
                .created
        );
        let info = store.get_module(&name).await.unwrap().unwrap();
        assert_eq!(info.current().version, "sha256:1");
        assert_eq!(info.versions.len(), 2);
        assert_eq!(
            store.module_bytes("sha256:2").await.unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(store.list_modules().await.unwrap().len(), 1);
        // Each deployment's routes replace the module's previous ones.
        assert_eq!(
            store.list_routes().await.unwrap(),
            [(name.clone(), r#"{"routes":[],"deployed_at":4}"#.to_owned())]
        );
    }
}

#[tokio::test]
async fn a_module_keeps_its_kind() {
    for (_dir, store) in backends().await {
        let name = ModuleName::parse("listener").unwrap();
        store
            .put_module(NewModuleVersion {
                name: name.clone(),
                version: "sha256:h".into(),
                bytes: b"h".to_vec(),
                kind: ModuleKind::Handler,
                workflows: Vec::new(),
                settings: Default::default(),
                routes: "{}".into(),
                now: 1,
            })
            .await
            .unwrap();
        let info = store.get_module(&name).await.unwrap().unwrap();
        assert_eq!(info.current().kind, ModuleKind::Handler);
    }
}

#[tokio::test]
async fn concurrent_writes_commit_together_and_a_failing_one_spoils_no_other() {
    for (_dir, store) in backends().await {
        store.create_run(new_run("r", 1)).await.unwrap();
        let run = id("r");
        let writes: Vec<_> = (0..200u32)
            .map(|op| {
                let store = store.clone();
                let run = run.clone();
                // Every tenth write reuses operation 0 and must fail alone.
                let write_op = if op % 10 == 5 { 0 } else { op };
                tokio::spawn(async move {
                    store
                        .write_journal(&run, set_event(write_op, &format!("k{op}"), "1"), 2)
                        .await
                })
            })
            .collect();
        let mut failed = 0;
        for write in writes {
            if write.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 20);
        assert_eq!(store.journal(&run).await.unwrap().len(), 180);
        assert_eq!(store.list_events(&run).await.unwrap().len(), 180);
    }
}

#[tokio::test]
async fn what_was_committed_is_there_after_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.db");
    {
        let store = SqliteStore::open(SqliteOptions::new(&path)).await.unwrap();
        store.create_run(new_run("r", 1)).await.unwrap();
        store
            .write_journal(&id("r"), set_event(0, "k", "\"v\""), 2)
            .await
            .unwrap();
    }
    let store = SqliteStore::open(SqliteOptions::new(&path)).await.unwrap();
    assert_eq!(
        store.get_event(&id("r"), "k").await.unwrap().as_deref(),
        Some("\"v\"")
    );
    assert_eq!(store.journal(&id("r")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn messages_are_delivered_once_per_key_and_received_in_order() {
    for (_dir, store) in backends().await {
        let message = |run: &str, text: &str, key: Option<&str>| NewMessage {
            run: id(run),
            topic: "t".into(),
            message: text.into(),
            idempotency_key: key.map(str::to_owned),
        };
        let refused = store.send_message(message("ghost", "1", None), 1).await;
        assert!(
            matches!(refused, Err(StoreError::UnknownRun(_))),
            "{refused:?}"
        );
        store.create_run(new_run("r", 1)).await.unwrap();
        let run = id("r");
        for (text, key, expected) in [
            ("\"a\"", Some("k"), Delivery::Delivered),
            ("\"a again\"", Some("k"), Delivery::Duplicate),
            ("\"b\"", None, Delivery::Delivered),
        ] {
            assert_eq!(
                store
                    .send_message(message("r", text, key), 2)
                    .await
                    .unwrap(),
                expected
            );
        }
        // Received in order, each in the transaction that journals it.
        for (op, expected) in [(0, "\"a\""), (1, "\"b\"")] {
            let next = store.next_message(&run, "t").await.unwrap().unwrap();
            assert_eq!(next.message, expected);
            store
                .write_journal(
                    &run,
                    JournalWrite::RecvCompleted {
                        op,
                        name: "t".into(),
                        received: Some(next),
                        deadline: 10,
                    },
                    3,
                )
                .await
                .unwrap();
        }
        assert_eq!(store.next_message(&run, "t").await.unwrap(), None);
        // The key stays used after its message was received.
        assert_eq!(
            store
                .send_message(message("r", "\"c\"", Some("k")), 4)
                .await
                .unwrap(),
            Delivery::Duplicate
        );
    }
}
