//! The `Store` contract, checked against every backend from one test body,
//! each on a real database (SQLite: a fresh file per test; PostgreSQL: a
//! fresh schema per test in the database of `CAIRN_TEST_POSTGRES_URL`, which
//! `scripts/test.sh` starts), and what only PostgreSQL does: leases, fencing
//! and change notifications.

use std::sync::Arc;
use std::time::Duration;

use cairn::domain::{
    Delivery, JournalWrite, ModuleDigest, ModuleKind, ModuleName, NewMessage, OperationKind,
    RunOutcome, RunStatus, WorkflowId,
};
use cairn::store::{
    Change, CreateRun, NewModuleVersion, PgOptions, PgStore, SqliteOptions, SqliteStore, Store,
    StoreError,
};

use sqlx::Connection;

mod support;

use support::{
    backends, fresh_schema, id, new_run, postgres, postgres_configured, postgres_url, set_event,
};

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
        let history = store.event_history(&run, None, 1000).await.unwrap();
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
        assert!(history.windows(2).all(|w| w[0].op < w[1].op));
        let later: Vec<u32> = store
            .event_history(&run, Some(0), 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.op)
            .collect();
        assert_eq!(later, [1, 2], "only the writes after operation 0");
        let first_two: Vec<u32> = store
            .event_history(&run, None, 2)
            .await
            .unwrap()
            .iter()
            .map(|e| e.op)
            .collect();
        assert_eq!(first_two, [0, 1], "a page of the history");
        let page = store.journal_page(&run, Some(0), 1).await.unwrap();
        assert_eq!(page.iter().map(|e| e.op).collect::<Vec<_>>(), [1]);
        assert!(
            store
                .journal_page(&run, Some(2), 10)
                .await
                .unwrap()
                .is_empty()
        );

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
        assert_eq!(
            store.event_history(&run, None, 1000).await.unwrap().len(),
            1
        );
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
        let module = |bytes: &[u8], now| NewModuleVersion {
            name: name.clone(),
            version: ModuleDigest::of(bytes),
            bytes: bytes.to_vec(),
            kind: ModuleKind::Workflow,
            workflows: vec!["a".into()],
            settings: Default::default(),
            routes: format!(r#"{{"routes":[],"deployed_at":{now}}}"#),
            now,
        };
        assert!(store.put_module(module(b"one", 1)).await.unwrap().created);
        assert!(!store.put_module(module(b"one", 2)).await.unwrap().created);
        assert!(store.put_module(module(b"two", 3)).await.unwrap().created);
        let info = store.get_module(&name).await.unwrap().unwrap();
        assert_eq!(info.current().version, ModuleDigest::of(b"two"));
        // The old version deployed again becomes current, without a new row.
        assert!(!store.put_module(module(b"one", 4)).await.unwrap().created);
        let info = store.get_module(&name).await.unwrap().unwrap();
        assert_eq!(info.current().version, ModuleDigest::of(b"one"));
        assert_eq!(info.versions.len(), 2);
        assert_eq!(
            store
                .module_bytes(&ModuleDigest::of(b"two"))
                .await
                .unwrap()
                .as_deref(),
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
                version: ModuleDigest::of(b"h"),
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

#[tokio::test]
async fn postgres_keeps_what_was_committed_across_connections() {
    if !postgres_configured() {
        return;
    }
    let schema = fresh_schema();
    {
        let store = postgres(&schema, "a", Duration::from_secs(10)).await;
        store.create_run(new_run("r", 1)).await.unwrap();
        store
            .write_journal(&id("r"), set_event(0, "k", "\"v\""), 2)
            .await
            .unwrap();
    }
    let store = postgres(&schema, "b", Duration::from_secs(10)).await;
    assert_eq!(
        store.get_event(&id("r"), "k").await.unwrap().as_deref(),
        Some("\"v\"")
    );
    assert_eq!(store.journal(&id("r")).await.unwrap().len(), 1);
}

/// The writer holds one connection of its own: when the server ends it
/// (a restart, an administrator), the write that meets the broken
/// connection fails, and the next one goes through on a fresh connection.
#[tokio::test]
async fn postgres_writer_opens_a_fresh_connection_after_losing_its_own() {
    if !postgres_configured() {
        return;
    }
    let schema = fresh_schema();
    let store = postgres(&schema, "a", Duration::from_secs(10)).await;
    store.create_run(new_run("before", 1)).await.unwrap();

    let mut admin = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'cairn writer ' || $1 || '%'",
    )
    .bind(&schema)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(ended, [true], "the writer's one connection was ended");

    // The write that finds the connection gone may fail (its outcome was
    // unknown to the writer); it is not retried behind the caller's back.
    let _ = store.create_run(new_run("during", 2)).await;
    store.create_run(new_run("after", 3)).await.unwrap();
    store
        .write_journal(&id("after"), set_event(0, "k", "\"v\""), 4)
        .await
        .unwrap();
    for run in ["before", "after"] {
        assert!(
            store.get_run(&id(run)).await.unwrap().is_some(),
            "{run} is stored"
        );
    }
}

#[tokio::test]
async fn a_leased_run_is_claimed_by_another_host_only_after_its_lease_expires() {
    if !postgres_configured() {
        return;
    }
    let schema = fresh_schema();
    let a = postgres(&schema, "host-a", Duration::from_millis(1000)).await;
    let b = postgres(&schema, "host-b", Duration::from_millis(1000)).await;
    let CreateRun::Created(run) = a.create_run(new_run("r", 100)).await.unwrap() else {
        panic!("created");
    };
    assert_eq!(run.epoch, 1);
    // Within host a's lease, host b claims nothing.
    assert!(b.claim_recovery(10, 600).await.unwrap().resume.is_empty());
    // Host a renews; at 1500 the lease (renewed at 600, to 1600) still holds.
    assert_eq!(a.renew_leases(&[id("r")], 600).await.unwrap(), [id("r")]);
    assert!(b.claim_recovery(10, 1500).await.unwrap().resume.is_empty());
    // Host a stops renewing: past the lease, host b takes the run over.
    let claim = b.claim_recovery(10, 1700).await.unwrap();
    assert_eq!(claim.resume.len(), 1);
    let taken = &claim.resume[0];
    assert_eq!((taken.epoch, taken.attempts), (2, 2));
    // Host a learns it lost the run when it tries to renew.
    assert!(a.renew_leases(&[id("r")], 1750).await.unwrap().is_empty());
    // Host a, paused rather than dead, can journal nothing more for it.
    let fenced = a
        .write_journal_entries(&id("r"), Some(1), vec![set_event(0, "k", "1")], 1800)
        .await;
    assert!(
        matches!(
            fenced,
            Err(StoreError::Fenced {
                current: 2,
                mine: 1,
                ..
            })
        ),
        "{fenced:?}"
    );
    let late_end = a
        .finish_run_fenced(
            &id("r"),
            Some(1),
            RunOutcome::Success { output: "1".into() },
            1800,
        )
        .await;
    assert!(
        matches!(late_end, Err(StoreError::Fenced { .. })),
        "{late_end:?}"
    );
    // Host b's execution can.
    b.write_journal_entries(&id("r"), Some(2), vec![set_event(0, "k", "2")], 1800)
        .await
        .unwrap();
    b.finish_run_fenced(
        &id("r"),
        Some(2),
        RunOutcome::Success { output: "2".into() },
        1900,
    )
    .await
    .unwrap();
    let run = a.get_run(&id("r")).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.output.as_deref()),
        (RunStatus::Success, Some("2"))
    );
    assert_eq!(
        b.renew_leases(&[id("r")], 2000).await.unwrap(),
        [] as [WorkflowId; 0],
        "a finished run holds no lease"
    );
}

