//! Guests Cairn does not trust, against each other: a workflow awaits only
//! its own children, and neither a start request nor a client's `Host`
//! header reaches past what the module and the route allow, and a step's
//! outgoing HTTP reaches only the addresses its allow-list names.

use std::time::Duration;

use bytes::Bytes;
use cairn_tests::{FakeGateway, Host, deploy_event_listener, deploy_example, examples};
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

#[tokio::test]
async fn an_allowed_name_does_not_reach_an_internal_address_unless_that_address_is_allowed()
-> anyhow::Result<()> {
    let gateway = FakeGateway::start(0).await?;
    let port = gateway.addr.port();
    let dir = tempfile::tempdir()?;
    // `localhost` stands for any allowed name whose DNS points inside: it
    // resolves to 127.0.0.1, where the gateway listens.
    let host = Host::start(dir.path(), &["--allow-outbound", "localhost,127.0.0.1"]).await?;
    let fetch = async |id: &str, settings: &str| -> anyhow::Result<String> {
        let deployed = host
            .client
            .deploy_with_settings(id, examples::bytes(examples::FAULTY), None, settings)
            .await?;
        assert!(deployed.status.is_success(), "{}", deployed.body);
        let url = format!("http://localhost:{port}/charges");
        host.client
            .start(
                id,
                "misuse",
                json!({"case": "http_in_step", "url": url}),
                Some(id),
            )
            .await?;
        let run = host.result(id, WAIT).await?;
        assert_eq!(run["status"], "SUCCESS", "{run}");
        Ok(run["output"].as_str().unwrap_or_default().to_owned())
    };

    let by_name = fetch("by-name", &format!("allowed_hosts=localhost:{port}")).await?;
    assert!(
        by_name.contains("localhost resolves to 127.0.0.1, an internal address"),
        "{by_name}"
    );
    assert!(gateway.requests().is_empty(), "nothing reached the gateway");

    // Listing the address as well is the explicit choice that lets it in.
    let explicit = fetch(
        "explicit",
        &format!("allowed_hosts=localhost:{port},127.0.0.1:{port}"),
    )
    .await?;
    assert!(explicit.contains("charge_id"), "{explicit}");
    assert_eq!(gateway.requests().len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_guest_that_only_logs_is_stopped_by_its_cpu_budget_and_floods_no_log()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(
        dir.path(),
        &["--cpu-slice-ms", "200", "--max-cpu-ms", "1500"],
    )
    .await?;
    deploy_example(&host.client, "hostile", examples::HOSTILE, None).await?;
    host.client
        .start("hostile", "chatter", json!(null), Some("chatter"))
        .await?;
    let run = host.result("chatter", WAIT).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("past its CPU budget of 1500 ms"), "{run}");

    let log = host.log_contents();
    let lines = log
        .lines()
        .filter(|line| line.contains("cairn::guest"))
        .count();
    assert_eq!(lines, 10_000, "the guest's log lines, capped");
    assert!(
        log.contains("its further lines are dropped"),
        "the cap was reached"
    );
    // The host goes on serving.
    deploy_example(&host.client, "steps", examples::STEPS, None).await?;
    host.client
        .start("steps", "steps_workflow", json!(null), Some("after"))
        .await?;
    assert_eq!(host.result("after", WAIT).await?["status"], "SUCCESS");
    Ok(())
}

#[tokio::test]
async fn a_run_stores_no_more_than_its_byte_budget() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &["--max-run-bytes", "3000000"]).await?;
    deploy_example(&host.client, "hostile", examples::HOSTILE, None).await?;
    deploy_example(&host.client, "steps", examples::STEPS, None).await?;

    // 4 MiB of events, each within the value limit: the budget stops it.
    let filler = json!({"pause_ms": 0, "events": 8, "bytes": 512 * 1024});
    host.client
        .start("hostile", "fill_after_pause", filler, Some("hoarder"))
        .await?;
    let run = host.result("hoarder", WAIT).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("past its budget of 3000000 bytes"), "{run}");
    let events = host.client.events("hoarder").await?.body;
    let kept = events.as_object().map_or(0, |e| e.len());
    assert_eq!(kept, 5, "the events within the budget are kept: {kept}");

    // Messages a run has not received count too: a client cannot pile
    // them up without end.
    host.client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 600_000}),
            Some("inbox"),
        )
        .await?;
    let message = json!("m".repeat(900_000));
    let mut answers = Vec::new();
    for _ in 0..4 {
        let reply = host
            .client
            .send_message("inbox", "mail", message.clone(), None)
            .await?;
        answers.push(reply.status.as_u16());
        if reply.status == 409 {
            assert_eq!(reply.body["error"]["code"], "run_full", "{}", reply.body);
            let text = reply.body["error"]["message"].as_str().unwrap_or_default();
            assert!(text.contains("not delivered"), "{text}");
        }
    }
    assert_eq!(answers, [202, 202, 202, 409]);
    // Topped up to 2 bytes short of the budget (a JSON string of n
    // characters is n + 2 bytes)...
    let top_up = json!("m".repeat(3_000_000 - 3 * 900_002 - 2 - 2));
    let reply = host
        .client
        .send_message("inbox", "mail", top_up, None)
        .await?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    // ...a workflow's send of `true` to the full run is refused the same
    // way, and the refusal is journaled (a replay gives the same answer).
    deploy_example(&host.client, "approvals", examples::APPROVALS, None).await?;
    let notify = json!({"to": "inbox", "topic": "mail", "key": "k1"});
    host.client
        .start("approvals", "notify", notify, Some("notifier"))
        .await?;
    let run = host.result("notifier", WAIT).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("--max-run-bytes"), "{run}");
    let steps = host.client.steps("notifier").await?.body;
    assert_eq!(steps["steps"][0]["outcome"], "full", "{steps}");
    Ok(())
}

