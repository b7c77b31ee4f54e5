//! A payment gateway on loopback for tests of outgoing HTTP: real HTTP over
//! TCP. It answers 503 to its first `failures` requests and then approves
//! each charge, and records every request it got.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Debug)]
pub struct FakeGateway {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    failures_left: u32,
    requests: Vec<serde_json::Value>,
    /// The `traceparent` header of each request, if it had one.
    traceparents: Vec<Option<String>>,
}

impl FakeGateway {
    /// Listen on a free loopback port; fail the first `failures` requests.
    pub async fn start(failures: u32) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            failures_left: failures,
            requests: Vec::new(),
            traceparents: Vec::new(),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(state.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// `http://127.0.0.1:PORT/charges`.
    pub fn url(&self) -> String {
        format!("http://{}/charges", self.addr)
    }

    /// The JSON bodies of the requests so far, in order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The `traceparent` header of each request so far, in order.
    pub fn traceparents(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().traceparents.clone()
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut state = state.lock().unwrap();
    state.requests.push(json.clone());
    state.traceparents.push(traceparent);
    let (status, reply) = if state.failures_left > 0 {
        state.failures_left -= 1;
        (503, serde_json::json!({"error": "gateway busy"}))
    } else {
        let charge_id = format!(
            "ch_{}_{}",
            json["order_id"].as_str().unwrap_or("?"),
            json["idempotency_key"].as_str().unwrap_or("?")
        );
        (200, serde_json::json!({"charge_id": charge_id}))
    };
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(reply.to_string())))
        .expect("a valid response");
    Ok(response)
}
