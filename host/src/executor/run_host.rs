//! The host imports of one executing run: the journal, replayed and extended.
//!
//! Each call that has an effect or is not deterministic takes the next
//! operation number. If the journal (loaded when the run started) already
//! holds that number, the recorded outcome is returned and nothing else
//! happens; otherwise the call's effect and its journal entry are committed
//! together, and only then are readers woken. Clock readings and the
//! random seed the guest took since the last write (see `cursor.rs`) are
//! journaled in the same transaction, ahead of it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Inner;
use super::cursor::{JournalCursor, OpenStep};
use super::outbound::AllowList;
use super::waiters::WaitKey;
use super::{ExecutorError, StartRequest, children, steps};
use crate::domain::{
    self, JournalEntry, JournalWrite, Millis, ModuleName, NewMessage, OperationKind, WorkflowId,
};
use crate::runtime::wit::steps::{RetryPolicy, StepState};
use crate::runtime::wit::{children as wit_children, context, events, messages, timers, types};
use crate::runtime::{
    GuestEnvironment, GuestError, GuestErrorCode, HostError, HostFailure, RunResult,
    WorkflowImports,
};
use crate::store::{Change, StoreError};

/// The journaled host of one executing run: it implements the generated
/// `Host` traits of every Cairn import (public only so that
/// `Runtime<RunHost>` can be named; nothing outside the executor makes one).
pub struct RunHost {
    exec: Arc<Inner>,
    run: WorkflowId,
    /// The run's epoch when this execution got it: its writes are fenced by it.
    epoch: Option<u64>,
    cursor: Arc<JournalCursor>,
}

