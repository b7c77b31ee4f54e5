//! Parked runs, end to end: a waiting run gives up its instance, so a host
//! with a few slots keeps thousands of runs waiting and still runs new ones
//! at once; what they wait for wakes them, by replay, and each receives its
//! message exactly once; their deadlines hold; parents awaiting children
//! cannot starve the children of slots; a crash while runs park or wake
//! loses and duplicates nothing; on PostgreSQL a run parked by one host is
//! woken through another after the first one died.

use std::time::{Duration, SystemTime};

use cairn_tests::{Host, deploy_example, examples, fresh_schema};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const WAIT: Duration = Duration::from_secs(60);

/// How many runs the large test parks (`CAIRN_PARKED_RUNS`, default 5,000).
fn parked_runs() -> usize {
    std::env::var("CAIRN_PARKED_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5000)
}

async fn with_module(host: Host, name: &str, path: &str) -> anyhow::Result<Host> {
    deploy_example(&host.client, name, path, None).await?;
    Ok(host)
}

/// Wait until `/healthz` counts `count` parked runs.
async fn parked(host: &Host, count: usize) -> anyhow::Result<Value> {
    host.await_health(Duration::from_secs(180), |health| {
        health["parked_runs"] == json!(count)
    })
    .await
}

/// Start an `approval` run per id, `concurrency` requests at a time.
async fn start_approvals(host: &Host, ids: &[String], input: Value) -> anyhow::Result<()> {
    let mut requests = JoinSet::new();
    for chunk in ids.chunks(ids.len().div_ceil(16).max(1)) {
        let (client, chunk, input) = (host.client.clone(), chunk.to_vec(), input.clone());
        requests.spawn(async move {
            for id in chunk {
                let started = client
                    .start("approvals", "approval", input.clone(), Some(&id))
                    .await?;
                anyhow::ensure!(started.status == 202, "{id}: {}", started.body);
            }
            Ok(())
        });
    }
    while let Some(done) = requests.join_next().await {
        done??;
    }
    Ok(())
}

/// Send each run its decision, signed `by-<id>`, 16 requests at a time.
async fn decide_all(host: &Host, ids: &[String]) -> anyhow::Result<()> {
    let mut requests = JoinSet::new();
    for chunk in ids.chunks(ids.len().div_ceil(16).max(1)) {
        let (client, chunk) = (host.client.clone(), chunk.to_vec());
        requests.spawn(async move {
            for id in chunk {
                let body = json!({
                    "topic": "decision",
                    "message": {"approved": true, "by": format!("by-{id}")},
                    "idempotency_key": format!("decision-{id}"),
                });
                let sent = client
                    .post_json(&format!("/v1/workflows/{id}/messages"), &body)
                    .await?;
                anyhow::ensure!(sent.status == 202, "{id}: {}", sent.body);
            }
            Ok(())
        });
    }
    while let Some(done) = requests.join_next().await {
        done??;
    }
    Ok(())
}

/// Every approval in `ids` succeeded with its own decision, received by
/// exactly one `recv`, and published `approved` exactly once.
async fn each_approved_once(host: &Host, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        let run = host.result(id, WAIT).await?;
        assert_eq!(run["status"], "SUCCESS", "{id}: {run}");
        assert_eq!(run["output"]["by"], format!("by-{id}"), "{id}: {run}");
        let steps = host
            .client
            .get(&format!("/v1/workflows/{id}/steps"))
            .await?
            .body;
        let steps = steps["steps"].as_array().expect("steps");
        let received: Vec<&Value> = steps.iter().filter(|s| s["kind"] == "recv").collect();
        assert_eq!(received.len(), 1, "{id}: one recv: {steps:?}");
        assert_eq!(received[0]["outcome"]["by"], format!("by-{id}"), "{id}");
        let approved = steps
            .iter()
            .filter(|s| s["kind"] == "set-event" && s["name"] == "status")
            .count();
        assert_eq!(
            approved, 2,
            "{id}: awaiting-decision, then approved: {steps:?}"
        );
    }
    Ok(())
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

fn instant(value: &Value) -> SystemTime {
    humantime::parse_rfc3339(value.as_str().expect("a timestamp")).expect("RFC 3339")
}

#[tokio::test]
async fn thousands_of_parked_runs_leave_the_slots_to_new_runs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(
        dir.path(),
        &["--max-live-instances", "10", "--park-after-ms", "0"],
    )
    .await?;
    let host = with_module(host, "approvals", examples::APPROVALS).await?;
    let waiting = ids("parked", parked_runs());
    start_approvals(&host, &waiting, json!({"subject": "leave"})).await?;
    let health = parked(&host, waiting.len()).await?;
    assert!(health["live_instances"].as_u64() <= Some(10), "{health}");

    // Ten slots, thousands of waiting runs: a new run still runs at once.
    let fresh = host
        .client
        .start("steps", "steps_workflow", json!(null), Some("fresh"))
        .await?;
    assert_eq!(fresh.status, 202, "{}", fresh.body);
    let run = host.result("fresh", Duration::from_secs(10)).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");

    // What a parked run waits for is on its record.
    let record = host.client.get("/v1/workflows/parked-0").await?.body;
    assert_eq!(record["status"], "PENDING", "{record}");
    let waiting_for = &record["waiting"];
    assert_eq!(waiting_for["kind"], "message", "{record}");
    assert_eq!(waiting_for["target"], "decision", "{record}");
    assert_eq!(waiting_for["parked"], true, "{record}");
    assert!(waiting_for["deadline"].is_string(), "{record}");

    decide_all(&host, &waiting).await?;
    each_approved_once(&host, &waiting).await?;
    parked(&host, 0).await?;
    Ok(())
}

