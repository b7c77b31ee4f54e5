//! Flow control, end to end: queues bound how many of their runs execute at
//! once and how fast they start, honour priorities and deduplication ids;
//! delayed starts begin at their time, across a restart; a crash while runs
//! leave a queue loses and duplicates none. (Several hosts sharing one
//! queue: `multi_host.rs`.)

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cairn_tests::{Host, Reply, examples};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn instant(value: &Value) -> SystemTime {
    humantime::parse_rfc3339(
        value
            .as_str()
            .unwrap_or_else(|| panic!("a timestamp: {value}")),
    )
    .expect("RFC 3339")
}

fn millis(value: &Value) -> i64 {
    instant(value)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn host_with_examples(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<Host> {
    Host::start_deploying(
        dir,
        args,
        &[
            ("approvals", examples::APPROVALS),
            ("steps", examples::STEPS),
        ],
    )
    .await
}

async fn put_queue(host: &Host, name: &str, settings: Value) -> anyhow::Result<Reply> {
    Ok(host
        .client
        .put_json(&format!("/v1/queues/{name}"), &settings)
        .await?)
}

async fn start(host: &Host, body: Value) -> anyhow::Result<Reply> {
    Ok(host.client.post_json("/v1/workflows", &body).await?)
}

async fn run(host: &Host, id: &str) -> anyhow::Result<Value> {
    Ok(host.client.get(&format!("/v1/workflows/{id}")).await?.body)
}

async fn decide(host: &Host, id: &str) -> anyhow::Result<()> {
    let sent = host
        .client
        .post_json(
            &format!("/v1/workflows/{id}/messages"),
            &json!({"topic": "decision", "message": {"approved": true, "by": "test"}}),
        )
        .await?;
    assert_eq!(sent.status, 202, "{}", sent.body);
    Ok(())
}

/// The ids of the runs of `queue` in `status`.
async fn runs_in(host: &Host, queue: &str, status: &str) -> anyhow::Result<Vec<String>> {
    let listed = host
        .client
        .get(&format!(
            "/v1/workflows?queue={queue}&status={status}&limit=1000"
        ))
        .await?
        .body;
    Ok(listed["workflows"]
        .as_array()
        .unwrap_or_else(|| panic!("a listing: {listed}"))
        .iter()
        .map(|run| run["id"].as_str().unwrap().to_owned())
        .collect())
}

/// Wait until `count` runs of `queue` have started (`PENDING` and their
/// first event set), and return them.
async fn started(host: &Host, queue: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pending = runs_in(host, queue, "PENDING").await?;
        if pending.len() >= count {
            for id in &pending {
                host.expect_event(id, "status", json!("awaiting-decision"))
                    .await?;
            }
            return Ok(pending);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {} runs of {queue} started",
            pending.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The most runs executing at once, from inside the runs: each from its
/// first event's write to its end.
pub async fn most_at_once(host: &Host, ids: &[String]) -> anyhow::Result<usize> {
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for id in ids {
        // Its first event's write, journaled from inside the run.
        let steps = host
            .client
            .get(&format!("/v1/workflows/{id}/steps"))
            .await?
            .body;
        let first = &steps["steps"][0];
        assert_eq!(first["kind"], "set-event", "{steps}");
        let begun = millis(&first["recorded_at"]);
        let ended = millis(&run(host, id).await?["updated_at"]);
        edges.push((begun, 1));
        edges.push((ended, -1));
    }
    // An end and a start at one millisecond: the end first.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    Ok(most as usize)
}

#[tokio::test]
async fn a_queue_of_concurrency_two_never_runs_three_at_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_examples(dir.path(), &[]).await?;
    let created = put_queue(&host, "pair", json!({"concurrency": 2})).await?;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["concurrency"], 2);

    let ids: Vec<String> = (0..6).map(|i| format!("pair-{i}")).collect();
    for id in &ids {
        let started = start(
            &host,
            json!({"module": "approvals", "workflow": "approval", "id": id,
                   "input": {"subject": id}, "queue": "pair"}),
        )
        .await?;
        assert_eq!(started.status, 202, "{}", started.body);
        assert_eq!(started.body["status"], "ENQUEUED");
    }
    let mut finished = 0;
    while finished < ids.len() {
        let running = started(&host, "pair", 2.min(ids.len() - finished)).await?;
        assert!(running.len() <= 2, "three at once: {running:?}");
        let waiting = runs_in(&host, "pair", "ENQUEUED").await?;
        assert_eq!(running.len() + waiting.len(), ids.len() - finished);
        decide(&host, &running[0]).await?;
        let done = host.result(&running[0], WAIT).await?;
        assert_eq!(done["status"], "SUCCESS", "{done}");
        finished += 1;
    }
    assert_eq!(most_at_once(&host, &ids).await?, 2);
    let health = host.client.get("/healthz").await?.body;
    assert!(
        health["queues"].as_array().is_some_and(Vec::is_empty),
        "nothing waits or runs any more: {health}"
    );
    Ok(())
}

#[tokio::test]
async fn a_rate_limit_of_ten_per_second_admits_ten_per_second() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_examples(dir.path(), &[]).await?;
    put_queue(
        &host,
        "paced",
        json!({"rate_limit": {"limit": 10, "period_ms": 1000}}),
    )
    .await?;
    let ids: Vec<String> = (0..50).map(|i| format!("paced-{i}")).collect();
    for id in &ids {
        let started = start(
            &host,
            json!({"module": "steps", "workflow": "steps_workflow", "id": id, "queue": "paced"}),
        )
        .await?;
        assert_eq!(started.status, 202, "{}", started.body);
    }
    let mut departures = Vec::new();
    for id in &ids {
        let done = host.result(id, WAIT).await?;
        assert_eq!(done["status"], "SUCCESS", "{done}");
        departures.push(millis(&done["dequeued_at"]));
    }
    departures.sort();
    // No window of one second holds more than ten departures...
    for (i, at) in departures.iter().enumerate() {
        let in_window = departures[i..]
            .iter()
            .take_while(|t| **t < at + 1000)
            .count();
        assert!(in_window <= 10, "{in_window} runs left within 1 s of {at}");
    }
    // ...and fifty take four more windows after the first, not much more.
    let span = departures.last().unwrap() - departures.first().unwrap();
    assert!((4000..5500).contains(&span), "50 runs left over {span} ms");
    Ok(())
}

#[tokio::test]
async fn runs_leave_a_priority_queue_in_order_of_priority() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_examples(dir.path(), &[]).await?;
    put_queue(&host, "ranked", json!({"concurrency": 1, "priority": true})).await?;
    // A run that holds the only slot until told to go.
    start(
        &host,
        json!({"module": "approvals", "workflow": "approval", "id": "blocker",
               "input": {"subject": "b"}, "queue": "ranked"}),
    )
    .await?;
    started(&host, "ranked", 1).await?;
    for priority in [5, 1, 3, 2, 4] {
        let started = start(
            &host,
            json!({"module": "steps", "workflow": "steps_workflow", "id": format!("p{priority}"),
                   "queue": "ranked", "priority": priority}),
        )
        .await?;
        assert_eq!(started.status, 202, "{}", started.body);
    }
    let waiting = run(&host, "p1").await?;
    assert_eq!(waiting["status"], "ENQUEUED");
    assert_eq!(waiting["position"], 1, "{waiting}");
    assert_eq!(run(&host, "p5").await?["position"], 5);

    decide(&host, "blocker").await?;
    let mut order = Vec::new();
    for priority in 1..=5 {
        let id = format!("p{priority}");
        let done = host.result(&id, WAIT).await?;
        assert_eq!(done["status"], "SUCCESS", "{done}");
        order.push((millis(&done["dequeued_at"]), id));
    }
    order.sort();
    let order: Vec<&str> = order.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(order, ["p1", "p2", "p3", "p4", "p5"]);
    Ok(())
}

