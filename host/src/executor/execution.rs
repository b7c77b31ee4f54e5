//! Executing a run: a task per execution, a guest instance in a slot, the
//! run's time limit, and recording how it ended.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::cursor::JournalCursor;
use super::reach::Reach;
use super::run_host::RunHost;
use super::{AllowList, Inner, steps};
use crate::domain::{self, JournalEntry, ModuleSettings, RunOutcome, RunRecord, RunStatus};
use crate::metrics::metrics;
use crate::runtime::{GuestLimits, GuestOutcome, HostFailure};
use crate::store::Change;
use tracing::Instrument;

impl Inner {
    /// Execute `run` in a task of its own, which [`Executor::cancel`] can
    /// stop: from `journal` for a new run, else from the journal as stored,
    /// read once the execution has an instance slot (so runs queued for a
    /// slot hold no journal in memory). An execution of the same run still
    /// going here (one that lost the run's lease and was given it again) is
    /// stopped.
    pub(super) fn spawn_execution(
        self: &Arc<Self>,
        run: RunRecord,
        journal: Option<Vec<JournalEntry>>,
    ) {
        let id = run.id.clone();
        let mut executions = self.executions.lock().expect("executions lock");
        let inner = self.clone();
        let task = tokio::spawn(async move {
            let id = run.id.clone();
            inner.clone().execute(run, journal).await;
            // Inserted before this task could get here: the lock was held.
            // Only this task's own entry: a successor may have replaced it.
            let mut executions = inner.executions.lock().expect("executions lock");
            if executions
                .get(&id)
                .is_some_and(|handle| handle.id() == tokio::task::id())
            {
                executions.remove(&id);
            }
        });
        if let Some(previous) = executions.insert(id, task.abort_handle()) {
            previous.abort();
        }
    }

    /// Run `run` in a fresh instance, replaying its journal, until it ends
    /// (then record how) or parks.
    pub(super) async fn execute(
        self: Arc<Self>,
        run: RunRecord,
        journal: Option<Vec<JournalEntry>>,
    ) {
        let settings = self.module_settings(&run.module, &run.version).await;
        let limits = self.guest_limits(&settings);
        // Checked against the host's list again: it may have narrowed since
        // the module was deployed.
        let allowed_hosts = AllowList::parse(&settings.allowed_hosts)
            .unwrap_or_default()
            .within(&self.limits.allowed_hosts);
        let cursor = JournalCursor::new(
            run.id.clone(),
            Vec::new(),
            (self.limits.max_journal_entries, self.limits.max_run_bytes),
            allowed_hosts,
        );
        cursor.start_at(run.created_at);
        let span = attempt_span(&run);
        let trace = crate::telemetry::SpanParent::of(&span);
        let attempt = async {
            self.queued_runs.fetch_add(1, Ordering::Relaxed);
            let slot = self.instance_slots.clone().acquire_owned().await;
            self.queued_runs.fetch_sub(1, Ordering::Relaxed);
            // The semaphore is never closed.
            let _slot = slot.expect("instance slots stay open");
            let journal = match journal {
                Some(journal) => journal,
                None => match self.store.journal(&run.id).await {
                    Ok(journal) => journal,
                    Err(error) => {
                        return GuestOutcome::HostFailed(format!(
                            "cannot read the run's journal: {error}"
                        ));
                    }
                },
            };
            cursor.load(journal);
            let reach = Reach::of(&run.module, &settings);
            let host = RunHost::executing(self.clone(), &run, cursor.clone(), reach, trace);
            let version = &run.version;
            let bytes = async || self.module_bytes(version).await;
            self.runtime
                .run(version, bytes, host, &run.workflow, &run.input, limits)
                .await
        }
        .instrument(span.clone());
        let outcome = match run.deadline {
            None => Some(attempt.await),
            Some(deadline) => {
                let remaining = deadline.saturating_sub(self.clock.now()).max(0) as u64;
                // Past the deadline the instance is dropped wherever it is.
                tokio::time::timeout(Duration::from_millis(remaining), attempt)
                    .await
                    .ok()
            }
        };
        let outcome = match outcome {
            None => RunOutcome::Cancelled {
                message: format!(
                    "the run did not finish within its time limit of {} ms",
                    run.deadline.unwrap_or_default() - run.dequeued_at.unwrap_or(run.created_at)
                ),
            },
            // A clock or random reading that did not match the journal.
            Some(_) if let Some(failure) = cursor.failure() => match failure {
                HostFailure::Run(message) => RunOutcome::Error { message },
                HostFailure::Host(message) => {
                    tracing::error!(run = %run.id, %message, "run interrupted by a host failure");
                    self.retry_stranded(run);
                    return;
                }
                HostFailure::Parked => {
                    self.forget_stranded(&run.id);
                    return;
                }
            },
            Some(outcome) => match outcome {
                GuestOutcome::Returned(output) => self.check_output(output),
                GuestOutcome::Failed(message) | GuestOutcome::Trapped(message) => {
                    // A guest's text: bounded like its values, and storable.
                    RunOutcome::Error {
                        message: steps::truncate(
                            domain::storable_text(message),
                            self.limits.max_value_bytes,
                        ),
                    }
                }
                GuestOutcome::HostFailed(message) => {
                    // Not the run's fault: it stays PENDING, to be tried
                    // again here after a backoff.
                    tracing::error!(run = %run.id, %message, "run interrupted by a host failure");
                    self.retry_stranded(run);
                    return;
                }
                // Waiting in the database, to be woken and replayed.
                GuestOutcome::Parked => {
                    self.forget_stranded(&run.id);
                    return;
                }
            },
        };
        match &outcome {
            RunOutcome::Error { message } => {
                crate::telemetry::set_error(&span, message);
                tracing::info!(run = %run.id, workflow = %run.workflow, %message, "run failed");
            }
            RunOutcome::Cancelled { message } => crate::telemetry::set_error(&span, message),
            RunOutcome::Success { .. } => {}
        }
        span.record("run.status", outcome_status(&outcome).as_str());
        // Readings since the last write: not needed for a replay any more,
        // but part of the run's journal for whoever reads it.
        let readings = cursor.take_pending();
        if !readings.is_empty()
            && let Err(error) = self
                .store
                .write_journal_entries(&run.id, Some(run.epoch), readings, self.clock.now())
                .await
        {
            tracing::warn!(run = %run.id, %error, "cannot journal the run's last clock readings");
        }
        let status = outcome_status(&outcome);
        if let Err(error) = self
            .store
            .finish_run_fenced(&run.id, Some(run.epoch), outcome, self.clock.now())
            .await
        {
            tracing::error!(run = %run.id, %error, "cannot record the end of a run; retrying");
            self.retry_stranded(run);
            return;
        }
        self.known.ended(&run.id, status);
        metrics().run_finished(run.module.as_str(), &run.workflow, status.as_str());
        self.forget_stranded(&run.id);
        self.wake(&Change::Finished(run.id.clone()));
        if Self::frees_a_queue_slot(&run) {
            self.look_at_queues();
        }
    }

