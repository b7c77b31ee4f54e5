//! Several hosts on one PostgreSQL database: a run started on host A is
//! read live on hosts B and C; A is killed with SIGKILL mid-run; another
//! host takes the run over once A's lease expires and finishes it, with
//! every `set-event` exactly once, and a waiter on B is woken by the
//! database's notification, not by polling. Two live hosts never share an
//! executor id, nor a data directory.

use std::time::Duration;

use cairn_tests::{Host, SseStream, examples, fresh_schema};
use serde_json::{Value, json};

const LEASE_MS: u64 = 1500;
/// Longer than the latency asserted below: a wake-up that fast came from a
/// notification.
const POLL_MS: u64 = 3000;

async fn start_host(dir: &std::path::Path, name: &str, schema: &str) -> anyhow::Result<Host> {
    Host::start_shared(dir, name, schema, (LEASE_MS, POLL_MS), &[]).await
}

#[tokio::test]
async fn a_run_survives_the_death_of_its_host_on_another_host() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let schema = fresh_schema();
    let a = start_host(dir.path(), "host-a", &schema).await?;
    let b = start_host(dir.path(), "host-b", &schema).await?;
    let c = start_host(dir.path(), "host-c", &schema).await?;
    // Deployed through A; B and C run and serve it from the shared database.
    let deployed = a
        .client
        .deploy("steps", examples::bytes(examples::STEPS))
        .await?;
    assert!(deployed.status.is_success(), "{}", deployed.body);

    let started = a
        .client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 4000}),
            Some("mh-1"),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    // B sees the first event as soon as A commits it; C follows the run live.
    b.expect_event("mh-1", "step1", json!("completed")).await?;
    let mut stream_c = SseStream::open(&c.url, "/v1/workflows/mh-1/events", &[]).await?;
    // B waits for the second event, which A will never write.
    let waiter = {
        let client = b.client.clone();
        tokio::spawn(async move {
            let reply = client.event("mh-1", "step2", 60_000).await;
            (reply, std::time::SystemTime::now())
        })
    };
    a.kill().await?;

    let run = b.result("mh-1", Duration::from_secs(60)).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["attempts"], 2, "started on A, taken over once: {run}");
    // The waiter on B got step2 promptly after it was journaled.
    let (reply, woken_at) = waiter.await?;
    let reply = reply?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["value"], "completed");
    let journal = c.client.steps("mh-1").await?.body["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let calls: Vec<(&str, &str)> = journal
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        calls,
        [
            ("set-event", "step1"),
            ("sleep", "4000"),
            ("set-event", "step2")
        ],
        "each call journaled exactly once"
    );
    let written = humantime::parse_rfc3339(journal[2]["recorded_at"].as_str().unwrap())?;
    let latency = woken_at.duration_since(written).unwrap_or_default();
    eprintln!("B's waiter woke {latency:?} after host C or B committed step2");
    assert!(
        latency < Duration::from_millis(1000),
        "B's waiter woke {latency:?} after the commit on another host; the poll interval is {POLL_MS} ms"
    );

    // C's live stream saw each event once, then the end.
    let mut seen: Vec<(String, Value)> = Vec::new();
    while let Some(event) = stream_c.next(Duration::from_secs(30)).await? {
        if event.event == "cairn:finished" {
            break;
        }
        seen.push((event.event.clone(), event.json()));
    }
    assert_eq!(
        seen,
        [
            ("step1".to_owned(), json!("completed")),
            ("step2".to_owned(), json!("completed")),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn runs_started_on_any_host_complete_and_are_visible_on_every_host() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let schema = fresh_schema();
    let hosts = [
        start_host(dir.path(), "host-1", &schema).await?,
        start_host(dir.path(), "host-2", &schema).await?,
    ];
    let deployed = hosts[1]
        .client
        .deploy("approvals", examples::bytes(examples::APPROVALS))
        .await?;
    assert!(deployed.status.is_success(), "{}", deployed.body);
    for (n, host) in hosts.iter().enumerate() {
        let id = format!("ap-{n}");
        let started = host
            .client
            .start(
                "approvals",
                "approval",
                json!({"subject": "leave"}),
                Some(&id),
            )
            .await?;
        assert_eq!(started.status, 202, "{}", started.body);
        host.expect_event(&id, "status", json!("awaiting-decision"))
            .await?;
        // The decision goes through the other host; the run's host wakes.
        let other = &hosts[1 - n];
        let sent = other
            .client
            .send_message(
                &id,
                "decision",
                json!({"approved": true, "by": "ann"}),
                None,
            )
            .await?;
        assert_eq!(sent.status, 202, "{}", sent.body);
        let run = other.result(&id, Duration::from_secs(30)).await?;
        assert_eq!(run["status"], "SUCCESS", "{run}");
        assert_eq!(run["attempts"], 1, "executed where it started: {run}");
    }
    Ok(())
}

#[tokio::test]
async fn two_live_hosts_cannot_share_an_executor_id() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let schema = fresh_schema();
    let first = Host::start_shared(dir.path(), "twin", &schema, (LEASE_MS, POLL_MS), &[]).await?;
    // The same id on the same database, from another directory.
    let args = [
        "--database",
        &cairn_tests::postgres_url(),
        "--database-schema",
        &schema,
        "--executor-id",
        "twin",
    ];
    let refused = Host::start_refused(&dir.path().join("twin-2"), &args).await?;
    assert!(
        refused.contains("executor id \"twin\" is held by another live host"),
        "{refused}"
    );
    // Once the first is gone, its id is free again.
    first.kill().await?;
    let second = Host::start(&dir.path().join("twin-2"), &args).await?;
    assert_eq!(second.client.get("/healthz").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn two_hosts_cannot_share_a_data_directory() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = Host::start(dir.path(), &[]).await?;
    let refused = Host::start_refused(dir.path(), &[]).await?;
    assert!(
        refused.contains("is in use by another cairn host"),
        "{refused}"
    );
    first.kill().await?;
    let second = Host::start(dir.path(), &[]).await?;
    assert_eq!(second.client.get("/healthz").await?.status, 200);
    Ok(())
}

/// The host that starts a run answers waits for its events from memory
/// (`executor/known_events.rs`); once another host has taken the run over,
/// that memory must not answer for it any more.
#[tokio::test]
async fn a_stalled_host_that_started_a_run_sees_what_the_host_that_took_it_over_wrote()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let schema = fresh_schema();
    // A keeps its sleeping run in its instance (no parking, which would
    // make it forget the run at once): only another host's change, or its
    // own fenced write, can tell it.
    let a = Host::start_shared(
        dir.path(),
        "host-a",
        &schema,
        (LEASE_MS, POLL_MS),
        &["--park-after-ms", "60000"],
    )
    .await?;
    let b = start_host(dir.path(), "host-b", &schema).await?;
    let deployed = a
        .client
        .deploy("steps", examples::bytes(examples::STEPS))
        .await?;
    assert!(deployed.status.is_success(), "{}", deployed.body);
    let started = a
        .client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 3000}),
            Some("known-1"),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    a.expect_event("known-1", "step1", json!("completed"))
        .await?;
    // A stalls past its lease; B takes the run over and finishes it.
    a.pause()?;
    let run = b.result("known-1", Duration::from_secs(60)).await?;
    a.resume()?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["attempts"], 2, "taken over once: {run}");
    // A answers with what B wrote, not with what it knew before it stalled.
    let step2 = a.client.event("known-1", "step2", 10_000).await?;
    assert_eq!(step2.status, 200, "{}", step2.body);
    assert_eq!(step2.body["value"], "completed");
    let done = a.result("known-1", Duration::from_secs(10)).await?;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    Ok(())
}
