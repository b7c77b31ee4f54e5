//! Forking a run: a new run gets the journal and event history before a
//! step, replays them without doing them again, and runs on from there.

use std::time::Duration;

use cairn_tests::{Host, examples};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn kinds_and_outcomes(steps: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap().to_owned(), s["outcome"].clone()))
        .collect()
}

#[tokio::test]
async fn a_fork_replays_what_came_before_its_step_and_runs_the_rest() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let client = &host.client;
    client
        .deploy("approvals", examples::bytes(examples::APPROVALS))
        .await?;
    // An approval decided by a message: journal = subject, status, recv, status.
    client
        .start(
            "approvals",
            "approval",
            json!({"subject": "s"}),
            Some("orig"),
        )
        .await?;
    host.expect_event("orig", "status", json!("awaiting-decision"))
        .await?;
    client
        .send_message(
            "orig",
            "decision",
            json!({"approved": true, "by": "ann"}),
            None,
        )
        .await?;
    host.result("orig", WAIT).await?;

    // From step 3 (after the recv): the decision is replayed from the
    // journal, though no message was ever sent to the fork.
    let forked = client
        .post_json(
            "/v1/workflows/orig/fork",
            &json!({"from_step": 3, "id": "fork-3"}),
        )
        .await?;
    assert_eq!(forked.status, 202, "{}", forked.body);
    assert_eq!(forked.headers["location"], "/v1/workflows/fork-3");
    let run = host.result("fork-3", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    // Its lineage: where it was forked from; the original has none.
    assert_eq!(run["forked_from"], "orig", "{run}");
    assert_eq!(
        client.status("orig").await?.body["forked_from"],
        json!(null)
    );
    assert_eq!(run["output"], json!({"approved": true, "by": "ann"}));
    let orig_steps = client.steps("orig").await?.body;
    let fork_steps = client.steps("fork-3").await?.body;
    assert_eq!(
        kinds_and_outcomes(&fork_steps),
        kinds_and_outcomes(&orig_steps)
    );
    // The copied entries are the original's, recorded when it ran them.
    assert_eq!(fork_steps["steps"][2], orig_steps["steps"][2]);
    assert_ne!(
        fork_steps["steps"][3]["recorded_at"],
        orig_steps["steps"][3]["recorded_at"]
    );
    assert_eq!(
        client.events("fork-3").await?.body,
        client.events("orig").await?.body
    );

    // From step 2 (before the recv): the fork waits for a decision of its own.
    client
        .post_json(
            "/v1/workflows/orig/fork",
            &json!({"from_step": 2, "id": "fork-2"}),
        )
        .await?;
    assert_eq!(
        client.event("fork-2", "status", 30_000).await?.body["value"],
        "awaiting-decision"
    );
    client
        .send_message(
            "fork-2",
            "decision",
            json!({"approved": false, "by": "bob"}),
            None,
        )
        .await?;
    let run = host.result("fork-2", WAIT).await?;
    assert_eq!(run["output"], json!({"approved": false, "by": "bob"}));

    // Mistakes.
    let taken = client
        .post_json(
            "/v1/workflows/orig/fork",
            &json!({"from_step": 0, "id": "fork-2"}),
        )
        .await?;
    assert_eq!(taken.status, 409, "{}", taken.body);
    let missing = client
        .post_json("/v1/workflows/nobody/fork", &json!({"from_step": 0}))
        .await?;
    assert_eq!(missing.status, 404, "{}", missing.body);
    let bad = client
        .post_json("/v1/workflows/orig/fork", &json!({"from": 0}))
        .await?;
    assert_eq!(bad.status, 400, "{}", bad.body);
    Ok(())
}
