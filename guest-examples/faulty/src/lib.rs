//! What failure looks like: a workflow that traps after publishing an event,
//! and one that returns an error.
use cairn_sdk::{Error, Result, set_event};

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

cairn_sdk::workflows!(trap, fail);
