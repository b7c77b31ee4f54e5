//! Schedules on the executor's side: managing them, and the scheduler,
//! which fires each schedule's due ticks on every host. A tick's run has a
//! fixed id (`<schedule>@<tick>`), so hosts firing one tick together, or a
//! host firing it again after a crash, start it once; `next_tick` then
//! moves on by compare-and-set.
//!
//! The scheduler sleeps until the earliest `next_tick`, or until a
//! schedule is changed here, or (on a shared store) one poll interval:
//! another host may add a schedule that is due sooner.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use super::{Executor, ExecutorError, Inner, Result, StartRequest};
use crate::domain::{
    Admission, CronTimes, Millis, Overlap, QueueSettings, RunFilter, RunStatus, ScheduleInfo,
    ScheduleName, ScheduleSpec, WorkflowId, tick_input, tick_run_id, tick_time,
};

/// A tick a little late (a busy host, a slow commit) is not a missed one:
/// it fires whatever the catch-up window.
const LATE_GRACE_MS: u64 = 2000;
/// Most ticks one firing or one backfill starts.
pub const MAX_TICKS: usize = 1000;

#[derive(Debug, Default)]
pub(super) struct Scheduling {
    look: Notify,
    started: AtomicBool,
}

/// The queue a `buffer_one` schedule's runs wait in, one at a time.
fn buffer_queue(name: &ScheduleName) -> ScheduleName {
    ScheduleName::parse(&format!("schedule.{name}")).expect("a schedule name fits a queue's")
}

impl Executor {
    /// Create schedule `name` or replace what it starts and when; its next
    /// tick counts from now.
    pub async fn put_schedule(
        &self,
        name: &ScheduleName,
        spec: ScheduleSpec,
    ) -> Result<ScheduleInfo> {
        let times = spec.validate()?;
        let inner = &self.inner;
        let mut module = inner.current_module(&spec.module);
        if module.is_none() && inner.store.shared() {
            // Perhaps deployed through another host a moment ago.
            inner.reload_catalog().await?;
            module = inner.current_module(&spec.module);
        }
        let module = module.ok_or_else(|| ExecutorError::UnknownModule(spec.module.to_string()))?;
        if !module.workflows.contains(&spec.workflow) {
            return Err(ExecutorError::UnknownWorkflow {
                module: spec.module.to_string(),
                workflow: spec.workflow.clone(),
                available: module.workflows.join(", "),
            });
        }
        let now = inner.clock.now();
        if spec.overlap == Overlap::BufferOne {
            let settings = QueueSettings {
                concurrency: Some(1),
                ..QueueSettings::default()
            };
            inner
                .store
                .put_queue(&buffer_queue(name), settings, now)
                .await?;
        }
        let next = times.next_after(now);
        let info = inner.store.put_schedule(name, spec, next, now).await?;
        inner.scheduling.look.notify_one();
        tracing::info!(schedule = %name, next = ?next.map(tick_time), "schedule stored");
        Ok(info)
    }

    pub async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>> {
        Ok(self.inner.store.list_schedules().await?)
    }

    pub async fn get_schedule(&self, name: &ScheduleName) -> Result<ScheduleInfo> {
        self.inner
            .store
            .get_schedule(name)
            .await?
            .ok_or_else(|| ExecutorError::UnknownSchedule(name.to_string()))
    }

    /// Delete a schedule; its runs stay.
    pub async fn delete_schedule(&self, name: &ScheduleName) -> Result<()> {
        if self.inner.store.delete_schedule(name).await? {
            Ok(())
        } else {
            Err(ExecutorError::UnknownSchedule(name.to_string()))
        }
    }

    /// Pause a schedule (no tick fires) or resume it: it goes on from the
    /// next tick after now, the paused ones not caught up.
    pub async fn pause_schedule(&self, name: &ScheduleName, paused: bool) -> Result<ScheduleInfo> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let next = if paused {
            None
        } else {
            let existing = self.get_schedule(name).await?;
            CronTimes::parse(&existing.spec.cron, &existing.spec.timezone)?.next_after(now)
        };
        let info = inner
            .store
            .pause_schedule(name, paused, next, now)
            .await?
            .ok_or_else(|| ExecutorError::UnknownSchedule(name.to_string()))?;
        inner.scheduling.look.notify_one();
        Ok(info)
    }

    /// Fire schedule `name` once now, by hand, whatever its overlap policy:
    /// the run `<name>@<now>`.
    pub async fn trigger_schedule(&self, name: &ScheduleName) -> Result<WorkflowId> {
        let schedule = self.get_schedule(name).await?;
        let now = self.inner.clock.now();
        self.inner
            .start_tick(&schedule, now, Overlap::AllowAll)
            .await?;
        Ok(tick_run_id(name, now))
    }

    /// Fire every tick of schedule `name` in `[from, until)` (at most
    /// [`MAX_TICKS`]), each once, overlapping: the runs' ids.
    pub async fn backfill_schedule(
        &self,
        name: &ScheduleName,
        from: Millis,
        until: Millis,
    ) -> Result<Vec<WorkflowId>> {
        let schedule = self.get_schedule(name).await?;
        let times = CronTimes::parse(&schedule.spec.cron, &schedule.spec.timezone)?;
        let ticks = times.ticks_between(from, until, MAX_TICKS + 1);
        if ticks.len() > MAX_TICKS {
            return Err(ExecutorError::InvalidInput(format!(
                "the range holds more than {MAX_TICKS} ticks; backfill it in parts"
            )));
        }
        let mut ids = Vec::with_capacity(ticks.len());
        for tick in ticks {
            self.inner
                .start_tick(&schedule, tick, Overlap::AllowAll)
                .await?;
            ids.push(tick_run_id(name, tick));
        }
        Ok(ids)
    }
}