#[tokio::test]
async fn a_deduplication_id_is_refused_while_queued_and_running_and_accepted_after()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_examples(dir.path(), &[]).await?;
    put_queue(&host, "once", json!({"concurrency": 1})).await?;
    let approval = |id: &str, dedup: Option<&str>| {
        let mut body = json!({"module": "approvals", "workflow": "approval", "id": id,
                              "input": {"subject": id}, "queue": "once"});
        if let Some(dedup) = dedup {
            body["deduplication_id"] = dedup.into();
        }
        body
    };
    start(&host, approval("holder", None)).await?;
    started(&host, "once", 1).await?;
    let first = start(&host, approval("first", Some("invoice-7"))).await?;
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.body["status"], "ENQUEUED");

    let queued_twin = start(&host, approval("twin-1", Some("invoice-7"))).await?;
    assert_eq!(queued_twin.status, 409, "{}", queued_twin.body);
    assert_eq!(queued_twin.body["error"]["code"], "duplicate");
    let message = queued_twin.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("run first"), "names the holder: {message}");
    assert_eq!(
        run(&host, "twin-1").await?["error"]["code"],
        "run_not_found"
    );

    decide(&host, "holder").await?;
    host.expect_event("first", "status", json!("awaiting-decision"))
        .await?;
    let running_twin = start(&host, approval("twin-2", Some("invoice-7"))).await?;
    assert_eq!(running_twin.status, 409, "refused while PENDING too");

    decide(&host, "first").await?;
    assert_eq!(host.result("first", WAIT).await?["status"], "SUCCESS");
    let after = start(&host, approval("twin-3", Some("invoice-7"))).await?;
    assert_eq!(
        after.status, 202,
        "free once the holder ended: {}",
        after.body
    );
    Ok(())
}

