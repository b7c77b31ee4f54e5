//! Traces: the host's spans exported over OTLP (HTTP/protobuf) when
//! `--otlp-endpoint` or the standard `OTEL_EXPORTER_OTLP_*` variables name
//! a collector, and W3C trace context (`traceparent`) in and out.
//!
//! A run attempt is a span (`run`), its parent the `traceparent` the run
//! was started with, which is stored with the run: every attempt, a
//! recovered one too, is part of the same trace. Host calls, step attempts
//! and a step's outgoing HTTP requests are its children, and the requests
//! carry the step's `traceparent` (host calls are made apart, cheaper:
//! `leaf.rs`). Only spans of Cairn's own targets
//! (`cairn::...`) are exported; with no collector configured, no layer is
//! installed and spans below `info` are never made.

mod export;
mod leaf;
mod sampler;
mod spans;

use std::sync::{Arc, OnceLock};

use opentelemetry::trace::{SpanContext, SpanId, Status, TraceId};
use opentelemetry::{Key, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanExporter as _;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::registry::LookupSpan;

use export::Queue;
pub use leaf::{LeafSpan, SpanParent};
use sampler::Sampler;
use spans::{SpanLayer, span_context, with_recorded};

/// Where spans go: `--otlp-endpoint` (a base URL; `/v1/traces` is added),
/// or, without one, what `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` say. `None`: export nothing.
pub fn export_endpoint(flag: Option<&str>) -> Option<Option<String>> {
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    match flag {
        Some(base) => Some(Some(format!("{}/v1/traces", base.trim_end_matches('/')))),
        None => {
            let from_env = [
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ]
            .iter()
            .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty()));
            // The exporter reads the variables itself.
            from_env.then_some(None)
        }
    }
}

/// The sampler of this process's traces, for spans continuing a remote
/// parent (set once, by [`TraceExport::new`]).
static SAMPLER: OnceLock<Sampler> = OnceLock::new();

/// What the exporter takes: the spans of Cairn's own targets, at `debug`
/// and above, and no events. An event it took would be made and handed to
/// every layer for nothing (the log's filter decides on its own); spans
/// only, so a `debug!` in Cairn costs what it costs without the exporter.
/// The level hint keeps every callsite below `debug` disabled outright.
fn cairn_spans() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    FilterFn::new(|meta: &tracing::Metadata<'_>| {
        meta.is_span()
            && *meta.level() <= tracing::Level::DEBUG
            && (meta.target() == "cairn" || meta.target().starts_with("cairn::"))
    })
    .with_max_level_hint(tracing::Level::DEBUG)
}

/// The exporter of the host's spans, flushed when the host stops.
#[derive(Debug)]
pub struct TraceExport {
    queue: Arc<Queue>,
    sampler: Sampler,
    thread: std::thread::JoinHandle<()>,
}

impl TraceExport {
    /// Export to `endpoint` (the traces URL), or where the `OTEL_*`
    /// variables say when `None`. The service is `cairn` unless
    /// `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`) names another.
    /// The exporter (opentelemetry-otlp) reads the `OTEL_EXPORTER_OTLP_*`
    /// variables (headers, timeout, ...), the sampler `OTEL_TRACES_SAMPLER`.
    pub fn new(endpoint: Option<&str>) -> Result<Self, String> {
        let mut exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(endpoint) = endpoint {
            exporter = exporter.with_endpoint(endpoint);
        }
        let mut exporter = exporter
            .build()
            .map_err(|e| format!("cannot make the OTLP exporter: {e}"))?;
        let detected = Resource::builder().build();
        let named = detected
            .get(&Key::new("service.name"))
            .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
        let mut resource = Resource::builder();
        if !named {
            resource = resource.with_service_name("cairn");
        }
        let resource = resource
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        exporter.set_resource(&resource);
        let sampler = *SAMPLER.get_or_init(Sampler::from_env);
        let queue = leaf::QUEUE.get_or_init(Arc::default).clone();
        let thread = export::start(queue.clone(), exporter)
            .map_err(|e| format!("cannot start the span exporter's thread: {e}"))?;
        Ok(Self {
            queue,
            sampler,
            thread,
        })
    }

    /// The layer that hands Cairn's spans to the exporter.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        SpanLayer {
            queue: self.queue.clone(),
            sampler: self.sampler,
        }
        .with_filter(cairn_spans())
    }

    /// Send what is left. Blocks: call it off the async runtime.
    pub fn shutdown(self) {
        self.queue.close();
        if self.thread.join().is_err() {
            eprintln!("cairn: the span exporter's thread panicked; the last spans are lost");
        }
    }
}

/// `value`, if it is a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`,
/// ids not all zero); anything else is ignored, as the standard says.
pub fn parse_traceparent(value: &str) -> Option<String> {
    let value = value.trim();
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let zero = |part: &str| part.bytes().all(|b| b == b'0');
    match parts.as_slice() {
        [version, trace, span, flags]
            if hex(version, 2)
                && *version != "ff"
                && hex(trace, 32)
                && !zero(trace)
                && hex(span, 16)
                && !zero(span)
                && hex(flags, 2) =>
        {
            Some(value.to_owned())
        }
        _ => None,
    }
}

/// Make the span of `traceparent` the parent of `span` (before it is
/// entered). Without an exporter this does nothing.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let Some(parent) = parse_traceparent(traceparent).and_then(|t| remote_context(&t)) else {
        return;
    };
    let sampler = SAMPLER.get().copied().unwrap_or_default();
    with_recorded(span, |recorded| recorded.adopt(&parent, sampler));
}

/// The span context a well-formed `traceparent` names.
fn remote_context(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.split('-').skip(1);
    let trace = TraceId::from_hex(parts.next()?).ok()?;
    let span = SpanId::from_hex(parts.next()?).ok()?;
    let flags = u8::from_str_radix(parts.next()?, 16).ok()?;
    Some(span_context(trace, span, flags & 1 == 1))
}

/// The `traceparent` of `span`, to send on a request or store with a run;
/// `None` without an exporter.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    with_recorded(span, |recorded| {
        let context = &recorded.context;
        format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        )
    })
}

/// Mark `span` failed with `message` (an `ERROR` run, a failed attempt).
pub fn set_error(span: &tracing::Span, message: &str) {
    with_recorded(span, |recorded| {
        recorded.status = Status::error(message.to_owned());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_names_its_remote_span() {
        let context =
            remote_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_sampled());
        let unsampled =
            remote_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn only_well_formed_traceparents_are_taken() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(parse_traceparent(good).as_deref(), Some(good));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }
}
