//! Guests Cairn does not trust, against each other: a workflow awaits only
//! its own children, and neither a start request nor a client's `Host`
//! header reaches past what the module and the route allow.

use std::time::Duration;

use bytes::Bytes;
use cairn_tests::{Host, deploy_event_listener, deploy_example, examples};
use hyper::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_workflow_awaits_only_its_own_children() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    deploy_example(&host.client, "fanout", examples::FANOUT, None).await?;
    // Someone else's run, with an output worth reading.
    host.client
        .start("steps", "steps_workflow", json!(null), Some("someone-else"))
        .await?;
    assert_eq!(
        host.result("someone-else", WAIT).await?["status"],
        "SUCCESS"
    );

    host.client
        .start(
            "fanout",
            "await_run",
            json!({"id": "someone-else"}),
            Some("snoop"),
        )
        .await?;
    let run = host.result("snoop", WAIT).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    let error = run["error"].as_str().unwrap_or("");
    assert!(error.contains("is not a child of this run"), "{run}");

    // Its own children it awaits as before.
    host.client
        .start("fanout", "fan_out", json!({"items": [2]}), Some("parent"))
        .await?;
    assert_eq!(host.result("parent", WAIT).await?["output"], json!([4]));
    Ok(())
}

#[tokio::test]
async fn a_start_request_cannot_outlast_its_modules_time_limit() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let deployed = host
        .client
        .deploy_with_settings(
            "steps",
            examples::bytes(examples::STEPS),
            None,
            "run_timeout_ms=500",
        )
        .await?;
    assert!(deployed.status.is_success(), "{}", deployed.body);
    let started = host
        .client
        .post_json(
            "/v1/workflows",
            &json!({
                "module": "steps", "workflow": "steps_with_pause", "id": "long",
                "input": {"pause_ms": 60000}, "timeout_ms": 3_600_000,
            }),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    let run = host.result("long", WAIT).await?;
    assert_eq!(run["status"], "CANCELLED", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or("")
            .contains("time limit of 500 ms"),
        "{run}"
    );
    Ok(())
}

#[tokio::test]
async fn a_clients_host_header_does_not_reach_the_handlers_path() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (admin, invoke) = ("admin-token-0123456789", "invoke-token-0123456789");
    let host = Host::start(
        dir.path(),
        &["--admin-token", admin, "--invoke-token", invoke],
    )
    .await?;
    deploy_event_listener(&host.client.with_token(admin)).await?;
    let echoed = host
        .client
        .with_token(invoke)
        .send_with_headers(
            Method::GET,
            "/app/echo",
            &[("host", "x/admin?")],
            Bytes::new(),
        )
        .await?;
    assert_eq!(echoed.status, 200, "{}", echoed.body);
    assert_eq!(echoed.body["path"], "/echo", "{}", echoed.body);
    Ok(())
}

#[tokio::test]
async fn a_nul_in_a_guests_error_is_stored_the_same_on_both_backends() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    host.client
        .start("faulty", "fail", json!("bad\u{0}reason"), Some("nul"))
        .await?;
    // PostgreSQL cannot store a NUL: unescaped, the run's end could not be
    // written and the run would be recovered until it gave up.
    let run = host.result("nul", WAIT).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    assert_eq!(run["error"], "refused: bad\u{2400}reason", "{run}");
    assert_eq!(run["attempts"], 1, "{run}");
    Ok(())
}