#[tokio::test]
async fn hosts_claiming_at_once_take_each_run_once() {
    if !postgres_configured() {
        return;
    }
    let schema = fresh_schema();
    let setup = postgres(&schema, "gone", Duration::ZERO).await;
    for n in 0..40 {
        setup
            .create_run(new_run(&format!("r{n}"), 1))
            .await
            .unwrap();
    }
    let mut claims = Vec::new();
    for host in 0..4 {
        let store = postgres(&schema, &format!("host-{host}"), Duration::from_secs(60)).await;
        claims.push(tokio::spawn(async move {
            store.claim_recovery(10, 5).await.unwrap()
        }));
    }
    let mut claimed: Vec<String> = Vec::new();
    for claim in claims {
        claimed.extend(
            claim
                .await
                .unwrap()
                .resume
                .into_iter()
                .map(|r| r.id.to_string()),
        );
    }
    claimed.sort();
    let before = claimed.len();
    claimed.dedup();
    assert_eq!(
        (before, claimed.len()),
        (40, 40),
        "each run claimed by exactly one host"
    );
}

#[tokio::test]
async fn postgres_announces_committed_changes_to_every_listener() {
    if !postgres_configured() {
        return;
    }
    let schema = fresh_schema();
    let writer = postgres(&schema, "w", Duration::from_secs(10)).await;
    let reader = postgres(&schema, "r", Duration::from_secs(10)).await;
    let mut changes = reader
        .listen()
        .await
        .unwrap()
        .expect("PostgreSQL announces changes");
    writer.create_run(new_run("r", 1)).await.unwrap();
    writer
        .write_journal(&id("r"), set_event(0, "status", "1"), 2)
        .await
        .unwrap();
    // A refused write announces nothing.
    assert!(
        writer
            .write_journal(&id("r"), set_event(0, "status", "2"), 3)
            .await
            .is_err()
    );
    writer
        .send_message(
            NewMessage {
                run: id("r"),
                topic: "t".into(),
                message: "1".into(),
                idempotency_key: None,
            },
            4,
        )
        .await
        .unwrap();
    writer
        .finish_run(
            &id("r"),
            RunOutcome::Success {
                output: "null".into(),
            },
            5,
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let change = tokio::time::timeout(Duration::from_secs(10), changes.recv())
            .await
            .expect("a notification in time")
            .expect("the listener lives");
        seen.push(change);
    }
    // Each announced once. A message's notice goes out after its commit and
    // a run's end in the end's own statement, so their order is not
    // promised (a fresh CI run saw the end first).
    let expected = [
        Change::Event {
            run: id("r"),
            key: "status".into(),
        },
        Change::Message {
            run: id("r"),
            topic: "t".into(),
        },
        Change::Finished(id("r")),
    ];
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
    for change in &expected {
        assert!(seen.contains(change), "{change:?} not announced: {seen:?}");
    }
}

