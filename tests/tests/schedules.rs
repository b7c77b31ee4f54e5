//! Schedules, end to end: a workflow started on every tick of a cron
//! expression with seconds, one run per tick named `<schedule>@<tick>`
//! with the tick in its input; pause, resume, a tick by hand, a backfill;
//! the overlap policies; ticks missed while the host was down caught up
//! within the window and skipped past it. (Two hosts firing one schedule:
//! `multi_host.rs`.)

use std::time::{Duration, SystemTime};

use cairn_tests::{Host, Reply, examples, now_ms};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

async fn host_with_examples(dir: &std::path::Path) -> anyhow::Result<Host> {
    Host::start_deploying(
        dir,
        &[],
        &[
            ("approvals", examples::APPROVALS),
            ("steps", examples::STEPS),
        ],
    )
    .await
}

async fn put_schedule(host: &Host, name: &str, body: Value) -> anyhow::Result<Reply> {
    Ok(host
        .client
        .put_json(&format!("/v1/schedules/{name}"), &body)
        .await?)
}

/// The runs of schedule `name` (their ids start with `name@`).
pub async fn ticks_of(host: &Host, name: &str) -> anyhow::Result<Vec<Value>> {
    let listed = host
        .client
        .get(&format!("/v1/workflows?id_prefix={name}@&limit=1000"))
        .await?
        .body;
    Ok(listed["workflows"].as_array().cloned().unwrap_or_default())
}

#[tokio::test]
async fn a_schedule_starts_one_run_per_tick_with_the_tick_in_its_input() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_examples(dir.path()).await?;
    let created = put_schedule(
        &host,
        "every-second",
        json!({"module": "steps", "workflow": "steps_with_pause", "cron": "* * * * * *",
               "input": {"pause_ms": 0}}),
    )
    .await?;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["overlap"], "skip");
    assert!(created.body["next_tick"].is_string(), "{}", created.body);
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let paused = host
        .client
        .post_json("/v1/schedules/every-second/pause", &json!({}))
        .await?;
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!(paused.body["paused"], true);
    let runs = ticks_of(&host, "every-second").await?;
    assert!(
        (4..=6).contains(&runs.len()),
        "{} runs in 4.5 s",
        runs.len()
    );
    for run in &runs {
        let id = run["id"].as_str().unwrap();
        let tick = id.strip_prefix("every-second@").unwrap();
        assert_eq!(run["input"]["scheduled_at"], tick, "{run}");
        assert_eq!(
            run["input"]["pause_ms"], 0,
            "the schedule's input, with the tick"
        );
        assert_eq!(run["input"]["schedule"], "every-second");
        assert_eq!(host.result(id, WAIT).await?["status"], "SUCCESS");
    }
    // Paused: no more ticks.
    let count = ticks_of(&host, "every-second").await?.len();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(ticks_of(&host, "every-second").await?.len(), count);

    // By hand, once; and a backfill of a past range, each tick once.
    let fired = host
        .client
        .post_json("/v1/schedules/every-second/trigger", &json!({}))
        .await?;
    assert_eq!(fired.status, 202, "{}", fired.body);
    let fired_id = fired.body["id"].as_str().unwrap().to_owned();
    assert_eq!(host.result(&fired_id, WAIT).await?["status"], "SUCCESS");
    let from = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let backfill = json!({"from": from, "to": from + 5_000});
    let filled = host
        .client
        .post_json("/v1/schedules/every-second/backfill", &backfill)
        .await?;
    assert_eq!(filled.status, 202, "{}", filled.body);
    assert_eq!(
        filled.body["started"],
        json!([
            "every-second@2026-01-01T00:00:00Z",
            "every-second@2026-01-01T00:00:01Z",
            "every-second@2026-01-01T00:00:02Z",
            "every-second@2026-01-01T00:00:03Z",
            "every-second@2026-01-01T00:00:04Z"
        ])
    );
    let again = host
        .client
        .post_json("/v1/schedules/every-second/backfill", &backfill)
        .await?;
    assert_eq!(again.status, 202);
    assert_eq!(
        ticks_of(&host, "every-second").await?.len(),
        count + 1 + 5,
        "a tick backfilled twice starts once"
    );

    let resumed = host
        .client
        .post_json("/v1/schedules/every-second/resume", &json!({}))
        .await?;
    assert_eq!(resumed.body["paused"], false);
    let bad = put_schedule(
        &host,
        "bad",
        json!({"module": "steps", "workflow": "steps_workflow", "cron": "every minute"}),
    )
    .await?;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let zone = put_schedule(
        &host,
        "bad",
        json!({"module": "steps", "workflow": "steps_workflow", "cron": "* * * * *", "timezone": "Mars/Base"}),
    )
    .await?;
    assert_eq!(zone.status, 400, "{}", zone.body);
    let unknown = put_schedule(
        &host,
        "bad",
        json!({"module": "steps", "workflow": "nope", "cron": "* * * * *"}),
    )
    .await?;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    Ok(())
}

