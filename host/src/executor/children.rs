//! How child workflows are journaled: the outcome of a `start-child` (the
//! child's id, or the refusal) and of an `await-child` (how the child ended)
//! as JSON, and the ids children get.

use serde_json::json;

use crate::domain::{RunRecord, WorkflowId};
use crate::runtime::{GuestError, GuestErrorCode, RunResult};

/// The id of the child started by operation `op` of run `parent`:
/// `<parent>.<op>`, or a digest of it when that would be too long.
pub(super) fn child_id(parent: &WorkflowId, op: u32) -> WorkflowId {
    let id = format!("{parent}.{op}");
    WorkflowId::parse(&id).unwrap_or_else(|_| {
        WorkflowId::parse(&format!(
            "child-sha256:{}",
            crate::domain::sha256_hex(id.as_bytes())
        ))
        .expect("a digest is a valid id")
    })
}

const CODES: [(GuestErrorCode, &str); 7] = [
    (GuestErrorCode::InvalidJson, "invalid-json"),
    (GuestErrorCode::TooLarge, "too-large"),
    (GuestErrorCode::InvalidArgument, "invalid-argument"),
    (GuestErrorCode::NotAllowed, "not-allowed"),
    (GuestErrorCode::NotFound, "not-found"),
    (GuestErrorCode::Unavailable, "unavailable"),
    (GuestErrorCode::Duplicate, "duplicate"),
];

/// `{"id": ...}` or `{"error": {"code", "message"}}`.
pub(super) fn encode_start(outcome: &Result<String, GuestError>) -> String {
    match outcome {
        Ok(id) => json!({ "id": id }),
        Err(error) => {
            let code = CODES
                .iter()
                .find(|(c, _)| *c == error.code)
                .map_or("invalid-argument", |(_, name)| name);
            json!({"error": {"code": code, "message": error.message}})
        }
    }
    .to_string()
}

/// What [`encode_start`] wrote; an error if the journal holds something else.
pub(super) fn decode_start(outcome: Option<&str>) -> Result<Result<String, GuestError>, String> {
    let corrupt = || format!("the journal's record of a start-child is unreadable: {outcome:?}");
    let value: serde_json::Value =
        serde_json::from_str(outcome.ok_or_else(corrupt)?).map_err(|_| corrupt())?;
    if let Some(id) = value["id"].as_str() {
        return Ok(Ok(id.to_owned()));
    }
    let code = value["error"]["code"].as_str().ok_or_else(corrupt)?;
    let code = CODES
        .iter()
        .find(|(_, name)| *name == code)
        .map(|(c, _)| *c)
        .ok_or_else(corrupt)?;
    let message = value["error"]["message"].as_str().unwrap_or_default();
    Ok(Err(GuestError::new(code, message)))
}

/// How a finished run ended, as JSON: `{"status", "output", "error"}`.
pub(super) fn encode_result(run: &RunRecord) -> String {
    let output: Option<serde_json::Value> = run
        .output
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok());
    json!({"status": run.status.as_str(), "output": output, "error": run.error}).to_string()
}

pub(super) fn decode_result(json: &str) -> Result<RunResult, String> {
    let corrupt = || format!("the journal's record of an await-child is unreadable: {json}");
    let value: serde_json::Value = serde_json::from_str(json).map_err(|_| corrupt())?;
    Ok(RunResult {
        status: value["status"].as_str().ok_or_else(corrupt)?.to_owned(),
        // A run's output of `null` is a value, not its absence.
        output: value
            .get("output")
            .filter(|_| value["status"] == "SUCCESS")
            .map(|o| o.to_string()),
        error: value["error"].as_str().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_outcomes_round_trip_through_the_journal() {
        for outcome in [
            Ok("p.1".to_owned()),
            Err(GuestError::new(GuestErrorCode::NotFound, "no module x")),
        ] {
            let json = encode_start(&outcome);
            // The generated error type has no `PartialEq`: compare its parts.
            let parts = |o: &Result<String, GuestError>| {
                o.as_ref().map_err(|e| (e.code, e.message.clone())).cloned()
            };
            assert_eq!(parts(&decode_start(Some(&json)).unwrap()), parts(&outcome));
        }
        assert!(decode_start(Some("[]")).is_err());
    }

    #[test]
    fn long_parent_ids_still_give_valid_child_ids() {
        let parent = WorkflowId::parse(&"p".repeat(255)).unwrap();
        let child = child_id(&parent, 7);
        assert!(child.as_str().starts_with("child-sha256:"));
        assert_eq!(child, child_id(&parent, 7), "the same every time");
        assert_eq!(
            child_id(&WorkflowId::parse("order-1").unwrap(), 3).as_str(),
            "order-1.3"
        );
    }
}
