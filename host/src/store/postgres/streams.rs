//! Streams and message reads on PostgreSQL: appends (journaled with the
//! workflow's call, or fenced on their own from inside a step), reads from
//! an offset, a run's list of streams, and a run's messages. A run's
//! appends come from its one execution at a time (its epoch fences any
//! other), so the next position is its stream's last plus one.

use sqlx::PgConnection;

use super::PgStore;
use crate::domain::{RunStatus, StreamEntry, WorkflowId};
use std::sync::LazyLock;

use sqlx::Row;

use crate::domain::{Message, MessageRecord, StreamInfo};
use crate::store::rows::{
    StreamAppend, corrupt, list_messages_query, list_streams_query, message_record_from_row,
    run_refusal, stream_entry_from_row, stream_info_from_row,
};
use crate::store::statements::{NEXT_MESSAGE, RUN_STATUS, RUN_STATUS_AND_EPOCH, STREAM_ENTRIES};
use crate::store::{Change, Result, StoreError};

/// Write `append` at its stream's next position when `writable` (SQL on
/// `$1`, the run, and `$6`, the fence) holds; how many rows it wrote.
async fn insert(
    conn: &mut PgConnection,
    append: StreamAppend<'_>,
    fence: Option<u64>,
    writable: &str,
) -> Result<u64> {
    Ok(sqlx::query(&format!(
        "INSERT INTO stream_entries (run_id, stream, position, value, op, recorded_at)
         SELECT $1, $2, COALESCE((SELECT MAX(position) + 1 FROM stream_entries WHERE run_id = $1 AND stream = $2), 0), $3, $4, $5
         WHERE {writable}"
    ))
    .bind(append.id.as_str())
    .bind(append.stream)
    .bind(append.value)
    .bind(i64::from(append.op))
    .bind(append.now)
    .bind(fence.map(|e| e as i64))
    .execute(conn)
    .await?
    .rows_affected())
}

/// The append of a journaled `write-stream` or `close-stream`: its journal
/// entry, written just before in the same transaction, checked the run.
pub(super) async fn append_journaled(
    conn: &mut PgConnection,
    changes: &mut Vec<Change>,
    append: StreamAppend<'_>,
) -> Result<()> {
    insert(conn, append, None, "$6::BIGINT IS NULL").await?;
    changes.push(Change::Stream {
        run: append.id.clone(),
        stream: append.stream.to_owned(),
    });
    Ok(())
}

impl PgStore {
    /// An append of `value` to `stream` from inside step `op`: only while
    /// the run is `PENDING` and, with `fence`, in that epoch.
    pub(super) async fn append_fenced(
        &self,
        id: &WorkflowId,
        fence: Option<u64>,
        op: u32,
        stream: &str,
        value: &str,
        now: i64,
    ) -> Result<()> {
        let append = StreamAppend {
            id,
            op,
            stream,
            value: Some(value),
            now,
        };
        let mut conn = self.pool.acquire().await?;
        let writable = "EXISTS (SELECT 1 FROM runs WHERE id = $1 AND status = 'PENDING' AND ($6::BIGINT IS NULL OR epoch = $6))";
        if insert(&mut conn, append, fence, writable).await? == 1 {
            self.announce([Change::Stream {
                run: id.clone(),
                stream: stream.to_owned(),
            }]);
            return Ok(());
        }
        let row: Option<(String, i64)> = sqlx::query_as(RUN_STATUS_AND_EPOCH)
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        Err(run_refusal(id, row, fence).unwrap_or_else(|| {
            StoreError::Corrupt(format!("stream {stream:?} of run {id} refused an append"))
        }))
    }

    /// The streams of run `id`, by name.
    pub(super) async fn streams_of(&self, id: &WorkflowId) -> Result<Vec<StreamInfo>> {
        static QUERY: LazyLock<String> = LazyLock::new(|| list_streams_query('$'));
        let rows = sqlx::query(&QUERY)
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stream_info_from_row).collect()
    }

    /// The oldest message of run `id` on `topic` not yet received.
    pub(super) async fn next_message_of(
        &self,
        id: &WorkflowId,
        topic: &str,
    ) -> Result<Option<Message>> {
        let row = sqlx::query(NEXT_MESSAGE)
            .bind(id.as_str())
            .bind(topic)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(Message {
                seq: row.try_get("seq")?,
                message: row.try_get("message")?,
            })
        })
        .transpose()
    }

    /// The messages sent to run `id`, oldest first, after `after_seq`.
    pub(super) async fn messages_of(
        &self,
        id: &WorkflowId,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>> {
        static QUERY: LazyLock<String> = LazyLock::new(|| list_messages_query('$'));
        let rows = sqlx::query(&QUERY)
            .bind(id.as_str())
            .bind(after_seq.unwrap_or(0))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(message_record_from_row).collect()
    }

    /// The status of run `id` (read first: an ended run's entries are all
    /// there by then) and up to `limit` entries of `stream` from `from`.
    pub(super) async fn read_stream_entries(
        &self,
        id: &WorkflowId,
        stream: &str,
        from: u64,
        limit: u32,
    ) -> Result<(Vec<StreamEntry>, Option<RunStatus>)> {
        let status: Option<String> = sqlx::query_scalar(RUN_STATUS)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let status = status.map(|s| s.parse().map_err(corrupt)).transpose()?;
        let rows = sqlx::query(STREAM_ENTRIES)
            .bind(id.as_str())
            .bind(stream)
            .bind(i64::try_from(from).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let entries = rows
            .iter()
            .map(stream_entry_from_row)
            .collect::<Result<_>>()?;
        Ok((entries, status))
    }
}
