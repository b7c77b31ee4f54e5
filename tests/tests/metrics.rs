//! `GET /metrics`, end to end: after real runs over HTTP the OpenMetrics
//! text counts them by module, workflow and status, times their host calls,
//! instantiations and commits, counts requests by route template, and
//! carries no run id; open from loopback, and from elsewhere only with the
//! admin or the metrics token.

use std::collections::HashMap;
use std::time::Duration;

use cairn_tests::{Client, Host, examples};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// Each sample line of an OpenMetrics text: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn sample(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series}"))
}

#[tokio::test]
async fn metrics_count_runs_host_calls_commits_and_requests() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_deploying(dir.path(), &[], &[("steps", examples::STEPS)]).await?;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let started = host
            .client
            .start("steps", "steps_workflow", json!(null), None)
            .await?;
        assert_eq!(started.status, 202, "{}", started.body);
        ids.push(started.body["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        assert_eq!(host.result(id, WAIT).await?["status"], "SUCCESS");
    }
    // A run that fails, and a long-poll woken by a run's end.
    let failing = host
        .client
        .start("steps", "steps_with_pause", json!("not an object"), None)
        .await?;
    let failing = failing.body["id"].as_str().unwrap().to_owned();
    assert_eq!(host.result(&failing, WAIT).await?["status"], "ERROR");
    let paused = host
        .client
        .start("steps", "steps_with_pause", json!({"pause_ms": 300}), None)
        .await?;
    let paused = paused.body["id"].as_str().unwrap().to_owned();
    let polled = host
        .client
        .get(&format!("/v1/workflows/{paused}/result?timeout_ms=30000"))
        .await?;
    assert_eq!(polled.body["status"], "SUCCESS", "{}", polled.body);

    let (status, text) = host.client.get_text("/metrics").await?;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    let all = samples(&text);
    let steps = r#"module="steps",workflow="steps_workflow""#;
    assert_eq!(
        sample(&all, &format!("cairn_runs_started_total{{{steps}}}")),
        5.0
    );
    assert_eq!(
        sample(
            &all,
            &format!(r#"cairn_runs_finished_total{{{steps},status="SUCCESS"}}"#)
        ),
        5.0
    );
    assert_eq!(
        sample(
            &all,
            r#"cairn_runs_finished_total{module="steps",workflow="steps_with_pause",status="ERROR"}"#
        ),
        1.0
    );
    // Each steps_workflow run sets two events; the paused one sleeps.
    assert!(
        sample(
            &all,
            r#"cairn_host_call_duration_seconds_count{kind="set-event"}"#
        ) >= 10.0
    );
    assert!(
        sample(
            &all,
            r#"cairn_host_call_duration_seconds_count{kind="sleep"}"#
        ) >= 1.0
    );
    assert!(sample(&all, "cairn_instantiation_duration_seconds_count") >= 7.0);
    assert!(
        sample(
            &all,
            r#"cairn_compiled_module_lookups_total{result="memory"}"#
        ) >= 7.0
    );
    let writes = sample(&all, "cairn_journal_writes_total");
    let commits = sample(&all, "cairn_commits_total");
    assert!(
        writes >= commits && commits > 0.0,
        "{writes} writes, {commits} commits"
    );
    assert_eq!(sample(&all, "cairn_commit_batch_size_count"), commits);
    assert!(sample(&all, "cairn_commit_duration_seconds_count") > 0.0);
    assert!(sample(&all, "cairn_wake_up_latency_seconds_count") >= 1.0);
    assert_eq!(
        sample(
            &all,
            r#"cairn_http_requests_total{method="POST",route="/v1/workflows",status="202"}"#
        ),
        7.0
    );
    assert!(
        sample(
            &all,
            r#"cairn_http_request_duration_seconds_count{method="GET",route="/v1/workflows/{id}/result"}"#
        ) >= 1.0
    );
    assert_eq!(sample(&all, r#"cairn_runs{state="executing"}"#), 0.0);
    assert_eq!(sample(&all, r#"cairn_runs{state="parked"}"#), 0.0);
    assert_eq!(sample(&all, r#"cairn_open_waits{kind="poll"}"#), 0.0);
    // On PostgreSQL the host hears its own commits' notifications (events
    // and ends) and times them; on SQLite nothing is notified.
    let lag = sample(&all, "cairn_notification_lag_seconds_count");
    if cairn_tests::on_postgres() {
        assert!(lag >= 10.0, "{lag} notifications timed");
    } else {
        assert_eq!(lag, 0.0);
    }
    for id in ids.iter().chain([&failing, &paused]) {
        assert!(!text.contains(id.as_str()), "run id {id} in a label");
    }
    Ok(())
}

/// An address of this machine other than loopback.
fn outside_address() -> anyhow::Result<String> {
    let output = std::process::Command::new("hostname").arg("-I").output()?;
    String::from_utf8(output.stdout)?
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("this machine has no IPv4 address besides loopback"))
}

#[tokio::test]
async fn metrics_are_open_on_loopback_and_need_the_admin_or_metrics_token_elsewhere()
-> anyhow::Result<()> {
    const ADMIN: &str = "admin-token-0123456789";
    const INVOKE: &str = "invoke-token-0123456789";
    const SCRAPER: &str = "metrics-token-0123456789";
    let dir = tempfile::tempdir()?;
    let host = Host::start_listening(
        dir.path(),
        "0.0.0.0:0",
        &[
            "--admin-token",
            ADMIN,
            "--invoke-token",
            INVOKE,
            "--metrics-token",
            SCRAPER,
        ],
    )
    .await?;
    let (status, text) = host.client.get_text("/metrics").await?;
    assert_eq!(status, 200, "loopback needs no token: {text}");

    let port = host.url.rsplit(':').next().unwrap();
    let outside = Client::new(&format!("http://{}:{port}", outside_address()?))?;
    let (status, text) = outside.get_text("/metrics").await?;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("--metrics-token"), "{text}");
    let (status, _) = outside.with_token(INVOKE).get_text("/metrics").await?;
    assert_eq!(status, 401, "an invoke token does not read metrics");
    for token in [SCRAPER, ADMIN] {
        let (status, text) = outside.with_token(token).get_text("/metrics").await?;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("cairn_http_requests_total"), "{text}");
    }
    // The metrics token opens nothing else.
    let runs = outside.with_token(SCRAPER).get("/v1/workflows").await?;
    assert_eq!(runs.status, 401, "{}", runs.body);
    Ok(())
}
