//! In-process wake-ups for readers blocked on an event or on a run's end.
//!
//! A reader subscribes *before* it reads the database, and a writer notifies
//! only *after* its commit; so a write that lands between the read and the
//! wait still wakes the reader. Every subscriber of a key is woken. The entry
//! of a key lives exactly as long as it has subscribers: a reader that gives
//! up leaves nothing behind.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::domain::WorkflowId;

/// What a reader waits for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WaitKey {
    /// A write of event `key` of a run.
    Event { run: WorkflowId, key: String },
    /// A run reaching a terminal status.
    Finished(WorkflowId),
}

#[derive(Debug, Clone, Default)]
pub struct Waiters {
    keys: Arc<Mutex<HashMap<WaitKey, Arc<Notify>>>>,
}

impl Waiters {
    pub fn subscribe(&self, key: WaitKey) -> Subscription {
        let notify = self
            .keys
            .lock()
            .expect("waiters lock")
            .entry(key.clone())
            .or_default()
            .clone();
        Subscription {
            key,
            notify,
            waiters: self.clone(),
        }
    }

    /// Wake every current subscriber of `key`. Call after the commit.
    pub fn notify(&self, key: &WaitKey) {
        if let Some(notify) = self.keys.lock().expect("waiters lock").get(key) {
            notify.notify_waiters();
        }
    }

    /// Keys with subscribers; for tests and metrics.
    pub fn len(&self) -> usize {
        self.keys.lock().expect("waiters lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
pub struct Subscription {
    key: WaitKey,
    notify: Arc<Notify>,
    waiters: Waiters,
}

impl Subscription {
    /// Read with `read` until it finds a value or `deadline` passes. Each
    /// round arms the wake-up before reading, so no write is missed.
    pub async fn wait_for<T, F, Fut, E>(
        &self,
        deadline: Instant,
        mut read: F,
    ) -> Result<Option<T>, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(value) = read().await? {
                return Ok(Some(value));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return read().await;
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut keys = self.waiters.keys.lock().expect("waiters lock");
        // The map holds one reference and this subscription another; under
        // the lock nobody can take a new one, so 2 means we are the last.
        if Arc::strong_count(&self.notify) == 2 {
            keys.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn key() -> WaitKey {
        WaitKey::Event {
            run: WorkflowId::parse("run").unwrap(),
            key: "step1".into(),
        }
    }

    #[tokio::test]
    async fn a_write_between_read_and_wait_is_not_missed() {
        let waiters = Waiters::default();
        let subscription = waiters.subscribe(key());
        let reads = AtomicUsize::new(0);
        let value = subscription
            .wait_for(Instant::now() + Duration::from_secs(30), || {
                let n = reads.fetch_add(1, Ordering::SeqCst);
                // The first read finds nothing, and the write commits right
                // after it, before the reader starts waiting.
                if n == 0 {
                    waiters.notify(&key());
                }
                async move { Ok::<_, ()>((n > 0).then_some("completed")) }
            })
            .await
            .unwrap();
        assert_eq!(value, Some("completed"));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn every_subscriber_is_woken_and_entries_go_away() {
        let waiters = Waiters::default();
        let written = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..3 {
            let subscription = waiters.subscribe(key());
            let written = written.clone();
            readers.push(tokio::spawn(async move {
                subscription
                    .wait_for(Instant::now() + Duration::from_secs(30), || {
                        let set = written.load(Ordering::SeqCst);
                        async move { Ok::<_, ()>(set.then_some(())) }
                    })
                    .await
            }));
        }
        assert_eq!(waiters.len(), 1);
        written.store(true, Ordering::SeqCst);
        waiters.notify(&key());
        for reader in readers {
            assert_eq!(reader.await.unwrap(), Ok(Some(())));
        }
        assert!(
            waiters.is_empty(),
            "the key's entry must go with its last subscriber"
        );
    }

    #[tokio::test]
    async fn a_reader_gives_up_at_its_deadline() {
        let waiters = Waiters::default();
        let subscription = waiters.subscribe(key());
        let value = subscription
            .wait_for(Instant::now() + Duration::from_millis(20), || async {
                Ok::<Option<()>, ()>(None)
            })
            .await;
        assert_eq!(value, Ok(None));
        drop(subscription);
        assert!(waiters.is_empty());
    }
}