/// Issue 18: a store call abandoned midway (its task aborted, as an
/// execution is when its host loses the run) must not leave its connection
/// inside a transaction, where the next caller's write would be answered as
/// done yet stay invisible until something else commits it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_store_call_leaves_no_transaction_for_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(
        SqliteStore::open(SqliteOptions::new(dir.path().join("cairn.db")))
            .await
            .unwrap(),
    );
    // (the store written through, another view of the same database)
    let mut stores = vec![(sqlite.clone(), sqlite)];
    if postgres_configured() {
        let schema = fresh_schema();
        let mut options = PgOptions::new(postgres_url());
        options.schema = schema.clone();
        options.executor_id = "aborted".into();
        options.lease = Duration::from_secs(60);
        // One connection: the next write surely takes the abandoned one's.
        options.max_connections = 1;
        let postgres: Arc<dyn Store> = Arc::new(PgStore::open(options).await.unwrap());
        stores.push((postgres, postgres_store_for(&schema).await));
    }
    for (store, observer) in stores {
        store.create_run(new_run("target", 0)).await.unwrap();
        for attempt in 0..200u32 {
            let writer = store.clone();
            let call = tokio::spawn(async move {
                writer
                    .write_journal_entries(
                        &id("target"),
                        Some(1),
                        vec![set_event(attempt, "k", "\"v\"")],
                        1,
                    )
                    .await
            });
            // Abort at a different point of the call each time: before,
            // inside and after its BEGIN's round trip.
            let spin = std::time::Instant::now();
            let delay = Duration::from_micros(u64::from(attempt % 100) * 15);
            while spin.elapsed() < delay {
                std::hint::spin_loop();
            }
            call.abort();
            let _ = call.await;
            let probe = id(&format!("probe-{attempt}"));
            let created = store.create_run(new_run(probe.as_str(), 2)).await.unwrap();
            assert!(matches!(created, CreateRun::Created(_)));
            assert!(
                observer.get_run(&probe).await.unwrap().is_some(),
                "attempt {attempt}: run {probe} was acknowledged as created but is not committed"
            );
        }
    }
}

