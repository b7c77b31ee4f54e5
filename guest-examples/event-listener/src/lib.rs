//! The seed's `eventListener` as an HTTP handler: on `GET /events` it starts
//! `stepsWorkflow`, waits for its events `step1` and `step2`, logs both, and
//! answers with both values. It also relays decisions to approval runs:
//! `POST /approvals/{id}/decision` sends the body to run `id` as a message.
use std::time::Duration;

use cairn_sdk::handler::{Request, Response, get_event, read_stream, send_message, start_workflow};
use cairn_sdk::{Error, Result, log};
use serde::Serialize;

#[derive(Serialize)]
struct Steps {
    workflow_id: String,
    step1: String,
    step2: String,
}

const WAIT: Duration = Duration::from_secs(10);

fn route(request: Request) -> Result<Response> {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["events"]) => event_listener(&request),
        ("POST", ["approvals", id, "decision"]) => relay_decision(id, &request),
        ("GET", ["echo"]) => echo(&request),
        ("GET", ["streams", id, name]) => read_from(id, name, &request),
        _ => Ok(Response::text(
            404,
            format!("no handler for {} {}", request.method, request.path),
        )),
    }
}

/// What the handler was given of the request: its query and header names
/// (for the tests that check the host keeps credentials from guests).
fn echo(request: &Request) -> Result<Response> {
    let headers: Vec<&str> = request
        .headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    Response::json(
        200,
        &serde_json::json!({"path": request.path, "query": request.query, "headers": headers}),
    )
}

/// Stream `name` of run `id` from `?offset=` (0 without one), waiting up
/// to 10 s for a value: what a handler sees of a stream.
fn read_from(id: &str, name: &str, request: &Request) -> Result<Response> {
    let offset = request
        .query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("offset="))
        .map_or(Ok(0), str::parse)
        .map_err(|e| Error::msg(format!("offset: {e}")))?;
    let chunk = read_stream::<serde_json::Value>(id, name, offset, WAIT)?;
    Response::json(
        200,
        &serde_json::json!({"values": chunk.values, "closed": chunk.closed}),
    )
}

fn relay_decision(run: &str, request: &Request) -> Result<Response> {
    let decision: serde_json::Value = request.json()?;
    match send_message(run, "decision", &decision, None) {
        Ok(()) => Response::json(202, &decision),
        Err(error) if error.kind() == cairn_sdk::ErrorKind::NotFound => Response::json(
            404,
            &serde_json::json!({"error": {"code": "run_not_found", "message": error.to_string()}}),
        ),
        Err(error) => Err(error),
    }
}

fn event_listener(_request: &Request) -> Result<Response> {
    let workflow_id = start_workflow("steps", "steps_workflow", &(), None)?;
    let wait_for = |key: &str| -> Result<String> {
        let value: Option<String> = get_event(&workflow_id, key, WAIT)?;
        let value = value.ok_or_else(|| {
            Error::msg(format!(
                "{key} of run {workflow_id} was not set within {WAIT:?}"
            ))
        })?;
        log::info(&format!("{key}: {value}"), &[("workflow_id", &workflow_id)]);
        Ok(value)
    };
    let step1 = wait_for("step1")?;
    let step2 = wait_for("step2")?;
    Response::json(
        200,
        &Steps {
            workflow_id,
            step1,
            step2,
        },
    )
}

cairn_sdk::handler!(route);
