//! Runs whose execution stopped on a failure of the host's own (a write the
//! database refused, a journal it could not read): still `PENDING`, still
//! this host's, but with nothing executing them. Each is executed again
//! after a backoff that doubles up to [`MAX_BACKOFF`], for as long as the
//! host lives, so a full disk freed or a database back from a restart
//! resumes them without a restart of the host.

use std::sync::Arc;
use std::time::Duration;

use super::Inner;
use crate::domain::{RunRecord, RunStatus, WorkflowId};

/// The first retry's delay.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest delay between retries.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The delay before the `attempt`th retry (1-based).
fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

impl Inner {
    /// Execute `run` again after a backoff, if it is then still PENDING,
    /// not parked, and still in the epoch it was handed over in (no other
    /// execution, here or on another host, took it meanwhile).
    pub(super) fn retry_stranded(self: &Arc<Self>, run: RunRecord) {
        // It may be taken over before the retry.
        self.known.forget(&run.id);
        let attempt = {
            let mut stranded = self.stranded.lock().expect("stranded lock");
            let count = stranded.entry(run.id.clone()).or_insert(0);
            *count += 1;
            *count
        };
        let delay = backoff(attempt);
        tracing::warn!(run = %run.id, attempt, ?delay, "a run stopped on a host failure; retrying");
        let inner = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            match inner.still_stranded(&run).await {
                Ok(Some(current)) => inner.spawn_execution(current, None),
                Ok(None) => inner.forget_stranded(&run.id),
                // The store is still failing: wait longer.
                Err(error) => {
                    tracing::warn!(run = %run.id, %error, "cannot look at a stranded run yet");
                    inner.retry_stranded(run);
                }
            }
        });
    }

    /// An execution of run `id` ended or parked: its next host failure
    /// starts from the first backoff again.
    pub(super) fn forget_stranded(&self, id: &WorkflowId) {
        let mut stranded = self.stranded.lock().expect("stranded lock");
        if !stranded.is_empty() {
            stranded.remove(id);
        }
    }

    async fn still_stranded(&self, run: &RunRecord) -> crate::store::Result<Option<RunRecord>> {
        let Some(current) = self.store.get_run(&run.id).await? else {
            return Ok(None);
        };
        if current.status != RunStatus::Pending || current.epoch != run.epoch {
            return Ok(None);
        }
        if self.store.parked_wait(&run.id).await?.is_some() {
            return Ok(None);
        }
        Ok(Some(current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_limit() {
        let delays: Vec<u128> = (1..=9).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
