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

/// Language runtimes import the WASI file system whether or not the
/// program uses it: such a guest deploys, and finds no file to read.
#[tokio::test]
async fn a_guest_that_imports_the_file_system_finds_no_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let reply = host
        .client
        .deploy("reader", examples::bytes(examples::HOSTILE_FS))
        .await?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "the host's secret")?;
    for path in [secret.to_str().unwrap(), "/etc/passwd", "secret.txt", "."] {
        let id = format!("read-{}", path.len());
        host.client
            .start("reader", "read_secrets", json!(path), Some(&id))
            .await?;
        let run = host.result(&id, Duration::from_secs(30)).await?;
        assert_eq!(run["status"], "ERROR", "{path}: {run}");
        assert!(!run.to_string().contains("the host's secret"), "{run}");
    }
    Ok(())
}

/// An upload whose imports the host cannot serve is refused before it is
/// compiled, naming each import; bytes already stored are not compiled
/// again.
#[tokio::test]
async fn uploads_are_checked_before_compiling_and_compiled_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let steps = examples::bytes(examples::STEPS);
    for name in ["steps", "steps-again", "steps"] {
        let reply = host.client.deploy(name, steps.clone()).await?;
        assert!(reply.status.is_success(), "{}", reply.body);
    }
    let compiles = host.log_contents().matches("compiling an upload").count();
    assert_eq!(compiles, 1, "{}", host.log_contents());

    let refused = host
        .client
        .deploy(
            "keyvalue",
            wat::parse_str(r#"(component (import "wasi:keyvalue/store@0.2.0" (func)))"#)?,
        )
        .await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.error_code(), Some("wrong_world"));
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("wasi:keyvalue/store@0.2.0: the host has no implementation of it"),
        "{message}"
    );
    assert_eq!(
        host.log_contents().matches("compiling an upload").count(),
        1,
        "a refused upload was compiled"
    );
    assert_eq!(host.client.get("/v1/modules/keyvalue").await?.status, 404);
    Ok(())
}
