//! The same end-to-end tests against guests in Rust, Python
//! (componentize-py) and JavaScript (componentize-js), each built by its
//! language's own toolchain from `guest-examples/` with nothing composed in
//! by hand: the seed, recovery from a SIGKILL in the middle of a wait, a
//! failing workflow, the seed's HTTP handler, and a step with a message.

use std::time::Duration;

use cairn_tests::polyglot::{self, Guest};
use cairn_tests::{Client, Host, examples};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// One compiled-module directory for every host of this test binary: a
/// CPython or StarlingMonkey component takes seconds to compile, once.
fn shared_compiled_dir() -> &'static str {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
        .path()
        .to_str()
        .unwrap()
}

async fn start(dir: &std::path::Path) -> anyhow::Result<Host> {
    Host::start(dir, &["--compiled-dir", shared_compiled_dir()]).await
}

/// What each test needs of a language's guests: the workflow module with
/// the seed's workflows, the module whose `fail` fails, and the handler.
struct Modules {
    language: &'static str,
    steps: Vec<u8>,
    failing: (&'static str, Vec<u8>),
    handler: Vec<u8>,
    handler_routes: Vec<u8>,
}

/// The routes of the Python and JS handlers: the seed's.
const SEED_ROUTES: &str = r#"{"routes": [{"method": "GET", "path": "/events", "handler": true}]}"#;

fn rust() -> Modules {
    Modules {
        language: "rust",
        steps: examples::bytes(examples::STEPS),
        failing: ("faulty", examples::bytes(examples::FAULTY)),
        handler: examples::bytes(examples::EVENT_LISTENER),
        handler_routes: std::fs::read(examples::EVENT_LISTENER_ROUTES).unwrap(),
    }
}

fn of(guest: Guest) -> Modules {
    Modules {
        language: guest.language,
        steps: guest.steps(),
        failing: ("steps", guest.steps()),
        handler: guest.handler(),
        handler_routes: SEED_ROUTES.as_bytes().to_vec(),
    }
}

fn all() -> Vec<Modules> {
    vec![rust(), of(polyglot::PYTHON), of(polyglot::JS)]
}

async fn deploy(
    client: &Client,
    name: &str,
    bytes: Vec<u8>,
    routes: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    let reply = client.deploy_with_routes(name, bytes, routes).await?;
    anyhow::ensure!(
        reply.status.is_success(),
        "deploying {name}: {} {}",
        reply.status,
        reply.body
    );
    Ok(())
}

fn kinds(steps: &Value) -> Vec<String> {
    steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_seed_runs_in_every_language() -> anyhow::Result<()> {
    for modules in all() {
        let language = modules.language;
        let dir = tempfile::tempdir()?;
        let host = start(dir.path()).await?;
        let client = &host.client;
        deploy(client, "steps", modules.steps, None).await?;
        let id = format!("seed-{language}");
        client
            .start("steps", "steps_workflow", json!(null), Some(&id))
            .await?;
        for key in ["step1", "step2"] {
            let event = client.event(&id, key, 30_000).await?;
            assert_eq!(event.status, 200, "{language}: {}", event.body);
            assert_eq!(event.body["value"], "completed", "{language}");
        }
        let run = host.result(&id, WAIT).await?;
        assert_eq!(run["status"], "SUCCESS", "{language}: {run}");
        // Only the two events: no clock reading the runtime took for
        // itself is journaled.
        let steps = client.steps(&id).await?.body;
        let journaled: Vec<String> = kinds(&steps)
            .into_iter()
            .filter(|kind| kind != "random")
            .collect();
        assert_eq!(journaled, ["set-event", "set-event"], "{language}: {steps}");
    }
    Ok(())
}

#[tokio::test]
async fn a_run_of_every_language_survives_a_crash_in_the_middle_of_a_wait() -> anyhow::Result<()> {
    for modules in all() {
        let language = modules.language;
        let dir = tempfile::tempdir()?;
        let host = start(dir.path()).await?;
        deploy(&host.client, "steps", modules.steps, None).await?;
        let id = format!("crash-{language}");
        host.client
            .start(
                "steps",
                "steps_with_pause",
                json!({"pause_ms": 3000}),
                Some(&id),
            )
            .await?;
        host.expect_event(&id, "step1", json!("completed")).await?;
        host.kill().await?;
        let host = start(dir.path()).await?;
        let run = host.result(&id, WAIT).await?;
        assert_eq!(run["status"], "SUCCESS", "{language}: {run}");
        assert_eq!(
            host.client.events(&id).await?.body,
            json!({"step1": "completed", "step2": "completed"}),
            "{language}"
        );
        let journaled: Vec<String> = kinds(&host.client.steps(&id).await?.body)
            .into_iter()
            .filter(|kind| kind != "random")
            .collect();
        assert_eq!(journaled, ["set-event", "sleep", "set-event"], "{language}");
    }
    Ok(())
}

#[tokio::test]
async fn a_failing_workflow_of_every_language_ends_error_with_its_message() -> anyhow::Result<()> {
    for modules in all() {
        let language = modules.language;
        let dir = tempfile::tempdir()?;
        let host = start(dir.path()).await?;
        let (name, bytes) = modules.failing;
        deploy(&host.client, name, bytes, None).await?;
        deploy(&host.client, "steps-ok", modules.steps, None).await?;
        let id = format!("fail-{language}");
        host.client
            .start(name, "fail", json!("refusing"), Some(&id))
            .await?;
        let run = host.result(&id, WAIT).await?;
        assert_eq!(run["status"], "ERROR", "{language}: {run}");
        assert!(
            run["error"].as_str().unwrap().contains("refusing"),
            "{language}: {run}"
        );
        // The host serves everyone else on.
        host.client
            .start("steps-ok", "steps_workflow", json!(null), Some("after"))
            .await?;
        assert_eq!(host.result("after", WAIT).await?["status"], "SUCCESS");
    }
    Ok(())
}

#[tokio::test]
async fn the_seeds_handler_of_every_language_answers_with_both_events() -> anyhow::Result<()> {
    for modules in all() {
        let language = modules.language;
        let dir = tempfile::tempdir()?;
        let host = start(dir.path()).await?;
        deploy(&host.client, "steps", modules.steps, None).await?;
        deploy(
            &host.client,
            "listener",
            modules.handler,
            Some(modules.handler_routes),
        )
        .await?;
        let reply = host.client.get("/app/events").await?;
        assert_eq!(reply.status, 200, "{language}: {}", reply.body);
        assert_eq!(
            reply.body["step1"], "completed",
            "{language}: {}",
            reply.body
        );
        assert_eq!(reply.body["step2"], "completed", "{language}");
        let id = reply.body["workflow_id"].as_str().unwrap();
        assert_eq!(host.result(id, WAIT).await?["status"], "SUCCESS");
        // Its log line reached the host's log, tagged with the module.
        assert!(
            host.log_contents().contains("step1: completed"),
            "{language}: {}",
            host.log_contents()
        );
        let missing = host.client.get("/app/nothing-here").await?;
        assert_eq!(missing.status, 404, "{language}");
    }
    Ok(())
}

#[tokio::test]
async fn python_and_js_steps_and_messages_are_journaled() -> anyhow::Result<()> {
    for guest in [polyglot::PYTHON, polyglot::JS] {
        let language = guest.language;
        let dir = tempfile::tempdir()?;
        let host = start(dir.path()).await?;
        deploy(&host.client, "steps", guest.steps(), None).await?;
        let id = format!("approve-{language}");
        host.client
            .start("steps", "approve", json!({"subject": "leave"}), Some(&id))
            .await?;
        host.expect_event(&id, "status", json!("awaiting-decision"))
            .await?;
        host.client
            .send_message(&id, "decision", json!({"approved": true}), None)
            .await?;
        let run = host.result(&id, WAIT).await?;
        assert_eq!(run["status"], "SUCCESS", "{language}: {run}");
        assert_eq!(
            run["output"],
            json!({"reference": "ref-leave", "decision": {"approved": true}}),
            "{language}"
        );
        let journaled: Vec<String> = kinds(&host.client.steps(&id).await?.body)
            .into_iter()
            .filter(|kind| kind != "random")
            .collect();
        assert_eq!(
            journaled,
            ["step", "set-event", "recv", "set-event"],
            "{language}"
        );
    }
    Ok(())
}
