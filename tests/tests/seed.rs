//! The seed of Cairn, end to end: DBOS's `stepsWorkflow` uploaded, started
//! and observed over HTTP.

use std::time::Duration;

use cairn_tests::{Host, examples};
use serde_json::json;

#[tokio::test]
async fn the_seed_workflow_publishes_both_steps() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let client = &host.client;

    let deployed = client
        .deploy("steps", examples::bytes(examples::STEPS))
        .await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    assert_eq!(deployed.body["name"], "steps");
    assert!(
        deployed.body["version"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(
        deployed.body["workflows"],
        json!(["steps_workflow", "steps_with_pause"])
    );

    let started = client
        .start("steps", "steps_workflow", json!(null), None)
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.body["id"].as_str().unwrap().to_owned();

    for key in ["step1", "step2"] {
        let event = client.event(&id, key, 10_000).await?;
        assert_eq!(event.status, 200, "{}", event.body);
        assert_eq!(event.body, json!({"key": key, "value": "completed"}));
    }
    let run = host.result(&id, Duration::from_secs(10)).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["module"], "steps");
    assert_eq!(run["workflow"], "steps_workflow");
    assert_eq!(run["version"], deployed.body["version"]);
    assert_eq!(run["output"], json!(null));
    assert_eq!(run["attempts"], 1);

    let events = client.events(&id).await?;
    assert_eq!(
        events.body,
        json!({"step1": "completed", "step2": "completed"})
    );
    Ok(())
}

#[tokio::test]
async fn a_caller_watches_the_steps_arrive_one_by_one() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;

    let started = client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 1500}),
            Some("watched"),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);

    let step1 = client.event("watched", "step1", 10_000).await?;
    assert_eq!(step1.body["value"], "completed");
    // step1 is there, step2 is still behind the pause.
    let early = client.event("watched", "step2", 0).await?;
    assert_eq!(early.status, 404, "{}", early.body);
    assert_eq!(early.error_code(), Some("event_not_set"));
    let step2 = client.event("watched", "step2", 10_000).await?;
    assert_eq!(step2.body["value"], "completed");

    let run = host.result("watched", Duration::from_secs(10)).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    Ok(())
}

#[tokio::test]
async fn an_event_reader_may_wait_for_a_run_that_does_not_exist_yet() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let reader = {
        let client = host.client.clone();
        tokio::spawn(async move { client.event("later", "step2", 20_000).await })
    };
    // The reader is blocked on a run nobody has started; start it now.
    let started = host
        .client
        .start("steps", "steps_workflow", json!(null), Some("later"))
        .await?;
    assert_eq!(started.status, 202);
    let event = reader.await??;
    assert_eq!(event.status, 200, "{}", event.body);
    assert_eq!(event.body["value"], "completed");
    Ok(())
}

#[tokio::test]
async fn starting_an_existing_id_returns_the_run_instead_of_running_it_again() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;

    let first = client
        .start("steps", "steps_workflow", json!(null), Some("order-7"))
        .await?;
    assert_eq!(first.status, 202);
    host.result("order-7", Duration::from_secs(10)).await?;

    let again = client
        .start("steps", "steps_workflow", json!(null), Some("order-7"))
        .await?;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body, json!({"id": "order-7", "status": "SUCCESS"}));
    let steps = client.get("/v1/workflows/order-7/steps").await?;
    assert_eq!(
        steps.body["steps"].as_array().unwrap().len(),
        2,
        "ran once: {}",
        steps.body
    );

    let other = client
        .start("steps", "steps_with_pause", json!(null), Some("order-7"))
        .await?;
    assert_eq!(other.status, 409, "{}", other.body);
    assert_eq!(other.error_code(), Some("conflict"));
    assert!(
        other.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("steps/steps_workflow")
    );
    Ok(())
}

#[tokio::test]
async fn module_routes_describe_deployments() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let client = &host.client;
    let steps = examples::bytes(examples::STEPS);

    let first = client.deploy("steps", steps.clone()).await?;
    assert_eq!(first.status, 201);
    let again = client.deploy("steps", steps).await?;
    assert_eq!(
        again.status, 200,
        "same bytes, same version: {}",
        again.body
    );
    assert_eq!(again.body["version"], first.body["version"]);

    // Another version under the same name becomes current; the old one stays.
    let other = client
        .deploy("steps", examples::bytes(examples::ORDERS))
        .await?;
    assert_eq!(other.status, 201);
    let module = client.get("/v1/modules/steps").await?;
    assert_eq!(module.status, 200);
    assert_eq!(module.body["version"], other.body["version"]);
    assert_eq!(module.body["workflows"], json!(["order", "payment"]));
    assert_eq!(module.body["versions"].as_array().unwrap().len(), 2);

    let list = client.get("/v1/modules").await?;
    assert_eq!(list.body["modules"].as_array().unwrap().len(), 1);
    let missing = client.get("/v1/modules/nope").await?;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), Some("module_not_found"));
    Ok(())
}

#[tokio::test]
async fn runs_stay_pinned_to_the_version_they_started_on() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let client = &host.client;
    let v1 = client
        .deploy("steps", examples::bytes(examples::STEPS))
        .await?;
    let started = client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 1000}),
            Some("pinned"),
        )
        .await?;
    assert_eq!(started.status, 202);
    // Redeploy with other bytes while the run waits.
    let v2 = client
        .deploy("steps", examples::bytes(examples::ORDERS))
        .await?;
    assert_ne!(v1.body["version"], v2.body["version"]);
    let run = host.result("pinned", Duration::from_secs(10)).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["version"], v1.body["version"]);
    // New runs use the new version, which has no steps workflows.
    let refused = client
        .start("steps", "steps_workflow", json!(null), None)
        .await?;
    assert_eq!(refused.status, 404);
    assert_eq!(refused.error_code(), Some("workflow_not_found"));
    Ok(())
}
