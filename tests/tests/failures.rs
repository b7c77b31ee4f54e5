//! Failures: guests that trap or fail, uploads that are not workflow modules,
//! requests that are malformed. Each gets a clear answer, loses nothing and
//! leaves the host serving.

use std::time::Duration;

use cairn_tests::{Host, examples};
use serde_json::json;

#[tokio::test]
async fn a_trapping_guest_fails_its_run_and_the_host_keeps_serving() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;

    client
        .start("faulty", "trap", json!(null), Some("bug"))
        .await?;
    let run = host.result("bug", Duration::from_secs(10)).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("unreachable"), "{error}");
    assert!(
        error.contains("the workflow hit a bug"),
        "the panic message: {error}"
    );
    // What it published before the trap stays.
    let before = client.event("bug", "before", 0).await?;
    assert_eq!(before.body["value"], "set");

    let health = client.get("/healthz").await?;
    assert_eq!(health.status, 200);
    client
        .start("steps", "steps_workflow", json!(null), Some("after"))
        .await?;
    let after = host.result("after", Duration::from_secs(10)).await?;
    assert_eq!(after["status"], "SUCCESS");
    Ok(())
}

#[tokio::test]
async fn a_failing_workflow_ends_error_with_its_message() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    host.client
        .start("faulty", "fail", json!("out of stock"), Some("f"))
        .await?;
    let run = host.result("f", Duration::from_secs(10)).await?;
    assert_eq!(run["status"], "ERROR");
    assert_eq!(run["error"], "refused: out of stock");

    // Input the workflow cannot decode fails the run with a clear message.
    host.client
        .start("faulty", "fail", json!({"not": "a string"}), Some("g"))
        .await?;
    let run = host.result("g", Duration::from_secs(10)).await?;
    assert_eq!(run["status"], "ERROR");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid input for workflow \"fail\""),
        "{run}"
    );
    Ok(())
}

#[tokio::test]
async fn broken_uploads_are_refused_and_store_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &["--max-upload-bytes", "1000000"]).await?;
    let client = &host.client;
    let steps = examples::bytes(examples::STEPS);
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        ("empty", vec![], 400, "empty_body", "empty"),
        (
            "junk",
            b"hello, world".to_vec(),
            400,
            "not_wasm",
            "not a WebAssembly binary",
        ),
        (
            "core",
            b"\0asm\x01\0\0\0".to_vec(),
            400,
            "core_module",
            "core WebAssembly module",
        ),
        (
            "truncated",
            steps[..steps.len() / 2].to_vec(),
            400,
            "invalid_component",
            "invalid",
        ),
        // An empty but valid component: it exports no workflows.
        (
            "other-world",
            b"\0asm\x0d\0\x01\0".to_vec(),
            400,
            "wrong_world",
            "a workflow module exports cairn:workflow/workflows@0.1.0",
        ),
        (
            "too-big",
            vec![0; 1_000_001],
            413,
            "body_too_large",
            "1000000 bytes",
        ),
    ];
    for (name, body, status, code, message) in cases {
        let reply = client.deploy(name, body).await?;
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
        assert_eq!(reply.error_code(), Some(code), "{name}: {}", reply.body);
        let text = reply.body["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{name}: {text}");
        let stored = client.get(&format!("/v1/modules/{name}")).await?;
        assert_eq!(stored.status, 404, "{name} must not be stored");
    }
    // A component that imports what the host does not offer, and exports
    // nothing: both named in the answer.
    let foreign = wat::parse_str(r#"(component (import "evil:net/raw-socket" (func)))"#)?;
    let reply = client.deploy("foreign", foreign).await?;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.error_code(), Some("wrong_world"));
    let text = reply.body["error"]["message"].as_str().unwrap();
    assert!(text.contains("evil:net/raw-socket"), "{text}");
    assert!(
        text.contains("a workflow module exports cairn:workflow/workflows@0.1.0"),
        "{text}"
    );
    assert_eq!(client.get("/v1/modules/foreign").await?.status, 404);

    // Bytes sent as a form (curl's default for --data-binary) or as JSON.
    for content_type in ["application/x-www-form-urlencoded", "application/json"] {
        let reply = client
            .send(
                hyper::Method::PUT,
                "/v1/modules/typed",
                Some(content_type),
                steps.clone().into(),
            )
            .await?;
        assert_eq!(reply.status, 415, "{}", reply.body);
        assert_eq!(reply.error_code(), Some("unsupported_media_type"));
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("application/wasm")
        );
    }
    assert_eq!(client.get("/v1/modules/typed").await?.status, 404);

    let bad_name = client.deploy("Bad_Name", steps).await?;
    assert_eq!(bad_name.status, 400);
    assert_eq!(bad_name.error_code(), Some("invalid_module_name"));
    assert_eq!(
        client.get("/v1/modules").await?.body,
        json!({"modules": []})
    );
    Ok(())
}