#[tokio::test]
async fn a_deployment_narrows_the_modules_its_workflows_reach() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let deploy = async |name: &str, path: &str, settings: &str| -> anyhow::Result<()> {
        let deployed = host
            .client
            .deploy_with_settings(name, examples::bytes(path), None, settings)
            .await?;
        assert!(deployed.status.is_success(), "{}", deployed.body);
        Ok(())
    };
    // `orders` may reach only itself; `intruder` is the same component
    // under another name, whose `payment` run squats the id `orders` reads.
    deploy("orders", examples::ORDERS, "reach=orders").await?;
    deploy("intruder", examples::ORDERS, "").await?;
    deploy("fanout", examples::FANOUT, "").await?;
    deploy("fan-narrow", examples::FANOUT, "reach=fan-narrow").await?;
    deploy("approvals", examples::APPROVALS, "reach=approvals").await?;
    deploy("steps", examples::STEPS, "").await?;
    let refused = host
        .client
        .deploy_with_settings(
            "x",
            examples::bytes(examples::STEPS),
            None,
            "reach=Bad%20Name",
        )
        .await?;
    assert_eq!(refused.status, 400, "{}", refused.body);

    // Reading: the squatter's event is invisible; the order times out.
    host.client
        .start(
            "intruder",
            "payment",
            json!({"order_id": "o1", "approve": true}),
            Some("payment-o1"),
        )
        .await?;
    assert_eq!(host.result("payment-o1", WAIT).await?["status"], "SUCCESS");
    let order = json!({"order_id": "o1", "amount_cents": 5, "payment_timeout_ms": 1500});
    host.client
        .start("orders", "order", order, Some("order-o1"))
        .await?;
    let run = host.result("order-o1", WAIT).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no payment outcome"),
        "{run}"
    );
    // Its own module's payment it reads as before.
    host.client
        .start(
            "orders",
            "payment",
            json!({"order_id": "o2", "approve": true}),
            Some("payment-o2"),
        )
        .await?;
    let order = json!({"order_id": "o2", "amount_cents": 5, "payment_timeout_ms": 30_000});
    host.client
        .start("orders", "order", order, Some("order-o2"))
        .await?;
    assert_eq!(host.result("order-o2", WAIT).await?["status"], "SUCCESS");

    // Starting: another module's workflow is refused; its own still starts.
    host.client
        .start(
            "fan-narrow",
            "fan_out",
            json!({"items": [3]}),
            Some("narrow"),
        )
        .await?;
    let run = host.result("narrow", WAIT).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("outside this module's reach"),
        "{run}"
    );

    // Sending: a run outside the reach is as good as absent.
    host.client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 600_000}),
            Some("elsewhere"),
        )
        .await?;
    let notify = json!({"to": "elsewhere", "topic": "t", "key": "k"});
    host.client
        .start("approvals", "notify", notify, Some("notifier"))
        .await?;
    assert_eq!(
        host.result("notifier", WAIT).await?["output"],
        "no-such-run"
    );
    Ok(())
}

#[tokio::test]
async fn a_handlers_reach_is_narrowed_by_its_deployment_too() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    deploy_example(&host.client, "steps", examples::STEPS, None).await?;
    let routes = std::fs::read(examples::EVENT_LISTENER_ROUTES)?;
    let deployed = host
        .client
        .deploy_with_settings(
            "event-listener",
            examples::bytes(examples::EVENT_LISTENER),
            Some(routes),
            "reach=event-listener",
        )
        .await?;
    assert!(deployed.status.is_success(), "{}", deployed.body);

    // Starting another module's workflow is refused (the handler answers
    // with the error as text).
    let answer = match host.client.get("/app/events").await {
        Ok(reply) => format!("{} {}", reply.status, reply.body),
        Err(error) => error.to_string(),
    };
    assert!(answer.contains("outside this module's reach"), "{answer}");
    // ...and another module's run is as good as absent.
    host.client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 600_000}),
            Some("theirs"),
        )
        .await?;
    let relayed = host
        .client
        .post_json("/app/approvals/theirs/decision", &json!({"approved": true}))
        .await?;
    assert_eq!(relayed.status, 404, "{}", relayed.body);
    Ok(())
}