impl std::fmt::Debug for RunHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHost")
            .field("run", &self.run)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl RunHost {
    pub(super) fn new(
        exec: Arc<Inner>,
        run: WorkflowId,
        journal: Vec<JournalEntry>,
        allowed_hosts: AllowList,
    ) -> Self {
        let cursor = JournalCursor::new(
            run.clone(),
            journal,
            exec.limits.max_journal_entries,
            allowed_hosts,
        );
        Self {
            exec,
            run,
            epoch: None,
            cursor,
        }
    }

    /// Fence this execution's writes by the run's `epoch`.
    pub(super) fn fenced(mut self, epoch: u64) -> Self {
        self.epoch = Some(epoch);
        self
    }

    /// The execution's replay position, for the executor to check when the
    /// guest has returned.
    pub(super) fn cursor(&self) -> Arc<JournalCursor> {
        self.cursor.clone()
    }

    fn replaying(&self) -> bool {
        self.cursor.replaying()
    }

    fn next_operation(
        &mut self,
        kind: OperationKind,
        name: &str,
    ) -> Result<(u32, Option<JournalEntry>), HostFailure> {
        self.cursor.next_operation(kind, name)
    }

    /// Refuse a durable call inside a step: the step's outcome is journaled
    /// as a whole and a retry runs it again, so it cannot have effects of
    /// its own.
    fn outside_step(&self, call: &str) -> Result<(), GuestError> {
        match self.cursor.current_step() {
            None => Ok(()),
            Some(step) => Err(GuestError::new(
                GuestErrorCode::NotAllowed,
                format!(
                    "{call} is not allowed inside step {step:?}: a step is retried and replayed as a whole, so it cannot have durable effects of its own; call {call} before or after the step"
                ),
            )),
        }
    }

    async fn write(&self, write: JournalWrite) -> Result<(), HostFailure> {
        let mut writes = self.cursor.take_pending();
        writes.push(write);
        self.commit(writes).await
    }

    /// Journal the clock readings and random seed taken so far, before an
    /// effect that is not itself a journal write (a step's work, starting a
    /// child) can depend on them.
    async fn flush_readings(&self) -> Result<(), HostFailure> {
        let readings = self.cursor.take_pending();
        if readings.is_empty() {
            return Ok(());
        }
        self.commit(readings).await
    }

    async fn commit(&self, writes: Vec<JournalWrite>) -> Result<(), HostFailure> {
        let now = self.exec.clock.now();
        // In a task of its own: an execution stopped meanwhile (cancelled,
        // or its host lost the run) cannot cut the write off halfway; the
        // write ends, and its answer goes nowhere.
        let (store, run, epoch) = (self.exec.store.clone(), self.run.clone(), self.epoch);
        let written =
            tokio::spawn(
                async move { store.write_journal_entries(&run, epoch, writes, now).await },
            )
            .await
            .map_err(|failed| HostFailure::Host(format!("journal write failed: {failed}")))?;
        written.map_err(|error| match error {
            // Another execution of this run got there first (or the run
            // was finished meanwhile, or handed to another host): this one
            // must not go on.
            StoreError::DuplicateOperation { .. }
            | StoreError::RunNotPending { .. }
            | StoreError::Fenced { .. } => {
                HostFailure::Host(format!("run {} was taken over: {error}", self.run))
            }
            error => HostFailure::Host(format!("journal write failed: {error}")),
        })
    }

    /// A journaled wait (`get-event`, `recv`): a replay returns the recorded
    /// outcome; otherwise `read` is tried at once and, until the deadline,
    /// again whenever `key` is published; the deadline is journaled before
    /// waiting (so a recovery keeps it) and `complete` journals the outcome
    /// with its effect.
    #[expect(
        clippy::too_many_arguments,
        reason = "one wait, told apart by its parts"
    )]
    async fn journaled_wait<T, F, Fut>(
        &mut self,
        kind: OperationKind,
        name: String,
        timeout_ms: u64,
        key: WaitKey,
        mut read: F,
        from_published: impl Fn(&str) -> Option<T>,
        complete: impl FnOnce(u32, String, Option<T>, Millis) -> JournalWrite,
    ) -> Result<Waited<T>, HostFailure>
    where
        T: Clone,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, StoreError>>,
    {
        let (op, recorded) = self.next_operation(kind, &name)?;
        let (deadline, wait_journaled) = match recorded {
            Some(entry) if entry.completed => return Ok(Waited::Recorded(entry.outcome)),
            // Recovered in the middle of a wait: keep the original deadline.
            Some(entry) => (
                entry.deadline.unwrap_or_else(|| self.exec.clock.now()),
                true,
            ),
            None => {
                let timeout = i64::try_from(timeout_ms).unwrap_or(i64::MAX);
                (self.exec.clock.now().saturating_add(timeout), false)
            }
        };
        let read_failed =
            |e: StoreError| HostFailure::Host(format!("{} failed to read: {e}", kind.as_str()));
        let mut subscription = self.exec.waiters.subscribe(key);
        let mut outcome = read().await.map_err(read_failed)?;
        if outcome.is_none() && deadline > self.exec.clock.now() {
            if !wait_journaled {
                // Record the deadline before waiting, so a recovery resumes
                // the same wait instead of starting a new one.
                let started = match kind {
                    OperationKind::Recv => JournalWrite::RecvStarted {
                        op,
                        name: name.clone(),
                        deadline,
                    },
                    OperationKind::GetEvent => JournalWrite::GetEventStarted {
                        op,
                        name: name.clone(),
                        deadline,
                    },
                    kind => JournalWrite::WaitStarted {
                        op,
                        kind,
                        name: name.clone(),
                        deadline,
                    },
                };
                self.write(started).await?;
            }
            outcome = subscription
                .wait_for(self.instant_of(deadline), read, from_published)
                .await
                .map_err(read_failed)?;
        }
        drop(subscription);
        self.write(complete(op, name, outcome.clone(), deadline))
            .await?;
        Ok(Waited::Now(outcome))
    }

    /// A value the guest hands the host (an event value, a message) within
    /// the size limit and valid JSON, or the guest-visible refusal.
    fn check_value(&self, what: &str, value: &str) -> Result<(), GuestError> {
        let limit = self.exec.limits.max_value_bytes;
        if value.len() > limit {
            return Err(GuestError::new(
                GuestErrorCode::TooLarge,
                format!(
                    "the {what} is {} bytes; the limit is {limit} bytes",
                    value.len()
                ),
            ));
        }
        domain::check_json(value).map_err(|e| {
            GuestError::new(
                GuestErrorCode::InvalidJson,
                format!("the {what} is not valid JSON: {e}"),
            )
        })
    }

    /// The `tokio` instant of a journaled wall-clock deadline.
    fn instant_of(&self, deadline: Millis) -> Instant {
        let remaining = deadline.saturating_sub(self.exec.clock.now()).max(0);
        Instant::now() + Duration::from_millis(remaining as u64)
    }
}

