//! Messages, end to end: sent over HTTP or by a handler, received by a
//! workflow with `recv`, FIFO per (run, topic), once per idempotency key,
//! exactly once across a crash of the host.

use std::time::Duration;

use cairn_tests::{Host, examples};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn host_with_approvals(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<Host> {
    let host = Host::start(dir, args).await?;
    let deployed = host
        .client
        .deploy("approvals", examples::bytes(examples::APPROVALS))
        .await?;
    assert!(deployed.status.is_success(), "{}", deployed.body);
    Ok(host)
}

async fn send(
    host: &Host,
    id: &str,
    topic: &str,
    message: serde_json::Value,
    key: Option<&str>,
) -> anyhow::Result<cairn_tests::Reply> {
    let mut body = json!({"topic": topic, "message": message});
    if let Some(key) = key {
        body["idempotency_key"] = key.into();
    }
    Ok(host
        .client
        .post_json(&format!("/v1/workflows/{id}/messages"), &body)
        .await?)
}

/// Wait until the approval run `id` waits for its decision (its first
/// `status`).
async fn awaiting_decision(host: &Host, id: &str) -> anyhow::Result<()> {
    host.expect_event(id, "status", json!("awaiting-decision"))
        .await
}

#[tokio::test]
async fn a_waiting_workflow_receives_a_message_sent_over_http() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_approvals(dir.path(), &[]).await?;
    host.client
        .start(
            "approvals",
            "approval",
            json!({"subject": "leave"}),
            Some("a-1"),
        )
        .await?;
    awaiting_decision(&host, "a-1").await?;

    let sent = send(
        &host,
        "a-1",
        "decision",
        json!({"approved": true, "by": "ann"}),
        None,
    )
    .await?;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let run = host.result("a-1", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["output"], json!({"approved": true, "by": "ann"}));
    assert_eq!(host.client.events("a-1").await?.body["status"], "approved");

    let steps = host.client.get("/v1/workflows/a-1/steps").await?.body;
    let recv = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "recv")
        .unwrap()
        .clone();
    assert_eq!(recv["name"], "decision");
    assert_eq!(recv["outcome"], json!({"approved": true, "by": "ann"}));
    Ok(())
}

#[tokio::test]
async fn messages_arrive_in_order_and_a_key_delivers_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_approvals(dir.path(), &[]).await?;
    // Messages may be sent to a run before it asks for them.
    host.client
        .start("approvals", "collect", json!({"count": 3}), Some("c-1"))
        .await?;
    let first = send(&host, "c-1", "item", json!("a"), Some("k-a")).await?;
    assert_eq!(first.status, 202, "{}", first.body);
    let again = send(&host, "c-1", "item", json!("a, again"), Some("k-a")).await?;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body, json!({"delivered": false, "duplicate": true}));
    // Another topic is another queue.
    send(&host, "c-1", "other", json!("x"), None).await?;
    send(&host, "c-1", "item", json!("b"), None).await?;
    send(&host, "c-1", "item", json!({"n": 3}), Some("k-c")).await?;

    let run = host.result("c-1", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["output"], json!(["a", "b", {"n": 3}]));

    // A key stays used after its message was received.
    let late = send(&host, "c-1", "item", json!("late"), Some("k-c")).await?;
    assert_eq!(late.status, 200, "{}", late.body);

    // The run's messages, received or not, in the order they were sent.
    let listed = host.client.get("/v1/workflows/c-1/messages").await?;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let messages = listed.body["messages"].as_array().unwrap();
    let summary: Vec<(&str, serde_json::Value, bool, Option<&str>)> = messages
        .iter()
        .map(|m| {
            (
                m["topic"].as_str().unwrap(),
                m["message"].clone(),
                m["received"].as_bool().unwrap(),
                m["idempotency_key"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("item", json!("a"), true, Some("k-a")),
            ("other", json!("x"), false, None),
            ("item", json!("b"), true, None),
            ("item", json!({"n": 3}), true, Some("k-c")),
        ]
    );
    assert!(messages[0]["received_at"].is_string(), "{}", listed.body);
    assert!(messages[1]["received_at"].is_null());
    assert_eq!(listed.body["next_after_seq"], json!(null));
    let page = host
        .client
        .get("/v1/workflows/c-1/messages?limit=1")
        .await?;
    assert_eq!(page.body["messages"].as_array().unwrap().len(), 1);
    let after = page.body["next_after_seq"].as_i64().unwrap();
    let next = host
        .client
        .get(&format!(
            "/v1/workflows/c-1/messages?after_seq={after}&limit=1"
        ))
        .await?;
    assert_eq!(next.body["messages"][0]["message"], "x", "{}", next.body);
    let unknown = host.client.get("/v1/workflows/nobody/messages").await?;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    Ok(())
}

#[tokio::test]
async fn a_message_without_a_topic_goes_to_the_default_topic() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_approvals(dir.path(), &[]).await?;
    host.client
        .start(
            "approvals",
            "collect",
            json!({"count": 2, "topic": ""}),
            Some("d-1"),
        )
        .await?;
    let untopiced = host
        .client
        .post_json("/v1/workflows/d-1/messages", &json!({"message": "first"}))
        .await?;
    assert_eq!(untopiced.status, 202, "{}", untopiced.body);
    send(&host, "d-1", "item", json!("elsewhere"), None).await?;
    send(&host, "d-1", "", json!("second"), None).await?;
    let run = host.result("d-1", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["output"], json!(["first", "second"]));
    Ok(())
}

