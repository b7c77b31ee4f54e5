//! Clients Cairn does not know: tokens never reach a guest or the store,
//! empty and short tokens are refused at start-up, and an open development
//! host serves neither other sites' pages nor DNS-rebinding ones, and no
//! client holds more than its share of the places to wait.

use bytes::Bytes;
use cairn_tests::{Host, cairn_binary, deploy_event_listener, deploy_example, examples};
use hyper::Method;
use serde_json::json;

const ADMIN: &str = "admin-token-0123456789";
const WAIT: std::time::Duration = std::time::Duration::from_secs(30);
const INVOKE: &str = "invoke-token-0123456789";

/// A workflow route whose run gets the whole request as its input.
const ECHO_ROUTES: &str = r#"{"routes": [
    {"method": "GET", "path": "/echo-run/{x}", "workflow": "steps_workflow", "input": "request", "id": "echo-{x}"}
]}"#;

#[tokio::test]
async fn tokens_reach_neither_the_store_nor_a_guest() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(
        dir.path(),
        &["--admin-token", ADMIN, "--invoke-token", INVOKE],
    )
    .await?;
    let admin = host.client.with_token(ADMIN);
    let invoker = host.client.with_token(INVOKE);
    let routes = ECHO_ROUTES.as_bytes().to_vec();
    deploy_example(&admin, "steps", examples::STEPS, Some(routes)).await?;
    deploy_event_listener(&admin).await?;

    // A token in the query is no credential for a route: only event
    // streams take one there.
    let anonymous = host
        .client
        .get(&format!("/app/echo-run/1?access_token={ADMIN}"))
        .await?;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert_eq!(admin.status("echo-1").await?.status, 404, "nothing started");

    // With a valid header, the query's token and the headers' credentials
    // are dropped before the run's input is made and stored.
    let started = invoker
        .send_with_headers(
            Method::GET,
            &format!("/app/echo-run/2?access_token={ADMIN}&keep=yes"),
            &[("cookie", "session=secret-cookie")],
            Bytes::new(),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    let run = admin.status("echo-2").await?.body;
    assert_eq!(run["input"]["query"], json!({"keep": "yes"}), "{run}");
    let listing = admin.get("/v1/workflows").await?;
    assert!(
        !listing.body.to_string().contains(ADMIN),
        "{}",
        listing.body
    );

    // A handler sees neither the Authorization header, nor cookies, nor the
    // query's token.
    let echoed = invoker
        .send_with_headers(
            Method::GET,
            &format!("/app/echo?access_token={ADMIN}&a=1"),
            &[("cookie", "session=secret-cookie"), ("x-request", "kept")],
            Bytes::new(),
        )
        .await?;
    assert_eq!(echoed.status, 200, "{}", echoed.body);
    assert_eq!(echoed.body["query"], "a=1", "{}", echoed.body);
    let headers = echoed.body["headers"].to_string();
    assert!(headers.contains("x-request"), "{headers}");
    for credential in ["authorization", "cookie"] {
        assert!(!headers.contains(credential), "{credential}: {headers}");
    }

    // Event streams still take the token from the query (EventSource
    // cannot send headers).
    let stream = cairn_tests::SseStream::open(
        &host.url,
        &format!("/v1/workflows/echo-2/events?access_token={INVOKE}"),
        &[],
    )
    .await?;
    assert_eq!(stream.status, 200);
    Ok(())
}

