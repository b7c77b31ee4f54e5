//! `children`: starting a child run (its id or refusal journaled) and
//! awaiting its end as a journaled wait.

use super::{RunHost, Waited};
use crate::domain::{Admission, JournalWrite, ModuleName, OperationKind, QueueName, WorkflowId};
use crate::executor::waiters::WaitKey;
use crate::executor::{ExecutorError, StartRequest, children};
use crate::runtime::wit::children as wit_children;
use crate::runtime::{GuestError, GuestErrorCode, HostError, HostFailure, RunResult};

impl wit_children::Host for RunHost {
    async fn start_child(
        &mut self,
        module: String,
        workflow: String,
        input: String,
        id: Option<String>,
    ) -> Result<String, HostError> {
        let _call = self.host_call("start-child");
        self.start_child_admitted(module, workflow, input, id, None)
            .await
    }

    async fn start_child_with(
        &mut self,
        module: String,
        workflow: String,
        input: String,
        id: Option<String>,
        options: wit_children::ChildOptions,
    ) -> Result<String, HostError> {
        let _call = self.host_call("start-child-with");
        let queue = match options.queue.as_deref().map(QueueName::parse).transpose() {
            Ok(queue) => queue,
            Err(e) => {
                return Err(HostError::from(GuestError::new(
                    GuestErrorCode::InvalidArgument,
                    e.0,
                )));
            }
        };
        // The start time counts from the call; the start is journaled, so
        // a replay does not count it again.
        let start_at = options.delay_ms.map(|ms| {
            self.exec
                .clock
                .now()
                .saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
        });
        let admission = Admission {
            queue,
            priority: options.priority.unwrap_or(0),
            deduplication_id: options.deduplication_id,
            partition_key: options.partition_key,
            start_at,
        };
        let admission = (admission != Admission::default()).then_some(admission);
        self.start_child_admitted(module, workflow, input, id, admission)
            .await
    }

    async fn await_child(
        &mut self,
        workflow_id: String,
        timeout_ms: u64,
    ) -> Result<Option<RunResult>, HostError> {
        let _call = self.host_call("await-child");
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
            let found = store
                .get_run(&child)
                .await
                .map_err(|e| HostFailure::Host(format!("reading run failed: {e}")))?;
            match found {
                None => {
                    return Err(HostError::from(GuestError::new(
                        GuestErrorCode::NotFound,
                        format!("run {child} does not exist"),
                    )));
                }
                // Another run's output is not this one's to read.
                Some(run) if run.parent.as_ref() != Some(&self.run) => {
                    return Err(HostError::from(GuestError::new(
                        GuestErrorCode::NotAllowed,
                        format!(
                            "run {child} is not a child of this run; a workflow may await only the children it started with start-child"
                        ),
                    )));
                }
                Some(_) => {}
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
                WaitKey::Finished(child.clone()).into(),
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

    async fn parent_id(&mut self) -> Result<Option<String>, HostError> {
        let _call = self.host_call("parent-id");
        // Written once, when the run was created: nothing to journal.
        let run = self
            .exec
            .store
            .get_run(&self.run)
            .await
            .map_err(|e| HostFailure::Host(format!("reading run failed: {e}")))?
            .ok_or_else(|| HostFailure::Host(format!("run {} vanished", self.run)))?;
        Ok(run.parent.map(|parent| parent.to_string()))
    }
}

impl RunHost {
    /// `start-child`, with how the child is admitted.
    async fn start_child_admitted(
        &mut self,
        module: String,
        workflow: String,
        input: String,
        id: Option<String>,
        admission: Option<Admission>,
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
        if !self.reaches(&module_name) {
            return Err(HostError::from(GuestError::new(
                GuestErrorCode::NotAllowed,
                format!(
                    "module {module_name} is outside this module's reach (its deployment's `reach` setting)"
                ),
            )));
        }
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
                // A parent's deadline bounds its children.
                deadline_cap: self.run_deadline,
                admission,
                // The child's spans hang under this attempt of the parent.
                traceparent: crate::telemetry::traceparent_of(&tracing::Span::current()),
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
}