impl Inner {
    /// Start the scheduler, once, after the first recovery.
    pub(super) fn start_scheduling(self: &Arc<Self>) {
        if self.scheduling.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move { inner.schedule_loop().await });
    }

    async fn schedule_loop(self: Arc<Self>) {
        loop {
            self.fire_due().await;
            let now = self.clock.now();
            let next = match self.store.next_schedule_tick().await {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(%error, "cannot read when the next schedule is due");
                    Some(now.saturating_add(1000))
                }
            };
            let sleep = self.time_to_look(now, next);
            tokio::select! {
                () = self.scheduling.look.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn fire_due(self: &Arc<Self>) {
        let now = self.clock.now();
        let due = match self.store.due_schedules(now).await {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "cannot read the schedules that are due");
                return;
            }
        };
        for schedule in due {
            if let Err(error) = self.fire(&schedule, now).await {
                tracing::warn!(schedule = %schedule.name, %error, "a schedule's tick failed; trying again");
            }
        }
    }

    /// Fire `schedule`'s ticks up to `now` (those inside its catch-up
    /// window), then move its next tick past now.
    async fn fire(self: &Arc<Self>, schedule: &ScheduleInfo, now: Millis) -> Result<()> {
        let Some(due_from) = schedule.next_tick else {
            return Ok(());
        };
        let times = CronTimes::parse(&schedule.spec.cron, &schedule.spec.timezone)?;
        let window = schedule.spec.catch_up_ms.max(LATE_GRACE_MS);
        let oldest = now.saturating_sub(i64::try_from(window).unwrap_or(i64::MAX));
        let ticks = times.ticks_between(due_from, now.saturating_add(1), MAX_TICKS);
        let skipped = ticks.iter().filter(|tick| **tick < oldest).count();
        if skipped > 0 {
            tracing::warn!(schedule = %schedule.name, skipped, "ticks missed past the catch-up window are skipped");
        }
        for tick in ticks.into_iter().filter(|tick| *tick >= oldest) {
            self.start_tick(schedule, tick, schedule.spec.overlap)
                .await?;
        }
        let next = times.next_after(now);
        self.store
            .advance_schedule(&schedule.name, due_from, next)
            .await?;
        Ok(())
    }

    /// Start the run of `schedule`'s tick at `tick`, as `overlap` says.
    async fn start_tick(
        self: &Arc<Self>,
        schedule: &ScheduleInfo,
        tick: Millis,
        overlap: Overlap,
    ) -> Result<()> {
        let id = tick_run_id(&schedule.name, tick);
        let running = match overlap {
            Overlap::AllowAll => Vec::new(),
            _ => self.running_ticks(&schedule.name, &id).await?,
        };
        let mut admission = None;
        match overlap {
            Overlap::Skip if !running.is_empty() => {
                tracing::info!(schedule = %schedule.name, tick = %tick_time(tick), "tick skipped: the previous run is still going");
                return Ok(());
            }
            Overlap::BufferOne => {
                if running
                    .iter()
                    .any(|(_, status)| *status == RunStatus::Enqueued)
                {
                    tracing::info!(schedule = %schedule.name, tick = %tick_time(tick), "tick skipped: one is already waiting");
                    return Ok(());
                }
                admission = Some(Admission {
                    queue: Some(buffer_queue(&schedule.name)),
                    ..Admission::default()
                });
            }
            Overlap::CancelRunning => {
                for (run, _) in &running {
                    match (Executor {
                        inner: self.clone(),
                    })
                    .cancel(run, true)
                    .await
                    {
                        Ok(_) | Err(ExecutorError::WrongStatus { .. }) => {}
                        Err(error) => return Err(error),
                    }
                }
            }
            Overlap::Skip | Overlap::AllowAll => {}
        }
        self.start(StartRequest {
            module: schedule.spec.module.clone(),
            workflow: schedule.spec.workflow.clone(),
            input: tick_input(&schedule.name, &schedule.spec.input, tick),
            id: Some(id),
            timeout: None,
            parent: None,
            deadline_cap: None,
            admission,
            traceparent: None,
        })
        .await?;
        Ok(())
    }

    /// The runs of schedule `name` not ended yet, other than `except`.
    async fn running_ticks(
        &self,
        name: &ScheduleName,
        except: &WorkflowId,
    ) -> Result<Vec<(WorkflowId, RunStatus)>> {
        let mut running = Vec::new();
        for status in [RunStatus::Pending, RunStatus::Enqueued] {
            let filter = RunFilter {
                status: Some(status),
                id_prefix: Some(format!("{name}@")),
                limit: 100,
                ..RunFilter::default()
            };
            for run in self.store.list_runs(&filter).await? {
                if &run.id != except {
                    running.push((run.id, status));
                }
            }
        }
        Ok(running)
    }
}
