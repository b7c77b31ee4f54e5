//! A Server-Sent Events reader over a real TCP connection, for the tests of
//! live event streams.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    /// `message` when the frame names none.
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data {:?} is not JSON: {e}", self.data))
    }
}

/// An open event stream.
#[derive(Debug)]
pub struct SseStream {
    body: Incoming,
    buffer: String,
    pub status: hyper::StatusCode,
    pub headers: hyper::HeaderMap,
}

impl SseStream {
    /// `GET base+path` with `Accept: text/event-stream` and `extra_headers`.
    pub async fn open(
        base: &str,
        path: &str,
        extra_headers: &[(&str, &str)],
    ) -> anyhow::Result<SseStream> {
        let authority = base.strip_prefix("http://").context("an http:// URL")?;
        let stream = tokio::net::TcpStream::connect(authority).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::ACCEPT, "text/event-stream");
        for (name, value) in extra_headers {
            request = request.header(*name, *value);
        }
        let response = sender
            .send_request(request.body(Empty::<Bytes>::new())?)
            .await?;
        let (parts, body) = response.into_parts();
        Ok(SseStream {
            body,
            buffer: String::new(),
            status: parts.status,
            headers: parts.headers,
        })
    }

    /// The next event, skipping comments; `None` when the stream ends.
    /// Fails if nothing arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Option<SseEvent>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_frame(&frame) {
                    return Ok(Some(event));
                }
                continue;
            }
            let frame = tokio::time::timeout(timeout, self.body.frame())
                .await
                .context("no event arrived in time")?;
            match frame {
                None => {
                    if !self.buffer.trim().is_empty() {
                        bail!("the stream ended inside a frame: {:?}", self.buffer);
                    }
                    return Ok(None);
                }
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buffer.push_str(std::str::from_utf8(&data)?);
                    }
                }
            }
        }
    }

    /// Every event until the stream ends.
    pub async fn collect(mut self, timeout: Duration) -> anyhow::Result<Vec<SseEvent>> {
        let mut events = Vec::new();
        while let Some(event) = self.next(timeout).await? {
            events.push(event);
        }
        Ok(events)
    }
}

/// An event from its lines; `None` for a frame of comments only.
fn parse_frame(frame: &str) -> Option<SseEvent> {
    let mut event = SseEvent {
        id: None,
        event: "message".into(),
        data: String::new(),
    };
    let mut has_data = false;
    for line in frame.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = value.to_owned(),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    has_data.then_some(event)
}
