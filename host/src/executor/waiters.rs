//! In-process wake-ups for readers blocked on an event or on a run's end.
//!
//! A reader subscribes *before* it reads the database, and a writer publishes
//! only *after* its commit; so a write that lands between the read and the
//! wait still wakes the reader. Every subscriber of a key is woken, and is
//! handed the published value, so a woken reader need not read the database
//! again. The entry of a key lives exactly as long as it has subscribers: a
//! reader that gives up leaves nothing behind.
//!
//! With several hosts on one database, other hosts' writes arrive as
//! database notifications, which can be lost; then a poll interval is set,
//! and a waiter also looks again at each interval.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::domain::WorkflowId;

/// What a reader waits for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WaitKey {
    /// A write of event `key` of a run; published with the value written.
    Event { run: WorkflowId, key: String },
    /// A run reaching a terminal status; published without a value.
    Finished(WorkflowId),
    /// A message sent to a run on a topic; published without a value.
    Message { run: WorkflowId, topic: String },
    /// An append to any stream of a run, or the run's end (which ends its
    /// streams); published without a value. Readers read their stream
    /// again: a run has few streams, and this key needs no name to be
    /// published at the run's end.
    Stream(WorkflowId),
    /// Anything a run publishes: each event write and its end. For readers
    /// that follow the whole run (event streams); published without a value.
    Activity(WorkflowId),
}

/// The last publication on a key: its value, if it had one, and when it
/// was made (for the wake-up latency metric).
#[derive(Debug, Clone, Default)]
struct Published {
    value: Option<Arc<str>>,
    at: Option<std::time::Instant>,
}

#[derive(Debug, Clone, Default)]
pub struct Waiters {
    keys: Arc<Mutex<HashMap<WaitKey, watch::Sender<Published>>>>,
    /// How often a waiter looks again without a wake-up, in ms; 0: never.
    poll_ms: Arc<AtomicU64>,
}

