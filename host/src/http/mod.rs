//! The HTTP API over hyper 1.x: [`Api::handle`] maps a request to a response
//! without a socket (what most tests use); [`serve`] is the accept loop.

mod access;
mod api_routes;
mod bulk;
mod error;
mod events;
mod guard;
mod metrics;
mod modules;
pub mod multipart;
mod pages;
mod query;
mod queues;
mod respond;
mod router;
mod run_messages;
mod run_streams;
mod runs;
mod schedules;
mod stall;
mod stream;
mod triggers;
mod views;
mod wait_slots;

use std::net::SocketAddr;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

pub use access::{AccessControl, Caller, PeerAddr, Role};
pub use error::ApiError;
pub use query::encode_segment;
pub use router::{Api, ApiLimits, Body};

/// Accept connections on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    api: Api,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, peer, api.clone()));
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, api: Api) {
    let header_read_timeout = api.limits().header_read_timeout;
    let stream = stall::StallGuard::new(stream, api.limits().write_stall_timeout);
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        // Who is asking, for the limits per client.
        request.extensions_mut().insert(PeerAddr(peer));
        let api = api.clone();
        async move { Ok::<_, std::convert::Infallible>(api.handle(request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
