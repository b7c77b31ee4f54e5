//! Wall-clock time, injected so tests can drive it.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::domain::Millis;

pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to: tests drive deadlines and
/// timestamps with it instead of waiting for real time.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: std::sync::atomic::AtomicI64,
}

impl ManualClock {
    pub fn at(now: Millis) -> Self {
        Self {
            now: std::sync::atomic::AtomicI64::new(now),
        }
    }

    pub fn advance(&self, by: Millis) {
        self.now.fetch_add(by, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.now.load(std::sync::atomic::Ordering::SeqCst)
    }
}
