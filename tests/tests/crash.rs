//! Crash recovery: SIGKILL the host while runs wait between their steps,
//! restart it on the same data directory, and every run finishes with each
//! effect journaled exactly once.

use std::time::{Duration, SystemTime};

use cairn_tests::Host;
use serde_json::json;

const RUNS: usize = 50;
const PAUSE_MS: u64 = 4000;
/// The runs wait in their instances, as the crash finds them: this test is
/// about recovering executions (`parking.rs` crashes parked runs).
const IN_INSTANCE: [&str; 2] = ["--park-after-ms", "600000"];

fn instant(value: &serde_json::Value) -> SystemTime {
    humantime::parse_rfc3339(value.as_str().expect("a timestamp")).expect("RFC 3339")
}

#[tokio::test]
async fn runs_interrupted_by_a_crash_finish_after_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &IN_INSTANCE).await?;
    let ids: Vec<String> = (0..RUNS).map(|i| format!("crash-{i}")).collect();
    for id in &ids {
        let started = host
            .client
            .start(
                "steps",
                "steps_with_pause",
                json!({"pause_ms": PAUSE_MS}),
                Some(id),
            )
            .await?;
        assert_eq!(started.status, 202, "{}", started.body);
    }
    // Every run is in the middle: step1 published, waiting for step2.
    for id in &ids {
        let step1 = host.client.event(id, "step1", 30_000).await?;
        assert_eq!(step1.status, 200, "{id}: {}", step1.body);
    }
    let before = host.client.get("/v1/workflows/crash-0/events").await?;
    assert_eq!(
        before.body,
        json!({"step1": "completed"}),
        "the crash comes before step2"
    );
    host.kill().await?;

    // Modules, runs and journals come back from the database alone.
    let host = Host::start(dir.path(), &IN_INSTANCE).await?;
    for id in &ids {
        let run = host.result(id, Duration::from_secs(60)).await?;
        assert_eq!(run["status"], "SUCCESS", "{id}: {run}");
        assert_eq!(run["attempts"], 2, "{id}: one recovery: {run}");

        let events = host.client.events(id).await?;
        assert_eq!(
            events.body,
            json!({"step1": "completed", "step2": "completed"}),
            "{id}"
        );

        let steps = host
            .client
            .get(&format!("/v1/workflows/{id}/steps"))
            .await?;
        let steps = steps.body["steps"].as_array().unwrap().clone();
        let calls: Vec<(String, String)> = steps
            .iter()
            .map(|s| {
                (
                    s["kind"].as_str().unwrap().into(),
                    s["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            calls,
            [
                ("set-event".into(), "step1".into()),
                ("sleep".into(), PAUSE_MS.to_string()),
                ("set-event".into(), "step2".into()),
            ],
            "{id}: each call journaled exactly once"
        );
        // The recovered wait kept its original deadline, set when the run
        // first reached it, rather than starting a new pause after the restart.
        let wait = &steps[1];
        let created = instant(&run["created_at"]);
        let deadline = instant(&wait["deadline"]);
        let finished = instant(&run["updated_at"]);
        let planned = deadline.duration_since(created)?;
        assert!(
            planned <= Duration::from_millis(PAUSE_MS + 2000),
            "{id}: deadline {planned:?} after creation"
        );
        let late = finished.duration_since(deadline).unwrap_or_default();
        assert!(
            late < Duration::from_millis(PAUSE_MS / 2),
            "{id}: finished {late:?} after its deadline"
        );
    }
    // The restarted host ran the module from its compiled form on disk.
    let log = host.log_contents();
    assert!(
        log.contains("loaded a compiled module from the cache"),
        "{log}"
    );
    assert!(!log.contains("compiling a module"), "{log}");
    assert!(
        host.log_contents().contains("recovered interrupted runs"),
        "{}",
        host.log_contents()
    );
    Ok(())
}