    /// The host's guest limits, with the overrides of a module version
    /// (checked against the host's bounds when it was deployed).
    pub(super) fn guest_limits(&self, settings: &ModuleSettings) -> GuestLimits {
        let mut limits = self.runtime.limits().clone();
        if let Some(bytes) = settings.max_memory_bytes {
            limits.max_memory_bytes = bytes;
        }
        if let Some(ms) = settings.cpu_slice_ms {
            limits.cpu_slice = Duration::from_millis(ms);
        }
        limits
    }

    pub(super) fn check_output(&self, output: String) -> RunOutcome {
        let limit = self.limits.max_value_bytes;
        if output.len() > limit {
            return RunOutcome::Error {
                message: format!(
                    "the workflow's output is {} bytes; the limit is {limit} bytes",
                    output.len()
                ),
            };
        }
        match domain::check_json(&output) {
            Ok(()) => RunOutcome::Success { output },
            Err(e) => RunOutcome::Error {
                message: format!("the workflow's output is not valid JSON: {e}"),
            },
        }
    }
}

fn outcome_status(outcome: &RunOutcome) -> RunStatus {
    match outcome {
        RunOutcome::Success { .. } => RunStatus::Success,
        RunOutcome::Error { .. } => RunStatus::Error,
        RunOutcome::Cancelled { .. } => RunStatus::Cancelled,
    }
}

/// The span of one attempt of `run`, under the trace context it was
/// started in: every attempt, a recovered one too, joins the same trace.
///
/// At `debug`, like every span of the traces: only the exporter's filter
/// takes it. (At `info` the log's filter took it too, and on PostgreSQL the
/// exporter's filter then never saw it: per-layer filters sharing one span
/// callsite.)
fn attempt_span(run: &RunRecord) -> tracing::Span {
    let span = tracing::debug_span!(
        "run",
        otel.name = %format!("run {}", run.workflow),
        run.id = %run.id,
        run.module = %run.module,
        run.workflow = %run.workflow,
        run.attempt = run.attempts,
        run.status = tracing::field::Empty,
    );
    if let Some(traceparent) = &run.traceparent {
        crate::telemetry::set_parent(&span, traceparent);
    }
    span
}