#[tokio::test]
async fn a_workflow_sends_a_message_to_another_run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_approvals(dir.path(), &[]).await?;
    host.client
        .start(
            "approvals",
            "approval",
            json!({"subject": "deploy"}),
            Some("a-3"),
        )
        .await?;
    awaiting_decision(&host, "a-3").await?;
    host.client
        .start(
            "approvals",
            "decide",
            json!({"approval_id": "a-3", "approved": true}),
            Some("d-3"),
        )
        .await?;
    let decided = host.result("d-3", WAIT).await?;
    assert_eq!(decided["output"], json!(true), "{decided}");
    let approval = host.result("a-3", WAIT).await?;
    assert_eq!(approval["output"], json!({"approved": true, "by": "d-3"}));
    let steps = host.client.get("/v1/workflows/d-3/steps").await?.body;
    assert_eq!(steps["steps"][0]["kind"], "send");
    assert_eq!(steps["steps"][0]["name"], "a-3/decision");
    assert_eq!(steps["steps"][0]["outcome"], json!(true));

    // To a run that does not exist: a guest-visible not-found, journaled.
    host.client
        .start(
            "approvals",
            "decide",
            json!({"approval_id": "nobody", "approved": true}),
            Some("d-4"),
        )
        .await?;
    let decided = host.result("d-4", WAIT).await?;
    assert_eq!(decided["output"], json!(false), "{decided}");
    Ok(())
}

#[tokio::test]
async fn sending_to_a_run_that_does_not_exist_is_a_404() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_approvals(dir.path(), &[]).await?;
    let reply = send(&host, "nobody", "decision", json!(true), None).await?;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.error_code(), Some("run_not_found"));

    let bad = host
        .client
        .post_json("/v1/workflows/nobody/messages", &json!({"topic": "t"}))
        .await?;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.error_code(), Some("invalid_json"));
    Ok(())
}