#[tokio::test]
async fn an_enqueued_run_can_be_cancelled_and_bad_admissions_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_examples(dir.path(), &[]).await?;
    put_queue(&host, "solo", json!({"concurrency": 1})).await?;
    start(
        &host,
        json!({"module": "approvals", "workflow": "approval", "id": "busy",
               "input": {"subject": "b"}, "queue": "solo"}),
    )
    .await?;
    started(&host, "solo", 1).await?;
    start(
        &host,
        json!({"module": "steps", "workflow": "steps_workflow", "id": "never", "queue": "solo"}),
    )
    .await?;
    let cancelled = host
        .client
        .post_json("/v1/workflows/never/cancel", &json!({}))
        .await?;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "CANCELLED");
    decide(&host, "busy").await?;
    host.result("busy", WAIT).await?;
    // The queue is empty: had the cancelled run started, it would be now.
    let depth = host.client.get("/v1/queues/solo").await?.body;
    assert_eq!(
        (depth["enqueued"].clone(), depth["pending"].clone()),
        (json!(0), json!(0))
    );
    let never = run(&host, "never").await?;
    assert_eq!(never["status"], "CANCELLED");
    assert!(never["dequeued_at"].is_null(), "{never}");

    let steps = |extra: Value| {
        let mut body = json!({"module": "steps", "workflow": "steps_workflow"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let unknown = start(&host, steps(json!({"queue": "nowhere"}))).await?;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error"]["code"], "queue_not_found");
    let keyed = start(
        &host,
        steps(json!({"queue": "solo", "partition_key": "t1"})),
    )
    .await?;
    assert_eq!(keyed.status, 400);
    assert!(
        keyed.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not partitioned")
    );
    let both = start(&host, steps(json!({"start_at": 1, "delay_ms": 5}))).await?;
    assert_eq!(both.status, 400);
    let orphan = start(&host, steps(json!({"priority": 2}))).await?;
    assert!(
        orphan.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs a queue")
    );
    let zero = put_queue(&host, "zero", json!({"concurrency": 0})).await?;
    assert_eq!(zero.status, 400, "{}", zero.body);
    let busy = host
        .client
        .send(hyper::Method::DELETE, "/v1/queues/solo", None, Bytes::new())
        .await?;
    assert_eq!(busy.status, 200, "an empty queue is deleted: {}", busy.body);
    Ok(())
}

#[tokio::test]
async fn a_partitioned_queue_holds_its_limit_per_partition() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_examples(dir.path(), &[]).await?;
    put_queue(
        &host,
        "tenants",
        json!({"concurrency": 1, "partitioned": true}),
    )
    .await?;
    for (id, tenant) in [("a-1", "a"), ("a-2", "a"), ("b-1", "b")] {
        let started = start(
            &host,
            json!({"module": "approvals", "workflow": "approval", "id": id,
                   "input": {"subject": id}, "queue": "tenants", "partition_key": tenant}),
        )
        .await?;
        assert_eq!(started.status, 202, "{}", started.body);
    }
    // Tenant a's busy run does not hold up tenant b's.
    let mut running = started(&host, "tenants", 2).await?;
    running.sort();
    assert_eq!(running, ["a-1", "b-1"]);
    assert_eq!(run(&host, "a-2").await?["status"], "ENQUEUED");
    decide(&host, "a-1").await?;
    host.expect_event("a-2", "status", json!("awaiting-decision"))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_delayed_start_begins_at_its_time_across_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_examples(dir.path(), &[]).await?;
    let started = start(
        &host,
        json!({"module": "steps", "workflow": "steps_workflow", "id": "later", "delay_ms": 2000}),
    )
    .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    assert_eq!(started.body["status"], "ENQUEUED");
    let stored = run(&host, "later").await?;
    let start_at = millis(&stored["start_at"]);
    host.kill().await?;

    let host = Host::start(dir.path(), &[]).await?;
    let done = host.result("later", WAIT).await?;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert!(
        millis(&done["dequeued_at"]) >= start_at,
        "began no earlier than asked: {done}"
    );
    host.expect_event("later", "step2", json!("completed"))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_crash_while_runs_leave_a_queue_loses_and_duplicates_none() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_examples(dir.path(), &[]).await?;
    put_queue(&host, "busy", json!({"concurrency": 4})).await?;
    // Each run takes a while (a 200 ms pause), so the queue drains over
    // about four seconds: long enough to be caught in the middle.
    let ids: Vec<String> = (0..80).map(|i| format!("crash-{i}")).collect();
    for id in &ids {
        start(
            &host,
            json!({"module": "steps", "workflow": "steps_with_pause", "id": id,
                   "input": {"pause_ms": 200}, "queue": "busy"}),
        )
        .await?;
    }
    // Kill the host while runs are leaving the queue.
    host.await_health(WAIT, |health| {
        health["queues"][0]["enqueued"]
            .as_u64()
            .is_some_and(|n| (1..70).contains(&n))
    })
    .await?;
    host.kill().await?;

    let host = Host::start(dir.path(), &[]).await?;
    for id in &ids {
        let done = host.result(id, WAIT).await?;
        assert_eq!(done["status"], "SUCCESS", "{done}");
        let steps = host
            .client
            .get(&format!("/v1/workflows/{id}/steps"))
            .await?
            .body;
        let writes = steps["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "set-event")
            .count();
        assert_eq!(writes, 2, "each event written once: {steps}");
    }
    Ok(())
}

#[tokio::test]
async fn a_route_admits_its_runs_through_a_queue_with_its_path_in_the_options() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    put_queue(&host, "inbox", json!({"concurrency": 1})).await?;
    let routes = json!({"routes": [{
        "method": "POST", "path": "/inbox/{user}", "workflow": "steps_workflow",
        "input": "body", "queue": "inbox", "deduplication_id": "welcome-{user}", "delay_ms": 1500
    }]});
    cairn_tests::deploy_example(
        &host.client,
        "steps",
        examples::STEPS,
        Some(serde_json::to_vec(&routes)?),
    )
    .await?;
    let first = host
        .client
        .post_json("/app/inbox/ann", &Value::Null)
        .await?;
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.body["status"], "ENQUEUED");
    let id = first.body["id"].as_str().unwrap().to_owned();
    let again = host
        .client
        .post_json("/app/inbox/ann", &Value::Null)
        .await?;
    assert_eq!(
        again.status, 409,
        "one welcome per user while it waits: {}",
        again.body
    );
    assert_eq!(again.body["error"]["code"], "duplicate");
    let other = host
        .client
        .post_json("/app/inbox/bob", &Value::Null)
        .await?;
    assert_eq!(other.status, 202, "{}", other.body);

    let queued = run(&host, &id).await?;
    assert_eq!(queued["deduplication_id"], "welcome-ann");
    let done = host.result(&id, WAIT).await?;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert!(millis(&done["dequeued_at"]) >= millis(&queued["start_at"]));
    Ok(())
}