#[tokio::test]
async fn overlap_policies_skip_buffer_or_cancel_a_run_still_going() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_examples(dir.path()).await?;
    // Each run waits for a decision that never comes: it is still going at
    // the next tick.
    for (name, overlap) in [
        ("skipping", "skip"),
        ("buffering", "buffer_one"),
        ("cancelling", "cancel_running"),
    ] {
        let created = put_schedule(
            &host,
            name,
            json!({"module": "approvals", "workflow": "approval", "cron": "* * * * * *",
                   "input": {"subject": name}, "overlap": overlap}),
        )
        .await?;
        assert_eq!(created.status, 201, "{}", created.body);
    }
    tokio::time::sleep(Duration::from_millis(3_600)).await;
    for name in ["skipping", "buffering", "cancelling"] {
        host.client
            .post_json(&format!("/v1/schedules/{name}/pause"), &json!({}))
            .await?;
    }
    let statuses = |runs: &[Value]| -> Vec<String> {
        let mut statuses: Vec<String> = runs
            .iter()
            .map(|r| r["status"].as_str().unwrap().to_owned())
            .collect();
        statuses.sort();
        statuses
    };
    let skipping = ticks_of(&host, "skipping").await?;
    assert_eq!(statuses(&skipping), ["PENDING"], "later ticks skipped");
    let buffering = ticks_of(&host, "buffering").await?;
    assert_eq!(
        statuses(&buffering),
        ["ENQUEUED", "PENDING"],
        "one running, one waiting, the rest skipped"
    );
    let cancelling = ticks_of(&host, "cancelling").await?;
    let cancelled = statuses(&cancelling);
    assert!(cancelled.len() >= 3, "{cancelled:?}");
    assert_eq!(cancelled.iter().filter(|s| *s == "PENDING").count(), 1);
    assert!(
        cancelled
            .iter()
            .filter(|s| *s != "PENDING")
            .all(|s| s == "CANCELLED")
    );
    Ok(())
}

#[tokio::test]
async fn ticks_missed_while_the_host_was_down_follow_the_catch_up_window() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_examples(dir.path()).await?;
    for (name, catch_up_ms) in [("caught-up", 60_000), ("let-go", 0)] {
        put_schedule(
            &host,
            name,
            json!({"module": "steps", "workflow": "steps_with_pause", "cron": "* * * * * *",
                   "input": {"pause_ms": 0}, "overlap": "allow_all", "catch_up_ms": catch_up_ms}),
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    host.kill().await?;
    let down_from = now_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let host = Host::start(dir.path(), &[]).await?;
    let up_at = now_ms();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let missed = |runs: &[Value]| {
        runs.iter()
            .filter(|run| {
                let tick = run["input"]["scheduled_at"].as_str().unwrap();
                let at = humantime::parse_rfc3339(tick).unwrap();
                let ms = at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                ms > down_from && ms < up_at - 2_500
            })
            .count()
    };
    let caught = ticks_of(&host, "caught-up").await?;
    assert!(
        missed(&caught) >= 3,
        "the missed ticks were fired: {caught:?}"
    );
    let let_go = ticks_of(&host, "let-go").await?;
    assert_eq!(missed(&let_go), 0, "ticks past the window were skipped");
    Ok(())
}

/// Deploy the steps example as module `steps` with `manifest`.
async fn deploy_steps(host: &Host, manifest: &Value) -> anyhow::Result<Reply> {
    Ok(host
        .client
        .deploy_with_routes(
            "steps",
            examples::bytes(examples::STEPS),
            Some(manifest.to_string().into_bytes()),
        )
        .await?)
}

#[tokio::test]
async fn a_module_declares_its_schedules_in_its_manifest() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let declared = json!({"routes": [], "schedules": [
        {"name": "declared", "workflow": "steps_with_pause", "cron": "* * * * * *",
         "input": {"pause_ms": 0}, "overlap": "allow_all"}
    ]});
    let deployed = deploy_steps(&host, &declared).await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    assert_eq!(deployed.body["schedules"][0]["name"], "declared");
    let schedule = host.client.get("/v1/schedules/declared").await?;
    assert_eq!(schedule.status, 200, "{}", schedule.body);
    assert_eq!(schedule.body["module"], "steps");
    assert_eq!(schedule.body["overlap"], "allow_all");
    // It fires like one put over the API.
    let deadline = tokio::time::Instant::now() + WAIT;
    let first = loop {
        if let Some(run) = ticks_of(&host, "declared").await?.first() {
            break run.clone();
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no tick fired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(first["input"]["schedule"], "declared", "{first}");

    // A broken schedule refuses the whole deployment and keeps the old one.
    let broken = json!({"routes": [], "schedules": [
        {"name": "declared", "workflow": "steps_with_pause", "cron": "every second"}
    ]});
    let refused = deploy_steps(&host, &broken).await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("schedule \"declared\"") && message.contains("five fields"),
        "{message}"
    );
    let kept = host.client.get("/v1/schedules/declared").await?;
    assert_eq!(kept.body["cron"], "* * * * * *", "{}", kept.body);
    let unknown = json!({"routes": [], "schedules": [
        {"name": "other", "workflow": "no_such_workflow", "cron": "* * * * *"}
    ]});
    assert_eq!(deploy_steps(&host, &unknown).await?.status, 400);

    // A schedule made over the API stays when the module is redeployed;
    // the declared one goes once the manifest no longer declares it.
    let by_api = put_schedule(
        &host,
        "by-api",
        json!({"module": "steps", "workflow": "steps_workflow", "cron": "0 0 3 * * *"}),
    )
    .await?;
    assert_eq!(by_api.status, 201, "{}", by_api.body);
    let redeployed = deploy_steps(&host, &json!({"routes": []})).await?;
    assert!(redeployed.status.is_success(), "{}", redeployed.body);
    assert_eq!(host.client.get("/v1/schedules/declared").await?.status, 404);
    assert_eq!(host.client.get("/v1/schedules/by-api").await?.status, 200);
    Ok(())
}
