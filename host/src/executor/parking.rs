//! Parked runs, on the executor's side: a run whose wait outlasts
//! `park_after` gives up its instance (see `run_host/parking.rs`) and is
//! stored with what it waits for; this host's waker claims the parked runs
//! that are due (what they wait for committed, or their time came) and
//! executes them again by replay. On a shared database any host's waker may
//! claim a parked run: it belongs to no host while parked.
//!
//! The waker sleeps until the earliest `wake_at` of the parked runs, or
//! until the store says a commit woke one, or (on a shared store) one poll
//! interval, whichever comes first: another host may park a run with an
//! earlier timer and not tell this one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use super::waiters::WaitKey;
use super::{Executor, Inner, Result};
use crate::domain::{Millis, ParkedWait, RunWait, WaitKind, WorkflowId};

/// Most parked runs claimed in one statement.
const WAKE_BATCH: u32 = 256;

/// What a run waits for, as `GET /v1/workflows/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub wait: RunWait,
    /// Whether the run gave up its instance: then `since` is when.
    pub parked: bool,
    pub since: Option<Millis>,
}

/// The waits of the runs executing here, and the waker's state.
#[derive(Debug, Default)]
pub(super) struct Parking {
    /// What each run executing here waits for right now, if it waits.
    waiting: std::sync::Mutex<HashMap<WorkflowId, RunWait>>,
    /// When the waker will look next (ms); a park due earlier wakes it.
    next_look: AtomicI64,
    started: AtomicBool,
}

/// A wait of an executing run, visible while it lives.
pub(super) struct WaitingGuard<'a> {
    parking: &'a Parking,
    run: WorkflowId,
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.parking
            .waiting
            .lock()
            .expect("waiting lock")
            .remove(&self.run);
    }
}

/// What a journaled wait waits for: the key that wakes it here, and what
/// a parked run stores (kind, run, key, offset) so any host can wake it.
#[derive(Debug, Clone)]
pub(super) struct WaitOn {
    pub key: WaitKey,
    pub parked: Option<(WaitKind, WorkflowId, String, Option<u64>)>,
}

impl WaitOn {
    /// A read of stream `stream` of `run` from `offset`: woken by any
    /// append to the run's streams or by its end.
    pub fn stream(run: WorkflowId, stream: String, offset: u64) -> Self {
        Self {
            key: WaitKey::Stream(run.clone()),
            parked: Some((WaitKind::Stream, run, stream, Some(offset))),
        }
    }
}

impl From<WaitKey> for WaitOn {
    fn from(key: WaitKey) -> Self {
        let parked = match &key {
            WaitKey::Event { run, key } => Some((WaitKind::Event, run.clone(), key.clone(), None)),
            WaitKey::Message { run, topic } => {
                Some((WaitKind::Message, run.clone(), topic.clone(), None))
            }
            WaitKey::Finished(run) => Some((WaitKind::Child, run.clone(), String::new(), None)),
            // A stream's wait needs its name and offset: `WaitOn::stream`.
            WaitKey::Activity(_) | WaitKey::Stream(_) => None,
        };
        Self { key, parked }
    }
}

impl Executor {
    /// What run `id` waits for: in its instance here, or parked.
    pub async fn waiting(&self, id: &WorkflowId) -> Result<Option<Waiting>> {
        let executing = self
            .inner
            .parking
            .waiting
            .lock()
            .expect("waiting lock")
            .get(id)
            .cloned();
        if let Some(wait) = executing {
            return Ok(Some(Waiting {
                wait,
                parked: false,
                since: None,
            }));
        }
        Ok(self
            .inner
            .store
            .parked_wait(id)
            .await?
            .map(|ParkedWait { wait, parked_at }| Waiting {
                wait,
                parked: true,
                since: Some(parked_at),
            }))
    }

    /// How many runs are parked (on a shared store: by any host).
    pub async fn parked_count(&self) -> Result<u64> {
        Ok(self.inner.store.parked_count().await?)
    }
}

impl Inner {
    /// How long a wait keeps its instance before the run parks.
    pub(super) fn park_after_ms(&self) -> i64 {
        i64::try_from(self.limits.park_after.as_millis()).unwrap_or(i64::MAX)
    }

    /// Show that `run`, executing here, waits in `wait` until the guard goes.
    pub(super) fn waiting_in(&self, run: &WorkflowId, wait: &RunWait) -> WaitingGuard<'_> {
        self.parking
            .waiting
            .lock()
            .expect("waiting lock")
            .insert(run.clone(), wait.clone());
        WaitingGuard {
            parking: &self.parking,
            run: run.clone(),
        }
    }

    /// A run parked here, to be woken at `wake_at` at the latest: if the
    /// waker would look later than that, it looks again now.
    pub(super) fn parked(&self, wake_at: Millis) {
        if wake_at < self.parking.next_look.load(Ordering::Relaxed) {
            self.store.woken().notify_one();
        }
    }

    /// Start waking parked runs, once; after the first recovery, so that a
    /// run is not both recovered and woken.
    pub(super) fn start_waking(self: &Arc<Self>) {
        if self.parking.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move { inner.wake_parked().await });
    }

    async fn wake_parked(self: Arc<Self>) {
        let woken = self.store.woken();
        loop {
            self.claim_due().await;
            let now = self.clock.now();
            let next = match self.store.next_wake_at().await {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(%error, "cannot read when the next parked run is due");
                    Some(now.saturating_add(1000))
                }
            };
            let sleep = self.time_to_look(now, next);
            let look_at = now.saturating_add(i64::try_from(sleep.as_millis()).unwrap_or(i64::MAX));
            self.parking.next_look.store(look_at, Ordering::Relaxed);
            tokio::select! {
                () = woken.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Claim every parked run that is due and execute it.
    async fn claim_due(self: &Arc<Self>) {
        loop {
            match self.store.claim_woken(self.clock.now(), WAKE_BATCH).await {
                Ok(runs) => {
                    let full = runs.len() == WAKE_BATCH as usize;
                    for run in runs {
                        tracing::debug!(run = %run.id, "waking a parked run");
                        self.spawn_execution(run, None);
                    }
                    if !full {
                        return;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "cannot claim the parked runs that are due");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    return;
                }
            }
        }
    }
}
