//! Past its concurrency limits the host queues runs up to a bound and then
//! answers 503 with Retry-After; it never crashes or queues without bound.

use std::time::Duration;

use cairn_tests::Host;
use serde_json::json;

#[tokio::test]
async fn runs_queue_for_an_instance_slot_then_starts_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(
        dir.path(),
        // The holder keeps its slot while it sleeps: it must not park.
        &[
            "--max-live-instances",
            "1",
            "--max-queued-runs",
            "1",
            "--park-after-ms",
            "600000",
        ],
    )
    .await?;
    let client = &host.client;
    let wait = Duration::from_secs(10);

    client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 1500}),
            Some("holder"),
        )
        .await?;
    host.await_health(wait, |h| h["live_instances"] == 1)
        .await?;
    let queued = client
        .start("steps", "steps_workflow", json!(null), Some("queued"))
        .await?;
    assert_eq!(queued.status, 202, "{}", queued.body);
    host.await_health(wait, |h| h["queued_runs"] == 1).await?;

    let refused = client
        .start("steps", "steps_workflow", json!(null), Some("refused"))
        .await?;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.error_code(), Some("overloaded"));
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(
        client.status("refused").await?.status,
        404,
        "a refused start stores nothing"
    );

    for id in ["holder", "queued"] {
        assert_eq!(host.result(id, wait).await?["status"], "SUCCESS");
    }
    let idle = host
        .await_health(wait, |h| h["live_instances"] == 0)
        .await?;
    assert_eq!(idle["queued_runs"], 0);
    Ok(())
}

#[tokio::test]
async fn long_polls_past_the_limit_get_503() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &["--max-pending-waits", "1"]).await?;
    let waiting = {
        let client = host.client.clone();
        tokio::spawn(async move { client.event("nobody", "never", 3_000).await })
    };
    host.await_health(Duration::from_secs(10), |h| h["pending_waits"] == 1)
        .await?;
    let refused = host.client.event("nobody", "never", 1_000).await?;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.error_code(), Some("overloaded"));
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(waiting.await??.error_code(), Some("event_not_set"));
    host.await_health(Duration::from_secs(10), |h| h["pending_waits"] == 0)
        .await?;
    Ok(())
}