/// How a journaled wait ended: on replay, as the journal recorded it;
/// otherwise, with what it read now.
enum Waited<T> {
    Recorded(Option<String>),
    Now(Option<T>),
}

fn invalid<T>(code: GuestErrorCode, message: String) -> Result<T, HostError> {
    Err(GuestError::new(code, message).into())
}

impl WorkflowImports for RunHost {
    fn run_id(&self) -> String {
        self.run.to_string()
    }

    fn environment(&self) -> Arc<dyn GuestEnvironment> {
        self.cursor.clone()
    }
}

impl types::Host for RunHost {
    fn convert_error(&mut self, error: HostError) -> wasmtime::Result<GuestError> {
        error.into_guest()
    }
}

impl events::Host for RunHost {
    async fn set_event(&mut self, key: String, value: String) -> Result<(), HostError> {
        if let Err(refusal) = self.outside_step("set-event") {
            return Err(refusal.into());
        }
        // Refusals depend on the arguments alone, so they take no operation
        // number: a replay refuses the same calls the same way.
        if let Err(e) = domain::validate_event_key(&key) {
            return invalid(GuestErrorCode::InvalidArgument, e.0);
        }
        if let Err(refusal) = self.check_value(&format!("value of event {key:?}"), &value) {
            return Err(refusal.into());
        }
        let (op, recorded) = self.next_operation(OperationKind::SetEvent, &key)?;
        if recorded.is_some() {
            // Replay: already written and published; never write it again.
            return Ok(());
        }
        self.write(JournalWrite::SetEvent {
            op,
            key: key.clone(),
            value: value.clone(),
        })
        .await?;
        self.exec.wake_event(&self.run, &key, Some(&value));
        Ok(())
    }

    async fn get_event(
        &mut self,
        workflow_id: String,
        key: String,
        timeout_ms: u64,
    ) -> Result<Option<String>, HostError> {
        if let Err(refusal) = self.outside_step("get-event") {
            return Err(refusal.into());
        }
        let target = match WorkflowId::parse(&workflow_id) {
            Ok(target) => target,
            Err(e) => {
                return Err(HostError::from(GuestError::new(
                    GuestErrorCode::InvalidArgument,
                    e.0,
                )));
            }
        };
        if let Err(e) = domain::validate_event_key(&key) {
            return Err(HostError::from(GuestError::new(
                GuestErrorCode::InvalidArgument,
                e.0,
            )));
        }
        let name = format!("{target}/{key}");
        let store = self.exec.store.clone();
        let waited = self
            .journaled_wait(
                OperationKind::GetEvent,
                name,
                timeout_ms,
                WaitKey::Event {
                    run: target.clone(),
                    key: key.clone(),
                },
                || store.get_event(&target, &key),
                |value| Some(value.to_owned()),
                |op, name, outcome, deadline| JournalWrite::GetEventCompleted {
                    op,
                    name,
                    outcome,
                    deadline,
                },
            )
            .await?;
        Ok(match waited {
            Waited::Recorded(outcome) => outcome,
            Waited::Now(outcome) => outcome,
        })
    }
}

impl messages::Host for RunHost {
    async fn send(
        &mut self,
        workflow_id: String,
        topic: String,
        message: String,
        idempotency_key: Option<String>,
    ) -> Result<(), HostError> {
        if let Err(refusal) = self.outside_step("send") {
            return Err(refusal.into());
        }
        // Refusals that depend on the arguments alone take no operation.
        let target = match WorkflowId::parse(&workflow_id) {
            Ok(target) => target,
            Err(e) => return invalid(GuestErrorCode::InvalidArgument, e.0),
        };
        if let Err(e) = domain::validate_topic(&topic) {
            return invalid(GuestErrorCode::InvalidArgument, e.0);
        }
        if let Err(refusal) = self.check_value("message", &message) {
            return Err(refusal.into());
        }
        let name = format!("{target}/{topic}");
        let (op, recorded) = self.next_operation(OperationKind::Send, &name)?;
        let delivered = match recorded {
            // Replay: sent (or not) already; never again.
            Some(entry) => entry.outcome.as_deref() == Some("true"),
            None => {
                // Whether the target exists is decided once, here, and
                // journaled with the send: a replay gives the same answer.
                let exists = self
                    .exec
                    .store
                    .get_run(&target)
                    .await
                    .map_err(|e| HostFailure::Host(format!("reading run failed: {e}")))?
                    .is_some();
                // Without a key of the caller's, the send's own place in
                // the journal is one: a message is delivered once even if
                // the journal were lost.
                let idempotency_key =
                    Some(idempotency_key.unwrap_or_else(|| format!("{}#{op}", self.run)));
                self.write(JournalWrite::Send {
                    op,
                    name,
                    message: NewMessage {
                        run: target.clone(),
                        topic: topic.clone(),
                        message,
                        idempotency_key,
                    },
                    delivered: exists,
                })
                .await?;
                if exists {
                    self.exec.wake(&Change::Message {
                        run: target.clone(),
                        topic,
                    });
                }
                exists
            }
        };
        if delivered {
            Ok(())
        } else {
            invalid(
                GuestErrorCode::NotFound,
                format!("run {target} does not exist; the message was not sent"),
            )
        }
    }

