//! Retention (`cairn serve --retention 30d`): finished runs older than the
//! window are deleted with everything they hold, a batch of top-level runs
//! (and their children) per write, so runs going on never wait behind
//! more than one batch; then module versions no run uses and that are not
//! current, with their compiled files. Every host of a shared database
//! may do it: the deletes are idempotent.

use std::sync::Arc;
use std::time::Duration;

use super::Inner;
use crate::domain::{Millis, ModuleDigest};

/// Top-level runs deleted per write.
const BATCH_ROOTS: u32 = 100;
/// How often retention looks for runs past the window: a quarter of it,
/// at least every second and at most every minute.
fn interval(window: Duration) -> Duration {
    (window / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// What one pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purge {
    pub runs: u64,
    pub versions: Vec<ModuleDigest>,
}

impl Inner {
    /// Look for runs past the window now and at every [`interval`], if
    /// the host keeps runs for a limited time.
    pub(super) fn start_retention(self: &Arc<Self>) {
        let Some(window) = self.limits.retention else {
            return;
        };
        let inner = self.clone();
        tokio::spawn(async move {
            loop {
                match inner.purge_older_than(window).await {
                    Ok(purge) if purge.runs > 0 || !purge.versions.is_empty() => {
                        tracing::info!(
                            runs = purge.runs,
                            versions = purge.versions.len(),
                            "deleted what is past the retention window"
                        )
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "retention pass failed; trying again"),
                }
                tokio::time::sleep(interval(window)).await;
            }
        });
    }

    /// Delete the finished runs that ended more than `window` ago, then
    /// the module versions nothing needs any more.
    pub(super) async fn purge_older_than(&self, window: Duration) -> super::Result<Purge> {
        let window = Millis::try_from(window.as_millis()).unwrap_or(Millis::MAX);
        let before = self.clock.now().saturating_sub(window);
        let mut purge = Purge::default();
        loop {
            let runs = self.store.purge_runs(before, BATCH_ROOTS).await?;
            purge.runs += runs;
            if runs == 0 {
                break;
            }
            // Let the writes of runs going on in between batches.
            tokio::task::yield_now().await;
        }
        purge.versions = self.store.purge_versions().await?;
        for version in &purge.versions {
            self.runtime.forget(version);
        }
        Ok(purge)
    }
}