#[tokio::test]
async fn empty_and_short_tokens_are_refused_at_start_up() -> anyhow::Result<()> {
    for (args, env, expected) in [
        (
            vec!["--admin-token", ADMIN],
            Some(format!("{INVOKE},")),
            "invoke token #2 is 0 characters",
        ),
        (
            vec!["--admin-token", "admin-1"],
            None,
            "the admin token is 7 characters",
        ),
    ] {
        let dir = tempfile::tempdir()?;
        let mut command = tokio::process::Command::new(cairn_binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(&args)
            .env_remove("CAIRN_INVOKE_TOKENS");
        if let Some(tokens) = &env {
            command.env("CAIRN_INVOKE_TOKENS", tokens);
        }
        let output = command.output().await?;
        assert!(!output.status.success(), "{args:?} {env:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(stderr.contains("at least 16"), "{stderr}");
    }
    Ok(())
}

#[tokio::test]
async fn an_open_host_serves_no_other_site_and_no_other_name() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let start = |id: &str| {
        Bytes::from(json!({"module": "steps", "workflow": "steps_workflow", "id": id}).to_string())
    };
    let attempts = [
        // A page of another site posting a "simple" request.
        (
            "page",
            vec![
                ("origin", "http://evil.example"),
                ("content-type", "text/plain"),
            ],
            403,
            "cross_site",
        ),
        // A DNS-rebinding page: same origin as far as the browser knows.
        (
            "rebound",
            vec![
                ("host", "evil.example:8080"),
                ("origin", "http://evil.example:8080"),
            ],
            403,
            "not_loopback",
        ),
        // A form, from wherever: JSON comes as JSON.
        (
            "form",
            vec![("content-type", "application/x-www-form-urlencoded")],
            415,
            "unsupported_media_type",
        ),
    ];
    for (id, headers, status, code) in attempts {
        let reply = host
            .client
            .send_with_headers(Method::POST, "/v1/workflows", &headers, start(id))
            .await?;
        assert_eq!(reply.status, status, "{id}: {}", reply.body);
        assert_eq!(reply.error_code(), Some(code), "{id}: {}", reply.body);
        assert_eq!(host.client.status(id).await?.status, 404, "{id} started");
    }
    // A deploy from a rebinding page is refused the same way.
    let deploy = host
        .client
        .send_with_headers(
            Method::PUT,
            "/v1/modules/evil",
            &[("host", "evil.example")],
            Bytes::from(examples::bytes(examples::STEPS)),
        )
        .await?;
    assert_eq!(deploy.status, 403, "{}", deploy.body);

    // The host's own pages and local tools are served.
    let local = host
        .client
        .send_with_headers(
            Method::POST,
            "/v1/workflows",
            &[
                ("origin", &host.url),
                ("content-type", "application/json; charset=utf-8"),
            ],
            start("local"),
        )
        .await?;
    assert_eq!(local.status, 202, "{}", local.body);
    Ok(())
}

#[tokio::test]
async fn a_client_cannot_swallow_a_workflows_message() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    deploy_example(&host.client, "approvals", examples::APPROVALS, None).await?;
    let approval = json!({"subject": "leave", "timeout_ms": 5000});
    host.client
        .start("approvals", "approval", approval, Some("a1"))
        .await?;
    host.expect_event("a1", "status", json!("awaiting-decision"))
        .await?;

    // The key the host would give decider d1's first send, guessed and
    // taken first, on another topic so the approval does not receive it.
    for key in ["d1#0", "cairn:d1#0"] {
        let squat = host
            .client
            .post_json(
                "/v1/workflows/a1/messages",
                &json!({"topic": "noise", "message": 1, "idempotency_key": key}),
            )
            .await?;
        match key {
            // The host's namespace is not the client's to write.
            "cairn:d1#0" => {
                assert_eq!(squat.status, 400, "{}", squat.body);
                assert!(
                    squat.body["error"]["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("the host's own"),
                    "{}",
                    squat.body
                );
            }
            _ => assert_eq!(squat.status, 202, "{}", squat.body),
        }
    }
    host.client
        .start(
            "approvals",
            "decide",
            json!({"approval_id": "a1", "approved": true}),
            Some("d1"),
        )
        .await?;
    assert_eq!(host.result("d1", WAIT).await?["output"], true);
    let run = host.result("a1", WAIT).await?;
    assert_eq!(
        run["status"], "SUCCESS",
        "the decision was swallowed: {run}"
    );
    assert_eq!(run["output"], json!({"approved": true, "by": "d1"}));
    Ok(())
}

#[tokio::test]
async fn a_workflow_is_told_when_its_message_was_a_duplicate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    deploy_example(&host.client, "approvals", examples::APPROVALS, None).await?;
    host.client
        .start(
            "approvals",
            "approval",
            json!({"subject": "s"}),
            Some("target"),
        )
        .await?;
    let notify = |id: &'static str| {
        host.client.start(
            "approvals",
            "notify",
            json!({"to": "target", "topic": "noise", "key": "k1"}),
            Some(id),
        )
    };
    for (id, expected) in [("first", "sent"), ("second", "duplicate")] {
        notify(id).await?;
        let run = host.result(id, WAIT).await?;
        assert_eq!(run["output"], expected, "{id}: {run}");
    }
    // Journaled: the answer is part of the run's record.
    let steps = host.client.steps("second").await?.body;
    let send = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "send")
        .cloned()
        .unwrap();
    assert_eq!(send["outcome"], "duplicate", "{steps}");
    // A workflow cannot name a key in the host's namespace either.
    host.client
        .start(
            "approvals",
            "notify",
            json!({"to": "target", "topic": "noise", "key": "cairn:target#0"}),
            Some("third"),
        )
        .await?;
    let run = host.result("third", WAIT).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or("")
            .contains("the host's own"),
        "{run}"
    );
    Ok(())
}

const OTHER_INVOKE: &str = "other-invoke-token-0123456789";