async fn postgres_store_for(schema: &str) -> Arc<dyn Store> {
    Arc::new(postgres(schema, "observer", Duration::from_secs(60)).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_of_many_runs_share_commits_and_each_gets_its_own_answer() {
    for (_dir, store) in backends().await {
        // 40 runs created at once, each id asked for twice: one creation
        // each, the second answered with the run that exists.
        let creations: Vec<_> = (0..80)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(
                    async move { store.create_run(new_run(&format!("g{}", n % 40), 1)).await },
                )
            })
            .collect();
        let mut created = 0;
        for creation in creations {
            if let CreateRun::Created(_) = creation.await.unwrap().unwrap() {
                created += 1;
            }
        }
        assert_eq!(created, 40);
        // Runs g30..g39 end first: their journal writes are refused alone.
        for n in 30..40 {
            let ended = RunOutcome::Success { output: "0".into() };
            store
                .finish_run_fenced(&id(&format!("g{n}")), Some(1), ended, 2)
                .await
                .unwrap();
        }
        let before = store.health();
        let writes: Vec<_> = (0..40)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let run = id(&format!("g{n}"));
                    // Runs g20..g29 are written by an execution of an old epoch.
                    let fence = if (20..30).contains(&n) { 7 } else { 1 };
                    store
                        .write_journal_entries(
                            &run,
                            Some(fence),
                            vec![set_event(0, "k", &n.to_string())],
                            3,
                        )
                        .await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for write in writes {
            answers.push(write.await.unwrap());
        }
        for (n, answer) in answers.iter().enumerate() {
            match n {
                0..20 => assert!(answer.is_ok(), "g{n}: {answer:?}"),
                20..30 => assert!(
                    matches!(
                        answer,
                        Err(StoreError::Fenced {
                            current: 1,
                            mine: 7,
                            ..
                        })
                    ),
                    "g{n}: {answer:?}"
                ),
                _ => assert!(
                    matches!(answer, Err(StoreError::RunNotPending { .. })),
                    "g{n}: {answer:?}"
                ),
            }
        }
        for n in 0..40 {
            let value = store.get_event(&id(&format!("g{n}")), "k").await.unwrap();
            assert_eq!(value, (n < 20).then(|| n.to_string()), "g{n}");
        }
        // Ends of 20 runs at once, each asked for twice: the second finds
        // the run ended and changes nothing.
        let ends: Vec<_> = (0..40)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let output = RunOutcome::Success {
                        output: format!("{}", n / 20),
                    };
                    store
                        .finish_run_fenced(&id(&format!("g{}", n % 20)), Some(1), output, 4)
                        .await
                })
            })
            .collect();
        for end in ends {
            end.await.unwrap().unwrap();
        }
        for n in 0..20 {
            let run = store.get_run(&id(&format!("g{n}"))).await.unwrap().unwrap();
            assert_eq!(run.status, RunStatus::Success);
        }
        let after = store.health();
        let (writes, commits) = (after.writes - before.writes, after.commits - before.commits);
        assert!(writes >= 60, "{writes} writes counted");
        assert!(
            commits < writes,
            "{writes} concurrent writes took {commits} commits: none grouped"
        );
    }
}

/// Batched writes lock many runs' rows, as a renewal of leases does: both
/// must take them in one order, or each can hold a row the other waits for
/// (PostgreSQL breaks the cycle after a second, failing one of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_and_batched_writes_of_the_same_runs_never_deadlock() {
    if !postgres_configured() {
        return;
    }
    let store = Arc::new(postgres(&fresh_schema(), "host-a", Duration::from_secs(60)).await);
    let runs: Vec<WorkflowId> = (0..40).map(|n| id(&format!("d{n:02}"))).collect();
    for run in &runs {
        store.create_run(new_run(run.as_str(), 1)).await.unwrap();
    }
    let renewer = tokio::spawn({
        let (store, runs) = (store.clone(), runs.clone());
        async move {
            for round in 0..150 {
                // Each renewal names the runs in another order.
                let mut order = runs.clone();
                order.rotate_left(round % runs.len());
                if round % 2 == 1 {
                    order.reverse();
                }
                store.renew_leases(&order, 2).await?;
            }
            Ok::<_, StoreError>(())
        }
    });
    let writers: Vec<_> = runs
        .iter()
        .rev()
        .map(|run| {
            let (store, run) = (store.clone(), run.clone());
            tokio::spawn(async move {
                for op in 0..30 {
                    store
                        .write_journal_entries(&run, Some(1), vec![set_event(op, "k", "1")], 3)
                        .await?;
                }
                store
                    .finish_run_fenced(&run, Some(1), RunOutcome::Success { output: "1".into() }, 4)
                    .await
            })
        })
        .collect();
    let started = std::time::Instant::now();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    renewer.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}: statements waited on each other",
        started.elapsed()
    );
}
