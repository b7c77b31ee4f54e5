//! Reading runs' streams: from an offset, waiting for a value or the
//! stream's end (woken by appends, never by polling, except for the
//! periodic look of a shared database); a run's list of streams; and a
//! run's messages.

use std::time::Duration;

use tokio::time::Instant;

use super::{Executor, ExecutorError, Inner, Result, WaitKey};
use crate::domain::{self, MAX_STREAM_READ, MessageRecord, StreamInfo, StreamRead, WorkflowId};
use crate::store::StoreError;

/// Which part of a stream to read, and how much at most.
#[derive(Debug, Clone, Copy)]
pub struct StreamSpan<'a> {
    pub name: &'a str,
    pub offset: u64,
    /// Most values (at most [`MAX_STREAM_READ`]).
    pub limit: u32,
    /// Most bytes of values in all; the first value is returned however
    /// large it is.
    pub max_bytes: usize,
}

impl Executor {
    /// Read `span` of run `id`'s stream, waiting up to `timeout` for a value
    /// or the stream's end; an empty, open read if neither comes. A run
    /// that does not exist yet is waited for.
    pub async fn read_stream(
        &self,
        id: &WorkflowId,
        span: StreamSpan<'_>,
        timeout: Duration,
    ) -> Result<StreamRead> {
        domain::validate_stream_name(span.name)?;
        let inner = &self.inner;
        // Subscribed before the first read: no append can slip in between.
        let mut appended = inner.waiters.subscribe(WaitKey::Stream(id.clone()));
        let found = appended
            .wait_for(
                Instant::now() + timeout,
                async || {
                    Ok::<_, StoreError>(
                        Some(inner.read_stream_once(id, span).await?).filter(StreamRead::is_news),
                    )
                },
                |_| None,
            )
            .await?;
        Ok(found.unwrap_or_default())
    }

    /// The streams of run `id`; [`ExecutorError::UnknownRun`] if there is no
    /// such run.
    pub async fn list_streams(&self, id: &WorkflowId) -> Result<Vec<StreamInfo>> {
        self.known_run(id).await?;
        Ok(self.inner.store.list_streams(id).await?)
    }

    /// The messages sent to run `id`, received or not, oldest first: the
    /// first `limit` after `after_seq`.
    pub async fn list_messages(
        &self,
        id: &WorkflowId,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>> {
        self.known_run(id).await?;
        Ok(self.inner.store.list_messages(id, after_seq, limit).await?)
    }

    async fn known_run(&self, id: &WorkflowId) -> Result<()> {
        match self.inner.store.get_run(id).await? {
            Some(_) => Ok(()),
            None => Err(ExecutorError::UnknownRun(id.to_string())),
        }
    }
}

impl Inner {
    /// One read of `span` of run `id`'s stream, not waiting.
    pub(super) async fn read_stream_once(
        &self,
        id: &WorkflowId,
        span: StreamSpan<'_>,
    ) -> Result<StreamRead, StoreError> {
        let limit = span.limit.clamp(1, MAX_STREAM_READ);
        let (mut entries, status) = self
            .store
            .read_stream(id, span.name, span.offset, limit)
            .await?;
        let mut read_to_end = entries.len() < limit as usize;
        let mut bytes = 0;
        if let Some(cut) = entries.iter().enumerate().position(|(i, entry)| {
            bytes += entry.value.as_deref().map_or(0, str::len);
            i > 0 && bytes > span.max_bytes
        }) {
            entries.truncate(cut);
            read_to_end = false;
        }
        Ok(StreamRead::of(entries, status, read_to_end))
    }
}