/// A long-running run to wait on.
async fn start_long_run(client: &cairn_tests::Client, id: &str) -> anyhow::Result<()> {
    let started = client
        .start(
            "steps",
            "steps_with_pause",
            json!({"pause_ms": 600_000}),
            Some(id),
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    Ok(())
}

#[tokio::test]
async fn one_client_cannot_take_every_wait_and_streams_leave_handlers_serving() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let host = Host::start(
        dir.path(),
        &[
            "--admin-token",
            ADMIN,
            "--invoke-token",
            &format!("{INVOKE},{OTHER_INVOKE}"),
            "--max-pending-waits",
            "3",
            "--max-waits-per-client",
            "2",
        ],
    )
    .await?;
    let admin = host.client.with_token(ADMIN);
    deploy_example(&admin, "steps", examples::STEPS, None).await?;
    deploy_event_listener(&admin).await?;
    start_long_run(&admin, "long").await?;
    let stream = async |token: &str| {
        let bearer = format!("Bearer {token}");
        cairn_tests::SseStream::open(
            &host.url,
            "/v1/workflows/long/events",
            &[("authorization", &bearer)],
        )
        .await
    };

    // One client holds its share, and no more.
    let mine = [stream(INVOKE).await?, stream(INVOKE).await?];
    assert!(mine.iter().all(|s| s.status == 200));
    let capped = stream(INVOKE).await?;
    assert_eq!(capped.status, 429);
    assert!(capped.headers.contains_key("retry-after"));
    let capped = host
        .client
        .with_token(INVOKE)
        .event("long", "step2", 0)
        .await?;
    assert_eq!(capped.status, 429, "{}", capped.body);
    assert_eq!(capped.body["error"]["code"], "too_many_waits");
    let message = capped.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("--max-waits-per-client"), "{message}");

    // Another client fills the streams' pool...
    let theirs = stream(OTHER_INVOKE).await?;
    assert_eq!(theirs.status, 200);
    let full = stream(OTHER_INVOKE).await?;
    assert_eq!(full.status, 503, "the streams' pool is full");
    // ...and handler routes and long-polls, pools of their own, still serve.
    let other = host.client.with_token(OTHER_INVOKE);
    let echo = other.get("/app/echo").await?;
    assert_eq!(echo.status, 200, "{}", echo.body);
    let poll = other.event("long", "step1", 1_000).await?;
    assert_eq!(poll.status, 200, "{}", poll.body);
    let health = host.client.get("/healthz").await?.body;
    assert_eq!(health["waits"]["streams"], 3, "{health}");

    // Places come back when streams close.
    drop(mine);
    host.await_health(WAIT, |h| h["waits"]["streams"] == 1)
        .await?;
    assert_eq!(stream(INVOKE).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn a_stream_ends_after_its_lifetime_and_can_be_resumed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &["--max-stream-ms", "300"]).await?;
    deploy_example(&host.client, "steps", examples::STEPS, None).await?;
    start_long_run(&host.client, "long").await?;

    // The run goes on for minutes; its stream ends on time.
    let stream = cairn_tests::SseStream::open(&host.url, "/v1/workflows/long/events", &[]).await?;
    let events = tokio::time::timeout(WAIT, stream.collect(WAIT)).await??;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["step1"], "the stream ended before the run did");
    host.await_health(WAIT, |h| h["waits"]["streams"] == 0)
        .await?;
    // Resumed after its last event: nothing again, until the run goes on.
    let last = events[0].id.clone().unwrap_or_default();
    let resumed = cairn_tests::SseStream::open(
        &host.url,
        "/v1/workflows/long/events",
        &[("last-event-id", &last)],
    )
    .await?;
    let again = tokio::time::timeout(WAIT, resumed.collect(WAIT)).await??;
    assert!(again.is_empty(), "{again:?}");
    Ok(())
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &["--write-stall-timeout-ms", "1000"]).await?;
    deploy_example(&host.client, "hostile", examples::HOSTILE, None).await?;
    // 10 MiB of events, more than the sockets between us buffer.
    let big = json!({"pause_ms": 0, "events": 40, "bytes": 256 * 1024});
    host.client
        .start("hostile", "fill_after_pause", big, Some("big"))
        .await?;
    assert_eq!(host.result("big", WAIT).await?["status"], "SUCCESS");

    // A client asks for the stream and reads nothing.
    let authority = host.url.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&authority).await?;
    let request = format!(
        "GET /v1/workflows/big/events HTTP/1.1\r\nhost: {authority}\r\naccept: text/event-stream\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut stalled, request.as_bytes()).await?;
    host.await_health(WAIT, |h| h["waits"]["streams"] == 1)
        .await?;
    // Once the buffers are full and a second has passed, the host stops
    // waiting for it: the stream's place comes back.
    host.await_health(WAIT, |h| h["waits"]["streams"] == 0)
        .await?;
    // And the connection is closed: what was sent drains, then it ends.
    let mut sink = Vec::new();
    let drained = tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut stalled, &mut sink),
    )
    .await?;
    assert!(
        drained.is_err() || sink.len() < 10 * 1024 * 1024,
        "the whole stream was kept for the client: {} bytes",
        sink.len()
    );
    Ok(())
}
