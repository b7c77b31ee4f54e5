//! Spans without children, made without `tracing`: a host call's. A run's
//! host calls are most of its spans (two of the seed run's three), and
//! each through `tracing` cost a registry entry, its extensions, the field
//! visitor and both layers' filters; here a host call's span is its start
//! time and one attribute, handed to the export queue when it ends. Its
//! parent, the run attempt's span, is looked up once per attempt.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanContext, SpanKind, Status};

use super::export::Queue;
use super::spans::{Recorded, random_span_id, span_context, with_recorded};

/// The queue of this process's exporter (set once, by `TraceExport::new`).
pub(super) static QUEUE: OnceLock<Arc<Queue>> = OnceLock::new();

/// A span that leaf spans are made under: its context, taken once.
#[derive(Debug, Clone)]
pub struct SpanParent(SpanContext);

impl SpanParent {
    /// `span`'s context, for children made without `tracing`; `None`
    /// without an exporter, or when `span`'s trace is not sampled (its
    /// children would not be exported either).
    pub fn of(span: &tracing::Span) -> Option<Self> {
        QUEUE.get()?;
        with_recorded(span, |recorded| recorded.context.clone())
            .filter(SpanContext::is_sampled)
            .map(Self)
    }

    /// A span named `name` under this one, from now until it is dropped.
    pub fn leaf(&self, name: &'static str, attributes: Vec<KeyValue>) -> LeafSpan {
        let parent = &self.0;
        LeafSpan(Some(Recorded {
            context: span_context(parent.trace_id(), random_span_id(), true),
            parent: parent.span_id(),
            parent_is_remote: false,
            name: Cow::Borrowed(name),
            kind: SpanKind::Internal,
            start: SystemTime::now(),
            attributes,
            status: Status::Unset,
        }))
    }
}

/// A span that ends, and is queued for export, when dropped.
#[derive(Debug)]
pub struct LeafSpan(Option<Recorded>);

impl Drop for LeafSpan {
    fn drop(&mut self) {
        if let (Some(recorded), Some(queue)) = (self.0.take(), QUEUE.get()) {
            queue.push(recorded.into_span_data(SystemTime::now()));
        }
    }
}
