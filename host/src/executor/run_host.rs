//! The host imports of one executing run: the journal, replayed and extended.
//!
//! Each call that has an effect or is not deterministic takes the next
//! operation number. If the journal (loaded when the run started) already
//! holds that number, the recorded outcome is returned and nothing else
//! happens; otherwise the call's effect and its journal entry are committed
//! together, and only then are readers woken.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::Inner;
use super::waiters::WaitKey;
use crate::domain::{self, JournalEntry, JournalWrite, Millis, OperationKind, WorkflowId};
use crate::runtime::{GuestError, GuestErrorCode, HostFailure, HostResult, WorkflowHost};
use crate::store::StoreError;

pub(super) struct RunHost {
    exec: Arc<Inner>,
    run: WorkflowId,
    journal: Vec<JournalEntry>,
    next_op: u32,
}

impl RunHost {
    pub(super) fn new(exec: Arc<Inner>, run: WorkflowId, journal: Vec<JournalEntry>) -> Self {
        Self {
            exec,
            run,
            journal,
            next_op: 0,
        }
    }

    fn replaying(&self) -> bool {
        (self.next_op as usize) < self.journal.len()
    }

    /// Take the next operation number, and the journal entry recorded under
    /// it if the run is replaying. An entry of another kind or about another
    /// thing means the workflow is not deterministic: the run fails.
    fn next_operation(
        &mut self,
        kind: OperationKind,
        name: &str,
    ) -> Result<(u32, Option<JournalEntry>), HostFailure> {
        let op = self.next_op;
        self.next_op += 1;
        let Some(entry) = self.journal.get(op as usize) else {
            return Ok((op, None));
        };
        if entry.kind != kind || entry.name != name {
            return Err(HostFailure::Run(format!(
                "non-determinism in run {}: operation {op} is {}({:?}) in the journal, but the workflow now calls {}({name:?})",
                self.run,
                entry.kind.as_str(),
                entry.name,
                kind.as_str(),
            )));
        }
        Ok((op, Some(entry.clone())))
    }

    async fn write(&self, write: JournalWrite) -> Result<(), HostFailure> {
        let now = self.exec.clock.now();
        self.exec
            .store
            .write_journal(&self.run, write, now)
            .await
            .map_err(|error| match error {
                // Another execution of this run got there first (or the run
                // was finished meanwhile): this one must not go on.
                StoreError::DuplicateOperation { .. } | StoreError::RunNotPending { .. } => {
                    HostFailure::Host(format!("run {} was taken over: {error}", self.run))
                }
                error => HostFailure::Host(format!("journal write failed: {error}")),
            })
    }

    /// The `tokio` instant of a journaled wall-clock deadline.
    fn instant_of(&self, deadline: Millis) -> Instant {
        let remaining = deadline.saturating_sub(self.exec.clock.now()).max(0);
        Instant::now() + Duration::from_millis(remaining as u64)
    }
}

fn invalid(code: GuestErrorCode, message: String) -> HostResult<()> {
    Ok(Err(GuestError::new(code, message)))
}

#[async_trait]
impl WorkflowHost for RunHost {
    fn workflow_id(&self) -> String {
        self.run.to_string()
    }

    async fn set_event(&mut self, key: String, value: String) -> HostResult<()> {
        // Refusals depend on the arguments alone, so they take no operation
        // number: a replay refuses the same calls the same way.
        if let Err(e) = domain::validate_event_key(&key) {
            return invalid(GuestErrorCode::InvalidArgument, e.0);
        }
        let limit = self.exec.limits.max_value_bytes;
        if value.len() > limit {
            return invalid(
                GuestErrorCode::TooLarge,
                format!(
                    "event {key:?} is {} bytes; the limit is {limit} bytes",
                    value.len()
                ),
            );
        }
        if let Err(e) = domain::check_json(&value) {
            return invalid(
                GuestErrorCode::InvalidJson,
                format!("the value of event {key:?} is not valid JSON: {e}"),
            );
        }
        let (op, recorded) = self.next_operation(OperationKind::SetEvent, &key)?;
        if recorded.is_some() {
            // Replay: already written and published; never write it again.
            return Ok(Ok(()));
        }
        self.write(JournalWrite::SetEvent {
            op,
            key: key.clone(),
            value,
        })
        .await?;
        self.exec.waiters.notify(&WaitKey::Event {
            run: self.run.clone(),
            key,
        });
        Ok(Ok(()))
    }

    async fn get_event(
        &mut self,
        workflow_id: String,
        key: String,
        timeout_ms: u64,
    ) -> HostResult<Option<String>> {
        let target = match WorkflowId::parse(&workflow_id) {
            Ok(target) => target,
            Err(e) => return Ok(Err(GuestError::new(GuestErrorCode::InvalidArgument, e.0))),
        };
        if let Err(e) = domain::validate_event_key(&key) {
            return Ok(Err(GuestError::new(GuestErrorCode::InvalidArgument, e.0)));
        }
        let name = format!("{target}/{key}");
        let (op, recorded) = self.next_operation(OperationKind::GetEvent, &name)?;
        let (deadline, wait_journaled) = match recorded {
            Some(entry) if entry.completed => return Ok(Ok(entry.outcome)),
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

        let store = &self.exec.store;
        let read_failed = |e: StoreError| HostFailure::Host(format!("reading event failed: {e}"));
        let subscription = self.exec.waiters.subscribe(WaitKey::Event {
            run: target.clone(),
            key: key.clone(),
        });
        let mut outcome = store.get_event(&target, &key).await.map_err(read_failed)?;
        if outcome.is_none() && deadline > self.exec.clock.now() {
            if !wait_journaled {
                // Record the deadline before waiting, so a recovery resumes
                // the same wait instead of starting a new one.
                self.write(JournalWrite::GetEventStarted {
                    op,
                    name: name.clone(),
                    deadline,
                })
                .await?;
            }
            outcome = subscription
                .wait_for(self.instant_of(deadline), || store.get_event(&target, &key))
                .await
                .map_err(read_failed)?;
        }
        drop(subscription);
        self.write(JournalWrite::GetEventCompleted {
            op,
            name,
            outcome: outcome.clone(),
            deadline,
        })
        .await?;
        Ok(Ok(outcome))
    }

    fn log(&mut self, level: tracing::Level, message: &str, fields: &[(String, String)]) {
        // A replay re-runs code whose logs were already emitted.
        if self.replaying() {
            return;
        }
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let run = self.run.as_str();
        match level {
            tracing::Level::ERROR => {
                tracing::error!(target: "cairn::guest", run, fields, "{message}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "cairn::guest", run, fields, "{message}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: "cairn::guest", run, fields, "{message}")
            }
            tracing::Level::DEBUG => {
                tracing::debug!(target: "cairn::guest", run, fields, "{message}")
            }
            tracing::Level::TRACE => {
                tracing::trace!(target: "cairn::guest", run, fields, "{message}")
            }
        }
    }
}
