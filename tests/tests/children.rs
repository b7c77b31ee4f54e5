//! Child workflows: a fan-out starts a child per item and collects their
//! results; every child knows its parent; a crash of the host in the middle
//! starts no child twice and loses no result.

use std::time::Duration;

use cairn_tests::{Host, examples};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

async fn host_with_fanout(dir: &std::path::Path) -> anyhow::Result<Host> {
    let host = Host::start(dir, &[]).await?;
    let deployed = host
        .client
        .deploy("fanout", examples::bytes(examples::FANOUT))
        .await?;
    assert!(deployed.status.is_success(), "{}", deployed.body);
    Ok(host)
}

#[tokio::test]
async fn a_fan_out_collects_its_childrens_results_in_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_fanout(dir.path()).await?;
    host.client
        .start(
            "fanout",
            "fan_out",
            json!({"items": [3, 1, 4, 1, 5]}),
            Some("f"),
        )
        .await?;
    let run = host.result("f", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["output"], json!([9, 1, 16, 1, 25]));

    let children = host.client.events("f").await?.body["children"].clone();
    assert_eq!(children, json!(["f.0", "f.1", "f.2", "f.3", "f.4"]));
    let child = host.client.status("f.2").await?.body;
    assert_eq!(child["parent"], "f");
    assert_eq!(child["output"], 16);

    let steps = host.client.steps("f").await?.body;
    let kinds: Vec<&str> = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(&kinds[..5], ["start-child"; 5]);
    assert_eq!(kinds[5], "set-event");
    assert_eq!(&kinds[6..], ["await-child"; 5]);
    assert_eq!(steps["steps"][0]["outcome"], json!({"id": "f.0"}));
    Ok(())
}

#[tokio::test]
async fn a_failed_child_fails_its_parent_with_the_childs_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_fanout(dir.path()).await?;
    // The child's square overflows: it fails, and the parent reports why.
    host.client
        .start(
            "fanout",
            "fan_out",
            json!({"items": [i64::MAX]}),
            Some("big"),
        )
        .await?;
    let run = host.result("big", WAIT).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("child big.0 ended ERROR: the square overflows"),
        "{run}"
    );
    Ok(())
}

#[tokio::test]
async fn a_crash_in_the_middle_starts_no_child_twice() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_fanout(dir.path()).await?;
    let items: Vec<i64> = (1..=8).collect();
    host.client
        .start(
            "fanout",
            "fan_out",
            json!({"items": items, "work_ms": 3000}),
            Some("crash"),
        )
        .await?;
    // All children started, all of them working.
    let children = host.client.event("crash", "children", 30_000).await?;
    assert_eq!(children.status, 200, "{}", children.body);
    host.kill().await?;

    let host = Host::start(dir.path(), &[]).await?;
    let run = host.result("crash", WAIT).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    let squares: Vec<i64> = items.iter().map(|x| x * x).collect();
    assert_eq!(run["output"], json!(squares));

    // Exactly the eight children exist, each started once, each finished.
    let listed = host
        .client
        .get("/v1/workflows?workflow=square&limit=100")
        .await?
        .body;
    let listed = listed["workflows"].as_array().unwrap();
    assert_eq!(listed.len(), 8, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|r| r["parent"] == "crash" && r["status"] == "SUCCESS")
    );
    let steps = host.client.steps("crash").await?.body;
    let starts = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "start-child")
        .count();
    assert_eq!(starts, 8, "each start journaled once");
    Ok(())
}

/// The children of run `parent`, as the fan-out published them.
async fn children_of(host: &Host, parent: &str) -> anyhow::Result<Vec<String>> {
    let reply = host.client.event(parent, "children", 30_000).await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    Ok(serde_json::from_value(reply.body["value"].clone())?)
}

#[tokio::test]
async fn a_parents_deadline_bounds_its_children() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    cairn_tests::deploy_example(&host.client, "fanout", examples::FANOUT, None).await?;
    let start = json!({
        "module": "fanout", "workflow": "fan_out", "id": "bounded",
        "input": {"items": [1, 2], "work_ms": 60_000}, "timeout_ms": 600,
    });
    assert_eq!(
        host.client.post_json("/v1/workflows", &start).await?.status,
        202
    );
    let children = children_of(&host, "bounded").await?;
    let parent = host.result("bounded", WAIT).await?;
    assert_eq!(parent["status"], "CANCELLED", "{parent}");
    for child in &children {
        let run = host.result(child, WAIT).await?;
        assert_eq!(
            run["status"], "CANCELLED",
            "the child ends with its parent's deadline: {run}"
        );
        assert_eq!(run["deadline"], parent["deadline"], "{run}");
    }
    Ok(())
}

#[tokio::test]
async fn cancelling_a_parent_cancels_its_tree_unless_asked_not_to() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    cairn_tests::deploy_example(&host.client, "fanout", examples::FANOUT, None).await?;
    let fan_out = json!({"items": [1, 2], "work_ms": 600_000});
    host.client
        .start("fanout", "fan_out", fan_out.clone(), Some("tree"))
        .await?;
    let children = children_of(&host, "tree").await?;
    assert_eq!(host.client.run_action("tree", "cancel").await?.status, 200);
    for child in &children {
        let run = host.result(child, WAIT).await?;
        assert_eq!(run["status"], "CANCELLED", "{run}");
    }

    // Only the parent, when asked.
    host.client
        .start("fanout", "fan_out", fan_out, Some("alone"))
        .await?;
    let children = children_of(&host, "alone").await?;
    let cancelled = host
        .client
        .post_json("/v1/workflows/alone/cancel", &json!({"tree": false}))
        .await?;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    for child in &children {
        assert_eq!(host.client.status(child).await?.body["status"], "PENDING");
    }
    Ok(())
}
