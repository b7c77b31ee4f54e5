//! Sending a step's outgoing HTTP request to an address that was checked.
//!
//! wasmtime-wasi-http's own sender resolves the name again when it
//! connects, after any check made before it: a name whose DNS answers
//! differently the second time (rebinding), or that simply points inside
//! the host's network, would reach an address nobody checked. Here the name
//! is resolved once, each address is checked against the allow-list
//! ([`AllowList::check_address`]), and the connection goes to the first one
//! allowed. TLS still verifies the certificate against the name.

use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use crate::domain::AllowList;

/// The future that drives the connection after the response's head, as
/// wasmtime-wasi-http expects it from a sender.
pub(super) type ConnectionIo = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// How long each phase may take, from the guest's request options.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

impl Timeouts {
    fn of(options: Option<RequestOptions>) -> Self {
        let options = options.unwrap_or_default();
        Self {
            connect: options.connect_timeout.unwrap_or(Duration::from_secs(30)),
            first_byte: options
                .first_byte_timeout
                .unwrap_or(Duration::from_secs(600)),
            // tokio's interval panics on zero.
            between_bytes: options
                .between_bytes_timeout
                .unwrap_or(Duration::from_secs(600))
                .max(Duration::from_nanos(1)),
        }
    }
}

/// Sends `request` to an address of its host that `allowed` permits.
pub(super) async fn send_checked(
    mut request: Request<WasiBody>,
    options: Option<RequestOptions>,
    allowed: AllowList,
) -> Result<(Response<WasiBody>, ConnectionIo), Error> {
    let timeouts = Timeouts::of(options);
    let uri = request.uri();
    let use_tls = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or(Error::HttpRequestUriInvalid)?
        .to_ascii_lowercase();
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });
    let address = resolve_checked(&bare_host, port, &allowed, timeouts.connect).await?;
    let tcp = timeout(timeouts.connect, TcpStream::connect(address))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    // The request line carries only the path: the authority is the Host
    // header's, and the scheme is the connection's.
    *request.uri_mut() = Uri::builder()
        .path_and_query(uri_path(request.uri()))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    if use_tls {
        let name = rustls::pki_types::ServerName::try_from(bare_host)
            .map_err(Error::InvalidDnsNameError)?;
        let tls = timeout(timeouts.connect, TLS.connect(name, tcp))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Tls)?;
        exchange(tls, request, timeouts).await
    } else {
        exchange(tcp, request, timeouts).await
    }
}

fn uri_path(uri: &Uri) -> String {
    uri.path_and_query().map_or("/", |p| p.as_str()).to_owned()
}

static TLS: LazyLock<tokio_rustls::TlsConnector> = LazyLock::new(|| {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
});

/// The first address of `host` that `allowed` permits; the refusal names
/// what the name resolved to.
async fn resolve_checked(
    host: &str,
    port: u16,
    allowed: &AllowList,
    limit: Duration,
) -> Result<SocketAddr, Error> {
    let addresses: Vec<SocketAddr> = timeout(limit, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| Error::DnsTimeout)?
        .map_err(|error| Error::DnsError {
            rcode: Some(error.to_string()),
            info_code: None,
        })?
        .collect();
    let mut refusal = None;
    for address in addresses {
        match allowed.check_address(host, address) {
            Ok(()) => return Ok(address),
            Err(reason) => refusal = Some(reason),
        }
    }
    let reason = refusal.unwrap_or_else(|| format!("{host} resolves to no address"));
    tracing::warn!(%host, %reason, "outgoing HTTP refused");
    Err(Error::InternalError(Some(format!(
        "outgoing HTTP to {host}:{port} refused: {reason}"
    ))))
}

/// One HTTP/1.1 exchange on `stream`: the response's head within the
/// first-byte timeout, its body frames each within the between-bytes one.
async fn exchange<S>(
    stream: S,
    request: Request<WasiBody>,
    timeouts: Timeouts,
) -> Result<(Response<WasiBody>, ConnectionIo), Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = timeout(
        timeouts.connect,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    let mut connection = Box::pin(connection);
    let mut response = pin!(timeout(timeouts.first_byte, sender.send_request(request)));
    // The connection is driven while the head is awaited; if it ends first,
    // the response (or its error) is ready.
    let (head, connection) = tokio::select! {
        head = &mut response => (head, Some(connection)),
        ended = &mut connection => {
            ended?;
            (response.await, None)
        }
    };
    let head = head.map_err(|_| Error::ConnectionReadTimeout)??;
    let mut gap = tokio::time::interval(timeouts.between_bytes);
    gap.reset();
    let response = head.map(|incoming| TimedBody { incoming, gap }.boxed_unsync());
    let io: ConnectionIo = Box::new(async move {
        match connection {
            Some(connection) => connection.await.map_err(|error| {
                if error.is_timeout() {
                    Error::HttpResponseTimeout
                } else {
                    Error::from(error)
                }
            }),
            None => Ok(()),
        }
    });
    Ok((response, io))
}

/// A response body whose frames must each come within a time limit.
struct TimedBody {
    incoming: Incoming,
    gap: tokio::time::Interval,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.gap.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(if error.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(error)
            }))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(self.gap.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
