//! The `cairn` command-line client against a running host.

use std::process::Output;

use cairn_tests::{Host, cairn_binary, examples};

async fn cairn(server: &str, args: &[&str]) -> anyhow::Result<Output> {
    let output = tokio::process::Command::new(cairn_binary())
        .args(args)
        .env("CAIRN_SERVER", server)
        .output()
        .await?;
    Ok(output)
}

fn stdout_json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test]
async fn deploy_start_event_and_status_from_the_command_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let url = host.url.as_str();

    let deployed = cairn(url, &["deploy", "steps", examples::STEPS]).await?;
    assert!(deployed.status.success(), "{deployed:?}");
    assert_eq!(stdout_json(&deployed)["name"], "steps");

    let started = cairn(url, &["start", "steps", "steps_workflow", "--id", "cli-1"]).await?;
    assert!(started.status.success(), "{started:?}");
    assert_eq!(stdout_json(&started)["id"], "cli-1");

    let event = cairn(url, &["event", "cli-1", "step2", "--timeout-ms", "10000"]).await?;
    assert!(event.status.success(), "{event:?}");
    assert_eq!(stdout_json(&event)["value"], "completed");

    let status = cairn(url, &["status", "cli-1"]).await?;
    assert!(status.status.success(), "{status:?}");
    assert_eq!(stdout_json(&status)["workflow"], "steps_workflow");

    // An error answer prints the error and fails the command.
    let missing = cairn(url, &["status", "nope"]).await?;
    assert!(!missing.status.success());
    assert_eq!(stdout_json(&missing)["error"]["code"], "run_not_found");
    let bad_input = cairn(
        url,
        &["start", "steps", "steps_workflow", "--input", "{oops"],
    )
    .await?;
    assert!(!bad_input.status.success());
    assert!(String::from_utf8_lossy(&bad_input.stderr).contains("--input must be JSON"));
    Ok(())
}

#[tokio::test]
async fn list_steps_and_send_from_the_command_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let url = host.url.as_str();
    let deployed = cairn(url, &["deploy", "approvals", examples::APPROVALS]).await?;
    assert!(deployed.status.success(), "{deployed:?}");
    let started = cairn(
        url,
        &[
            "start",
            "approvals",
            "collect",
            "--input",
            r#"{"count": 1}"#,
            "--id",
            "c",
        ],
    )
    .await?;
    assert!(started.status.success(), "{started:?}");

    let sent = cairn(url, &["send", "c", "item", "--message", r#"{"n": 1}"#]).await?;
    assert!(sent.status.success(), "{sent:?}");
    assert_eq!(stdout_json(&sent)["delivered"], true);
    host.result("c", std::time::Duration::from_secs(30)).await?;

    let steps = cairn(url, &["steps", "c"]).await?;
    assert!(steps.status.success(), "{steps:?}");
    assert_eq!(stdout_json(&steps)["steps"][1]["kind"], "recv");

    let listed = cairn(
        url,
        &["list", "--status", "SUCCESS", "--module", "approvals"],
    )
    .await?;
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(stdout_json(&listed)["workflows"][0]["id"], "c");
    Ok(())
}

#[tokio::test]
async fn queues_and_schedules_from_the_command_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let url = host.url.as_str();
    assert!(
        cairn(url, &["deploy", "steps", examples::STEPS])
            .await?
            .status
            .success()
    );

    let put = cairn(
        url,
        &[
            "queue",
            "put",
            "mail",
            "--concurrency",
            "2",
            "--rate-limit",
            "5",
            "--rate-period-ms",
            "1000",
        ],
    )
    .await?;
    assert!(put.status.success(), "{put:?}");
    let queue = stdout_json(&put);
    assert_eq!(
        (
            queue["concurrency"].clone(),
            queue["rate_limit"]["limit"].clone()
        ),
        (2.into(), 5.into())
    );
    let started = cairn(
        url,
        &[
            "start",
            "steps",
            "steps_workflow",
            "--id",
            "q-1",
            "--queue",
            "mail",
            "--delay-ms",
            "60000",
        ],
    )
    .await?;
    assert!(started.status.success(), "{started:?}");
    assert_eq!(stdout_json(&started)["status"], "ENQUEUED");
    let listed = cairn(url, &["list", "--queue", "mail", "--status", "ENQUEUED"]).await?;
    assert_eq!(stdout_json(&listed)["workflows"][0]["id"], "q-1");
    let busy = cairn(url, &["queue", "delete", "mail"]).await?;
    assert!(!busy.status.success());
    assert_eq!(stdout_json(&busy)["error"]["code"], "queue_busy");

    let schedule = cairn(
        url,
        &[
            "schedule",
            "put",
            "nightly",
            "--module",
            "steps",
            "--workflow",
            "steps_with_pause",
            "--cron",
            "0 3 * * *",
            "--timezone",
            "Europe/Paris",
            "--input",
            "{\"pause_ms\": 0}",
        ],
    )
    .await?;
    assert!(schedule.status.success(), "{schedule:?}");
    assert_eq!(stdout_json(&schedule)["timezone"], "Europe/Paris");
    let paused = cairn(url, &["schedule", "pause", "nightly"]).await?;
    assert_eq!(stdout_json(&paused)["paused"], true);
    let filled = cairn(
        url,
        &[
            "schedule",
            "backfill",
            "nightly",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-01-03T00:00:00Z",
        ],
    )
    .await?;
    assert!(filled.status.success(), "{filled:?}");
    // 03:00 in Paris is 02:00 UTC in winter.
    assert_eq!(
        stdout_json(&filled)["started"],
        serde_json::json!([
            "nightly@2026-01-01T02:00:00Z",
            "nightly@2026-01-02T02:00:00Z"
        ])
    );
    let listed = cairn(url, &["schedule", "list"]).await?;
    assert_eq!(stdout_json(&listed)["schedules"][0]["name"], "nightly");
    Ok(())
}
