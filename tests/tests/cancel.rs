//! Cancelling and resuming runs: a cancel interrupts a sleep or a wait at
//! once and ends the run `CANCELLED`; a resume goes on from the journal,
//! keeping what was done; neither a restart nor a late wake-up undoes them.

use std::time::Duration;

use cairn_tests::{Host, examples};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_cancel_interrupts_a_sleep_and_a_resume_finishes_the_run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;
    client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 600_000}),
            Some("long"),
        )
        .await?;
    // In the middle of its ten-minute sleep.
    assert_eq!(client.event("long", "step1", 30_000).await?.status, 200);

    let waiter = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .get("/v1/workflows/long/result?timeout_ms=60000")
                .await
        })
    };
    let cancelled = client.run_action("long", "cancel").await?;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "CANCELLED");
    // A waiter for the result hears of it at once, not after the sleep.
    let result = waiter.await??;
    assert_eq!(result.status, 200, "{}", result.body);
    assert_eq!(result.body["status"], "CANCELLED");

    let again = client.run_action("long", "cancel").await?;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.error_code(), Some("wrong_status"));

    // Still CANCELLED after a restart: recovery takes PENDING runs only.
    host.kill().await?;
    let host = Host::start(dir.path(), &[]).await?;
    let client = &host.client;
    assert_eq!(client.status("long").await?.body["status"], "CANCELLED");
    assert_eq!(
        client.events("long").await?.body,
        json!({"step1": "completed"})
    );

    // Resumed: step1 is not published again, the sleep keeps its wake-up
    // time (ten minutes away), so cancel once more to prove it waits, then
    // check the journal has each call once.
    let resumed = client.run_action("long", "resume").await?;
    assert_eq!(resumed.status, 202, "{}", resumed.body);
    assert_eq!(resumed.body["status"], "PENDING");
    // A resume starts the recovery count again (as in DBOS): attempts
    // counts executions since the run's start or its last resume.
    assert_eq!(resumed.body["attempts"], 1);
    let pending = client
        .get("/v1/workflows/long/result?timeout_ms=300")
        .await?;
    assert_eq!(pending.status, 202, "still sleeping: {}", pending.body);
    let steps = client.steps("long").await?.body;
    let kinds: Vec<&str> = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["set-event", "sleep"]);
    let cancelled = client.run_action("long", "cancel").await?;
    assert_eq!(cancelled.body["status"], "CANCELLED");
    Ok(())
}

#[tokio::test]
async fn a_resumed_run_goes_on_from_its_journal_to_the_end() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let client = &host.client;
    client
        .deploy("approvals", examples::bytes(examples::APPROVALS))
        .await?;
    client
        .start("approvals", "approval", json!({"subject": "x"}), Some("ap"))
        .await?;
    host.expect_event("ap", "status", json!("awaiting-decision"))
        .await?;
    assert_eq!(client.run_action("ap", "cancel").await?.status, 200);
    // A message sent while it is cancelled waits for it.
    client
        .send_message(
            "ap",
            "decision",
            json!({"approved": true, "by": "zoe"}),
            None,
        )
        .await?;
    assert_eq!(client.run_action("ap", "resume").await?.status, 202);
    let run = host.result("ap", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["output"], json!({"approved": true, "by": "zoe"}));

    let not_cancelled = client.run_action("ap", "resume").await?;
    assert_eq!(not_cancelled.status, 409);
    assert_eq!(client.run_action("nobody", "cancel").await?.status, 404);
    Ok(())
}

#[tokio::test]
async fn cancel_and_resume_need_the_admin_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(
        dir.path(),
        &[
            "--admin-token",
            "admin-secret-0123456789",
            "--invoke-token",
            "invoke-secret-0123456789",
        ],
    )
    .await?;
    let invoke = host.client.with_token("invoke-secret-0123456789");
    invoke
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 60_000}),
            Some("p"),
        )
        .await?;
    assert_eq!(invoke.run_action("p", "cancel").await?.status, 403);
    let admin = host.client.with_token("admin-secret-0123456789");
    assert_eq!(admin.run_action("p", "cancel").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn a_run_that_timed_out_resumes_with_a_new_time_limit_and_finishes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;
    let start = json!({
        "module": "steps", "workflow": "steps_with_pause", "id": "slow",
        "input": {"pause_ms": 1500}, "timeout_ms": 400,
    });
    assert_eq!(client.post_json("/v1/workflows", &start).await?.status, 202);
    let run = host.result("slow", WAIT).await?;
    assert_eq!(run["status"], "CANCELLED", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("time limit"),
        "{run}"
    );

    // Resumed with a limit too short for what is left: cancelled again, on
    // the new limit.
    let resumed = client
        .post_json("/v1/workflows/slow/resume", &json!({"timeout_ms": 100}))
        .await?;
    assert_eq!(resumed.status, 202, "{}", resumed.body);
    assert_eq!(
        resumed.body["error"],
        serde_json::Value::Null,
        "{}",
        resumed.body
    );
    let run = host.result("slow", WAIT).await?;
    assert_eq!(run["status"], "CANCELLED", "{run}");
    // Resumed without one (the module has none): it finishes.
    let resumed = client.run_action("slow", "resume").await?;
    assert_eq!(resumed.status, 202, "{}", resumed.body);
    assert_eq!(
        resumed.body["deadline"],
        serde_json::Value::Null,
        "{}",
        resumed.body
    );
    let run = host.result("slow", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["error"], serde_json::Value::Null, "{run}");
    Ok(())
}