    async fn recv(&mut self, topic: String, timeout_ms: u64) -> Result<Option<String>, HostError> {
        if let Err(refusal) = self.outside_step("recv") {
            return Err(refusal.into());
        }
        if let Err(e) = domain::validate_topic(&topic) {
            return Err(HostError::from(GuestError::new(
                GuestErrorCode::InvalidArgument,
                e.0,
            )));
        }
        let store = self.exec.store.clone();
        let run = self.run.clone();
        let waited = self
            .journaled_wait(
                OperationKind::Recv,
                topic.clone(),
                timeout_ms,
                WaitKey::Message {
                    run: run.clone(),
                    topic: topic.clone(),
                },
                || store.next_message(&run, &topic),
                // A wake-up only says that something arrived: read it.
                |_| None,
                |op, name, received, deadline| JournalWrite::RecvCompleted {
                    op,
                    name,
                    received,
                    deadline,
                },
            )
            .await?;
        Ok(match waited {
            Waited::Recorded(outcome) => outcome,
            Waited::Now(received) => received.map(|m| m.message),
        })
    }
}

impl wit_children::Host for RunHost {
    async fn start_child(
        &mut self,
        module: String,
        workflow: String,
        input: String,
        id: Option<String>,
    ) -> Result<String, HostError> {
        if let Err(refusal) = self.outside_step("start-child") {
            return Err(refusal.into());
        }
        // Refusals that depend on the arguments alone take no operation.
        let module_name = match ModuleName::parse(&module) {
            Ok(name) => name,
            Err(e) => {
                return Err(HostError::from(GuestError::new(
                    GuestErrorCode::InvalidArgument,
                    e.0,
                )));
            }
        };
        if let Err(refusal) = self.check_value("input", &input) {
            return Err(refusal.into());
        }
        let id = match id.as_deref().map(WorkflowId::parse).transpose() {
            Ok(id) => id,
            Err(e) => {
                return Err(HostError::from(GuestError::new(
                    GuestErrorCode::InvalidArgument,
                    e.0,
                )));
            }
        };
        let name = format!("{module}/{workflow}");
        let (op, recorded) = self.next_operation(OperationKind::StartChild, &name)?;
        if let Some(entry) = recorded {
            return Ok(children::decode_start(entry.outcome.as_deref()).map_err(HostFailure::Run)??);
        }
        // A child id that only depends on the journal: if the host dies
        // after starting the child and before journaling it, the replay
        // finds the child it started instead of starting another.
        let id = id.unwrap_or_else(|| children::child_id(&self.run, op));
        // The child's id or input may come from what the run read so far.
        self.flush_readings().await?;
        let started = self
            .exec
            .start(StartRequest {
                module: module_name,
                workflow,
                input,
                id: Some(id),
                timeout: None,
                parent: Some(self.run.clone()),
            })
            .await;
        let outcome = match started {
            Ok(started) => Ok(started.run.id.to_string()),
            Err(ExecutorError::Store(error)) => {
                return Err(HostFailure::Host(format!("starting a child failed: {error}")).into());
            }
            Err(error) => Err(error.into_guest_error()),
        };
        self.write(JournalWrite::Recorded {
            op,
            kind: OperationKind::StartChild,
            name,
            outcome: Some(children::encode_start(&outcome)),
        })
        .await?;
        Ok(outcome?)
    }

