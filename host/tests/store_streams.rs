//! The `Store` contract for streams, a run's message listing and forks'
//! lineage, on every backend from one test body (see `store.rs`).

mod support;

use cairn::domain::{
    Delivery, JournalWrite, NewMessage, RunOutcome, RunStatus, RunWait, StreamRead, WaitKind,
};
use cairn::store::{Parking, StoreError};
use support::{backends, id, new_run, set_event};

fn append(op: u32, stream: &str, value: Option<&str>) -> JournalWrite {
    JournalWrite::Stream {
        op,
        stream: stream.into(),
        value: value.map(str::to_owned),
    }
}

#[tokio::test]
async fn a_streams_entries_get_positions_in_order_and_a_close_ends_it() {
    for (_dir, store) in backends().await {
        store.create_run(new_run("r", 1)).await.unwrap();
        let run = id("r");
        store
            .write_journal_entries(
                &run,
                Some(1),
                vec![append(0, "s", Some("\"a\"")), append(1, "t", Some("1"))],
                2,
            )
            .await
            .unwrap();
        // From inside step 2: fenced by the epoch, no journal entry.
        store
            .append_stream(&run, Some(1), 2, "s", "\"b\"", 3)
            .await
            .unwrap();
        let stale = store.append_stream(&run, Some(7), 2, "s", "\"x\"", 3).await;
        assert!(matches!(stale, Err(StoreError::Fenced { .. })), "{stale:?}");
        store
            .write_journal(&run, append(3, "s", None), 4)
            .await
            .unwrap();

        let (entries, status) = store.read_stream(&run, "s", 0, 10).await.unwrap();
        assert_eq!(status, Some(RunStatus::Pending));
        let offsets: Vec<(u64, Option<&str>)> = entries
            .iter()
            .map(|e| (e.offset, e.value.as_deref()))
            .collect();
        assert_eq!(offsets, [(0, Some("\"a\"")), (1, Some("\"b\"")), (2, None)]);
        let read = StreamRead::of(entries, status, true);
        assert!(read.closed);
        assert_eq!(read.next_offset(0), 2);
        // From an offset, and bounded by a limit.
        let (tail, _) = store.read_stream(&run, "s", 1, 1).await.unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].offset, 1);
        let listed = store.list_streams(&run).await.unwrap();
        let listed: Vec<(&str, u64, bool)> = listed
            .iter()
            .map(|s| (s.name.as_str(), s.values, s.closed))
            .collect();
        assert_eq!(listed, [("s", 2, true), ("t", 1, false)]);
        // Only a run's own execution appends: not once it has ended.
        store
            .finish_run(&run, RunOutcome::Success { output: "1".into() }, 5)
            .await
            .unwrap();
        let late = store.append_stream(&run, None, 4, "t", "2", 6).await;
        assert!(
            matches!(late, Err(StoreError::RunNotPending { .. })),
            "{late:?}"
        );
        let (_, status) = store.read_stream(&run, "t", 0, 10).await.unwrap();
        assert_eq!(status, Some(RunStatus::Success));
        let (none, status) = store.read_stream(&id("ghost"), "t", 0, 10).await.unwrap();
        assert!(none.is_empty() && status.is_none());
    }
}

