//! Whether the store's writes are succeeding, as `/healthz` reports it, and
//! the refusal of new work while the disk is full.
//!
//! A full disk is the one write failure a host can see coming back: every
//! write fails until someone frees space. Rather than accept starts it
//! cannot record, the store refuses new work for a short while after a
//! write failed for want of space, then lets one through to see whether
//! space was freed; writes of runs already going on are not refused (their
//! executions retry until they succeed).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::StoreError;

/// How long new work is refused after a write found the disk full, before
/// the next one is let through to try again.
pub const FULL_RETRY_AFTER: Duration = Duration::from_secs(2);

/// The store's writes as `/healthz` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreHealth {
    /// The last write (or batch of writes) committed.
    pub ok: bool,
    /// Why the last one did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// It failed for want of space: new work is refused meanwhile.
    pub disk_full: bool,
    /// Failed writes (or batches) since the last one that committed.
    pub failures: u64,
    /// Writes committed since the host started (a start, a run's journal
    /// writes of one call, a run's end, ...).
    pub writes: u64,
    /// Transactions (or autocommitted statements) that committed them:
    /// `writes / commits` is how well writes are grouped.
    pub commits: u64,
}

impl StoreHealth {
    pub fn ok() -> Self {
        Self {
            ok: true,
            error: None,
            disk_full: false,
            failures: 0,
            writes: 0,
            commits: 0,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    last_error: Option<String>,
    failures: u64,
    full_at: Option<Instant>,
}

/// What a store's write path records after each commit or failure.
#[derive(Debug, Default)]
pub struct WriteHealth {
    state: Mutex<State>,
    writes: AtomicU64,
    commits: AtomicU64,
}

impl WriteHealth {
    /// One commit, begun at `started`, made `writes` writes durable.
    pub fn committed(&self, writes: u64, started: Instant) {
        crate::metrics::metrics().committed(writes, started.elapsed());
        self.writes.fetch_add(writes, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock().expect("health lock");
        if state.failures > 0 {
            tracing::info!(after = state.failures, "the store's writes succeed again");
        }
        *state = State::default();
    }

    pub fn failed(&self, error: &StoreError) {
        let mut state = self.state.lock().expect("health lock");
        state.failures += 1;
        state.last_error = Some(error.to_string());
        if matches!(error, StoreError::StorageFull(_)) {
            state.full_at = Some(Instant::now());
        }
    }

    pub fn snapshot(&self) -> StoreHealth {
        let state = self.state.lock().expect("health lock");
        StoreHealth {
            ok: state.failures == 0,
            error: state.last_error.clone(),
            disk_full: state.full_at.is_some(),
            failures: state.failures,
            writes: self.writes.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }

    /// Refuses new work (a start, a deployment) shortly after the disk was
    /// found full.
    pub fn admit_new_work(&self) -> Result<(), StoreError> {
        let state = self.state.lock().expect("health lock");
        match (state.full_at, &state.last_error) {
            (Some(at), Some(error)) if at.elapsed() < FULL_RETRY_AFTER => {
                Err(StoreError::StorageFull(format!(
                    "new work is refused for {} s after a write failed ({error}); free space on the database's disk",
                    FULL_RETRY_AFTER.as_secs()
                )))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_refuses_new_work_until_a_write_commits() {
        let health = WriteHealth::default();
        assert!(health.admit_new_work().is_ok());
        health.failed(&StoreError::Sqlite("disk I/O error".into()));
        assert!(health.admit_new_work().is_ok(), "only a full disk refuses");
        health.failed(&StoreError::StorageFull("database or disk is full".into()));
        let snapshot = health.snapshot();
        assert!(!snapshot.ok && snapshot.disk_full && snapshot.failures == 2);
        let refused = health.admit_new_work().unwrap_err().to_string();
        assert!(refused.contains("free space"), "{refused}");
        health.committed(3, Instant::now());
        let snapshot = health.snapshot();
        assert!(snapshot.ok && !snapshot.disk_full && snapshot.failures == 0);
        assert_eq!((snapshot.writes, snapshot.commits), (3, 1));
        assert!(health.admit_new_work().is_ok());
    }
}
