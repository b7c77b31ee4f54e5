//! Retention and backups, end to end. `--retention` deletes finished runs
//! past the window with everything they hold, a tree with a run still
//! going not at all, and module versions nothing needs, while other runs
//! go on; `cairn backup` copies the database of a host under load, and a
//! host started on the copy recovers the runs that were waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use cairn_tests::{Client, Host, cairn_binary, examples, now_ms, on_postgres, seed};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(60);

/// Seed operations from 4 clients until `stop` is set; their count.
fn load(client: &Client, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<anyhow::Result<u64>>> {
    (0..4)
        .map(|_| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut done = 0;
                while !stop.load(Ordering::Relaxed) {
                    seed::operation(&client).await?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect()
}

async fn stop_load(
    stop: &Arc<AtomicBool>,
    tasks: Vec<JoinHandle<anyhow::Result<u64>>>,
) -> anyhow::Result<u64> {
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total)
}

async fn started(
    client: &Client,
    module: &str,
    workflow: &str,
    input: Value,
) -> anyhow::Result<String> {
    let reply = client.start(module, workflow, input, None).await?;
    anyhow::ensure!(reply.status == 202, "{}", reply.body);
    Ok(reply.body["id"].as_str().unwrap().to_owned())
}

/// The value of event `key` of run `id`, once it is set.
async fn event_value(client: &Client, id: &str, key: &str) -> anyhow::Result<Value> {
    let event = client.event(id, key, 30_000).await?;
    anyhow::ensure!(event.status == 200, "{key} of {id}: {}", event.body);
    Ok(event.body["value"].clone())
}

async fn exists(client: &Client, id: &str) -> anyhow::Result<bool> {
    let status = client.status(id).await?.status;
    anyhow::ensure!(status == 200 || status == 404, "{id}: {status}");
    Ok(status == 200)
}

#[tokio::test]
async fn retention_deletes_finished_runs_past_the_window_with_their_children_under_load()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_deploying(
        dir.path(),
        &["--retention", "3s"],
        &[
            ("steps", examples::STEPS),
            ("fanout", examples::FANOUT),
            ("approvals", examples::APPROVALS),
            ("scratch", examples::FAULTY),
        ],
    )
    .await?;
    let client = &host.client;
    // Finished, to go: runs with events and journals, and a whole tree.
    let mut doomed = Vec::new();
    for _ in 0..3 {
        let id = started(client, "steps", "steps_workflow", json!(null)).await?;
        assert_eq!(host.result(&id, WAIT).await?["status"], "SUCCESS");
        doomed.push(id);
    }
    let tree = started(client, "fanout", "fan_out", json!({"items": [2, 3]})).await?;
    assert_eq!(host.result(&tree, WAIT).await?["output"], json!([4, 9]));
    let children = event_value(client, &tree, "children").await?;
    doomed.push(tree);
    for child in children.as_array().unwrap() {
        doomed.push(child.as_str().unwrap().to_owned());
    }
    // To stay: a run still waiting, and a cancelled parent whose child
    // still works (deleted with it or not at all).
    let waiting = started(
        client,
        "approvals",
        "approval",
        json!({"subject": "kept", "timeout_ms": 600_000}),
    )
    .await?;
    let parent = started(
        client,
        "fanout",
        "fan_out",
        json!({"items": [5], "work_ms": 600_000}),
    )
    .await?;
    let child = event_value(client, &parent, "children").await?[0]
        .as_str()
        .unwrap()
        .to_owned();
    let cancelled = client
        .post_json(
            &format!("/v1/workflows/{parent}/cancel"),
            &json!({"tree": false}),
        )
        .await?;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    // A version replaced and used by no run: it goes, with its bytes
    // (no other module has them) and its compiled file.
    let replaced = client.get("/v1/modules/scratch").await?.body["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let redeployed = client
        .deploy("scratch", examples::bytes(examples::APPROVALS))
        .await?;
    assert!(redeployed.status.is_success(), "{}", redeployed.body);

    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(client, &stop);
    let deadline = Instant::now() + WAIT;
    for id in &doomed {
        while exists(client, id).await? {
            anyhow::ensure!(Instant::now() < deadline, "run {id} was not deleted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let events = client.events(&doomed[0]).await?;
    assert_eq!(
        events.status, 404,
        "its events went with it: {}",
        events.body
    );
    let operations = stop_load(&stop, tasks).await?;
    assert!(operations > 0);

    for id in [&waiting, &parent, &child] {
        assert!(exists(client, id).await?, "run {id} was deleted");
    }
    // Exactly what it should: every finished run left ended within the
    // window (and a pass of slack); the load's latest runs are all here.
    let listed = client.get("/v1/workflows?limit=1000").await?.body;
    let runs = listed["workflows"].as_array().unwrap();
    let now = now_ms();
    let mut recent = 0;
    for run in runs {
        let status = run["status"].as_str().unwrap();
        if status == "PENDING" || status == "ENQUEUED" {
            continue;
        }
        let ended = humantime::parse_rfc3339(run["updated_at"].as_str().unwrap())?
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_millis() as i64;
        if run["id"] != json!(parent) {
            assert!(
                now - ended < 3_000 + 2_500,
                "{run} should have been deleted"
            );
        }
        if now - ended < 1_000 {
            recent += 1;
        }
    }
    assert!(recent > 0, "the load's latest runs were kept");

    let deadline = Instant::now() + WAIT;
    loop {
        let module = client.get("/v1/modules/scratch").await?.body;
        if module["versions"].as_array().unwrap().len() == 1 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "version {replaced} was kept: {module}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let digest = replaced.strip_prefix("sha256:").unwrap();
    let compiled: Vec<_> = std::fs::read_dir(dir.path().join("compiled"))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(digest))
        .collect();
    assert!(compiled.is_empty(), "its compiled file was deleted");
    Ok(())
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_to_a_host_that_recovers_its_runs() -> anyhow::Result<()>
{
    if on_postgres() {
        // A copy of SQLite's file; this ran in the SQLite pass (the README
        // says how to back up PostgreSQL).
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source");
    let host = Host::start_deploying(
        &source,
        &[],
        &[
            ("steps", examples::STEPS),
            ("approvals", examples::APPROVALS),
        ],
    )
    .await?;
    let mut waiting = Vec::new();
    for n in 0..10 {
        let id = started(
            &host.client,
            "approvals",
            "approval",
            json!({"subject": format!("s{n}"), "timeout_ms": 600_000}),
        )
        .await?;
        event_value(&host.client, &id, "status").await?;
        waiting.push(id);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&host.client, &stop);
    // Some of the load lands before the copy.
    host.await_health(WAIT, |health| {
        health["store"]["commits"].as_u64() > Some(200)
    })
    .await?;
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored)?;
    let output = tokio::process::Command::new(cairn_binary())
        .arg("backup")
        .arg(restored.join("cairn.db"))
        .arg("--data-dir")
        .arg(&source)
        .output()
        .await?;
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("backed up"), "{printed}");
    let operations = stop_load(&stop, tasks).await?;
    assert!(operations > 0);
    host.kill().await?;

    let host = Host::start(&restored, &[]).await?;
    for id in &waiting {
        let sent = host
            .client
            .post_json(
                &format!("/v1/workflows/{id}/messages"),
                &json!({"topic": "decision", "message": {"approved": true, "by": "restore"}}),
            )
            .await?;
        assert_eq!(sent.status, 202, "{}", sent.body);
    }
    for id in &waiting {
        let result = host.result(id, WAIT).await?;
        assert_eq!(result["status"], "SUCCESS", "{result}");
        assert_eq!(result["output"]["by"], "restore");
    }
    // The copy is a database like any: a start on the restored host works.
    let id = started(&host.client, "steps", "steps_workflow", json!(null)).await?;
    assert_eq!(host.result(&id, WAIT).await?["status"], "SUCCESS");
    Ok(())
}
