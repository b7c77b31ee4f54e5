//! Waiting without an instance: a journaled wait, a sleep or the pause
//! before a step's next attempt keeps its instance for `park_after`, then
//! parks the run (its wait stored, its instance dropped). The guest never
//! sees it: a fresh instance replays the journal up to the same wait, whose
//! deadline was journaled, and goes on from there.

use super::RunHost;
use crate::domain::{Millis, RunWait, WaitKind, WorkflowId};
use crate::runtime::HostFailure;
use crate::store::{Parking, StoreError};

impl RunHost {
    /// The wait on `on_run`/`on_key` until `deadline`, as the run stores it
    /// when it parks: it wakes at the deadline, or at the run's own time
    /// limit if that comes first.
    pub(super) fn wait_of(
        &self,
        kind: WaitKind,
        on_run: Option<WorkflowId>,
        on_key: String,
        on_offset: Option<u64>,
        deadline: Millis,
    ) -> RunWait {
        RunWait {
            kind,
            on_run,
            on_key,
            on_offset,
            deadline: Some(deadline),
            wake_at: self
                .run_deadline
                .map_or(deadline, |limit| deadline.min(limit)),
        }
    }

    /// The time at which a wait that starts now parks the run.
    pub(super) fn park_at(&self) -> Millis {
        self.exec
            .clock
            .now()
            .saturating_add(self.exec.park_after_ms())
    }

    /// Park the run in `wait`. `Ok` if what it waits for has happened
    /// meanwhile (the caller reads it); otherwise the failure that ends the
    /// instance ([`HostFailure::Parked`], or why the run could not park).
    pub(super) async fn park(&self, wait: RunWait) -> Result<(), HostFailure> {
        // A replay takes the same readings again: they are journaled first.
        self.flush_readings().await?;
        if self.exec.store.shared() {
            // Any host may wake and execute it.
            self.exec.known.forget(&self.run);
        }
        let wake_at = wait.wake_at;
        let (store, run, epoch, now) = (
            self.exec.store.clone(),
            self.run.clone(),
            self.epoch,
            self.exec.clock.now(),
        );
        // In a task of its own, like a journal write: a stopped execution
        // cannot cut the park off halfway.
        let parked = tokio::spawn(async move { store.park_run(&run, epoch, wait, now).await })
            .await
            .map_err(|failed| HostFailure::Host(format!("parking failed: {failed}")))?;
        match parked {
            Ok(Parking::Happened) => Ok(()),
            Ok(Parking::Parked) => {
                tracing::debug!(run = %self.run, wake_at, "run parked");
                self.exec.parked(wake_at);
                Err(HostFailure::Parked)
            }
            Err(
                error @ (StoreError::RunNotPending { .. }
                | StoreError::Fenced { .. }
                | StoreError::UnknownRun(_)),
            ) => Err(HostFailure::Host(format!(
                "run {} was taken over: {error}",
                self.run
            ))),
            Err(error) => Err(HostFailure::Host(format!("parking failed: {error}"))),
        }
    }

    /// Wait until `until` (a sleep; the pause before a step's next
    /// attempt): in the instance for up to `park_after`, then parked. Only
    /// time ends such a wait.
    pub(super) async fn pause_until(
        &self,
        kind: WaitKind,
        name: &str,
        until: Millis,
    ) -> Result<(), HostFailure> {
        if self.exec.clock.now() >= until {
            return Ok(());
        }
        let wait = self.wait_of(kind, None, name.to_owned(), None, until);
        let _waiting = self.exec.waiting_in(&self.run, &wait);
        loop {
            let resume_at = until.min(self.park_at());
            tokio::time::sleep_until(self.instant_of(resume_at)).await;
            if self.exec.clock.now() >= until {
                return Ok(());
            }
            self.park(wait.clone()).await?;
        }
    }
}