    async fn await_child(
        &mut self,
        workflow_id: String,
        timeout_ms: u64,
    ) -> Result<Option<RunResult>, HostError> {
        if let Err(refusal) = self.outside_step("await-child") {
            return Err(refusal.into());
        }
        let child = match WorkflowId::parse(&workflow_id) {
            Ok(child) => child,
            Err(e) => {
                return Err(HostError::from(GuestError::new(
                    GuestErrorCode::InvalidArgument,
                    e.0,
                )));
            }
        };
        let store = self.exec.store.clone();
        if !self.replaying() {
            let exists = store
                .get_run(&child)
                .await
                .map_err(|e| HostFailure::Host(format!("reading run failed: {e}")))?
                .is_some();
            if !exists {
                return Err(HostError::from(GuestError::new(
                    GuestErrorCode::NotFound,
                    format!("run {child} does not exist"),
                )));
            }
        }
        let read = || {
            let (store, child) = (store.clone(), child.clone());
            async move {
                Ok(store
                    .get_run(&child)
                    .await?
                    .filter(|run| run.status.is_terminal())
                    .map(|run| children::encode_result(&run)))
            }
        };
        let waited = self
            .journaled_wait(
                OperationKind::AwaitChild,
                child.to_string(),
                timeout_ms,
                WaitKey::Finished(child.clone()),
                read,
                // A run's end is published without a value: read it.
                |_| None,
                |op, name, outcome, deadline| JournalWrite::WaitCompleted {
                    op,
                    kind: OperationKind::AwaitChild,
                    name,
                    outcome,
                    deadline,
                },
            )
            .await?;
        let outcome = match waited {
            Waited::Recorded(outcome) | Waited::Now(outcome) => outcome,
        };
        Ok(outcome
            .map(|json| children::decode_result(&json).map_err(HostFailure::Run))
            .transpose()?)
    }
}

impl timers::Host for RunHost {
    async fn sleep(&mut self, duration_ms: u64) -> wasmtime::Result<()> {
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
        tokio::time::sleep_until(self.instant_of(deadline)).await;
        Ok(())
    }
}

