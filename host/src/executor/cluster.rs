//! The duties of a host that shares its database with other hosts
//! ([`Store::shared`](crate::store::Store::shared)):
//!
//! - renew the leases of the runs it executes, so that no other host takes
//!   them over while it is alive;
//! - claim the runs whose lease ran out (their host died, or lost touch for
//!   longer than a lease) and recover them by replay;
//! - turn the changes other hosts announce into local wake-ups: event and
//!   message waiters, run ends (and stopping a local execution of a run
//!   another host cancelled), deployments;
//! - poll as a fallback: a notification lost (e.g. while the listening
//!   connection reconnects) delays a waiter by at most `poll_interval`.
//!
//! New runs are executed by the host that accepts the start request (it
//! takes the run's lease at creation): no queue, no extra hop, and the load
//! follows whatever spreads requests over the hosts (a load balancer).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::Inner;
use crate::domain::WorkflowId;
use crate::store::Change;

/// How a host shares its database.
#[derive(Debug, Clone, Copy)]
pub struct ClusterOptions {
    /// How long a run's lease lasts without renewal; the store is opened
    /// with the same value.
    pub lease: Duration,
    /// The longest a waiter waits for a change it missed the notification
    /// of; also how often modules and routes are reloaded.
    pub poll_interval: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Start the duties; they run as long as the process.
pub(super) async fn start(inner: Arc<Inner>, options: ClusterOptions) -> crate::store::Result<()> {
    inner.waiters.set_poll_interval(Some(options.poll_interval));
    let changes = inner.store.listen().await?;
    if let Some(mut changes) = changes {
        let listener = inner.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                listener.apply(change).await;
            }
        });
    }
    // Renew well before expiry: a third of the lease leaves two missed
    // renewals of slack.
    let renewer = inner.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(options.lease / 3);
        loop {
            tick.tick().await;
            renewer.renew_leases().await;
        }
    });
    let claimer = inner.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(options.lease / 2);
        tick.tick().await;
        loop {
            tick.tick().await;
            match claimer.recover().await {
                Ok(report) if report.resumed + report.exceeded > 0 => {
                    crate::metrics::metrics().claimed((report.resumed + report.exceeded) as u64);
                    tracing::info!(
                        resumed = report.resumed,
                        gave_up = report.exceeded,
                        "took over runs whose lease expired"
                    )
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "cannot claim runs whose lease expired"),
            }
        }
    });
    let reloader = inner;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(options.poll_interval.max(Duration::from_millis(100)));
        loop {
            tick.tick().await;
            if let Err(error) = reloader.reload_catalog().await {
                tracing::warn!(%error, "cannot reload modules and routes");
            }
        }
    });
    Ok(())
}

impl Inner {
    /// Renew the leases of the runs executing here; stop the executions of
    /// runs whose lease was lost (taken over while this host stalled), at
    /// once rather than at their next write.
    async fn renew_leases(&self) {
        let running: Vec<WorkflowId> = self
            .executions
            .lock()
            .expect("executions lock")
            .keys()
            .cloned()
            .collect();
        let renewed = match self.store.renew_leases(&running, self.clock.now()).await {
            Ok(renewed) => renewed,
            Err(error) => {
                tracing::error!(%error, "cannot renew the leases of this host's runs");
                return;
            }
        };
        let renewed: HashSet<WorkflowId> = renewed.into_iter().collect();
        crate::metrics::metrics()
            .leases_held
            .set(i64::try_from(renewed.len()).unwrap_or(i64::MAX));
        let mut executions = self.executions.lock().expect("executions lock");
        for run in running.iter().filter(|run| !renewed.contains(*run)) {
            self.known.forget(run);
            if let Some(execution) = executions.remove(run) {
                execution.abort();
                tracing::warn!(run = %run, "stopped an execution: this host no longer holds the run");
            }
        }
    }

    /// A change some host committed: wake whoever waits for it here, and do
    /// what only a change made elsewhere asks of this host.
    async fn apply(self: &Arc<Self>, change: Change) {
        match &change {
            // Another host wrote to the run: what this one knew of it may
            // be out of date (forgotten before anyone is woken to read it).
            Change::Event { run, .. } => self.known.forget(run),
            Change::Finished(run) => {
                self.known.forget(run);
                self.stop_if_finished(run).await
            }
            Change::Deployed(_) => {
                // Apart: a reload waits for a deployment in progress here,
                // and wake-ups must not wait behind it.
                let inner = self.clone();
                tokio::spawn(async move {
                    if let Err(error) = inner.reload_catalog().await {
                        tracing::warn!(%error, "cannot reload modules and routes");
                    }
                });
            }
            Change::Message { .. } | Change::Stream { .. } => {}
        }
        self.wake(&change);
    }

    /// A run that ended while this host executes it was cancelled through
    /// another host: stop the execution at once, as a local cancel would.
    async fn stop_if_finished(&self, run: &WorkflowId) {
        let executing = self
            .executions
            .lock()
            .expect("executions lock")
            .contains_key(run);
        if !executing {
            return;
        }
        match self.store.get_run(run).await {
            Ok(Some(record)) if record.status.is_terminal() => {
                if let Some(execution) =
                    self.executions.lock().expect("executions lock").remove(run)
                {
                    execution.abort();
                    tracing::info!(run = %run, status = record.status.as_str(), "stopped an execution: the run ended elsewhere");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(run = %run, %error, "cannot read a run that ended"),
        }
    }
}