#[tokio::test]
async fn a_parked_stream_reader_is_woken_by_an_append_and_by_the_runs_end() {
    for (_dir, store) in backends().await {
        for run in ["writer", "reader", "other"] {
            store.create_run(new_run(run, 1)).await.unwrap();
        }
        let wait = |offset: u64| RunWait {
            kind: WaitKind::Stream,
            on_run: Some(id("writer")),
            on_key: "s".into(),
            on_offset: Some(offset),
            deadline: Some(1_000_000),
            wake_at: 1_000_000,
        };
        store
            .write_journal(&id("writer"), append(0, "s", Some("1")), 2)
            .await
            .unwrap();
        // The value at offset 0 is there: nothing to park for.
        let happened = store
            .park_run(&id("reader"), None, wait(0), 3)
            .await
            .unwrap();
        assert_eq!(happened, Parking::Happened);
        assert_eq!(
            store
                .park_run(&id("reader"), None, wait(1), 3)
                .await
                .unwrap(),
            Parking::Parked
        );
        assert!(store.claim_woken(4, 10).await.unwrap().is_empty());
        store
            .write_journal(&id("writer"), append(1, "s", Some("2")), 5)
            .await
            .unwrap();
        let woken = store.claim_woken(6, 10).await.unwrap();
        assert_eq!(woken.len(), 1);
        assert_eq!(woken[0].id, id("reader"));
        let parked = store.parked_wait(&id("reader")).await.unwrap();
        assert!(parked.is_none(), "{parked:?}");

        // The writer's end ends its streams: a reader past the end wakes.
        assert_eq!(
            store
                .park_run(&id("other"), None, wait(5), 7)
                .await
                .unwrap(),
            Parking::Parked
        );
        store
            .finish_run(&id("writer"), RunOutcome::Success { output: "1".into() }, 8)
            .await
            .unwrap();
        let woken = store.claim_woken(9, 10).await.unwrap();
        assert_eq!(
            woken.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            [id("other")]
        );
    }
}

#[tokio::test]
async fn a_runs_messages_are_listed_received_or_not() {
    for (_dir, store) in backends().await {
        store.create_run(new_run("r", 1)).await.unwrap();
        let run = id("r");
        for (topic, text, key) in [("a", "1", Some("k1")), ("", "2", None), ("a", "3", None)] {
            let sent = NewMessage {
                run: run.clone(),
                topic: topic.into(),
                message: text.into(),
                idempotency_key: key.map(str::to_owned),
            };
            assert_eq!(
                store.send_message(sent, 10).await.unwrap(),
                Delivery::Delivered
            );
        }
        let first = store.next_message(&run, "a").await.unwrap().unwrap();
        store
            .write_journal(
                &run,
                JournalWrite::RecvCompleted {
                    op: 0,
                    name: "a".into(),
                    received: Some(first),
                    deadline: 100,
                },
                20,
            )
            .await
            .unwrap();
        let listed = store.list_messages(&run, None, 10).await.unwrap();
        type Summary<'a> = (&'a str, &'a str, Option<&'a str>, Option<u32>, Option<i64>);
        let summary: Vec<Summary<'_>> = listed
            .iter()
            .map(|m| {
                (
                    m.topic.as_str(),
                    m.message.as_str(),
                    m.idempotency_key.as_deref(),
                    m.received_by_op,
                    m.received_at,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a", "1", Some("k1"), Some(0), Some(20)),
                ("", "2", None, None, None),
                ("a", "3", None, None, None),
            ]
        );
        assert!(listed.iter().all(|m| m.sent_at == 10));
        // Paged by seq.
        let page = store
            .list_messages(&run, Some(listed[0].seq), 1)
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].message, "2");
    }
}

#[tokio::test]
async fn a_fork_records_its_source_and_copies_the_streams_before_its_step() {
    for (_dir, store) in backends().await {
        store.create_run(new_run("src", 1)).await.unwrap();
        let source = id("src");
        store
            .write_journal_entries(
                &source,
                None,
                vec![
                    append(0, "s", Some("\"a\"")),
                    set_event(1, "k", "1"),
                    append(2, "s", Some("\"b\"")),
                ],
                2,
            )
            .await
            .unwrap();
        let fork = store.fork_run(&source, &id("copy"), 2, 3).await.unwrap();
        assert_eq!(fork.forked_from, Some(source.clone()));
        assert_eq!(
            store.get_run(&source).await.unwrap().unwrap().forked_from,
            None
        );
        let (entries, _) = store.read_stream(&id("copy"), "s", 0, 10).await.unwrap();
        let values: Vec<Option<&str>> = entries.iter().map(|e| e.value.as_deref()).collect();
        assert_eq!(values, [Some("\"a\"")]);
    }
}
