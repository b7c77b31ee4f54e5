//! Guest stdout and stderr, routed into the host's log line by line and
//! tagged with the run, instead of the host's own terminal.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept; longer output is cut into pieces of this size.
const MAX_LINE: usize = 4096;
/// How much of the latest output is kept to explain a trap.
const TAIL: usize = 2048;

#[derive(Debug, Clone)]
pub struct GuestOutput {
    run: String,
    stream: &'static str,
    /// The last lines written, newest last, at most `TAIL` bytes.
    tail: Arc<Mutex<String>>,
}

impl GuestOutput {
    pub fn new(run: impl Into<String>, stream: &'static str) -> Self {
        Self {
            run: run.into(),
            stream,
            tail: Arc::default(),
        }
    }

    /// The latest output (complete lines only).
    pub fn tail(&self) -> String {
        self.tail.lock().expect("output tail lock").clone()
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            output: self.clone(),
            line: Vec::new(),
        })
    }
}

struct LineWriter {
    output: GuestOutput,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\r', '\n']);
        tracing::info!(target: "cairn::guest", run = %self.output.run, stream = self.output.stream, "{text}");
        let mut tail = self.output.tail.lock().expect("output tail lock");
        tail.push_str(text);
        tail.push('\n');
        if tail.len() > TAIL {
            let mut cut = tail.len() - TAIL;
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            tail.drain(..cut);
        }
        drop(tail);
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        for &byte in buf {
            self.line.push(byte);
            if byte == b'\n' || self.line.len() >= MAX_LINE {
                self.emit();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.line.is_empty() {
            self.emit();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}
