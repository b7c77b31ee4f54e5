//! What failure looks like: a workflow that traps after publishing an event,
//! one that returns an error, and one that misuses steps and outgoing HTTP
//! to show the host's refusals.
use cairn_sdk::{Error, Result, http, set_event, step};
use serde::Deserialize;

/// Publishes `before`, then panics. A panic in a Rust guest is a WebAssembly
/// trap: the run ends `ERROR` with the trap message, and the event it
/// published stays readable.
fn trap(_input: ()) -> Result<()> {
    set_event("before", "set")?;
    panic!("the workflow hit a bug");
}

/// Returns an error: the run ends `ERROR` with this message.
fn fail(reason: String) -> Result<()> {
    Err(Error::msg(format!("refused: {reason}")))
}

#[derive(Deserialize)]
struct Misuse {
    case: String,
    #[serde(default)]
    url: String,
}

/// Does what `case` names and returns what the host answered: the body
/// fetched, or the error's message.
/// - `set_event_in_step`: `set-event` inside a step (refused);
/// - `nested_step`: a step inside a step (refused);
/// - `http_outside_step`: `GET url` outside any step (refused);
/// - `http_in_step`: `GET url` inside a step (allowed to allowed hosts).
fn misuse(input: Misuse) -> Result<String> {
    let answer: Result<String> = match input.case.as_str() {
        "set_event_in_step" => step("publish", || set_event("k", "v").map(|()| "set".to_owned())),
        "nested_step" => step("outer", || {
            step("inner", || Ok::<_, Error>(1)).map(|n| n.to_string())
        }),
        "http_outside_step" => http::get(&input.url).and_then(http::Response::text),
        "http_in_step" => step("fetch", || {
            http::get(&input.url).and_then(http::Response::text)
        }),
        other => return Err(Error::msg(format!("unknown case {other:?}"))),
    };
    Ok(answer.unwrap_or_else(|error| error.to_string()))
}

cairn_sdk::workflows!(trap, fail, misuse);
