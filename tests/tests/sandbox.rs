//! The sandbox holds: misbehaving guests end `ERROR` with a message naming
//! what they did, while the host keeps serving everyone else and gives their
//! memory back.

use std::time::Duration;

use cairn_tests::{Host, examples};
use serde_json::json;

/// Each hostile workflow and a piece of the error its run must end with.
const HOSTILE: &[(&str, &str)] = &[
    (
        "spin",
        "without calling the host, past the limit of 1000 ms",
    ),
    ("memory_bomb", "past the limit of 67108864 bytes (64 MiB)"),
    ("recursion", "call stack exhausted"),
    ("giant_event", "the limit is 1048576 bytes"),
    (
        "event_flood",
        "reached its limit of 200 journaled operations",
    ),
    ("trap_mid_sequence", "index out of bounds"),
];

#[tokio::test]
async fn hostile_guests_fail_alone_and_the_host_recovers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(
        dir.path(),
        &["--cpu-slice-ms", "1000", "--max-journal-entries", "200"],
    )
    .await?;
    let client = &host.client;
    let deployed = client
        .deploy("hostile", examples::bytes(examples::HOSTILE))
        .await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);

    // Baseline: the host after it has run a workflow.
    client
        .start("steps", "steps_workflow", json!(null), Some("warm-up"))
        .await?;
    host.result("warm-up", Duration::from_secs(10)).await?;
    let baseline = host.resident_bytes()?;

    for (workflow, expected) in HOSTILE {
        let id = format!("hostile-{workflow}");
        let started = client
            .start("hostile", workflow, json!(null), Some(&id))
            .await?;
        assert_eq!(started.status, 202, "{}", started.body);

        // Meanwhile, everyone else is served.
        let normal = format!("normal-during-{workflow}");
        client
            .start("steps", "steps_workflow", json!(null), Some(&normal))
            .await?;
        let run = host.result(&normal, Duration::from_secs(10)).await?;
        assert_eq!(run["status"], "SUCCESS", "{workflow}: {run}");
        assert_eq!(client.get("/healthz").await?.status, 200);

        let run = host.result(&id, Duration::from_secs(30)).await?;
        assert_eq!(run["status"], "ERROR", "{workflow}: {run}");
        let error = run["error"].as_str().unwrap();
        assert!(error.contains(expected), "{workflow}: {error}");
    }

    // What the trapping guest published before the trap stays; nothing after.
    let events = client.events("hostile-trap_mid_sequence").await?;
    assert_eq!(events.body, json!({"a": 1, "b": 2}));

    let after = host.resident_bytes()?;
    assert!(
        after < baseline + 32 * 1024 * 1024,
        "resident memory went from {baseline} to {after} bytes"
    );
    Ok(())
}

#[tokio::test]
async fn a_guest_that_imports_the_file_system_is_refused_at_upload() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let reply = host
        .client
        .deploy("reader", examples::bytes(examples::HOSTILE_FS))
        .await?;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.error_code(), Some("wrong_world"));
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("wasi:filesystem/"), "{message}");
    assert!(message.contains("no file system, no sockets"), "{message}");
    assert_eq!(host.client.get("/v1/modules/reader").await?.status, 404);
    Ok(())
}
