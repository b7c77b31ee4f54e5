//! HTTP handler modules, end to end: the seed's `eventListener` deployed as
//! a `wasi:http` component with its route, called with an ordinary HTTP
//! client; it starts `stepsWorkflow`, waits for both events and answers.

use cairn_tests::{Host, examples};
use serde_json::json;

async fn host_with_listener(dir: &std::path::Path) -> anyhow::Result<Host> {
    host_with_listener_and(dir, &[]).await
}

async fn host_with_listener_and(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<Host> {
    let host = Host::start_with_examples(dir, args).await?;
    let deployed = host
        .client
        .deploy_with_routes(
            "event-listener",
            examples::bytes(examples::EVENT_LISTENER),
            Some(std::fs::read(examples::EVENT_LISTENER_ROUTES)?),
        )
        .await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    assert_eq!(deployed.body["kind"], "handler");
    assert_eq!(deployed.body["workflows"], json!([]));
    Ok(host)
}

#[tokio::test]
async fn the_seed_event_listener_starts_the_workflow_and_answers_with_both_steps()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_listener(dir.path()).await?;

    let reply = host.client.get("/app/events").await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.body["step1"], "completed");
    assert_eq!(reply.body["step2"], "completed");

    // The run it started is an ordinary, durable run.
    let id = reply.body["workflow_id"].as_str().unwrap();
    let run = host.result(id, std::time::Duration::from_secs(10)).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["workflow"], "steps_workflow");

    // It logged both values, tagged with its module.
    let log = host.log_contents();
    assert!(log.contains("step1: completed"), "{log}");
    assert!(log.contains("module event-listener"), "{log}");
    Ok(())
}

#[tokio::test]
async fn handlers_serve_requests_concurrently() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_listener(dir.path()).await?;
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = host.client.clone();
            tokio::spawn(async move { client.get("/app/events").await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for call in calls {
        let reply = call.await??;
        assert_eq!(reply.status, 200, "{}", reply.body);
        ids.insert(reply.body["workflow_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 8, "each request started its own run");
    Ok(())
}

#[tokio::test]
async fn a_handler_route_needs_a_handler_module_and_a_workflow_module_cannot_have_one()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    // The listener's manifest on a workflow module: refused.
    let refused = host
        .client
        .deploy_with_routes(
            "steps-2",
            examples::bytes(examples::STEPS),
            Some(std::fs::read(examples::EVENT_LISTENER_ROUTES)?),
        )
        .await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.error_code(), Some("invalid_routes"));

    // A handler cannot be started as a workflow.
    host.client
        .deploy("listener", examples::bytes(examples::EVENT_LISTENER))
        .await?;
    let start = host
        .client
        .start("listener", "event_listener", json!(null), None)
        .await?;
    assert_eq!(start.status, 404, "{}", start.body);
    assert_eq!(start.error_code(), Some("workflow_not_found"));
    Ok(())
}

#[tokio::test]
async fn a_handler_past_its_wall_clock_limit_is_stopped_and_frees_its_slot() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // One instance slot of each kind. The approval holds the workflow slot
    // (it does not park), so the run the handler starts cannot start, and
    // the handler waits for its events far past its limit.
    let host = host_with_listener_and(
        dir.path(),
        &[
            "--max-live-instances",
            "1",
            "--park-after-ms",
            "600000",
            "--handler-timeout-ms",
            "300",
        ],
    )
    .await?;
    let deployed = host
        .client
        .deploy("approvals", examples::bytes(examples::APPROVALS))
        .await?;
    assert!(deployed.status.is_success(), "{}", deployed.body);
    host.client
        .start(
            "approvals",
            "approval",
            json!({"subject": "s"}),
            Some("holder"),
        )
        .await?;
    host.expect_event("holder", "status", json!("awaiting-decision"))
        .await?;
    // Twice: a slot the first instance kept would make the second one busy.
    for attempt in 0..2 {
        let asked = std::time::Instant::now();
        let reply = host.client.get("/app/events").await?;
        assert!(
            asked.elapsed() < std::time::Duration::from_secs(5),
            "attempt {attempt}: answered after {:?}, not at the limit",
            asked.elapsed()
        );
        assert_eq!(reply.status, 502, "attempt {attempt}: {}", reply.body);
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("wall-clock limit of 300 ms"),
            "{}",
            reply.body
        );
    }
    Ok(())
}
