//! Flow control on the executor's side: managing queues, and the
//! dequeuer, which moves `ENQUEUED` runs to `PENDING` as their queues have
//! room and their start times come, and executes them here.
//!
//! The dequeuer looks again when a run is enqueued here, when a queued run
//! executing here ends (its slot is free), at the next start time or rate
//! window the store names, and on a shared store once per poll interval:
//! other hosts' ends and enqueues are not announced to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use super::{Executor, ExecutorError, Inner, Result};
use crate::domain::{
    Admission, QueueDepth, QueueInfo, QueueName, QueueSettings, RunRecord, RunStatus,
};
use crate::store::{DEQUEUE_BATCH, DeleteQueue};

/// The dequeuer's state.
#[derive(Debug, Default)]
pub(super) struct Queueing {
    /// Notified when the dequeuer should look again.
    look: Notify,
    started: AtomicBool,
}

/// A queue with its depth, as `GET /v1/queues` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueView {
    pub info: QueueInfo,
    pub depth: QueueDepth,
}

impl Executor {
    /// Create queue `name` or change its settings: whether it was created.
    pub async fn put_queue(&self, name: &QueueName, settings: QueueSettings) -> Result<QueueView> {
        settings.validate()?;
        let inner = &self.inner;
        let info = inner
            .store
            .put_queue(name, settings, inner.clock.now())
            .await?;
        // Wider limits may let waiting runs start now.
        inner.queueing.look.notify_one();
        tracing::info!(queue = %name, ?settings, "queue stored");
        Ok(QueueView {
            depth: self.queue_depth(Some(name)).await?,
            info,
        })
    }

    pub async fn list_queues(&self) -> Result<Vec<QueueView>> {
        let depths = self.inner.store.queue_depths().await?;
        let queues = self.inner.store.list_queues().await?;
        Ok(queues
            .into_iter()
            .map(|info| QueueView {
                depth: depths
                    .iter()
                    .find(|(queue, _)| queue.as_ref() == Some(&info.name))
                    .map(|(_, depth)| *depth)
                    .unwrap_or_default(),
                info,
            })
            .collect())
    }

    pub async fn get_queue(&self, name: &QueueName) -> Result<QueueView> {
        let info = self
            .inner
            .store
            .get_queue(name)
            .await?
            .ok_or_else(|| ExecutorError::UnknownQueue(name.to_string()))?;
        Ok(QueueView {
            depth: self.queue_depth(Some(name)).await?,
            info,
        })
    }

    pub async fn delete_queue(&self, name: &QueueName) -> Result<()> {
        match self.inner.store.delete_queue(name).await? {
            DeleteQueue::Deleted => Ok(()),
            DeleteQueue::Missing => Err(ExecutorError::UnknownQueue(name.to_string())),
            DeleteQueue::Busy(waiting) => Err(ExecutorError::QueueBusy {
                queue: name.to_string(),
                waiting,
            }),
        }
    }

    /// The depth of queue `name` (`None`: the runs of no queue waiting for
    /// their start time).
    pub async fn queue_depth(&self, name: Option<&QueueName>) -> Result<QueueDepth> {
        Ok(self
            .inner
            .store
            .queue_depths()
            .await?
            .into_iter()
            .find(|(queue, _)| queue.as_ref() == name)
            .map(|(_, depth)| depth)
            .unwrap_or_default())
    }

    /// Every queue's depth, the runs of no queue waiting for their start
    /// time under `None`.
    pub async fn queue_depths(&self) -> Result<Vec<(Option<QueueName>, QueueDepth)>> {
        Ok(self.inner.store.queue_depths().await?)
    }

    /// Where `ENQUEUED` run `run` stands in its queue: 1 leaves next.
    /// `None` for a run that is not `ENQUEUED`.
    pub async fn queue_position(&self, run: &RunRecord) -> Result<Option<u64>> {
        if run.status != RunStatus::Enqueued {
            return Ok(None);
        }
        let queue = run.admission.as_ref().and_then(|a| a.queue.as_ref());
        let by_priority = match queue {
            Some(queue) => self
                .inner
                .store
                .get_queue(queue)
                .await?
                .is_some_and(|q| q.settings.priority),
            None => false,
        };
        Ok(Some(
            self.inner.store.queue_position(run, by_priority).await?,
        ))
    }
}

impl Inner {
    /// Check a start's admission against its queue.
    pub(super) async fn check_admission(&self, admission: &Admission) -> Result<()> {
        let settings = match &admission.queue {
            Some(queue) => Some(
                self.store
                    .get_queue(queue)
                    .await?
                    .ok_or_else(|| ExecutorError::UnknownQueue(queue.to_string()))?
                    .settings,
            ),
            None => None,
        };
        Ok(admission.validate(settings.as_ref())?)
    }

    /// Have the dequeuer look again: a run was enqueued here, or a run of a
    /// queue ended here.
    pub(super) fn look_at_queues(&self) {
        self.queueing.look.notify_one();
    }

    /// Whether `run` came through a queue, whose slot its end frees.
    pub(super) fn frees_a_queue_slot(run: &RunRecord) -> bool {
        run.admission.as_ref().is_some_and(|a| a.queue.is_some())
    }

    /// Start the dequeuer, once; after the first recovery, so that a run
    /// is not both recovered and dequeued.
    pub(super) fn start_dequeueing(self: &Arc<Self>) {
        if self.queueing.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move { inner.dequeue_loop().await });
    }

    async fn dequeue_loop(self: Arc<Self>) {
        loop {
            let next_at = self.dequeue_due().await;
            let now = self.clock.now();
            let sleep = self.time_to_look(now, next_at);
            tokio::select! {
                () = self.queueing.look.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Dequeue whatever may start now and execute it: when to look again.
    async fn dequeue_due(self: &Arc<Self>) -> Option<i64> {
        loop {
            match self.store.dequeue(self.clock.now(), DEQUEUE_BATCH).await {
                Ok(dequeued) => {
                    for run in dequeued.runs {
                        tracing::debug!(run = %run.id, "run dequeued");
                        self.known.begin(&run.id);
                        self.spawn_execution(run, Some(Vec::new()));
                    }
                    if !dequeued.more {
                        return dequeued.next_at;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "cannot dequeue runs; trying again shortly");
                    return Some(self.clock.now().saturating_add(500));
                }
            }
        }
    }
}
