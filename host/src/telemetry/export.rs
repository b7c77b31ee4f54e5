//! The export queue and its thread: closed spans are pushed under a lock
//! into a vector (no allocation of a message, no wake-up per span); the
//! thread takes the whole vector every half second, or as soon as a batch
//! is full, and sends it with the OTLP exporter. A full queue drops spans
//! and counts them, so a slow collector never slows a run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// Spans held at most while the collector is slow or away.
const MAX_QUEUED: usize = 65_536;
/// Spans per export request; the thread is woken when this many wait.
const BATCH: usize = 256;
/// Longest a span waits for its export.
const EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub(super) struct Queue {
    spans: Mutex<Vec<SpanData>>,
    full: Condvar,
    closed: AtomicBool,
    dropped: AtomicU64,
}

impl Queue {
    pub(super) fn push(&self, span: SpanData) {
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        if spans.len() >= MAX_QUEUED {
            drop(spans);
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("cairn: the trace collector falls behind; dropping spans");
            }
            return;
        }
        spans.push(span);
        if spans.len() == BATCH {
            self.full.notify_one();
        }
    }

    /// What is queued, once a batch is full, `EVERY` has passed, or the
    /// queue is closed.
    fn take(&self) -> Vec<SpanData> {
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        if spans.len() < BATCH && !self.closed.load(Ordering::Acquire) {
            spans = self
                .full
                .wait_timeout(spans, EVERY)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        // The next batch's room at once: grown span by span, the vector
        // would be copied ten times over, under the lock every run takes.
        std::mem::replace(&mut *spans, Vec::with_capacity(BATCH))
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _guard = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        self.full.notify_one();
    }
}

/// Start the thread that exports what `queue` gathers; it ends, having
/// sent the rest, once the queue is closed.
pub(super) fn start<E: SpanExporter + 'static>(
    queue: Arc<Queue>,
    exporter: E,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cairn-otlp".into())
        .spawn(move || {
            loop {
                let closing = queue.closed.load(Ordering::Acquire);
                let mut spans = queue.take();
                while !spans.is_empty() {
                    let rest = spans.split_off(spans.len().min(BATCH));
                    let count = spans.len();
                    if let Err(error) = futures_executor::block_on(exporter.export(spans)) {
                        // The log would trace itself; stderr does not.
                        eprintln!("cairn: exporting {count} spans failed: {error}");
                    }
                    spans = rest;
                }
                if closing {
                    break;
                }
            }
            if let Err(error) = exporter.shutdown() {
                eprintln!("cairn: closing the span exporter: {error}");
            }
        })
}
