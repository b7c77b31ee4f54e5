//! The run lifecycle: starting runs, recovering `PENDING` runs after a
//! restart (or another host's death), cancelling, resuming and forking.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{
    ClusterOptions, Executor, ExecutorError, Inner, RecoveryReport, Result, StartRequest, Started,
    cluster,
};
use crate::domain::{self, NewRun, RunRecord, RunStatus, WorkflowId};
use crate::metrics::metrics;
use crate::store::{Change, CreateRun, StoreError};

impl Executor {
    /// Start a run on the current version of its module, or return the
    /// existing run with that id.
    pub async fn start(&self, request: StartRequest) -> Result<Started> {
        self.inner.start(request).await
    }

    /// Execute every `PENDING` run again, from its journal; give up on runs
    /// recovered too often.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        let report = self.inner.recover().await?;
        // Parked runs are not recovered but woken, by the waker from now on;
        // enqueued ones are dequeued.
        self.inner.start_waking();
        self.inner.start_dequeueing();
        self.inner.start_scheduling();
        self.inner.start_retention();
        Ok(report)
    }

    /// Take on the duties of a host that shares its database with others
    /// (leases, claims, change notifications); see `cluster.rs`. Call once,
    /// after [`Executor::recover`], when the store is shared.
    pub async fn start_cluster_duties(&self, options: ClusterOptions) -> Result<()> {
        Ok(cluster::start(self.inner.clone(), options).await?)
    }

    /// Cancel a `PENDING` run: it ends `CANCELLED` at once, and its
    /// execution is stopped wherever it is (a sleep, a wait), its instance
    /// dropped. What it journaled stays; [`Executor::resume`] goes on from
    /// there.
    /// Cancel a `PENDING` run and, with `tree`, its `PENDING` descendants
    /// (as DBOS cancels a workflow's children): a child left running would
    /// go on doing work nobody awaits.
    pub async fn cancel(&self, id: &WorkflowId, tree: bool) -> Result<RunRecord> {
        let run = self.cancel_one(id).await?;
        if tree {
            let mut parents = vec![id.clone()];
            while let Some(parent) = parents.pop() {
                for child in self.inner.store.pending_children(&parent).await? {
                    match self.cancel_one(&child).await {
                        // Finished meanwhile: nothing to cancel below it.
                        Ok(_) | Err(ExecutorError::WrongStatus { .. }) => parents.push(child),
                        Err(error) => return Err(error),
                    }
                }
            }
        }
        Ok(run)
    }

    async fn cancel_one(&self, id: &WorkflowId) -> Result<RunRecord> {
        let inner = &self.inner;
        const WHAT: &str = "only a PENDING or ENQUEUED run can be cancelled";
        let run = match self
            .transition(id, RunStatus::Pending, RunStatus::Cancelled, WHAT)
            .await
        {
            // Not started yet: it leaves its queue.
            Err(ExecutorError::WrongStatus {
                status: RunStatus::Enqueued,
                ..
            }) => {
                self.transition(id, RunStatus::Enqueued, RunStatus::Cancelled, WHAT)
                    .await?
            }
            other => other?,
        };
        if Inner::frees_a_queue_slot(&run) {
            inner.look_at_queues();
        }
        // The status is committed first: an execution that reaches its end
        // meanwhile cannot record it any more (only PENDING runs change).
        if let Some(execution) = inner.executions.lock().expect("executions lock").remove(id) {
            execution.abort();
        }
        inner.known.forget(id);
        metrics().run_finished(
            run.module.as_str(),
            &run.workflow,
            RunStatus::Cancelled.as_str(),
        );
        tracing::info!(run = %id, "run cancelled");
        inner.wake(&Change::Finished(id.clone()));
        Ok(run)
    }

    /// Resume a `CANCELLED` run where it stopped: its error cleared, its
    /// recovery count reset, and a new time limit from now — `timeout` if
    /// given, else its module's `run_timeout_ms` (each capped by it), else
    /// none — so a run that timed out can finish.
    pub async fn resume(&self, id: &WorkflowId, timeout: Option<Duration>) -> Result<RunRecord> {
        let inner = &self.inner;
        let existing = inner
            .store
            .get_run(id)
            .await?
            .ok_or_else(|| ExecutorError::UnknownRun(id.to_string()))?;
        let settings = inner
            .module_settings(&existing.module, &existing.version)
            .await;
        let asked = timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        let timeout_ms = match (asked, settings.run_timeout_ms) {
            (Some(asked), Some(cap)) => Some(asked.min(cap)),
            (asked, cap) => asked.or(cap),
        };
        let now = inner.clock.now();
        let deadline =
            timeout_ms.map(|ms| now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)));
        let run = match inner.store.resume_run(id, deadline, now).await? {
            None => return Err(ExecutorError::UnknownRun(id.to_string())),
            Some((true, run)) => run,
            Some((false, run)) => {
                return Err(ExecutorError::WrongStatus {
                    id: id.to_string(),
                    status: run.status,
                    what: "only a CANCELLED run can be resumed",
                });
            }
        };
        inner.known.forget(id);
        tracing::info!(run = %id, ?timeout_ms, "run resumed");
        self.inner.spawn_execution(run.clone(), None);
        Ok(run)
    }

    /// A new run that re-runs run `source` from operation `from_op`: it
    /// gets the journal and the event writes of `source` before that
    /// operation, so what came before is replayed, not done again.
    pub async fn fork(
        &self,
        source: &WorkflowId,
        from_op: u32,
        id: Option<WorkflowId>,
    ) -> Result<RunRecord> {
        let inner = &self.inner;
        let id = id.unwrap_or_else(WorkflowId::generate);
        let run = match inner
            .store
            .fork_run(source, &id, from_op, inner.clock.now())
            .await
        {
            Ok(run) => run,
            Err(StoreError::UnknownRun(run)) => return Err(ExecutorError::UnknownRun(run)),
            Err(StoreError::RunExists(run)) => return Err(ExecutorError::RunExists(run)),
            Err(error) => return Err(error.into()),
        };
        tracing::info!(run = %id, %source, from_op, "run forked");
        metrics().run_started(run.module.as_str(), &run.workflow);
        inner.spawn_execution(run.clone(), None);
        Ok(run)
    }

    /// Move run `id` from `from` to `to`, or say why not.
    async fn transition(
        &self,
        id: &WorkflowId,
        from: RunStatus,
        to: RunStatus,
        what: &'static str,
    ) -> Result<RunRecord> {
        let now = self.inner.clock.now();
        match self.inner.store.transition_run(id, from, to, now).await? {
            None => Err(ExecutorError::UnknownRun(id.to_string())),
            Some((true, run)) => Ok(run),
            Some((false, run)) => Err(ExecutorError::WrongStatus {
                id: id.to_string(),
                status: run.status,
                what,
            }),
        }
    }
}

