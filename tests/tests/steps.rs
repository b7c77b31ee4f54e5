//! Steps, end to end: retries with backoff and every attempt in the journal,
//! outgoing HTTP from steps to allowed hosts only, clocks and random numbers
//! journaled outside steps, and a host killed mid-step (waiting to retry, or
//! after the step finished) that resumes without running a finished attempt
//! again.

use std::time::Duration;

use cairn_tests::{FakeGateway, Host, SseStream, examples};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

async fn host_with(
    dir: &std::path::Path,
    args: &[&str],
    module: &str,
    path: &str,
    settings: &str,
) -> anyhow::Result<Host> {
    let host = Host::start(dir, args).await?;
    let deployed = host
        .client
        .deploy_with_settings(module, examples::bytes(path), None, settings)
        .await?;
    assert!(deployed.status.is_success(), "{}", deployed.body);
    Ok(host)
}

async fn journal(host: &Host, id: &str) -> anyhow::Result<Vec<Value>> {
    let steps = host.client.steps(id).await?;
    assert_eq!(steps.status, 200, "{}", steps.body);
    Ok(steps.body["steps"].as_array().cloned().unwrap_or_default())
}

fn of_kind<'a>(journal: &'a [Value], kind: &str) -> Vec<&'a Value> {
    journal.iter().filter(|e| e["kind"] == kind).collect()
}

/// Wait until the journal of run `id` satisfies `condition`.
async fn await_journal(
    host: &Host,
    id: &str,
    condition: impl Fn(&[Value]) -> bool,
) -> anyhow::Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let entries = journal(host, id).await?;
        if condition(&entries) {
            return Ok(entries);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the journal of {id} never met the condition: {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Follow run `id`'s events live until its `status` becomes `value`.
async fn await_status(host: &Host, id: &str, value: &str) -> anyhow::Result<()> {
    let mut stream = SseStream::open(&host.url, &format!("/v1/workflows/{id}/events"), &[]).await?;
    while let Some(event) = stream.next(WAIT).await? {
        if event.event == "status" && event.json() == value {
            return Ok(());
        }
    }
    anyhow::bail!("run {id} ended without status {value:?}")
}

#[tokio::test]
async fn a_step_is_retried_until_it_succeeds_and_each_attempt_is_journaled() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with(dir.path(), &[], "payments", examples::PAYMENTS, "").await?;
    let input = json!({"order_id": "o-1", "amount_cents": 1200, "declines": 2, "retry_ms": 50});
    host.client
        .start("payments", "charge", input, Some("pay-1"))
        .await?;
    let run = host.result("pay-1", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    let key = run["output"]["idempotency_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(run["output"]["charge_id"], format!("ch_o-1_{key}"));
    host.expect_event("pay-1", "idempotency_key", json!(key))
        .await?;

    let entries = journal(&host, "pay-1").await?;
    let attempts = of_kind(&entries, "step");
    assert_eq!(attempts.len(), 3, "{entries:?}");
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["name"], "charge");
        assert_eq!(attempt["attempt"], n as u64 + 1);
    }
    for failed in &attempts[..2] {
        let error = failed["error"].as_str().unwrap();
        assert!(error.contains("card network timeout"), "{error}");
        assert!(failed["deadline"].is_string(), "a retry time: {failed}");
    }
    assert_eq!(attempts[2]["outcome"]["charge_id"], format!("ch_o-1_{key}"));
    assert!(attempts[2].get("error").is_none(), "{}", attempts[2]);
    // The waits grew: 50 ms, then 100 ms (backoff factor 2).
    let millis = |s: &Value| humantime::parse_rfc3339(s.as_str().unwrap()).unwrap();
    let waited = |n: usize| {
        millis(&attempts[n + 1]["started_at"])
            .duration_since(millis(&attempts[n]["recorded_at"]))
            .unwrap()
    };
    assert!(waited(0) >= Duration::from_millis(45), "{:?}", waited(0));
    assert!(waited(1) >= Duration::from_millis(95), "{:?}", waited(1));
    // The clock and the random seed read outside the step are journaled.
    assert_eq!(of_kind(&entries, "clock").len(), 1, "{entries:?}");
    assert_eq!(of_kind(&entries, "random").len(), 1, "{entries:?}");
    Ok(())
}

#[tokio::test]
async fn a_step_out_of_attempts_fails_the_run_with_its_last_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with(dir.path(), &[], "payments", examples::PAYMENTS, "").await?;
    let input = json!({"order_id": "o-2", "amount_cents": 5, "declines": 9, "max_attempts": 3, "retry_ms": 10});
    host.client
        .start("payments", "charge", input, Some("pay-2"))
        .await?;
    let run = host.result("pay-2", WAIT).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("step \"charge\" failed: card network timeout (attempt 3)"),
        "{error}"
    );
    host.expect_event("pay-2", "status", json!("failed"))
        .await?;
    let entries = journal(&host, "pay-2").await?;
    let attempts = of_kind(&entries, "step");
    assert_eq!(attempts.len(), 3, "{entries:?}");
    assert!(
        attempts[2]["deadline"].is_null(),
        "no retry after the last: {}",
        attempts[2]
    );
    Ok(())
}

