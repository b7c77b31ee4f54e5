//! The seed of Cairn: DBOS Transact's `stepsWorkflow`, which tells its caller
//! about its progress through two events.
use std::time::Duration;

use cairn_sdk::{Result, set_event, sleep};
use serde::Deserialize;

/// Sets `step1`, then `step2`, to `"completed"`.
fn steps_workflow(_input: ()) -> Result<()> {
    // Do some work...
    set_event("step1", "completed")?;
    // Do some more work...
    set_event("step2", "completed")
}

#[derive(Deserialize)]
struct Pause {
    /// How long to wait between the two steps, in milliseconds.
    #[serde(default = "default_pause_ms")]
    pause_ms: u64,
}

fn default_pause_ms() -> u64 {
    1000
}

/// Like `steps_workflow`, with a durable pause between the two steps so a
/// caller can watch them arrive one after the other. The wake-up time is
/// journaled, so a run recovered after a crash only sleeps what is left.
fn steps_with_pause(input: Pause) -> Result<()> {
    set_event("step1", "completed")?;
    sleep(Duration::from_millis(input.pause_ms));
    set_event("step2", "completed")
}

cairn_sdk::workflows!(steps_workflow, steps_with_pause);
