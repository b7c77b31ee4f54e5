//! `timers` and `steps`: durable sleeps, and steps with their attempts and
//! retries, each journaled with the time it wakes at.

use super::RunHost;
use crate::domain::{self, JournalWrite, OperationKind, WaitKind};
use crate::executor::cursor::OpenStep;
use crate::executor::steps;
use crate::runtime::wit::steps::{RetryPolicy, StepState};
use crate::runtime::wit::timers;
use crate::runtime::{GuestError, GuestErrorCode, HostError, HostFailure};

impl timers::Host for RunHost {
    async fn sleep(&mut self, duration_ms: u64) -> wasmtime::Result<()> {
        let _call = self.host_call("sleep");
        if let Err(refusal) = self.outside_step("sleep") {
            return Err(HostFailure::Run(refusal.message).into());
        }
        let name = duration_ms.to_string();
        let (op, recorded) = self.next_operation(OperationKind::Sleep, &name)?;
        let deadline = match recorded {
            // Replay: wake at the journaled time, which may have passed.
            Some(entry) => entry.deadline.unwrap_or_else(|| self.exec.clock.now()),
            None => {
                let duration = i64::try_from(duration_ms).unwrap_or(i64::MAX);
                let deadline = self.exec.clock.now().saturating_add(duration);
                // Journaled before sleeping, so a recovery keeps the time.
                self.write(JournalWrite::Sleep { op, name, deadline })
                    .await?;
                deadline
            }
        };
        self.pause_until(WaitKind::Sleep, &duration_ms.to_string(), deadline)
            .await?;
        Ok(())
    }
}

impl crate::runtime::wit::steps::Host for RunHost {
    async fn begin_step(
        &mut self,
        name: String,
        policy: RetryPolicy,
    ) -> Result<StepState, HostError> {
        let _call = self.host_call("begin-step");
        if let Some(current) = self.cursor.current_step() {
            return Err(HostError::from(GuestError::new(
                GuestErrorCode::NotAllowed,
                format!("step {name:?} cannot begin inside step {current:?}: steps do not nest"),
            )));
        }
        if let Err(reason) = steps::validate(&name, &policy) {
            return Err(HostError::from(GuestError::new(
                GuestErrorCode::InvalidArgument,
                reason,
            )));
        }
        let mut attempt = 1;
        loop {
            let (op, recorded) = self.next_operation(OperationKind::Step, &name)?;
            let Some(entry) = recorded else {
                // The step's work may use what the run read so far (a
                // random idempotency key): journal it before the work runs.
                self.flush_readings().await?;
                self.cursor.open_step(OpenStep {
                    span: attempt_span(&name, attempt),
                    op,
                    name,
                    attempt,
                    policy,
                    started_at: self.exec.clock.now(),
                });
                return Ok(StepState::Attempt(attempt));
            };
            // Replay: walk the step's recorded attempts to its end.
            match (entry.error, entry.deadline) {
                (None, _) => {
                    let output = entry.outcome.unwrap_or_else(|| "null".into());
                    return Ok(StepState::Finished(Ok(output)));
                }
                (Some(error), None) => return Ok(StepState::Finished(Err(error))),
                (Some(_), Some(retry_at)) => {
                    attempt = entry.attempt.unwrap_or(attempt) + 1;
                    if self.cursor.peek().is_none() {
                        // Recovered (or woken) while waiting for the next
                        // attempt: wait out the journaled time, no more.
                        self.pause_until(WaitKind::Retry, &name, retry_at).await?;
                    }
                }
            }
        }
    }

    async fn end_attempt(
        &mut self,
        outcome: Result<String, String>,
    ) -> Result<StepState, HostError> {
        let _call = self.host_call("end-attempt");
        let Some(mut step) = self.cursor.take_step() else {
            return Err(HostError::from(GuestError::new(
                GuestErrorCode::NotAllowed,
                "end-attempt was called with no step in progress; call begin-step first",
            )));
        };
        let limit = self.exec.limits.max_value_bytes;
        let (output, retryable) = match outcome {
            Ok(value) => {
                match self.check_value(&format!("output of step {:?}", step.name), &value) {
                    Ok(()) => (Ok(value), false),
                    // Running it again would give the same refusal.
                    Err(refusal) => (Err(refusal.message), false),
                }
            }
            Err(message) => (
                Err(steps::truncate(domain::storable_text(message), limit)),
                true,
            ),
        };
        let now = self.exec.clock.now();
        let retry_at = match &output {
            Err(_) if retryable && step.attempt < step.policy.max_attempts => {
                Some(now.saturating_add(steps::delay_ms(&step.policy, step.attempt)))
            }
            _ => None,
        };
        if let Err(error) = &output {
            crate::telemetry::set_error(&step.span, error);
            crate::executor::emit_guest_log(
                tracing::Level::WARN,
                &format!("run {}", self.run),
                &format!("step {:?} attempt {} failed", step.name, step.attempt),
                &[
                    ("error".to_owned(), error.clone()),
                    ("retry".to_owned(), retry_at.is_some().to_string()),
                ],
            );
        }
        self.write(JournalWrite::StepAttempt {
            op: step.op,
            name: step.name.clone(),
            attempt: step.attempt,
            started_at: step.started_at,
            output: output.clone(),
            retry_at,
        })
        .await?;
        // The attempt's span ends here, not after the wait for the next.
        drop(std::mem::replace(&mut step.span, tracing::Span::none()));
        let Some(retry_at) = retry_at else {
            return Ok(StepState::Finished(output));
        };
        self.pause_until(WaitKind::Retry, &step.name, retry_at)
            .await?;
        let (op, _) = self.next_operation(OperationKind::Step, &step.name)?;
        let attempt = step.attempt + 1;
        self.cursor.open_step(OpenStep {
            span: attempt_span(&step.name, attempt),
            op,
            attempt,
            started_at: self.exec.clock.now(),
            ..step
        });
        Ok(StepState::Attempt(attempt))
    }
}

/// The span of one attempt of step `name`, under the run's.
fn attempt_span(name: &str, attempt: u32) -> tracing::Span {
    tracing::debug_span!(
        "step",
        otel.name = %format!("step {name}"),
        step.name = %name,
        step.attempt = attempt,
    )
}