#[tokio::test]
async fn resumes_do_not_count_as_recoveries() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let args = ["--max-recovery-attempts", "1", "--park-after-ms", "600000"];
    let host = Host::start_with_examples(dir.path(), &args).await?;
    let client = &host.client;
    client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 600_000}),
            Some("op"),
        )
        .await?;
    assert_eq!(client.event("op", "step1", 30_000).await?.status, 200);
    for _ in 0..2 {
        assert_eq!(client.run_action("op", "cancel").await?.status, 200);
        assert_eq!(host.result("op", WAIT).await?["status"], "CANCELLED");
        assert_eq!(client.run_action("op", "resume").await?.status, 202);
    }
    // A crash now is the run's first recovery, within the limit of one.
    host.kill().await?;
    let host = Host::start(dir.path(), &args).await?;
    let run = host.client.status("op").await?.body;
    assert_eq!(run["status"], "PENDING", "{run}");
    assert_eq!(
        run["attempts"], 2,
        "its start (or last resume) and one recovery: {run}"
    );
    Ok(())
}

#[tokio::test]
async fn runs_a_filter_selects_are_cancelled_and_resumed_in_bulk() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;
    for id in ["inc-1", "inc-2", "inc-3", "keep-1"] {
        client
            .start(
                "steps",
                "steps_with_pause",
                json!({"pause_ms": 600_000}),
                Some(id),
            )
            .await?;
    }
    let status = async |id: &str| -> anyhow::Result<String> {
        Ok(client.status(id).await?.body["status"]
            .as_str()
            .unwrap()
            .to_owned())
    };
    // A page at a time: `more` says others match.
    let first = client
        .post_json("/v1/bulk/cancel?id_prefix=inc-&limit=2", &json!({}))
        .await?;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["cancelled"].as_array().unwrap().len(), 2);
    assert_eq!(first.body["more"], true);
    let rest = client
        .post_json("/v1/bulk/cancel?id_prefix=inc-", &json!({"tree": false}))
        .await?;
    assert_eq!(
        rest.body["cancelled"].as_array().unwrap().len(),
        1,
        "{}",
        rest.body
    );
    assert_eq!(rest.body["more"], false);
    for id in ["inc-1", "inc-2", "inc-3"] {
        assert_eq!(status(id).await?, "CANCELLED");
    }
    assert_eq!(status("keep-1").await?, "PENDING");

    let resumed = client
        .post_json(
            "/v1/bulk/resume?id_prefix=inc-",
            &json!({"timeout_ms": 600_000}),
        )
        .await?;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    let mut ids: Vec<&str> = resumed.body["resumed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["inc-1", "inc-2", "inc-3"]);
    for id in ["inc-1", "inc-2", "inc-3"] {
        assert_eq!(status(id).await?, "PENDING");
        assert!(client.status(id).await?.body["deadline"].is_string());
    }

    // Mistakes change nothing and say what is accepted.
    for (path, body) in [
        ("/v1/bulk/cancel", json!({})),
        ("/v1/bulk/cancel?limit=5", json!({})),
        ("/v1/bulk/cancel?id_prefix=inc-&status=SUCCESS", json!({})),
        ("/v1/bulk/cancel?id_prefix=inc-&cursor=00", json!({})),
        ("/v1/bulk/cancel?id_prefix=inc-", json!({"timeout_ms": 5})),
        ("/v1/bulk/resume?id_prefix=inc-", json!({"tree": true})),
        ("/v1/bulk/resume?id_prefix=inc-", json!({"nope": 1})),
    ] {
        let refused = client.post_json(path, &body).await?;
        assert_eq!(refused.status, 400, "{path} {body}: {}", refused.body);
    }
    for id in ["inc-1", "inc-2", "inc-3", "keep-1"] {
        assert_eq!(status(id).await?, "PENDING");
    }
    Ok(())
}
