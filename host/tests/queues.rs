//! The store's side of flow control, on every backend: what a dequeue
//! moves (start times, rate windows, concurrency), and on PostgreSQL that
//! hosts dequeueing one queue at once stay within its limit together and
//! take each run once.

use std::time::Duration;

use cairn::domain::{Admission, NewRun, QueueName, QueueSettings, RateLimit, RunStatus};
use cairn::store::{CreateRun, Store};

mod support;

use support::{backends, fresh_schema, new_run, postgres, postgres_configured};

fn queued(run: &str, now: i64, queue: &str, start_at: Option<i64>) -> NewRun {
    NewRun {
        admission: Some(Admission {
            queue: Some(QueueName::parse(queue).unwrap()),
            start_at,
            ..Admission::default()
        }),
        ..new_run(run, now)
    }
}

#[tokio::test]
async fn a_dequeue_honours_start_times_and_rate_windows() {
    for (_dir, store) in backends().await {
        let queue = QueueName::parse("paced").unwrap();
        let settings = QueueSettings {
            rate_limit: Some(RateLimit {
                limit: 2,
                period_ms: 1000,
            }),
            ..QueueSettings::default()
        };
        store.put_queue(&queue, settings, 1).await.unwrap();
        for n in 0..4 {
            let created = store
                .create_run(queued(&format!("q{n}"), 1 + n, "paced", None))
                .await;
            assert!(
                matches!(created, Ok(CreateRun::Created(run)) if run.status == RunStatus::Enqueued)
            );
        }
        store
            .create_run(queued("late", 1, "paced", Some(50_000)))
            .await
            .unwrap();

        let first = store.dequeue(10_000, 100).await.unwrap();
        let ids: Vec<String> = first.runs.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, ["q0", "q1"], "the two oldest, in order");
        assert!(
            first
                .runs
                .iter()
                .all(|r| r.status == RunStatus::Pending && r.attempts == 1)
        );
        assert_eq!(first.next_at, Some(11_000), "when the window frees a slot");

        assert!(store.dequeue(10_999, 100).await.unwrap().runs.is_empty());
        let second = store.dequeue(11_000, 100).await.unwrap();
        assert_eq!(second.runs.len(), 2);
        // The delayed run is next, at its time, and not before.
        assert_eq!(second.next_at, Some(12_000));
        let third = store.dequeue(12_000, 100).await.unwrap();
        assert!(third.runs.is_empty(), "{:?}", third.runs);
        assert_eq!(third.next_at, Some(50_000));
        let late = store.dequeue(50_000, 100).await.unwrap();
        assert_eq!(late.runs.len(), 1);
        assert_eq!(late.runs[0].dequeued_at, Some(50_000));
    }
}

#[tokio::test]
async fn hosts_dequeueing_one_queue_at_once_stay_within_its_concurrency() {
    if !postgres_configured() {
        return;
    }
    let schema = fresh_schema();
    let setup = postgres(&schema, "setup", Duration::from_secs(60)).await;
    let queue = QueueName::parse("shared").unwrap();
    let settings = QueueSettings {
        concurrency: Some(5),
        ..QueueSettings::default()
    };
    setup.put_queue(&queue, settings, 1).await.unwrap();
    for n in 0..40 {
        setup
            .create_run(queued(&format!("r{n:02}"), 1, "shared", None))
            .await
            .unwrap();
    }
    let mut hosts = Vec::new();
    for host in 0..4 {
        let store = postgres(&schema, &format!("host-{host}"), Duration::from_secs(60)).await;
        hosts.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..5 {
                mine.extend(store.dequeue(10, 100).await.unwrap().runs);
            }
            mine
        }));
    }
    let mut taken: Vec<String> = Vec::new();
    for host in hosts {
        taken.extend(host.await.unwrap().into_iter().map(|r| r.id.to_string()));
    }
    taken.sort();
    let before = taken.len();
    taken.dedup();
    assert_eq!(
        (before, taken.len()),
        (5, 5),
        "five runs, each once: {taken:?}"
    );
    assert_eq!(
        taken,
        ["r00", "r01", "r02", "r03", "r04"],
        "the oldest first"
    );
}
