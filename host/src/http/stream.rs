//! Live event streams: `GET /v1/workflows/{id}/events` with
//! `Accept: text/event-stream`.
//!
//! A stream first replays the run's event history, then sends every
//! `set-event` as it commits, and ends with a `cairn:finished` event that
//! carries the run's terminal status. Each event's `id:` is the operation
//! number of its write, so a client that reconnects with `Last-Event-ID`
//! gets exactly the writes it has not seen: no gap, no duplicate.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::router::Body;
use super::views::RunView;
use super::wait_slots::WaitSlot;
use crate::domain::{EventRecord, RunRecord, WorkflowId};
use crate::executor::Executor;

/// The name of the last event of a stream.
pub const FINISHED_EVENT: &str = "cairn:finished";

/// How events are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `event:` = the key, `data:` = the value: what the API promises.
    Named,
    /// Unnamed `message` events whose data is `{"key", "value"}`: for
    /// `EventSource` clients that do not know the keys in advance (a named
    /// event reaches only listeners registered for its name).
    Envelope,
}

/// What a stream needs to know.
#[derive(Debug)]
pub struct StreamRequest {
    pub run: WorkflowId,
    /// Resume after this operation (`Last-Event-ID`).
    pub after_op: Option<u32>,
    pub framing: Framing,
    /// Idle time after which a comment line is sent, so proxies keep the
    /// connection and a gone client is noticed.
    pub keep_alive: Duration,
    /// When the stream ends even though the run goes on: a client
    /// reconnects with `Last-Event-ID` and misses nothing, and a forgotten
    /// stream does not hold its place for ever.
    pub lifetime: Duration,
}

/// Start streaming; the stream holds `slot` (a place in the streams' pool)
/// for its whole life.
pub fn event_stream(executor: Executor, request: StreamRequest, slot: WaitSlot) -> Response<Body> {
    let run = request.run.clone();
    let lifetime = request.lifetime;
    serve_sse(slot, run, lifetime, async move |frames| {
        pump(&executor, request, &frames).await
    })
}

/// Serve what `pump` sends as Server-Sent Events, for at most `lifetime`
/// (then the client reconnects with `Last-Event-ID`), holding `slot`.
pub(super) fn serve_sse<F>(
    slot: WaitSlot,
    run: WorkflowId,
    lifetime: Duration,
    pump: impl FnOnce(mpsc::Sender<Bytes>) -> F + Send + 'static,
) -> Response<Body>
where
    F: Future<Output = Result<(), PumpError>> + Send,
{
    // A few frames of slack: the pump waits for a slow client rather than
    // buffering a run's whole history.
    let (frames, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        let _slot = slot;
        let ended = frames.clone();
        match tokio::time::timeout(lifetime, pump(frames)).await {
            Ok(Err(PumpError::Store(error))) => {
                tracing::warn!(%run, %error, "event stream ended by a store error");
            }
            // The client reconnects (EventSource does so by itself) and
            // goes on from its last event id.
            Err(_) => {
                let _ = ended.try_send(Bytes::from_static(
                    b": the stream's time is up; reconnect with Last-Event-ID\n\n",
                ));
            }
            Ok(_) => {}
        }
    });
    let mut response = Response::new(ChannelBody { receiver }.boxed());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell buffering reverse proxies (nginx) to pass frames on at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

pub(super) enum PumpError {
    /// The client went away: nothing to report.
    Gone,
    Store(String),
}

impl From<crate::executor::ExecutorError> for PumpError {
    fn from(error: crate::executor::ExecutorError) -> Self {
        Self::Store(error.to_string())
    }
}