#[tokio::test]
async fn a_crash_while_waiting_to_retry_keeps_the_attempts_and_the_retry_time() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let host = host_with(dir.path(), &[], "payments", examples::PAYMENTS, "").await?;
    let input = json!({"order_id": "o-3", "amount_cents": 700, "declines": 1, "retry_ms": 2000});
    host.client
        .start("payments", "charge", input, Some("pay-3"))
        .await?;
    let before = await_journal(&host, "pay-3", |entries| {
        !of_kind(entries, "step").is_empty()
    })
    .await?;
    let key = host.client.event("pay-3", "idempotency_key", 0).await?.body["value"].clone();
    host.kill().await?;

    let host = Host::start(dir.path(), &[]).await?;
    let run = host.result("pay-3", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    // The random key and the clock reading are those of before the crash.
    assert_eq!(run["output"]["idempotency_key"], key);
    let clock = &of_kind(&before, "clock")[0]["outcome"];
    let started_ns = clock.as_u64().unwrap();
    assert_eq!(run["output"]["started_at_ms"], started_ns / 1_000_000);

    let entries = journal(&host, "pay-3").await?;
    let attempts = of_kind(&entries, "step");
    // Attempt 1 (failed) was not run again; attempt 2 ran once, after the
    // journaled retry time.
    assert_eq!(attempts.len(), 2, "{entries:?}");
    assert_eq!(attempts[0], of_kind(&before, "step")[0]);
    assert_eq!(attempts[1]["attempt"], 2);
    let at = |s: &Value| humantime::parse_rfc3339(s.as_str().unwrap()).unwrap();
    assert!(at(&attempts[1]["started_at"]) >= at(&attempts[0]["deadline"]));
    // Each event once: the replay wrote nothing again.
    let stream = SseStream::open(&host.url, "/v1/workflows/pay-3/events", &[]).await?;
    let statuses: Vec<Value> = stream
        .collect(WAIT)
        .await?
        .iter()
        .filter(|e| e.event == "status")
        .map(|e| e.json())
        .collect();
    assert_eq!(
        statuses,
        [json!("charging"), json!("charged"), json!("receipted")]
    );
    Ok(())
}

