//! What a workflow's guest reads through WASI besides the Cairn imports:
//! clocks, random numbers and outgoing HTTP, all decided by a
//! [`GuestEnvironment`] that the executor installs for the run.
//!
//! WASI calls these synchronously (a clock is `fn now(&self)`), so they
//! cannot write to the database themselves: the executor's environment
//! journals what they return with the run's next durable write.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::{Rng, TryRng};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi_http::{WasiBody, WasiHttpHooks};

use super::outgoing::{ConnectionIo, send_checked};
use crate::domain::AllowList;
use tracing::Instrument;

/// Clocks, randomness and the network as one run's guest sees them.
pub trait GuestEnvironment: Send + Sync + 'static {
    /// `wasi:clocks/wall-clock.now`, since the Unix epoch.
    fn wall_clock(&self) -> Duration;
    /// `wasi:clocks/monotonic-clock.now`, in nanoseconds.
    fn monotonic_clock(&self) -> u64;
    /// `wasi:random`, secure and insecure alike.
    fn fill_random(&self, bytes: &mut [u8]);
    /// `wasi:random/insecure-seed`: fixed for an instance's lifetime.
    fn insecure_seed(&self) -> u128;
    /// Whether an outgoing HTTP request to `authority` (`host:port`) may be
    /// sent now, and the list its resolved address must be within; the
    /// refusal says why, for the guest to see.
    fn outbound_request(&self, authority: &str) -> Result<AllowList, String>;
    /// The span outgoing requests are made in (a step attempt's).
    fn outbound_span(&self) -> tracing::Span {
        tracing::Span::none()
    }
}

/// The system's clocks and randomness, and no network: for instances that
/// run no workflow (an upload being inspected).
#[derive(Debug)]
pub struct LiveEnvironment;

impl GuestEnvironment for LiveEnvironment {
    fn wall_clock(&self) -> Duration {
        system_time()
    }

    fn monotonic_clock(&self) -> u64 {
        nanos(system_time())
    }

    fn fill_random(&self, bytes: &mut [u8]) {
        rand::rng().fill_bytes(bytes);
    }

    fn insecure_seed(&self) -> u128 {
        rand::rng().next_u64() as u128 | ((rand::rng().next_u64() as u128) << 64)
    }

    fn outbound_request(&self, _authority: &str) -> Result<AllowList, String> {
        Err("outgoing HTTP is only available inside a workflow's steps".into())
    }
}

pub fn system_time() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

pub fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}

/// Builds the WASI clocks and random generators of an instance on `env`.
pub(super) fn install(
    builder: &mut wasmtime_wasi::WasiCtxBuilder,
    env: &Arc<dyn GuestEnvironment>,
) {
    builder
        .wall_clock(WallClock(env.clone()))
        .monotonic_clock(MonotonicClock(env.clone()))
        .secure_random(Random(env.clone()))
        .insecure_random(Random(env.clone()))
        .insecure_random_seed(env.insecure_seed());
}

struct WallClock(Arc<dyn GuestEnvironment>);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.0.wall_clock()
    }
}

struct MonotonicClock(Arc<dyn GuestEnvironment>);

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.0.monotonic_clock()
    }
}

struct Random(Arc<dyn GuestEnvironment>);

impl TryRng for Random {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.0.fill_random(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.0.fill_random(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, bytes: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_random(bytes);
        Ok(())
    }
}

impl rand::TryCryptoRng for Random {}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<(hyper::Response<WasiBody>, ConnectionIo), wasmtime_wasi_http::Error>,
        > + Send,
>;

/// Outgoing HTTP of a workflow instance: sent when the environment allows
/// it (inside a step, to a host on the module's allow-list, at an address
/// the list permits), refused with the environment's reason otherwise.
pub(super) struct OutgoingHttp(pub(super) Arc<dyn GuestEnvironment>);

impl WasiHttpHooks for OutgoingHttp {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: ConnectionIo,
    ) -> ResponseFuture {
        let authority = request_authority(&request);
        match self.0.outbound_request(&authority) {
            Ok(allowed) => {
                let span = request_span(&self.0.outbound_span(), &request);
                let mut request = request;
                if let Some(traceparent) = crate::telemetry::traceparent_of(&span)
                    && let Ok(value) = hyper::header::HeaderValue::from_str(&traceparent)
                {
                    request.headers_mut().insert("traceparent", value);
                }
                let recorded = span.clone();
                Box::new(
                    async move {
                        let sent = send_checked(request, options, allowed).await;
                        match &sent {
                            Ok((response, _)) => {
                                recorded.record(
                                    "http.response.status_code",
                                    response.status().as_u16(),
                                );
                            }
                            Err(error) => {
                                crate::telemetry::set_error(&recorded, &error.to_string())
                            }
                        }
                        sent
                    }
                    .instrument(span),
                )
            }
            Err(reason) => {
                tracing::warn!(%authority, %reason, "outgoing HTTP refused");
                Box::new(async move { Err(wasmtime_wasi_http::Error::InternalError(Some(reason))) })
            }
        }
    }
}

/// The span of one outgoing request, a child of the step attempt's.
fn request_span<B>(step: &tracing::Span, request: &hyper::Request<B>) -> tracing::Span {
    tracing::debug_span!(
        parent: step,
        "http_request",
        otel.name = %format!("{} {}", request.method(), request.uri().host().unwrap_or_default()),
        otel.kind = "client",
        http.request.method = %request.method(),
        url.full = %request.uri(),
        http.response.status_code = tracing::field::Empty,
    )
}

/// `host:port` of a request, with the scheme's default port.
fn request_authority<B>(request: &hyper::Request<B>) -> String {
    let uri = request.uri();
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("http") => 80,
        _ => 443,
    });
    format!("{host}:{port}")
}
