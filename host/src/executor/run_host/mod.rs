//! The host imports of one executing run: the journal, replayed and extended.
//!
//! Each call that has an effect or is not deterministic takes the next
//! operation number. If the journal (loaded when the run started) already
//! holds that number, the recorded outcome is returned and nothing else
//! happens; otherwise the call's effect and its journal entry are committed
//! together, and only then are readers woken. Clock readings and the
//! random seed the guest took since the last write (see `cursor.rs`) are
//! journaled in the same transaction, ahead of it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Inner;
use super::cursor::JournalCursor;
use super::parking::WaitOn;
use super::reach::Reach;
#[cfg(test)]
use crate::domain::AllowList;
use crate::domain::{
    self, JournalEntry, JournalWrite, Millis, ModuleName, OperationKind, RunRecord, WorkflowId,
};
use crate::metrics::{Timer, metrics};
use crate::runtime::wit::types;
use crate::runtime::{
    GuestEnvironment, GuestError, GuestErrorCode, HostError, HostFailure, WorkflowImports,
};
use crate::store::StoreError;
use crate::telemetry::{LeafSpan, SpanParent};
use opentelemetry::KeyValue;

/// The journaled host of one executing run: it implements the generated
/// `Host` traits of every Cairn import (public only so that
/// `Runtime<RunHost>` can be named; nothing outside the executor makes one).
pub struct RunHost {
    exec: Arc<Inner>,
    run: WorkflowId,
    /// The run's epoch when this execution got it: its writes are fenced by it.
    epoch: Option<u64>,
    /// The run's own time limit: a parked run is woken by it at the latest.
    run_deadline: Option<Millis>,
    cursor: Arc<JournalCursor>,
    /// Log lines this execution emitted: `log` is no durable operation, so
    /// the journal's limit does not bound it.
    log_lines: u32,
    /// The modules (besides its own) whose runs this one may start, read
    /// and send to, when its module's deployment narrowed them.
    reach: Option<Reach>,
    /// The streams this run has closed, as far as this execution has
    /// replayed or made its calls: a later write to one is refused, the
    /// same way on every replay.
    closed_streams: HashSet<String>,
    /// The run attempt's span, when traces are exported: its host calls'
    /// spans are made under it.
    trace: Option<SpanParent>,
}

impl std::fmt::Debug for RunHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHost")
            .field("run", &self.run)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// A host call in progress: its duration's metric and its span, both
/// ended when it is dropped (on every path out of the call, errors and
/// traps included).
struct HostCall {
    _timer: Timer,
    _span: Option<LeafSpan>,
}

impl RunHost {
    /// A host replaying `journal`, unfenced: for tests of the imports.
    #[cfg(test)]
    pub(super) fn new(
        exec: Arc<Inner>,
        run: WorkflowId,
        journal: Vec<JournalEntry>,
        allowed_hosts: AllowList,
    ) -> Self {
        let cursor = JournalCursor::new(
            run.clone(),
            journal,
            (exec.limits.max_journal_entries, exec.limits.max_run_bytes),
            allowed_hosts,
        );
        Self {
            exec,
            run,
            epoch: None,
            run_deadline: None,
            cursor,
            log_lines: 0,
            reach: None,
            closed_streams: HashSet::new(),
            trace: None,
        }
    }

    /// The host of an execution of `run`, replaying what `cursor` holds,
    /// its writes fenced by the run's epoch.
    pub(super) fn executing(
        exec: Arc<Inner>,
        run: &RunRecord,
        cursor: Arc<JournalCursor>,
        reach: Option<Reach>,
        trace: Option<SpanParent>,
    ) -> Self {
        Self {
            exec,
            run: run.id.clone(),
            epoch: Some(run.epoch),
            run_deadline: run.deadline,
            cursor,
            log_lines: 0,
            reach,
            closed_streams: HashSet::new(),
            trace,
        }
    }

    /// Time host call `kind` until the guard is dropped, and, when traces
    /// are exported, make it a span under the run attempt's.
    fn host_call(&self, kind: &'static str) -> HostCall {
        HostCall {
            _timer: metrics().host_call(kind),
            _span: self
                .trace
                .as_ref()
                .map(|run| run.leaf(kind, vec![KeyValue::new("host_call.kind", kind)])),
        }
    }

    /// Whether this run may start, read and send to runs of `module`.
    fn reaches(&self, module: &ModuleName) -> bool {
        self.reach.as_ref().is_none_or(|reach| reach.covers(module))
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
        self.cursor
            .charge(writes.iter().map(JournalWrite::stored_bytes).sum())?;
        let now = self.exec.clock.now();
        // In a task of its own: an execution stopped meanwhile (cancelled,
        // or its host lost the run) cannot cut the write off halfway; the
        // write ends, and its answer goes nowhere.
        let (store, run, epoch) = (self.exec.store.clone(), self.run.clone(), self.epoch);
        let advances = JournalCursor::advance_time(&writes);
        let written =
            tokio::spawn(
                async move { store.write_journal_entries(&run, epoch, writes, now).await },
            )
            .await
            .map_err(|failed| HostFailure::Host(format!("journal write failed: {failed}")))?;
        if written.is_ok() {
            self.cursor.committed(advances, now);
        }
        written.map_err(|error| match error {
            // Another execution of this run got there first (or the run
            // was finished meanwhile, or handed to another host): this one
            // must not go on.
            StoreError::DuplicateOperation { .. }
            | StoreError::RunNotPending { .. }
            | StoreError::Fenced { .. } => {
                self.exec.known.forget(&self.run);
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
        on: WaitOn,
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
        let mut subscription = self.exec.waiters.subscribe(on.key.clone());
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
            let wait = on.parked.map(|(kind, on_run, on_key, on_offset)| {
                self.wait_of(kind, Some(on_run), on_key, on_offset, deadline)
            });
            let _waiting = wait
                .as_ref()
                .map(|wait| self.exec.waiting_in(&self.run, wait));
            loop {
                // In the instance until the deadline, or until it is time
                // to park, whichever comes first.
                let until = match &wait {
                    Some(_) => deadline.min(self.park_at()),
                    None => deadline,
                };
                outcome = subscription
                    .wait_for(self.instant_of(until), &mut read, &from_published)
                    .await
                    .map_err(read_failed)?;
                match &wait {
                    Some(wait) if outcome.is_none() && self.exec.clock.now() < deadline => {
                        // Parked (the instance ends here), or what it waits
                        // for came meanwhile: read it.
                        self.park(wait.clone()).await?;
                    }
                    _ => break,
                }
            }
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

mod children;
mod context;
mod events;
mod messages;
mod parking;
mod streams;
#[cfg(test)]
mod tests;
mod timers;
