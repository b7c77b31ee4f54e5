//! Live event streams over real HTTP: history, then writes as they commit,
//! then the run's end; `Last-Event-ID` resumes without gaps or duplicates.
//! And the single-key long-poll answers at once when the run has ended
//! without setting the key.

use std::time::Duration;

use cairn_tests::{Host, SseEvent, SseStream};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// (id, event, data) of each event, for comparing whole streams.
fn frames(events: &[SseEvent]) -> Vec<(Option<String>, String, serde_json::Value)> {
    events
        .iter()
        .map(|e| (e.id.clone(), e.event.clone(), e.json()))
        .collect()
}

fn write(
    op: u32,
    key: &str,
    value: serde_json::Value,
) -> (Option<String>, String, serde_json::Value) {
    (Some(op.to_string()), key.to_owned(), value)
}

/// The events an `order` run writes: its journal's operation 3 is the wait
/// for the payment, so the writes after it are 4 and 5.
fn order_writes() -> Vec<(Option<String>, String, serde_json::Value)> {
    vec![
        write(0, "status", json!("placed")),
        write(1, "amount_cents", json!(1999)),
        write(2, "status", json!("awaiting-payment")),
        write(4, "status", json!("paid")),
        write(5, "status", json!("shipped")),
    ]
}

async fn start_order(host: &Host, order_id: &str) -> anyhow::Result<String> {
    let id = format!("order-{order_id}");
    let started = host
        .client
        .start(
            "orders",
            "order",
            json!({"order_id": order_id, "amount_cents": 1999}),
            Some(&id),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    Ok(id)
}

async fn pay(host: &Host, order_id: &str) -> anyhow::Result<()> {
    let paid = host
        .client
        .start(
            "orders",
            "payment",
            json!({"order_id": order_id, "approve": true}),
            Some(&format!("payment-{order_id}")),
        )
        .await?;
    assert_eq!(paid.status, 202, "{}", paid.body);
    Ok(())
}

#[tokio::test]
async fn a_stream_replays_history_then_pushes_writes_as_they_commit() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let id = start_order(&host, "1").await?;

    let mut stream = SseStream::open(&host.url, &format!("/v1/workflows/{id}/events"), &[]).await?;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(stream.next(WAIT).await?.expect("the stream goes on"));
    }
    assert_eq!(frames(&seen), order_writes()[..3]);

    // The order waits for its payment: what follows can only reach this
    // stream as it is written, after the stream was opened.
    pay(&host, "1").await?;
    while let Some(event) = stream.next(WAIT).await? {
        seen.push(event);
    }
    let (writes, end) = seen.split_at(seen.len() - 1);
    assert_eq!(frames(writes), order_writes());
    assert_eq!(end[0].event, "cairn:finished");
    let run = end[0].json();
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["id"], id.as_str());
    assert_eq!(run["output"]["status"], "shipped");
    assert_eq!(end[0].id, None, "the end does not move Last-Event-ID");
    Ok(())
}

#[tokio::test]
async fn last_event_id_resumes_without_gaps_or_duplicates() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let id = start_order(&host, "2").await?;
    let path = format!("/v1/workflows/{id}/events");

    // A client reads the first two writes, then loses its connection.
    let mut first = SseStream::open(&host.url, &path, &[]).await?;
    let mut seen = vec![
        first.next(WAIT).await?.unwrap(),
        first.next(WAIT).await?.unwrap(),
    ];
    let last_id = seen[1].id.clone().unwrap();
    drop(first);

    // Writes land while it is away.
    pay(&host, "2").await?;
    host.result(&id, WAIT).await?;

    let resumed = SseStream::open(&host.url, &path, &[("last-event-id", &last_id)]).await?;
    seen.extend(resumed.collect(WAIT).await?);
    let (writes, end) = seen.split_at(seen.len() - 1);
    assert_eq!(frames(writes), order_writes());
    assert_eq!(end[0].event, "cairn:finished");

    // Resuming after the last write gives the end alone.
    let after_all = SseStream::open(&host.url, &path, &[("last-event-id", "5")]).await?;
    let rest = after_all.collect(WAIT).await?;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].event, "cairn:finished");
    Ok(())
}

#[tokio::test]
async fn envelopes_carry_the_key_for_clients_that_do_not_know_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    host.client
        .start("steps", "steps_workflow", json!(null), Some("enveloped"))
        .await?;
    host.result("enveloped", WAIT).await?;
    let stream = SseStream::open(
        &host.url,
        "/v1/workflows/enveloped/events?envelope=true",
        &[],
    )
    .await?;
    let events = stream.collect(WAIT).await?;
    assert_eq!(
        frames(&events[..2]),
        [
            (
                Some("0".into()),
                "message".into(),
                json!({"key": "step1", "value": "completed"})
            ),
            (
                Some("1".into()),
                "message".into(),
                json!({"key": "step2", "value": "completed"})
            ),
        ]
    );
    assert_eq!(events[2].event, "cairn:finished");
    Ok(())
}

#[tokio::test]
async fn streams_refuse_unknown_runs_and_bad_resume_points() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let unknown = SseStream::open(&host.url, "/v1/workflows/nobody/events", &[]).await?;
    assert_eq!(unknown.status, 404);

    host.client
        .start("steps", "steps_workflow", json!(null), Some("s"))
        .await?;
    let bad = SseStream::open(
        &host.url,
        "/v1/workflows/s/events",
        &[("last-event-id", "step1")],
    )
    .await?;
    assert_eq!(bad.status, 400);
    Ok(())
}

#[tokio::test]
async fn a_long_poll_ends_early_when_the_run_ends_without_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;

    // Already finished: the answer comes at once, not after 60 s.
    client
        .start("steps", "steps_workflow", json!(null), Some("done"))
        .await?;
    host.result("done", WAIT).await?;
    let reply = client.event("done", "never", 60_000).await?;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(
        reply.error_code(),
        Some("workflow_finished"),
        "{}",
        reply.body
    );
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ended SUCCESS"),
        "{}",
        reply.body
    );

    // Waiting when the run ends: the waiter is woken by the end.
    client
        .start(
            "orders",
            "order",
            json!({"order_id": "3", "amount_cents": 5, "payment_timeout_ms": 60000}),
            Some("order-3"),
        )
        .await?;
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.event("order-3", "never", 60_000).await })
    };
    // Decline the payment: the order ends ERROR without the key.
    client
        .start(
            "orders",
            "payment",
            json!({"order_id": "3", "approve": false}),
            Some("payment-3"),
        )
        .await?;
    let reply = waiter.await??;
    assert_eq!(
        reply.error_code(),
        Some("workflow_finished"),
        "{}",
        reply.body
    );

    // A key that is set is still answered with its value after the end.
    let set = client.event("done", "step2", 60_000).await?;
    assert_eq!(set.status, 200);
    Ok(())
}

#[tokio::test]
async fn a_long_poll_waits_on_a_cancelled_run_which_may_yet_be_resumed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;
    client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 1500}),
            Some("paused"),
        )
        .await?;
    assert_eq!(client.event("paused", "step1", 30_000).await?.status, 200);
    assert_eq!(client.run_action("paused", "cancel").await?.status, 200);
    // Not `workflow_finished`: the wait runs its course.
    let reply = client.event("paused", "step2", 300).await?;
    assert_eq!(reply.error_code(), Some("event_not_set"), "{}", reply.body);
    // A waiter across the resume gets the key.
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.event("paused", "step2", 30_000).await })
    };
    assert_eq!(client.run_action("paused", "resume").await?.status, 202);
    let reply = waiter.await??;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["value"], "completed");
    Ok(())
}