impl Waiters {
    /// Make waiters look again every `interval` even without a wake-up.
    pub fn set_poll_interval(&self, interval: Option<Duration>) {
        let ms = interval.map_or(0, |i| {
            u64::try_from(i.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        self.poll_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn poll_interval(&self) -> Option<Duration> {
        match self.poll_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub fn subscribe(&self, key: WaitKey) -> Subscription {
        let receiver = self
            .keys
            .lock()
            .expect("waiters lock")
            .entry(key.clone())
            .or_insert_with(|| watch::channel(Published::default()).0)
            .subscribe();
        Subscription {
            key,
            receiver,
            waiters: self.clone(),
        }
    }

    /// Wake every current subscriber of `key`, handing them `value`. Call
    /// after the commit.
    pub fn publish(&self, key: &WaitKey, value: Option<&str>) {
        if let Some(sender) = self.keys.lock().expect("waiters lock").get(key) {
            sender.send_replace(Published {
                value: value.map(Arc::from),
                at: Some(std::time::Instant::now()),
            });
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
    receiver: watch::Receiver<Published>,
    waiters: Waiters,
}

impl Subscription {
    /// Wait until something is published on the key, or it is time to look
    /// again (with a poll interval), or `deadline` passes; true unless the
    /// deadline passed. What was published, if anything, is then in
    /// [`Subscription::take_published`].
    pub async fn changed_before(&mut self, deadline: Instant) -> bool {
        self.wake_before(deadline).await != Wake::Deadline
    }

    async fn wake_before(&mut self, deadline: Instant) -> Wake {
        let look_again = self
            .waiters
            .poll_interval()
            .map(|interval| Instant::now() + interval)
            .filter(|at| *at < deadline);
        match tokio::time::timeout_at(look_again.unwrap_or(deadline), self.receiver.changed()).await
        {
            Ok(Ok(())) => {
                if let Some(at) = self.receiver.borrow().at {
                    crate::metrics::metrics().woken(at.elapsed());
                }
                Wake::Published
            }
            Err(_) if look_again.is_some() => Wake::Poll,
            // The sender lives in the map while we are subscribed, so the
            // channel cannot close; were it to, waiting on is pointless.
            Ok(Err(_)) | Err(_) => Wake::Deadline,
        }
    }

    /// The value of the last publication, marking it seen.
    pub fn take_published(&mut self) -> Option<Arc<str>> {
        self.receiver.borrow_and_update().value.clone()
    }

    /// Read with `read` until it finds a value or `deadline` passes. After a
    /// wake-up the published value is taken as it is when `from_published`
    /// accepts it; otherwise the database is read again.
    pub async fn wait_for<T, F, Fut, E>(
        &mut self,
        deadline: Instant,
        mut read: F,
        from_published: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        loop {
            if let Some(value) = read().await? {
                return Ok(Some(value));
            }
            if Instant::now() >= deadline {
                return read().await;
            }
            match self.wake_before(deadline).await {
                Wake::Deadline => return read().await,
                // Time to look again: read.
                Wake::Poll => {}
                Wake::Published => {
                    let published = self.take_published();
                    if let Some(value) = published.as_deref().and_then(&from_published) {
                        return Ok(Some(value));
                    }
                }
            }
        }
    }
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Published,
    Poll,
    Deadline,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut keys = self.waiters.keys.lock().expect("waiters lock");
        // Under the lock nobody can subscribe, so a count of one receiver
        // means this subscription is the last.
        if keys
            .get(&self.key)
            .is_some_and(|sender| sender.receiver_count() == 1)
        {
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
        let mut subscription = waiters.subscribe(key());
        let reads = AtomicUsize::new(0);
        let value = subscription
            .wait_for(
                Instant::now() + Duration::from_secs(30),
                || {
                    reads.fetch_add(1, Ordering::SeqCst);
                    // The read finds nothing, and the write commits right
                    // after it, before the reader starts waiting.
                    waiters.publish(&key(), Some("\"completed\""));
                    async { Ok::<Option<String>, ()>(None) }
                },
                |published| Some(published.to_owned()),
            )
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some("\"completed\""));
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "the published value needs no read"
        );
    }

    #[tokio::test]
    async fn every_subscriber_is_woken_and_entries_go_away() {
        let waiters = Waiters::default();
        let written = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..3 {
            let mut subscription = waiters.subscribe(key());
            let written = written.clone();
            readers.push(tokio::spawn(async move {
                subscription
                    .wait_for(
                        Instant::now() + Duration::from_secs(30),
                        || {
                            let set = written.load(Ordering::SeqCst);
                            async move { Ok::<_, ()>(set.then_some(())) }
                        },
                        // Like a run's end: no value, read again.
                        |_| None,
                    )
                    .await
            }));
        }
        assert_eq!(waiters.len(), 1);
        written.store(true, Ordering::SeqCst);
        waiters.publish(&key(), None);
        for reader in readers {
            assert_eq!(reader.await.unwrap(), Ok(Some(())));
        }
        assert!(
            waiters.is_empty(),
            "the key's entry must go with its last subscriber"
        );
    }

    #[tokio::test]
    async fn with_a_poll_interval_a_reader_finds_a_write_it_was_not_told_of() {
        let waiters = Waiters::default();
        waiters.set_poll_interval(Some(Duration::from_millis(20)));
        let mut subscription = waiters.subscribe(key());
        let written = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = written.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Committed by another host whose notification was lost.
            writer.store(true, Ordering::SeqCst);
        });
        let started = Instant::now();
        let value = subscription
            .wait_for(
                Instant::now() + Duration::from_secs(30),
                || {
                    let set = written.load(Ordering::SeqCst);
                    async move { Ok::<_, ()>(set.then_some(())) }
                },
                |_| Some(()),
            )
            .await;
        assert_eq!(value, Ok(Some(())));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "found by polling, not at the deadline"
        );
    }

    #[tokio::test]
    async fn a_reader_gives_up_at_its_deadline() {
        let waiters = Waiters::default();
        let mut subscription = waiters.subscribe(key());
        let value = subscription
            .wait_for(
                Instant::now() + Duration::from_millis(20),
                || async { Ok::<Option<()>, ()>(None) },
                |_| Some(()),
            )
            .await;
        assert_eq!(value, Ok(None));
        drop(subscription);
        assert!(waiters.is_empty());
    }
}
