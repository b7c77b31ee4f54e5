//! Steps: non-deterministic work whose outcome is journaled, with retries.

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::cairn::workflow::steps::{self, StepState};
use crate::{Error, ErrorKind, Result, millis};

/// When and how often a failed step is tried again. The default tries
/// once; [`RetryPolicy::attempts`] retries with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 to 1000).
    pub max_attempts: u32,
    /// The wait before the second attempt.
    pub initial_interval: Duration,
    /// Each later wait is the previous one times this (1.0 to 10.0).
    pub backoff_factor: f64,
    /// No wait is longer than this.
    pub max_interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::attempts(1)
    }
}

impl RetryPolicy {
    /// Up to `max_attempts` attempts, waiting 1 s, then 2 s, 4 s, ... (at
    /// most an hour) between them.
    pub fn attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            initial_interval: Duration::from_secs(1),
            backoff_factor: 2.0,
            max_interval: Duration::from_secs(3600),
        }
    }

    /// The wait before the second attempt.
    pub fn interval(self, initial_interval: Duration) -> Self {
        Self {
            initial_interval,
            ..self
        }
    }

    /// The factor by which each wait grows.
    pub fn backoff(self, backoff_factor: f64) -> Self {
        Self {
            backoff_factor,
            ..self
        }
    }

    /// The longest wait.
    pub fn max_interval(self, max_interval: Duration) -> Self {
        Self {
            max_interval,
            ..self
        }
    }
}

thread_local! {
    /// The attempt of the step in progress; 0 outside steps.
    static ATTEMPT: Cell<u32> = const { Cell::new(0) };
}

/// The number (from 1) of the attempt of the step in progress, or 0
/// outside a step: for work that behaves differently on a retry, e.g. to log
/// it, or for a fake service that fails the first attempts.
pub fn current_attempt() -> u32 {
    ATTEMPT.with(Cell::get)
}

/// Run `work` as the step `name`, once (no retry): see [`step_with`].
pub fn step<T, E, F>(name: &str, work: F) -> Result<T>
where
    T: Serialize + DeserializeOwned,
    E: fmt::Display,
    F: FnMut() -> Result<T, E>,
{
    step_with(name, RetryPolicy::default(), work)
}

/// Run `work` as the step `name`, retried under `policy` while it returns
/// an error. Its output (serialised as JSON) or its last error is journaled:
/// once the step has finished, a replay does not run `work` again but returns
/// what was recorded. Every attempt, with its error, is in the run's journal
/// (`GET /v1/workflows/{id}/steps`). A step interrupted by a crash runs
/// again, so make `work` safe to repeat (e.g. pass an idempotency key to
/// the service it calls).
///
/// Inside `work`, the clock and random numbers are live, outgoing HTTP is
/// allowed (to the module's allowed hosts), and the durable calls
/// ([`set_event`](crate::set_event), [`sleep`](crate::sleep), ...) are
/// refused. After the last failed attempt the error has kind
/// [`ErrorKind::StepFailed`].
///
/// ```no_run
/// use std::time::Duration;
/// use cairn_sdk::{RetryPolicy, step_with};
///
/// # fn charge(_: u64) -> Result<String, String> { Ok("ch_1".into()) }
/// let policy = RetryPolicy::attempts(5).interval(Duration::from_millis(200));
/// let receipt: String = step_with("charge", policy, || charge(1200))?;
/// # Ok::<(), cairn_sdk::Error>(())
/// ```
pub fn step_with<T, E, F>(name: &str, policy: RetryPolicy, mut work: F) -> Result<T>
where
    T: Serialize + DeserializeOwned,
    E: fmt::Display,
    F: FnMut() -> Result<T, E>,
{
    let policy = steps::RetryPolicy {
        max_attempts: policy.max_attempts,
        initial_interval_ms: millis(policy.initial_interval),
        backoff_factor: policy.backoff_factor,
        max_interval_ms: millis(policy.max_interval),
    };
    let mut state = steps::begin_step(name, policy)?;
    loop {
        match state {
            StepState::Finished(Ok(output)) => return Ok(serde_json::from_str(&output)?),
            StepState::Finished(Err(message)) => {
                return Err(Error {
                    kind: ErrorKind::StepFailed,
                    message: format!("step {name:?} failed: {message}"),
                });
            }
            StepState::Attempt(attempt) => {
                ATTEMPT.with(|current| current.set(attempt));
                let result = work();
                ATTEMPT.with(|current| current.set(0));
                let outcome = match result {
                    Ok(output) => serde_json::to_string(&output)
                        .map_err(|e| format!("the step's output cannot be encoded as JSON: {e}")),
                    Err(error) => Err(error.to_string()),
                };
                state = steps::end_attempt(outcome.as_deref().map_err(String::as_str))?;
            }
        }
    }
}
