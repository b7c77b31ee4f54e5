//! Traces, end to end: a host started with `--otlp-endpoint` exports its
//! spans over OTLP/HTTP to a real receiver started here (the protocol's
//! message types from `opentelemetry-proto`, decoded with prost), and the
//! span trees are checked: a seed run under the caller's `traceparent`
//! with its host calls; a step retried over HTTP, each attempt a span with
//! its request, which carried the attempt's `traceparent`; and a run
//! recovered after its host was killed, continuing the same trace.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_tests::{FakeGateway, Host, examples};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// One exported span, as the receiver decoded it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root.
    parent_span_id: String,
    attributes: Vec<(String, String)>,
    /// 2: error.
    status: i32,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<Received> {
    let text = |value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match value
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    };
    let mut spans = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(&kv.value))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(Received {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                        .collect(),
                    status: span.status.map_or(0, |s| s.code),
                });
            }
        }
    }
    spans
}

/// An OTLP/HTTP trace receiver on a free loopback port.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let spans = Arc::new(Mutex::new(Vec::new()));
        let shared = spans.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let spans = shared.clone();
                let service = hyper::service::service_fn(move |request: Request<_>| {
                    let spans = spans.clone();
                    async move { Ok::<_, Infallible>(receive(request, &spans).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Ok(Self { url, spans })
    }

    /// Wait until the spans received satisfy `found`, and return its answer.
    async fn until<T>(&self, found: impl Fn(&[Received]) -> Option<T>) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(answer) = found(&self.spans.lock().unwrap()) {
                return Ok(answer);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the spans never showed it: {:#?}",
                self.spans.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    request: Request<hyper::body::Incoming>,
    spans: &Mutex<Vec<Received>>,
) -> Response<Full<Bytes>> {
    let protobuf = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
    if request.method() != Method::POST || request.uri().path() != "/v1/traces" || !protobuf {
        let mut refused = Response::new(Full::new(Bytes::new()));
        *refused.status_mut() = StatusCode::NOT_FOUND;
        return refused;
    }
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let decoded = ExportTraceServiceRequest::decode(body).expect("an OTLP export");
    spans.lock().unwrap().extend(flatten(decoded));
    Response::new(Full::new(Bytes::from(
        ExportTraceServiceResponse::default().encode_to_vec(),
    )))
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

/// Start `workflow` of `module` as the caller's span `CALLER` of trace
/// `trace`; its id.
async fn start_traced(
    host: &Host,
    module: &str,
    workflow: &str,
    input: serde_json::Value,
    trace: &str,
) -> anyhow::Result<String> {
    let body = json!({"module": module, "workflow": workflow, "input": input});
    let traceparent = format!("00-{trace}-{CALLER}-01");
    let started = host
        .client
        .send_with_headers(
            Method::POST,
            "/v1/workflows",
            &[
                ("content-type", "application/json"),
                ("traceparent", &traceparent),
            ],
            body.to_string().into(),
        )
        .await?;
    anyhow::ensure!(started.status == 202, "{}", started.body);
    Ok(started.body["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_run_is_a_span_under_its_callers_trace_with_its_host_calls() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let host = Host::start_deploying(
        dir.path(),
        &["--otlp-endpoint", &receiver.url],
        &[("steps", examples::STEPS)],
    )
    .await?;
    let id = start_traced(&host, "steps", "steps_workflow", json!(null), TRACE).await?;
    assert_eq!(host.result(&id, WAIT).await?["status"], "SUCCESS");
    let (run, calls) = receiver
        .until(|spans| {
            let run = spans
                .iter()
                .find(|s| s.name == "run steps_workflow" && s.trace_id == TRACE)?;
            let calls: Vec<Received> = spans
                .iter()
                .filter(|s| s.parent_span_id == run.span_id && s.name == "set-event")
                .cloned()
                .collect();
            (calls.len() == 2).then(|| (run.clone(), calls))
        })
        .await
        .map_err(|e| e.context(host.log_contents()))?;
    assert_eq!(run.service, "cairn");
    assert_eq!(
        run.parent_span_id, CALLER,
        "the caller's span is the parent"
    );
    assert_eq!(run.attribute("run.id"), Some(id.as_str()));
    assert_eq!(run.attribute("run.status"), Some("SUCCESS"));
    assert!(calls.iter().all(|c| c.trace_id == TRACE));
    // No span of anything but Cairn's own (hyper's, sqlx's) is exported.
    let spans = receiver.spans.lock().unwrap().clone();
    let ours = |s: &Received| s.name.starts_with("run ") || s.attribute("host_call.kind").is_some();
    assert!(
        spans.iter().all(|s| s.service == "cairn" && ours(s)),
        "{spans:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn each_step_attempt_is_a_span_and_its_request_carries_its_traceparent() -> anyhow::Result<()>
{
    let receiver = Receiver::start().await?;
    let gateway = FakeGateway::start(2).await?;
    let dir = tempfile::tempdir()?;
    let port = gateway.addr.port();
    let host = Host::start(
        dir.path(),
        &[
            "--otlp-endpoint",
            &receiver.url,
            &format!("--allow-outbound=127.0.0.1:{port}"),
        ],
    )
    .await?;
    let deployed = host
        .client
        .deploy_with_settings(
            "payments",
            examples::bytes(examples::PAYMENTS),
            None,
            &format!("allowed_hosts=127.0.0.1:{port}"),
        )
        .await?;
    assert!(deployed.status.is_success(), "{}", deployed.body);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let input = json!({"order_id": "o-1", "amount_cents": 500, "gateway_url": gateway.url(), "retry_ms": 20});
    let id = start_traced(&host, "payments", "charge_remote", input, trace).await?;
    assert_eq!(host.result(&id, WAIT).await?["status"], "SUCCESS");
    let (run, attempts, requests) = receiver
        .until(|spans| {
            let run = spans
                .iter()
                .find(|s| s.name == "run charge_remote" && s.trace_id == trace)?;
            let mut attempts: Vec<Received> = spans
                .iter()
                .filter(|s| s.parent_span_id == run.span_id && s.name.starts_with("step "))
                .cloned()
                .collect();
            attempts.sort_by_key(|s| s.attribute("step.attempt").map(str::to_owned));
            let requests: Vec<Received> = attempts
                .iter()
                .filter_map(|a| spans.iter().find(|s| s.parent_span_id == a.span_id))
                .cloned()
                .collect();
            (attempts.len() == 3 && requests.len() == 3).then(|| (run.clone(), attempts, requests))
        })
        .await?;
    assert_eq!(run.parent_span_id, CALLER);
    let statuses: Vec<i32> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [2, 2, 0], "two failed attempts, then the charge");
    let codes: Vec<Option<&str>> = requests
        .iter()
        .map(|r| r.attribute("http.response.status_code"))
        .collect();
    assert_eq!(codes, [Some("503"), Some("503"), Some("200")]);
    // Each request carried its own span as the parent for the service.
    let sent = gateway.traceparents();
    let expected: Vec<Option<String>> = requests
        .iter()
        .map(|r| Some(format!("00-{trace}-{}-01", r.span_id)))
        .collect();
    assert_eq!(sent, expected);
    Ok(())
}

#[tokio::test]
async fn a_run_recovered_after_its_host_was_killed_continues_its_trace() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let args = ["--otlp-endpoint", receiver.url.as_str()];
    let host = Host::start_deploying(dir.path(), &args, &[("steps", examples::STEPS)]).await?;
    let trace = "5b8efff798038103d269b633813fc60c";
    let id = start_traced(
        &host,
        "steps",
        "steps_with_pause",
        json!({"pause_ms": 3000}),
        trace,
    )
    .await?;
    // The first attempt's first event is exported: the run is in its pause.
    receiver
        .until(|spans| {
            spans
                .iter()
                .any(|s| s.trace_id == trace && s.name == "set-event")
                .then_some(())
        })
        .await?;
    host.kill().await?;
    receiver.spans.lock().unwrap().clear();

    let host = Host::start(dir.path(), &args).await?;
    assert_eq!(host.result(&id, WAIT).await?["status"], "SUCCESS");
    let recovered = receiver
        .until(|spans| {
            spans
                .iter()
                .find(|s| {
                    s.name == "run steps_with_pause" && s.attribute("run.status") == Some("SUCCESS")
                })
                .cloned()
        })
        .await?;
    assert_eq!(
        recovered.trace_id, trace,
        "the same trace after the restart"
    );
    assert_eq!(recovered.parent_span_id, CALLER);
    assert_eq!(recovered.attribute("run.id"), Some(id.as_str()));
    Ok(())
}