impl crate::runtime::wit::steps::Host for RunHost {
    async fn begin_step(
        &mut self,
        name: String,
        policy: RetryPolicy,
    ) -> Result<StepState, HostError> {
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
                        // Recovered while waiting for the next attempt:
                        // wait out the journaled time, no more.
                        tokio::time::sleep_until(self.instant_of(retry_at)).await;
                    }
                }
            }
        }
    }

    async fn end_attempt(
        &mut self,
        outcome: Result<String, String>,
    ) -> Result<StepState, HostError> {
        let Some(step) = self.cursor.take_step() else {
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
            Err(message) => (Err(steps::truncate(message, limit)), true),
        };
        let now = self.exec.clock.now();
        let retry_at = match &output {
            Err(_) if retryable && step.attempt < step.policy.max_attempts => {
                Some(now.saturating_add(steps::delay_ms(&step.policy, step.attempt)))
            }
            _ => None,
        };
        if let Err(error) = &output {
            super::emit_guest_log(
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
        let Some(retry_at) = retry_at else {
            return Ok(StepState::Finished(output));
        };
        tokio::time::sleep_until(self.instant_of(retry_at)).await;
        let (op, _) = self.next_operation(OperationKind::Step, &step.name)?;
        let attempt = step.attempt + 1;
        self.cursor.open_step(OpenStep {
            op,
            attempt,
            started_at: self.exec.clock.now(),
            ..step
        });
        Ok(StepState::Attempt(attempt))
    }
}

impl context::Host for RunHost {
    async fn workflow_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.run.to_string())
    }

    async fn log(
        &mut self,
        level: context::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        // A replay re-runs code whose logs were already emitted.
        if self.replaying() {
            return Ok(());
        }
        super::emit_guest_log(
            level.into(),
            &format!("run {}", self.run),
            &message,
            &fields,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ModuleName, NewRun};
    use crate::executor::{Executor, Limits, ManualClock};
    use crate::runtime::Runtime;
    use crate::runtime::wit::events::Host as _;
    use crate::runtime::wit::steps::Host as _;
    use crate::store::{SqliteOptions, SqliteStore};

    /// When the tests' clock starts.
    const START: i64 = 1_700_000_000_000;

    async fn executor(dir: &std::path::Path) -> Executor {
        executor_on(dir, Arc::new(ManualClock::at(START))).await
    }

    async fn executor_on(dir: &std::path::Path, clock: Arc<ManualClock>) -> Executor {
        let store = SqliteStore::open(SqliteOptions::new(dir.join("cairn.db")))
            .await
            .unwrap();
        Executor::new(
            Arc::new(store),
            Runtime::new(None, crate::runtime::GuestLimits::default()).unwrap(),
            clock,
            Limits::default(),
        )
        .await
        .unwrap()
    }

    /// A host for run `id` that replays `journal` (empty: a first execution).
    fn host(exec: &Executor, id: &WorkflowId, journal: Vec<JournalEntry>) -> RunHost {
        RunHost::new(
            exec.inner.clone(),
            id.clone(),
            journal,
            AllowList::default(),
        )
    }

    async fn pending_run(exec: &Executor, id: &str) -> WorkflowId {
        let id = WorkflowId::parse(id).unwrap();
        exec.inner
            .store
            .create_run(NewRun {
                id: id.clone(),
                module: ModuleName::parse("m").unwrap(),
                version: "sha256:x".into(),
                workflow: "w".into(),
                input: "null".into(),
                now: 0,
                deadline: None,
                parent: None,
            })
            .await
            .unwrap();
        id
    }

    #[tokio::test]
    async fn a_replayed_set_event_writes_nothing_again() {
        let dir = tempfile::tempdir().unwrap();
        let exec = executor(dir.path()).await;
        let run = pending_run(&exec, "r").await;
        let mut first = host(&exec, &run, Vec::new());
        first.set_event("k".into(), "1".into()).await.unwrap();

        let journal = exec.journal(&run).await.unwrap();
        let mut replay = host(&exec, &run, journal);
        assert!(replay.replaying());
        replay.set_event("k".into(), "1".into()).await.unwrap();
        assert_eq!(exec.event_history(&run, None).await.unwrap().len(), 1);
        // Past the journal, calls are new operations again.
        replay.set_event("k".into(), "2".into()).await.unwrap();
        let history = exec.event_history(&run, None).await.unwrap();
        assert_eq!(history.iter().map(|e| e.op).collect::<Vec<_>>(), [0, 1]);
    }

    #[tokio::test]
    async fn a_replay_that_departs_from_the_journal_fails_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let exec = executor(dir.path()).await;
        let run = pending_run(&exec, "r").await;
        let mut first = host(&exec, &run, Vec::new());
        first.set_event("step1".into(), "1".into()).await.unwrap();

        let journal = exec.journal(&run).await.unwrap();
        let mut replay = RunHost::new(
            exec.inner.clone(),
            run.clone(),
            journal.clone(),
            AllowList::default(),
        );
        let failure = replay
            .get_event("other".into(), "k".into(), 0)
            .await
            .unwrap_err();
        let Some(HostFailure::Run(message)) = failure.failure().cloned() else {
            panic!("non-determinism is the run's fault: {failure:?}");
        };
        assert!(message.contains("non-determinism"), "{message}");
        assert!(message.contains("set-event(\"step1\")"), "{message}");
        assert!(message.contains("get-event(\"other/k\")"), "{message}");

        let mut other_key = host(&exec, &run, journal);
        let failure = other_key
            .set_event("step2".into(), "1".into())
            .await
            .unwrap_err();
        assert!(matches!(failure.failure(), Some(HostFailure::Run(_))));
    }

    #[tokio::test]
    async fn a_replayed_get_event_returns_the_recorded_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let exec = executor(dir.path()).await;
        let target = pending_run(&exec, "target").await;
        let reader = pending_run(&exec, "reader").await;

        let mut writer = host(&exec, &target, Vec::new());
        writer
            .set_event("k".into(), "\"old\"".into())
            .await
            .unwrap();
        let mut first = host(&exec, &reader, Vec::new());
        let seen = first
            .get_event("target".into(), "k".into(), 0)
            .await
            .unwrap();
        assert_eq!(seen.as_deref(), Some("\"old\""));
        // Nothing there yet: journaled as none.
        let missing = first
            .get_event("target".into(), "later".into(), 0)
            .await
            .unwrap();
        assert_eq!(missing, None);

        // The events change; the replay still sees what the run saw.
        writer
            .set_event("k".into(), "\"new\"".into())
            .await
            .unwrap();
        writer.set_event("later".into(), "1".into()).await.unwrap();
        let journal = exec.journal(&reader).await.unwrap();
        let mut replay = host(&exec, &reader, journal);
        let replayed = replay
            .get_event("target".into(), "k".into(), 0)
            .await
            .unwrap();
        assert_eq!(replayed.as_deref(), Some("\"old\""));
        let replayed = replay
            .get_event("target".into(), "later".into(), 0)
            .await
            .unwrap();
        assert_eq!(replayed, None);
    }

    #[tokio::test]
    async fn refused_values_are_guest_errors_that_take_no_operation() {
        let dir = tempfile::tempdir().unwrap();
        let exec = executor(dir.path()).await;
        let run = pending_run(&exec, "r").await;
        let mut host = host(&exec, &run, Vec::new());
        let invalid = host
            .set_event("k".into(), "{nope".into())
            .await
            .unwrap_err()
            .guest()
            .cloned()
            .expect("a refusal");
        assert_eq!(invalid.code, GuestErrorCode::InvalidJson);
        assert!(
            invalid.message.contains("not valid JSON"),
            "{}",
            invalid.message
        );
        let big = format!("\"{}\"", "x".repeat(exec.limits().max_value_bytes));
        let too_large = host
            .set_event("k".into(), big)
            .await
            .unwrap_err()
            .guest()
            .cloned()
            .expect("a refusal");
        assert_eq!(too_large.code, GuestErrorCode::TooLarge);
        assert!(
            too_large.message.contains("limit is 1048576 bytes"),
            "{}",
            too_large.message
        );
        let empty = host
            .set_event(String::new(), "1".into())
            .await
            .unwrap_err()
            .guest()
            .cloned()
            .expect("a refusal");
        assert_eq!(empty.code, GuestErrorCode::InvalidArgument);
        // null is a value, and distinct from no event.
        host.set_event("k".into(), "null".into()).await.unwrap();
        assert_eq!(exec.journal(&run).await.unwrap().len(), 1);
        let value = host.get_event("r".into(), "k".into(), 0).await.unwrap();
        assert_eq!(value.as_deref(), Some("null"));
    }

    #[tokio::test]
    async fn what_a_run_read_is_journaled_before_a_step_uses_it() {
        let dir = tempfile::tempdir().unwrap();
        let exec = executor(dir.path()).await;
        let run = pending_run(&exec, "r").await;
        let mut host = host(&exec, &run, Vec::new());
        // A random idempotency key, drawn outside the step...
        let mut key = [0u8; 8];
        host.environment().fill_random(&mut key);
        let policy = RetryPolicy {
            max_attempts: 1,
            initial_interval_ms: 0,
            backoff_factor: 1.0,
            max_interval_ms: 0,
        };
        let state = host.begin_step("charge".into(), policy).await.unwrap();
        assert!(matches!(state, StepState::Attempt(1)), "{state:?}");
        // ...is durable before the step's work sends it anywhere: a crash
        // during the work replays the same key.
        let journal = exec.journal(&run).await.unwrap();
        let kinds: Vec<_> = journal.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [OperationKind::Random]);
    }

    #[tokio::test]
    async fn journaled_times_come_from_the_executor_clock() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at(START));
        let exec = executor_on(dir.path(), clock.clone()).await;
        let run = pending_run(&exec, "r").await;
        let mut host = host(&exec, &run, Vec::new());
        host.set_event("k".into(), "1".into()).await.unwrap();
        clock.advance(5_000);
        // A look that finds nothing: its deadline is the clock's now.
        let none = host
            .get_event("r".into(), "missing".into(), 0)
            .await
            .unwrap();
        assert_eq!(none, None);
        let journal = exec.journal(&run).await.unwrap();
        assert_eq!(journal[0].recorded_at, START);
        assert_eq!(journal[1].recorded_at, START + 5_000);
        assert_eq!(journal[1].deadline, Some(START + 5_000));
    }
}
