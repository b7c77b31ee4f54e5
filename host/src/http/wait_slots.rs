//! Places for requests that wait: long-polls, event streams, and trigger
//! routes (their waits and handler calls), each kind in a pool of its own so
//! that one kind filled up (a client holding thousands of streams) leaves
//! the others serving, and a cap per caller (token, or address) across all
//! kinds so that one client cannot fill a pool alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hyper::StatusCode;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::access::Caller;
use super::error::ApiError;

/// What a request waits as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// A long-poll of an event or a result.
    Poll,
    /// An event stream (SSE).
    Stream,
    /// A trigger route's wait for its run, or a handler's call.
    Trigger,
}

impl WaitKind {
    fn describe(self) -> &'static str {
        match self {
            WaitKind::Poll => "long-polls are",
            WaitKind::Stream => "event streams are",
            WaitKind::Trigger => "trigger requests are",
        }
    }
}

/// How many of each kind are taken, for `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WaitCounts {
    pub polls: usize,
    pub streams: usize,
    pub triggers: usize,
}

impl WaitCounts {
    pub fn total(&self) -> usize {
        self.polls + self.streams + self.triggers
    }
}

#[derive(Debug)]
pub struct WaitPools {
    per_kind: usize,
    per_caller: usize,
    polls: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    triggers: Arc<Semaphore>,
    held: Arc<Mutex<HashMap<Caller, usize>>>,
}

/// One place, given back when dropped.
#[derive(Debug)]
pub struct WaitSlot {
    _permit: OwnedSemaphorePermit,
    caller: Caller,
    held: Arc<Mutex<HashMap<Caller, usize>>>,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().expect("wait slots lock");
        if let Some(count) = held.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.caller);
            }
        }
    }
}

impl WaitPools {
    /// Pools of `per_kind` places each; a caller holds at most `per_caller`.
    pub fn new(per_kind: usize, per_caller: usize) -> Self {
        Self {
            per_kind,
            per_caller,
            polls: Arc::new(Semaphore::new(per_kind)),
            streams: Arc::new(Semaphore::new(per_kind)),
            triggers: Arc::new(Semaphore::new(per_kind)),
            held: Arc::default(),
        }
    }

    fn pool(&self, kind: WaitKind) -> &Arc<Semaphore> {
        match kind {
            WaitKind::Poll => &self.polls,
            WaitKind::Stream => &self.streams,
            WaitKind::Trigger => &self.triggers,
        }
    }

    /// A place of `kind` for `caller`: 429 when the caller holds its share,
    /// 503 when the pool is full.
    pub fn acquire(&self, kind: WaitKind, caller: Caller) -> Result<WaitSlot, ApiError> {
        let mut held = self.held.lock().expect("wait slots lock");
        let count = held.entry(caller).or_insert(0);
        if *count >= self.per_caller {
            return Err(ApiError::with_status(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_waits",
                format!(
                    "{caller} already holds {} waiting requests (long-polls, streams, trigger calls), the limit per client (--max-waits-per-client); close some or retry later",
                    self.per_caller
                ),
            ));
        }
        let permit = self.pool(kind).clone().try_acquire_owned().map_err(|_| {
            ApiError::overloaded(format!(
                "{} {} already waiting on this host, its limit (--max-pending-waits); retry later",
                self.per_kind,
                kind.describe()
            ))
        })?;
        *count += 1;
        Ok(WaitSlot {
            _permit: permit,
            caller,
            held: self.held.clone(),
        })
    }

    pub fn counts(&self) -> WaitCounts {
        let taken = |pool: &Semaphore| self.per_kind - pool.available_permits();
        WaitCounts {
            polls: taken(&self.polls),
            streams: taken(&self.streams),
            triggers: taken(&self.triggers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_fill_apart_and_a_caller_holds_at_most_its_share() {
        let pools = WaitPools::new(2, 3);
        let a = Caller::Token([1; 8]);
        let b = Caller::Token([2; 8]);
        let streams = [
            pools.acquire(WaitKind::Stream, a).unwrap(),
            pools.acquire(WaitKind::Stream, b).unwrap(),
        ];
        let full = pools.acquire(WaitKind::Stream, b).unwrap_err();
        assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(full.message.contains("event streams"), "{}", full.message);
        // Another kind is not affected.
        let poll = pools.acquire(WaitKind::Poll, a).unwrap();
        let trigger = pools.acquire(WaitKind::Trigger, a).unwrap();
        let capped = pools.acquire(WaitKind::Poll, a).unwrap_err();
        assert_eq!(capped.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(capped.code, "too_many_waits");
        assert!(
            pools.acquire(WaitKind::Poll, b).is_ok(),
            "b has its own share"
        );
        assert_eq!(pools.counts().total(), 4);
        drop((streams, poll, trigger));
        assert_eq!(pools.counts().total(), 0);
        assert!(pools.held.lock().unwrap().is_empty());
        assert!(pools.acquire(WaitKind::Poll, a).is_ok());
    }
}
