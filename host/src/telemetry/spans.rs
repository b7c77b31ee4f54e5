//! The layer that makes Cairn's `tracing` spans OpenTelemetry spans: ids and
//! parent at the span's start, its fields as attributes, and at its close
//! one [`SpanData`] handed to the export queue — nothing else on the path
//! of the call that made the span (no context objects, no channel send, no
//! wake-up of the exporting thread per span).

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::SystemTime;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, Key, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Subscriber, span};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanData as _};

use super::export::Queue;
use super::sampler::Sampler;

/// What the layer keeps of a span until it closes (in the span's
/// extensions).
#[derive(Debug)]
pub(super) struct Recorded {
    pub(super) context: SpanContext,
    pub(super) parent: SpanId,
    pub(super) parent_is_remote: bool,
    pub(super) name: Cow<'static, str>,
    pub(super) kind: SpanKind,
    pub(super) start: SystemTime,
    pub(super) attributes: Vec<KeyValue>,
    pub(super) status: Status,
}

impl Recorded {
    /// Continue the remote span of `parent` (a `traceparent`): same trace,
    /// and sampled as the sampler decides for a child of it.
    pub(super) fn adopt(&mut self, parent: &SpanContext, sampler: Sampler) {
        let sampled = sampler.sample(parent.trace_id(), Some(parent.is_sampled()));
        self.context = span_context(parent.trace_id(), self.context.span_id(), sampled);
        self.parent = parent.span_id();
        self.parent_is_remote = true;
    }

    pub(super) fn into_span_data(self, end: SystemTime) -> SpanData {
        SpanData {
            span_context: self.context,
            parent_span_id: self.parent,
            parent_span_is_remote: self.parent_is_remote,
            span_kind: self.kind,
            name: self.name,
            start_time: self.start,
            end_time: end,
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: self.status,
            instrumentation_scope: scope().clone(),
        }
    }
}

fn scope() -> &'static InstrumentationScope {
    static SCOPE: OnceLock<InstrumentationScope> = OnceLock::new();
    SCOPE.get_or_init(|| {
        InstrumentationScope::builder("cairn")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build()
    })
}

pub(super) fn span_context(trace: TraceId, span: SpanId, sampled: bool) -> SpanContext {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    SpanContext::new(trace, span, flags, false, TraceState::NONE)
}

/// Random, never zero (the all-zero ids are invalid).
fn random_nonzero() -> u128 {
    loop {
        let id: u128 = rand::random();
        // Span ids are the low half: neither may be zero.
        if id as u64 != 0 && id >> 64 != 0 {
            return id;
        }
    }
}

/// A new span's id.
pub(super) fn random_span_id() -> SpanId {
    SpanId::from(random_nonzero() as u64)
}

/// The layer; its spans go to `queue`.
#[derive(Debug)]
pub(super) struct SpanLayer {
    pub(super) queue: std::sync::Arc<Queue>,
    pub(super) sampler: Sampler,
}

impl<S> Layer<S> for SpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = if let Some(parent) = attrs.parent() {
            ctx.span(parent)
        } else if attrs.is_contextual() {
            ctx.lookup_current()
        } else {
            None
        };
        let parent =
            parent.and_then(|p| p.extensions().get::<Recorded>().map(|r| r.context.clone()));
        let span_id = random_span_id();
        let (context, parent) = match parent {
            Some(parent) => (
                span_context(parent.trace_id(), span_id, parent.is_sampled()),
                parent.span_id(),
            ),
            None => {
                let trace = TraceId::from(random_nonzero());
                let sampled = self.sampler.sample(trace, None);
                (span_context(trace, span_id, sampled), SpanId::INVALID)
            }
        };
        let mut recorded = Recorded {
            context,
            parent,
            parent_is_remote: false,
            name: Cow::Borrowed(attrs.metadata().name()),
            kind: SpanKind::Internal,
            start: SystemTime::now(),
            attributes: Vec::with_capacity(attrs.fields().len()),
            status: Status::Unset,
        };
        attrs.record(&mut Fields(&mut recorded));
        span.extensions_mut().insert(recorded);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(recorded) = span.extensions_mut().get_mut::<Recorded>() {
            values.record(&mut Fields(recorded));
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(recorded) = span.extensions_mut().remove::<Recorded>() else {
            return;
        };
        if recorded.context.is_sampled() {
            self.queue.push(recorded.into_span_data(SystemTime::now()));
        }
    }
}

/// Fields become attributes; `otel.name` and `otel.kind` name the span
/// and its kind, as in `tracing-opentelemetry`.
struct Fields<'a>(&'a mut Recorded);

impl Fields<'_> {
    fn set(&mut self, field: &Field, value: Value) {
        match field.name() {
            "otel.name" => self.0.name = Cow::Owned(value.as_str().into_owned()),
            "otel.kind" => self.0.kind = span_kind(&value.as_str()),
            name => {
                let key = Key::from_static_str(name);
                // A field recorded again (`run.status`) replaces its value.
                match self.0.attributes.iter_mut().find(|kv| kv.key == key) {
                    Some(existing) => existing.value = value,
                    None => self.0.attributes.push(KeyValue::new(key, value)),
                }
            }
        }
    }
}

fn span_kind(kind: &str) -> SpanKind {
    match kind {
        "client" => SpanKind::Client,
        "server" => SpanKind::Server,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        _ => SpanKind::Internal,
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // The name and kind straight from the text: every span has them, and
        // an attribute value first would copy the text once more.
        match field.name() {
            "otel.name" => self.0.name = Cow::Owned(value.to_owned()),
            "otel.kind" => self.0.kind = span_kind(value),
            _ => self.set(field, Value::from(value.to_owned())),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, Value::I64(i64::try_from(value).unwrap_or(i64::MAX)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, Value::F64(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "otel.name" => self.0.name = Cow::Owned(text),
            _ => self.set(field, Value::from(text)),
        }
    }
}

/// Run `f` on what the layer keeps of `span`; `None` without the layer (no
/// export configured) or once the span has closed.
pub(super) fn with_recorded<R>(
    span: &tracing::Span,
    f: impl FnOnce(&mut Recorded) -> R,
) -> Option<R> {
    let mut f = Some(f);
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let data = registry.span_data(id)?;
        let mut extensions = data.extensions_mut();
        let recorded = extensions.get_mut::<Recorded>()?;
        f.take().map(|f| f(recorded))
    })
    .flatten()
}
