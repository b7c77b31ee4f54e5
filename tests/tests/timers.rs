//! Durable sleep: the wake-up time is journaled before the run sleeps.
//! (The crash test in `crash.rs` shows a recovered run sleeping only what
//! is left.)

use std::time::{Duration, SystemTime};

use cairn_tests::{Host, examples};
use serde_json::json;

fn instant(value: &serde_json::Value) -> SystemTime {
    humantime::parse_rfc3339(value.as_str().expect("a timestamp")).expect("RFC 3339")
}

#[tokio::test]
async fn a_reminder_sleeps_then_speaks_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    host.client
        .deploy("approvals", examples::bytes(examples::APPROVALS))
        .await?;
    host.client
        .start(
            "approvals",
            "reminder",
            json!({"message": "stand up", "after_ms": 400}),
            Some("r-1"),
        )
        .await?;
    let run = host.result("r-1", Duration::from_secs(30)).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["output"], "stand up");

    let steps = host.client.get("/v1/workflows/r-1/steps").await?.body;
    let sleep = &steps["steps"][1];
    assert_eq!(sleep["kind"], "sleep");
    assert_eq!(sleep["name"], "400");
    let slept = instant(&sleep["deadline"]).duration_since(instant(&sleep["recorded_at"]))?;
    assert_eq!(
        slept,
        Duration::from_millis(400),
        "the wake-up time is journaled"
    );
    // It woke no earlier than its deadline.
    let reminder = &steps["steps"][2];
    assert!(instant(&reminder["recorded_at"]) >= instant(&sleep["deadline"]));
    Ok(())
}
