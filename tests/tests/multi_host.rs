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

/// A queue's limit holds across hosts: runs enqueued through either of two
/// hosts, executed by both, never more than two at once (seen from inside
/// the runs: each one's first journaled event to its end).
#[tokio::test]
async fn two_hosts_dequeueing_one_queue_never_run_more_than_its_concurrency() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let schema = fresh_schema();
    let hosts = [
        Host::start_shared(dir.path(), "queue-a", &schema, (LEASE_MS, 500), &[]).await?,
        Host::start_shared(dir.path(), "queue-b", &schema, (LEASE_MS, 500), &[]).await?,
    ];
    let deployed = hosts[0]
        .client
        .deploy("approvals", examples::bytes(examples::APPROVALS))
        .await?;
    assert!(deployed.status.is_success(), "{}", deployed.body);
    let created = hosts[1]
        .client
        .put_json("/v1/queues/shared", &json!({"concurrency": 2}))
        .await?;
    assert_eq!(created.status, 201, "{}", created.body);

    let ids: Vec<String> = (0..8).map(|i| format!("shared-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let started = hosts[i % 2]
            .client
            .post_json(
                "/v1/workflows",
                &json!({"module": "approvals", "workflow": "approval", "id": id,
                        "input": {"subject": id}, "queue": "shared"}),
            )
            .await?;
        assert_eq!(started.status, 202, "{}", started.body);
    }
    for done in 0..ids.len() {
        // Two running (fewer at the end), seen from either host.
        let want = 2.min(ids.len() - done);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let running = loop {
            let listed = hosts[done % 2]
                .client
                .get("/v1/workflows?queue=shared&status=PENDING")
                .await?
                .body;
            let running: Vec<String> = listed["workflows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect();
            assert!(running.len() <= 2, "more than two at once: {running:?}");
            if running.len() >= want {
                break running;
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "runs did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let id = &running[0];
        hosts[0]
            .expect_event(id, "status", json!("awaiting-decision"))
            .await?;
        let sent = hosts[1]
            .client
            .post_json(
                &format!("/v1/workflows/{id}/messages"),
                &json!({"topic": "decision", "message": {"approved": true, "by": "t"}}),
            )
            .await?;
        assert_eq!(sent.status, 202, "{}", sent.body);
        let run = hosts[0].result(id, Duration::from_secs(60)).await?;
        assert_eq!(run["status"], "SUCCESS", "{run}");
    }
    // From inside the runs: at most two between first event and end.
    let mut edges: Vec<(String, i32)> = Vec::new();
    for id in &ids {
        let steps = hosts[0].client.steps(id).await?.body;
        edges.push((
            steps["steps"][0]["recorded_at"]
                .as_str()
                .unwrap()
                .to_owned(),
            1,
        ));
        let run = hosts[0].client.status(id).await?.body;
        edges.push((run["updated_at"].as_str().unwrap().to_owned(), -1));
    }
    // RFC 3339 in UTC with milliseconds sorts as time; an end before a
    // start at the same millisecond.
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    assert_eq!(most, 2);
    Ok(())
}

/// Two hosts fire one schedule, every second, for ten seconds: ten runs
/// (one either side for where the window cuts), none twice: a tick's run
/// has one id whichever host starts it.
#[tokio::test]
async fn two_hosts_firing_one_schedule_start_each_tick_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let schema = fresh_schema();
    let hosts = [
        Host::start_shared(dir.path(), "cron-a", &schema, (LEASE_MS, 500), &[]).await?,
        Host::start_shared(dir.path(), "cron-b", &schema, (LEASE_MS, 500), &[]).await?,
    ];
    let deployed = hosts[0]
        .client
        .deploy("steps", examples::bytes(examples::STEPS))
        .await?;
    assert!(deployed.status.is_success(), "{}", deployed.body);
    let schedule = json!({
        "module": "steps", "workflow": "steps_with_pause", "cron": "* * * * * *",
        "input": {"pause_ms": 0}, "overlap": "allow_all"
    });
    let created = hosts[1]
        .client
        .put_json("/v1/schedules/tick", &schedule)
        .await?;
    assert_eq!(created.status, 201, "{}", created.body);
    // Both hosts know it before the window opens.
    hosts[0].client.get("/v1/schedules/tick").await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let paused = hosts[0]
        .client
        .post_json("/v1/schedules/tick/pause", &json!({}))
        .await?;
    assert_eq!(paused.status, 200, "{}", paused.body);
    let listed = hosts[1]
        .client
        .get("/v1/workflows?id_prefix=tick@&limit=1000")
        .await?
        .body;
    let mut ticks: Vec<String> = listed["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["input"]["scheduled_at"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        (9..=11).contains(&ticks.len()),
        "{} runs: {ticks:?}",
        ticks.len()
    );
    let runs = ticks.len();
    ticks.sort();
    ticks.dedup();
    assert_eq!(ticks.len(), runs, "no tick started twice");
    for run in listed["workflows"].as_array().unwrap() {
        let id = run["id"].as_str().unwrap();
        let done = hosts[0].result(id, Duration::from_secs(60)).await?;
        assert_eq!(done["status"], "SUCCESS", "{done}");
    }
    Ok(())
}