#[tokio::test]
async fn a_step_calls_a_service_over_http_with_retries_and_never_again_after_a_crash()
-> anyhow::Result<()> {
    let gateway = FakeGateway::start(2).await?;
    let dir = tempfile::tempdir()?;
    let allow = format!("--allow-outbound=127.0.0.1:{}", gateway.addr.port());
    let settings = format!("allowed_hosts=127.0.0.1:{}", gateway.addr.port());
    let host = host_with(
        dir.path(),
        &[&allow],
        "payments",
        examples::PAYMENTS,
        &settings,
    )
    .await?;
    let input = json!({
        "order_id": "o-4", "amount_cents": 990, "gateway_url": gateway.url(),
        "retry_ms": 20, "pause_ms": 1500,
    });
    host.client
        .start("payments", "charge_remote", input, Some("pay-4"))
        .await?;
    await_status(&host, "pay-4", "charged").await?;
    host.kill().await?;
    assert_eq!(gateway.requests().len(), 3, "two 503s, then the charge");

    let host = Host::start(dir.path(), &[&allow]).await?;
    let run = host.result("pay-4", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    let requests = gateway.requests();
    assert_eq!(
        requests.len(),
        3,
        "the finished step did not call again: {requests:?}"
    );
    let key = &run["output"]["idempotency_key"];
    assert!(
        requests.iter().all(|r| &r["idempotency_key"] == key),
        "{requests:?}"
    );
    assert_eq!(requests[0]["amount_cents"], 990);
    let attempts = journal(&host, "pay-4").await?;
    let attempts = of_kind(&attempts, "step");
    assert_eq!(attempts.len(), 3);
    assert!(
        attempts[0]["error"].as_str().unwrap().contains("503"),
        "{}",
        attempts[0]
    );
    Ok(())
}

#[tokio::test]
async fn outgoing_http_and_durable_calls_are_refused_where_they_do_not_belong() -> anyhow::Result<()>
{
    let allowed = FakeGateway::start(0).await?;
    let other = FakeGateway::start(0).await?;
    let dir = tempfile::tempdir()?;
    let host = host_with(
        dir.path(),
        &["--allow-outbound", "127.0.0.1"],
        "faulty",
        examples::FAULTY,
        &format!("allowed_hosts=127.0.0.1:{}", allowed.addr.port()),
    )
    .await?;
    let misuse = async |id: &str, case: &str, url: &str| -> anyhow::Result<String> {
        host.client
            .start(
                "faulty",
                "misuse",
                json!({"case": case, "url": url}),
                Some(id),
            )
            .await?;
        let run = host.result(id, WAIT).await?;
        assert_eq!(run["status"], "SUCCESS", "{run}");
        Ok(run["output"].as_str().unwrap().to_owned())
    };
    let fetched = misuse("m-1", "http_in_step", &allowed.url()).await?;
    assert!(fetched.contains("charge_id"), "{fetched}");
    let refused = misuse("m-2", "http_in_step", &other.url()).await?;
    assert!(
        refused.contains(&format!(
            "127.0.0.1:{} is not on the module's allow-list",
            other.addr.port()
        )),
        "{refused}"
    );
    assert!(other.requests().is_empty());
    let outside = misuse("m-3", "http_outside_step", &allowed.url()).await?;
    assert!(outside.contains("only inside a step"), "{outside}");
    assert_eq!(
        allowed.requests().len(),
        1,
        "only the call from the step went out"
    );
    let in_step = misuse("m-4", "set_event_in_step", "").await?;
    assert!(
        in_step.contains("set-event is not allowed inside step \"publish\""),
        "{in_step}"
    );
    assert_eq!(host.client.events("m-4").await?.body, json!({}));
    let nested = misuse("m-5", "nested_step", "").await?;
    assert!(nested.contains("steps do not nest"), "{nested}");
    Ok(())
}

#[tokio::test]
async fn allowed_hosts_beyond_the_hosts_own_list_are_refused_at_deploy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(
        dir.path(),
        &["--allow-outbound", "127.0.0.1,api.example.com:443"],
    )
    .await?;
    let bytes = examples::bytes(examples::PAYMENTS);
    let refused = host
        .client
        .deploy_with_settings(
            "payments",
            bytes.clone(),
            None,
            "allowed_hosts=127.0.0.1:9000,evil.example.com",
        )
        .await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let message = refused.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("evil.example.com outside this host's allow-list"),
        "{}",
        refused.body
    );
    assert_eq!(
        host.client.get("/v1/modules/payments").await?.status,
        404,
        "nothing stored"
    );
    let accepted = host
        .client
        .deploy_with_settings(
            "payments",
            bytes,
            None,
            "allowed_hosts=127.0.0.1:9000,api.example.com:443",
        )
        .await?;
    assert!(accepted.status.is_success(), "{}", accepted.body);
    assert_eq!(
        accepted.body["settings"]["allowed_hosts"],
        json!(["127.0.0.1:9000", "api.example.com:443"])
    );
    Ok(())
}
