//! The seed's `eventListener` as an HTTP handler: on `GET /events` it starts
//! `stepsWorkflow`, waits for its events `step1` and `step2`, logs both, and
//! answers with both values.
use std::time::Duration;

use cairn_sdk::handler::{Request, Response, get_event, start_workflow};
use cairn_sdk::{Error, Result, log};
use serde::Serialize;

#[derive(Serialize)]
struct Steps {
    workflow_id: String,
    step1: String,
    step2: String,
}

const WAIT: Duration = Duration::from_secs(10);

fn event_listener(_request: Request) -> Result<Response> {
    let workflow_id = start_workflow("steps", "steps_workflow", &(), None)?;
    let wait_for = |key: &str| -> Result<String> {
        let value: Option<String> = get_event(&workflow_id, key, WAIT)?;
        let value = value.ok_or_else(|| {
            Error::msg(format!("{key} of run {workflow_id} was not set within {WAIT:?}"))
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

cairn_sdk::handler!(event_listener);