#[tokio::test]
async fn parked_waits_end_at_their_journaled_deadlines() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &["--park-after-ms", "0"]).await?;
    let host = with_module(host, "approvals", examples::APPROVALS).await?;
    let started = host
        .client
        .start(
            "approvals",
            "approval",
            json!({"subject": "late", "timeout_ms": 1500}),
            Some("late"),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    let started = host
        .client
        .start(
            "approvals",
            "reminder",
            json!({"message": "hi", "after_ms": 1500}),
            Some("nap"),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    parked(&host, 2).await?;
    let nap = host.client.get("/v1/workflows/nap").await?.body;
    assert_eq!(nap["waiting"]["kind"], "sleep", "{nap}");

    for (id, status) in [("late", "ERROR"), ("nap", "SUCCESS")] {
        let run = host.result(id, WAIT).await?;
        assert_eq!(run["status"], status, "{id}: {run}");
        let took = instant(&run["updated_at"]).duration_since(instant(&run["created_at"]))?;
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_millis(4500),
            "{id} ended {took:?} after it started, not at its deadline"
        );
    }
    let late = host.result("late", WAIT).await?;
    assert!(
        late["error"].as_str().unwrap_or("").contains("no decision"),
        "{late}"
    );
    assert_eq!(host.client.events("nap").await?.body["reminder"], "hi");
    Ok(())
}

#[tokio::test]
async fn parents_awaiting_children_all_finish_with_two_slots() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(
        dir.path(),
        &["--max-live-instances", "2", "--park-after-ms", "100"],
    )
    .await?;
    let host = with_module(host, "fanout", examples::FANOUT).await?;
    let parents = ids("parent", 50);
    for id in &parents {
        let started = host
            .client
            .start(
                "fanout",
                "fan_out",
                json!({"items": [1, 2, 3], "work_ms": 10}),
                Some(id),
            )
            .await?;
        assert_eq!(started.status, 202, "{}", started.body);
    }
    for id in &parents {
        let run = host.result(id, Duration::from_secs(120)).await?;
        assert_eq!(run["status"], "SUCCESS", "{id}: {run}");
        assert_eq!(run["output"], json!([1, 4, 9]), "{id}");
    }
    Ok(())
}

#[tokio::test]
async fn a_crash_while_runs_park_and_wake_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let args = ["--park-after-ms", "0"];
    let host = Host::start(dir.path(), &args).await?;
    let host = with_module(host, "approvals", examples::APPROVALS).await?;
    let runs = ids("crash", 200);
    start_approvals(&host, &runs, json!({"subject": "leave"})).await?;
    // Killed while the runs park: some are parked, some not yet.
    host.await_health(WAIT, |health| health["parked_runs"].as_u64() >= Some(20))
        .await?;
    host.kill().await?;

    let host = Host::start(dir.path(), &args).await?;
    parked(&host, runs.len()).await?;
    // Killed while runs are being woken: half of the decisions sent.
    let (first, second) = runs.split_at(runs.len() / 2);
    decide_all(&host, first).await?;
    host.kill().await?;

    let host = Host::start(dir.path(), &args).await?;
    decide_all(&host, second).await?;
    each_approved_once(&host, &runs).await?;
    parked(&host, 0).await?;
    Ok(())
}

#[tokio::test]
async fn a_run_parked_by_a_dead_host_is_woken_through_another() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let schema = fresh_schema();
    let cluster = (1500, 3000);
    let park = ["--park-after-ms", "0"];
    let a = Host::start_shared(dir.path(), "host-a", &schema, cluster, &park).await?;
    let b = Host::start_shared(dir.path(), "host-b", &schema, cluster, &park).await?;
    let a = with_module(a, "approvals", examples::APPROVALS).await?;
    let runs = ids("shared", 20);
    start_approvals(&a, &runs, json!({"subject": "leave"})).await?;
    parked(&a, runs.len()).await?;
    a.kill().await?;

    // Nobody holds a parked run (no lease expires: recovery never takes a
    // parked run), so only a wake-up through B can finish them.
    decide_all(&b, &runs).await?;
    each_approved_once(&b, &runs).await?;
    Ok(())
}
