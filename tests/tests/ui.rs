//! The run page (`/ui/runs/{id}`) in a real browser: headless Chromium opens
//! it, the page follows the run's events with `EventSource`, and the DOM it
//! ends with shows both steps of the seed and the run's end.
//!
//! Chromium is a requirement of the suite (`scripts/test.sh` installs it):
//! without it this test fails rather than skips.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use cairn_tests::Host;
use serde_json::json;

fn chromium() -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(
        std::env::var("CAIRN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    if !path.exists() {
        bail!(
            "{} is missing: install Debian's chromium (scripts/test.sh does) or set CAIRN_CHROMIUM",
            path.display()
        );
    }
    Ok(path)
}

/// Load `url` in headless Chromium and return the DOM once the page is
/// idle. Virtual time does not advance while a fetch is pending, so the
/// dump waits for the event stream to end.
async fn rendered_dom(url: &str) -> anyhow::Result<String> {
    let profile = tempfile::tempdir()?;
    let output = tokio::process::Command::new(chromium()?)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .context("chromium did not finish in 120 s")??;
    if !output.status.success() {
        bail!(
            "chromium failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

#[tokio::test]
async fn the_run_page_shows_both_steps_as_they_arrive() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let started = host
        .client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 300}),
            Some("page-1"),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);

    let dom = rendered_dom(&format!("{}/ui/runs/page-1", host.url)).await?;
    for expected in [
        r#"data-key="step1""#,
        r#"data-key="step2""#,
        r#"data-status="SUCCESS""#,
    ] {
        assert!(
            dom.contains(expected),
            "{expected} is not in the page: {dom}"
        );
    }
    let step1 = dom.find(r#"data-key="step1""#).unwrap();
    let step2 = dom.find(r#"data-key="step2""#).unwrap();
    assert!(step1 < step2, "the timeline is in write order: {dom}");
    Ok(())
}

#[tokio::test]
async fn the_run_page_takes_a_token_from_its_fragment() -> anyhow::Result<()> {
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
    let client = host.client.with_token("invoke-secret-0123456789");
    client
        .start("steps", "steps_workflow", json!(null), Some("page-2"))
        .await?;

    let without = rendered_dom(&format!("{}/ui/runs/page-2", host.url)).await?;
    assert!(!without.contains(r#"data-key="step1""#), "{without}");
    assert!(without.contains("disconnected"), "{without}");

    let with = rendered_dom(&format!(
        "{}/ui/runs/page-2#token=invoke-secret-0123456789",
        host.url
    ))
    .await?;
    assert!(with.contains(r#"data-key="step2""#), "{with}");
    assert!(with.contains(r#"data-status="SUCCESS""#), "{with}");
    Ok(())
}

#[tokio::test]
async fn the_run_page_shows_what_a_parked_run_waits_for() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &["--park-after-ms", "0"]).await?;
    let started = host
        .client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 4000}),
            Some("page-3"),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    host.await_health(Duration::from_secs(30), |health| health["parked_runs"] == 1)
        .await?;

    // The page ends with the run; what it showed while the run was parked
    // stays in its (then hidden) line.
    let dom = rendered_dom(&format!("{}/ui/runs/page-3", host.url)).await?;
    assert!(dom.contains(r#"data-status="SUCCESS""#), "{dom}");
    assert!(dom.contains(r#"data-parked="true""#), "{dom}");
    assert!(dom.contains("Waiting for sleep 4000"), "{dom}");
    Ok(())
}