#[tokio::test]
async fn a_workflow_starts_its_children_through_a_queue_or_after_a_delay() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    cairn_tests::deploy_example(&host.client, "fanout", examples::FANOUT, None).await?;
    put_queue(&host, "squares", json!({"concurrency": 1})).await?;
    let started = start(
        &host,
        json!({"module": "fanout", "workflow": "fan_out", "id": "fan-q",
               "input": {"items": [1, 2, 3], "work_ms": 300, "queue": "squares"}}),
    )
    .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    let done = host.result("fan-q", WAIT).await?;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert_eq!(done["output"], json!([1, 4, 9]));
    // One child at a time: each left the queue once the one before ended.
    let mut spans = Vec::new();
    for n in 0..3 {
        let child = run(&host, &format!("fan-q.{n}")).await?;
        assert_eq!(child["queue"], "squares", "{child}");
        spans.push((millis(&child["dequeued_at"]), millis(&child["updated_at"])));
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "children overlapped: {spans:?}");
    }

    start(
        &host,
        json!({"module": "fanout", "workflow": "fan_out", "id": "fan-d",
               "input": {"items": [5], "delay_ms": 1000}}),
    )
    .await?;
    assert_eq!(host.result("fan-d", WAIT).await?["output"], json!([25]));
    let child = run(&host, "fan-d.0").await?;
    let waited = millis(&child["dequeued_at"]) - millis(&child["created_at"]);
    assert!(
        waited >= 1000,
        "the child started {waited} ms after it was asked"
    );
    Ok(())
}
