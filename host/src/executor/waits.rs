//! Reading runs and waiting on them: results, events, the activity that
//! event streams follow, and messages sent to runs from outside.

use std::time::Duration;

use tokio::time::Instant;

use super::known_events::Known;
use super::{EventWait, Executor, ExecutorError, Result, Subscription, WaitKey};
use crate::domain::{
    self, Delivery, EventRecord, JournalEntry, NewMessage, RunFilter, RunRecord, RunStatus,
    WorkflowId,
};
use crate::store::{Change, StoreError};

impl Executor {
    /// Runs that pass `filter`, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        Ok(self.inner.store.list_runs(filter).await?)
    }

    pub async fn get_run(&self, id: &WorkflowId) -> Result<Option<RunRecord>> {
        Ok(self.inner.store.get_run(id).await?)
    }

    /// Run `id` once it has reached a terminal status, waiting up to
    /// `timeout`; its current record if it has not by then; `None` if there
    /// is no such run.
    pub async fn wait_result(
        &self,
        id: &WorkflowId,
        timeout: Duration,
    ) -> Result<Option<RunRecord>> {
        let store = &self.inner.store;
        let mut subscription = self.inner.waiters.subscribe(WaitKey::Finished(id.clone()));
        let Some(run) = store.get_run(id).await? else {
            return Ok(None);
        };
        if run.status.is_terminal() {
            return Ok(Some(run));
        }
        let finished = subscription
            .wait_for(
                Instant::now() + timeout,
                || async {
                    Ok::<_, StoreError>(
                        store
                            .get_run(id)
                            .await?
                            .filter(|run| run.status.is_terminal()),
                    )
                },
                |_| None,
            )
            .await?;
        match finished {
            Some(run) => Ok(Some(run)),
            None => Ok(store.get_run(id).await?),
        }
    }

    /// The value of event `key` of run `id`, waiting up to `timeout` for it.
    /// A run that does not exist yet is waited for like any other; a run
    /// that has finished without setting the key ends the wait at once (a
    /// cancelled one does not: it may be resumed and set it yet).
    pub async fn wait_event(
        &self,
        id: &WorkflowId,
        key: &str,
        timeout: Duration,
    ) -> Result<EventWait> {
        let store = &self.inner.store;
        let deadline = Instant::now() + timeout;
        // Both subscriptions come before the first read, so neither a write
        // nor the run's end can slip in between a read and the wait.
        let mut event = self.inner.waiters.subscribe(WaitKey::Event {
            run: id.clone(),
            key: key.to_owned(),
        });
        let mut finished = self.inner.waiters.subscribe(WaitKey::Finished(id.clone()));
        loop {
            let current = match self.inner.known.get(id, key) {
                Some(Known::Set(value)) => (Some(value), None),
                // The run has not set it: no need to read that.
                Some(Known::Unset(ended)) => (None, ended),
                None => store.event_and_status(id, key).await?,
            };
            match current {
                (Some(value), _) => return Ok(EventWait::Set(value)),
                (None, Some(status)) if status.is_terminal() && status != RunStatus::Cancelled => {
                    return Ok(EventWait::Finished(status));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Ok(EventWait::TimedOut);
            }
            tokio::select! {
                woken = event.changed_before(deadline) => {
                    if woken && let Some(value) = event.take_published() {
                        return Ok(EventWait::Set(value.to_string()));
                    }
                }
                _ = finished.changed_before(deadline) => {}
            }
        }
    }

    /// Follow run `id`: wake up whenever it writes an event or ends. Subscribe
    /// before reading what the run has done, so nothing falls in between.
    pub fn follow(&self, id: &WorkflowId) -> Subscription {
        self.inner.waiters.subscribe(WaitKey::Activity(id.clone()))
    }

    /// Send a message to run `id` from outside any run, once per
    /// idempotency key.
    pub async fn send_message(
        &self,
        id: &WorkflowId,
        topic: String,
        message: String,
        idempotency_key: Option<String>,
    ) -> Result<Delivery> {
        domain::validate_topic(&topic)?;
        if let Some(key) = &idempotency_key {
            domain::validate_idempotency_key(key)
                .map_err(|e| ExecutorError::InvalidInput(format!("idempotency_key: {e}")))?;
        }
        let limit = self.inner.limits.max_value_bytes;
        if message.len() > limit {
            return Err(ExecutorError::TooLarge(format!(
                "the message is {} bytes; the limit is {limit} bytes",
                message.len()
            )));
        }
        domain::check_json(&message).map_err(|e| {
            ExecutorError::InvalidInput(format!("the message is not valid JSON: {e}"))
        })?;
        if let Some(refusal) = self.inner.message_budget_refusal(id, message.len()).await? {
            return Err(ExecutorError::RunFull(refusal));
        }
        let sent = NewMessage {
            run: id.clone(),
            topic: topic.clone(),
            message,
            idempotency_key,
        };
        match self
            .inner
            .store
            .send_message(sent, self.inner.clock.now())
            .await
        {
            Ok(delivery) => {
                if delivery == Delivery::Delivered {
                    self.inner.wake(&Change::Message {
                        run: id.clone(),
                        topic,
                    });
                }
                Ok(delivery)
            }
            Err(StoreError::UnknownRun(run)) => Err(ExecutorError::UnknownRun(run)),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn list_events(&self, id: &WorkflowId) -> Result<Vec<(String, String)>> {
        Ok(self.inner.store.list_events(id).await?)
    }

    /// The event writes of run `id`, oldest first: the first `limit`, or
    /// the first `limit` journaled after operation `after_op`.
    pub async fn event_history(
        &self,
        id: &WorkflowId,
        after_op: Option<u32>,
        limit: u32,
    ) -> Result<Vec<EventRecord>> {
        Ok(self.inner.store.event_history(id, after_op, limit).await?)
    }

    pub async fn journal(&self, id: &WorkflowId) -> Result<Vec<JournalEntry>> {
        Ok(self.inner.store.journal(id).await?)
    }

    /// A page of run `id`'s journal: the first `limit` entries after
    /// operation `after_op`.
    pub async fn journal_page(
        &self,
        id: &WorkflowId,
        after_op: Option<u32>,
        limit: u32,
    ) -> Result<Vec<JournalEntry>> {
        Ok(self.inner.store.journal_page(id, after_op, limit).await?)
    }
}

impl super::Inner {
    /// Why a message of `bytes` may not be sent to run `id` now: the
    /// messages it has not received would go past its storage budget.
    /// (Checked before the send, so concurrent senders may pass it by a
    /// message each: a budget, not an exact quota.)
    pub(super) async fn message_budget_refusal(
        &self,
        id: &WorkflowId,
        bytes: usize,
    ) -> Result<Option<String>> {
        let pending = self.store.pending_message_bytes(id).await?;
        let budget = self.limits.max_run_bytes;
        if pending.saturating_add(bytes as u64) <= budget {
            return Ok(None);
        }
        Ok(Some(format!(
            "run {id} holds {pending} bytes of messages it has not received; another {bytes} would pass its budget of {budget} bytes (--max-run-bytes). The message was not delivered"
        )))
    }
}