impl Inner {
    /// Start a run on the current version of its module, or return the
    /// existing run with that id.
    pub(super) async fn start(self: &Arc<Self>, request: StartRequest) -> Result<Started> {
        let mut module = self.current_module(&request.module);
        if module.is_none() && self.store.shared() {
            // Perhaps deployed through another host a moment ago.
            self.reload_catalog().await?;
            module = self.current_module(&request.module);
        }
        let module =
            module.ok_or_else(|| ExecutorError::UnknownModule(request.module.to_string()))?;
        if !module.workflows.contains(&request.workflow) {
            return Err(ExecutorError::UnknownWorkflow {
                module: request.module.to_string(),
                workflow: request.workflow,
                available: module.workflows.join(", "),
            });
        }
        if let Some(admission) = &request.admission {
            self.check_admission(admission).await?;
        }
        let queued = self.queued_runs.load(Ordering::Relaxed);
        // A child is never refused for a lack of slots: its parent would
        // fail for the host's load, not its own fault. It queues. Nor is a
        // run that waits in the database, not for a slot.
        if queued >= self.limits.max_queued_runs
            && request.parent.is_none()
            && request.admission.is_none()
        {
            return Err(ExecutorError::Overloaded(format!(
                "{queued} runs are already queued for one of the {} instance slots; retry later",
                self.limits.max_live_instances
            )));
        }
        let limit = self.limits.max_value_bytes;
        if request.input.len() > limit {
            return Err(ExecutorError::TooLarge(format!(
                "the input is {} bytes; the limit is {limit} bytes",
                request.input.len()
            )));
        }
        domain::check_json(&request.input).map_err(|e| {
            ExecutorError::InvalidInput(format!("the input is not valid JSON: {e}"))
        })?;
        let now = self.clock.now();
        // The module's limit caps what a start request asks for: a client
        // may shorten a run's time, never lengthen it past the module's.
        let asked = request
            .timeout
            .map(|timeout| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        let timeout_ms = match (asked, module.settings.run_timeout_ms) {
            (Some(asked), Some(cap)) => Some(asked.min(cap)),
            (asked, cap) => asked.or(cap),
        };
        let own = timeout_ms.map(|ms| now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)));
        // An enqueued run's own limit counts from when it leaves the queue.
        let enqueued = request.admission.is_some();
        let new_run = NewRun {
            deadline: match (own.filter(|_| !enqueued), request.deadline_cap) {
                (Some(own), Some(cap)) => Some(own.min(cap)),
                (own, cap) => own.or(cap),
            },
            timeout_ms: timeout_ms.filter(|_| enqueued),
            traceparent: request.traceparent,
            admission: request.admission,
            id: request.id.unwrap_or_else(WorkflowId::generate),
            module: request.module,
            version: module.version,
            workflow: request.workflow,
            input: request.input,
            parent: request.parent,
            now,
        };
        let created = self.store.create_run(new_run.clone()).await?;
        if let CreateRun::Created(run) = &created {
            metrics().run_started(run.module.as_str(), &run.workflow);
        }
        match created {
            CreateRun::Created(run) if run.status == RunStatus::Enqueued => {
                tracing::debug!(run = %run.id, "run enqueued");
                self.look_at_queues();
                Ok(Started { run, created: true })
            }
            CreateRun::Created(run) => {
                self.known.begin(&run.id);
                self.spawn_execution(run.clone(), Some(Vec::new()));
                Ok(Started { run, created: true })
            }
            CreateRun::Duplicate(holder) => {
                let admission = holder.admission.clone().unwrap_or_default();
                Err(ExecutorError::Duplicate {
                    queue: admission.queue.map(|q| q.to_string()).unwrap_or_default(),
                    deduplication_id: admission.deduplication_id.unwrap_or_default(),
                    existing: holder.id.to_string(),
                })
            }
            CreateRun::Existing(run)
                if run.module == new_run.module && run.workflow == new_run.workflow =>
            {
                Ok(Started {
                    run,
                    created: false,
                })
            }
            CreateRun::Existing(run) => Err(ExecutorError::Conflict {
                id: run.id.to_string(),
                existing_module: run.module.to_string(),
                existing_workflow: run.workflow,
                module: new_run.module.to_string(),
                workflow: new_run.workflow,
            }),
        }
    }

    /// Execute every `PENDING` run again, from its journal; give up on runs
    /// recovered too often.
    pub(super) async fn recover(self: &Arc<Self>) -> Result<RecoveryReport> {
        let inner = self;
        let claim = inner
            .store
            .claim_recovery(inner.limits.max_recovery_attempts, inner.clock.now())
            .await?;
        for id in &claim.exceeded {
            tracing::warn!(run = %id, "run exceeded its recovery attempts");
            inner.wake(&Change::Finished(id.clone()));
        }
        let resumed = claim.resume.len();
        for run in claim.resume {
            // The journal is read when the execution gets a slot: a host
            // with many runs to recover does not hold all their journals.
            tracing::info!(run = %run.id, attempt = run.attempts, "recovering run");
            inner.spawn_execution(run, None);
        }
        Ok(RecoveryReport {
            resumed,
            exceeded: claim.exceeded.len(),
        })
    }
}