#[tokio::test]
async fn a_handler_relays_a_message_to_a_run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_approvals(dir.path(), &[]).await?;
    let deployed = host
        .client
        .deploy_with_routes(
            "event-listener",
            examples::bytes(examples::EVENT_LISTENER),
            Some(std::fs::read(examples::EVENT_LISTENER_ROUTES)?),
        )
        .await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    host.client
        .start(
            "approvals",
            "approval",
            json!({"subject": "pr"}),
            Some("a-2"),
        )
        .await?;
    awaiting_decision(&host, "a-2").await?;

    let relayed = host
        .client
        .post_json(
            "/app/approvals/a-2/decision",
            &json!({"approved": false, "by": "bob"}),
        )
        .await?;
    assert_eq!(relayed.status, 202, "{}", relayed.body);
    let run = host.result("a-2", WAIT).await?;
    assert_eq!(run["output"], json!({"approved": false, "by": "bob"}));

    let missing = host
        .client
        .post_json("/app/approvals/nobody/decision", &json!({}))
        .await?;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), Some("run_not_found"));
    Ok(())
}

#[tokio::test]
async fn a_message_is_received_exactly_once_across_a_crash() -> anyhow::Result<()> {
    const RUNS: usize = 20;
    let dir = tempfile::tempdir()?;
    let host = host_with_approvals(dir.path(), &[]).await?;
    let ids: Vec<String> = (0..RUNS).map(|i| format!("crash-{i}")).collect();
    for id in &ids {
        host.client
            .start("approvals", "approval", json!({"subject": id}), Some(id))
            .await?;
    }
    for id in &ids {
        awaiting_decision(&host, id).await?;
    }
    // Half get their decision before the crash: those runs may or may not
    // have journaled the recv when the host dies.
    for id in &ids[..RUNS / 2] {
        send(
            &host,
            id,
            "decision",
            json!({"approved": true, "by": id}),
            Some("d"),
        )
        .await?;
    }
    host.kill().await?;

    let host = Host::start(dir.path(), &[]).await?;
    // The other half after it, into recovered waits; and a retry of one sent
    // before, which its key makes a duplicate.
    for id in &ids[RUNS / 2..] {
        let sent = send(
            &host,
            id,
            "decision",
            json!({"approved": true, "by": id}),
            Some("d"),
        )
        .await?;
        assert_eq!(sent.status, 202, "{}", sent.body);
    }
    let retry = send(
        &host,
        &ids[0],
        "decision",
        json!({"approved": false}),
        Some("d"),
    )
    .await?;
    assert_eq!(retry.status, 200, "{}", retry.body);

    for id in &ids {
        let run = host.result(id, WAIT).await?;
        assert_eq!(run["status"], "SUCCESS", "{id}: {run}");
        assert_eq!(run["output"], json!({"approved": true, "by": id}), "{id}");
        let steps = host
            .client
            .get(&format!("/v1/workflows/{id}/steps"))
            .await?
            .body;
        let kinds: Vec<&str> = steps["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["set-event", "set-event", "recv", "set-event"],
            "{id}: the recv is journaled once"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_journal_tells_a_null_message_from_a_wait_that_timed_out() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    cairn_tests::deploy_example(&host.client, "approvals", examples::APPROVALS, None).await?;
    let recv_step = async |id: &str| -> anyhow::Result<serde_json::Value> {
        host.result(id, WAIT).await?;
        let steps = host.client.steps(id).await?.body;
        let recv = steps["steps"]
            .as_array()
            .and_then(|steps| steps.iter().find(|s| s["kind"] == "recv").cloned());
        Ok(recv.unwrap_or_default())
    };
    host.client
        .start(
            "approvals",
            "approval",
            json!({"subject": "a", "timeout_ms": 200}),
            Some("nobody"),
        )
        .await?;
    let timed_out = recv_step("nobody").await?;
    assert_eq!(timed_out["outcome"], serde_json::Value::Null, "{timed_out}");
    assert_eq!(timed_out["timed_out"], true, "{timed_out}");

    host.client
        .start(
            "approvals",
            "approval",
            json!({"subject": "b"}),
            Some("null-sender"),
        )
        .await?;
    let sent = host
        .client
        .send_message("null-sender", "decision", serde_json::Value::Null, None)
        .await?;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let received = recv_step("null-sender").await?;
    assert_eq!(received["outcome"], serde_json::Value::Null, "{received}");
    assert_eq!(received["timed_out"], false, "{received}");
    Ok(())
}