#[tokio::test]
async fn malformed_requests_get_clear_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;
    let post = |body: &'static str| {
        let client = client.clone();
        async move {
            client
                .send(
                    hyper::Method::POST,
                    "/v1/workflows",
                    Some("application/json"),
                    body.into(),
                )
                .await
        }
    };
    let cases = [
        (post("{not json").await?, 400, "invalid_json"),
        (post(r#"{"module": "steps"}"#).await?, 400, "invalid_json"),
        (
            post(r#"{"module": "steps", "workflow": "x", "extra": 1}"#).await?,
            400,
            "invalid_json",
        ),
        (
            post(r#"{"module": "nope", "workflow": "x"}"#).await?,
            404,
            "module_not_found",
        ),
        (
            post(r#"{"module": "steps", "workflow": "x"}"#).await?,
            404,
            "workflow_not_found",
        ),
        (
            client
                .start(
                    "steps",
                    "steps_workflow",
                    json!(null),
                    Some(&"x".repeat(256)),
                )
                .await?,
            400,
            "invalid_id",
        ),
        (
            client.get("/v1/workflows/unknown").await?,
            404,
            "run_not_found",
        ),
        (
            client.get("/v1/workflows/unknown/events").await?,
            404,
            "run_not_found",
        ),
        (
            client
                .get("/v1/workflows/x/events/k?timeout_ms=soon")
                .await?,
            400,
            "invalid_timeout",
        ),
        (
            client
                .get("/v1/workflows/x/events/k?timeout_ms=99999999")
                .await?,
            400,
            "invalid_timeout",
        ),
        (client.get("/v1/nothing").await?, 404, "not_found"),
        (client.get("/v1/modules/../etc").await?, 404, "not_found"),
        (
            client
                .send(
                    hyper::Method::DELETE,
                    "/v1/workflows",
                    None,
                    Default::default(),
                )
                .await?,
            405,
            "method_not_allowed",
        ),
    ];
    for (reply, status, code) in cases {
        assert_eq!(reply.status, status, "{}", reply.body);
        assert_eq!(reply.error_code(), Some(code), "{}", reply.body);
        assert!(!reply.body["error"]["message"].as_str().unwrap().is_empty());
    }
    let unknown = post(r#"{"module": "steps", "workflow": "x"}"#).await?;
    let message = unknown.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("steps_workflow, steps_with_pause"),
        "lists what exists: {message}"
    );
    Ok(())
}

#[tokio::test]
async fn slow_clients_are_cut_off() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir()?;
    let host = Host::start(
        dir.path(),
        &[
            "--header-read-timeout-ms",
            "300",
            "--body-read-timeout-ms",
            "300",
        ],
    )
    .await?;
    let addr = host.url.trim_start_matches("http://").to_owned();

    // A body that never finishes: 408 with a message, not a hang.
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    stream
        .write_all(b"POST /v1/workflows HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"module\":")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");

    // Headers far too large: refused, never a 5xx.
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-junk: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let _ = stream.write_all(huge.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await?;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // Headers that never finish: the connection is closed.
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
        .await?;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the host must close a connection whose headers stall"
    );
    assert_eq!(host.client.get("/healthz").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn a_too_large_input_answers_one_code_whatever_its_size() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    // Over the value limit (1 MiB), within the JSON body limit, and past
    // that limit (refused on its Content-Length, yet read to its end, so a
    // client still sending it reads the answer rather than a reset).
    for bytes in [1_050_000, 1_100_000, 1_200_000, 4_000_000, 12_000_000] {
        let reply = host
            .client
            .start("steps", "steps_workflow", json!("x".repeat(bytes)), None)
            .await?;
        assert_eq!(reply.status, 413, "{bytes}: {}", reply.body);
        assert_eq!(
            reply.error_code(),
            Some("too_large"),
            "{bytes}: {}",
            reply.body
        );
    }
    Ok(())
}