async fn pump(
    executor: &Executor,
    request: StreamRequest,
    frames: &mpsc::Sender<Bytes>,
) -> Result<(), PumpError> {
    let StreamRequest {
        run,
        mut after_op,
        framing,
        keep_alive,
        lifetime: _,
    } = request;
    let send = async |frame: String| send_frame(frames, frame).await;
    // Subscribed before the first read: a write that commits while we read
    // still wakes us.
    let mut activity = executor.follow(&run);
    loop {
        after_op = send_history(executor, &run, after_op, framing, frames).await?;
        let Some(status) = executor.get_run(&run).await? else {
            return Err(PumpError::Store(format!("run {run} disappeared")));
        };
        if status.status.is_terminal() {
            // The run's end commits after its last write, which the read
            // above may have missed: read once more before the end.
            send_history(executor, &run, after_op, framing, frames).await?;
            send(finished_frame(&status)).await?;
            return Ok(());
        }
        loop {
            tokio::select! {
                woken = activity.changed_before(Instant::now() + keep_alive) => {
                    if woken {
                        break;
                    }
                    send(": keep-alive\n\n".to_owned()).await?;
                }
                () = frames.closed() => return Err(PumpError::Gone),
            }
        }
    }
}

pub(super) async fn send_frame(
    frames: &mpsc::Sender<Bytes>,
    frame: String,
) -> Result<(), PumpError> {
    frames
        .send(Bytes::from(frame))
        .await
        .map_err(|_| PumpError::Gone)
}

/// Event writes read per page of the history: a stream holds one page in
/// memory, not the run's whole history.
const HISTORY_PAGE: u32 = 32;

/// Send the event writes after `after_op`, page by page; returns the last
/// op sent (or `after_op` when there were none).
async fn send_history(
    executor: &Executor,
    run: &WorkflowId,
    mut after_op: Option<u32>,
    framing: Framing,
    frames: &mpsc::Sender<Bytes>,
) -> Result<Option<u32>, PumpError> {
    loop {
        let page = executor.event_history(run, after_op, HISTORY_PAGE).await?;
        let full = page.len() == HISTORY_PAGE as usize;
        for record in page {
            after_op = Some(record.op);
            send_frame(frames, event_frame(&record, framing)).await?;
        }
        if !full {
            return Ok(after_op);
        }
    }
}

/// One event write as an SSE frame. Event keys have no line breaks (the
/// host refuses them), and raw line breaks in JSON text can only be
/// whitespace, so a value always fits on one `data:` line.
fn event_frame(record: &EventRecord, framing: Framing) -> String {
    let value = one_line(&record.value);
    match framing {
        Framing::Named => format!(
            "id: {}\nevent: {}\ndata: {value}\n\n",
            record.op, record.key
        ),
        Framing::Envelope => {
            let key = serde_json::to_string(&record.key).expect("a string serialises");
            format!(
                "id: {}\ndata: {{\"key\":{key},\"value\":{value}}}\n\n",
                record.op
            )
        }
    }
}

/// The last frame: the run as `GET /v1/workflows/{id}` shows it.
fn finished_frame(run: &RunRecord) -> String {
    let view = serde_json::to_string(&RunView::from(run)).expect("a view serialises");
    format!("event: {FINISHED_EVENT}\ndata: {}\n\n", one_line(&view))
}

pub(super) fn one_line(json: &str) -> String {
    json.replace(['\r', '\n'], " ")
}

/// A response body fed by the pump task; dropping it (the client left)
/// closes the channel, which ends the pump.
struct ChannelBody {
    receiver: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.receiver
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(op: u32, key: &str, value: &str) -> EventRecord {
        EventRecord {
            op,
            key: key.into(),
            value: value.into(),
            recorded_at: 0,
        }
    }

    #[test]
    fn named_frames_carry_op_key_and_value() {
        assert_eq!(
            event_frame(&record(3, "step1", "\"completed\""), Framing::Named),
            "id: 3\nevent: step1\ndata: \"completed\"\n\n"
        );
    }

    #[test]
    fn multi_line_json_stays_one_data_line_and_the_same_value() {
        let frame = event_frame(
            &record(0, "k", "{\n  \"a\": \"x\\ny\"\r\n}"),
            Framing::Named,
        );
        let data = frame
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        assert_eq!(frame.matches('\n').count(), 4, "{frame:?}");
        let value: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(value, serde_json::json!({"a": "x\ny"}));
    }

    #[test]
    fn envelopes_name_the_key_in_the_data() {
        let frame = event_frame(&record(1, "a\"b", "[1, 2]"), Framing::Envelope);
        let data = frame.strip_prefix("id: 1\ndata: ").unwrap().trim_end();
        let value: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(value, serde_json::json!({"key": "a\"b", "value": [1, 2]}));
    }
}
