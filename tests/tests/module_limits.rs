//! Limits a module sets at deploy time (within the host's bounds), and
//! wall-clock time limits of runs.

use std::time::Duration;

use cairn_tests::{Host, examples};
use hyper::Method;
use serde_json::json;

async fn deploy_with(
    host: &Host,
    name: &str,
    path: &str,
    query: &str,
) -> anyhow::Result<cairn_tests::Reply> {
    Ok(host
        .client
        .send(
            Method::PUT,
            &format!("/v1/modules/{name}?{query}"),
            Some("application/wasm"),
            examples::bytes(path).into(),
        )
        .await?)
}

#[tokio::test]
async fn a_module_may_tighten_limits_but_not_pass_the_hosts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &["--cpu-slice-ms", "5000"]).await?;

    let tight = deploy_with(&host, "tight", examples::HOSTILE, "cpu_slice_ms=200").await?;
    assert_eq!(tight.status, 201, "{}", tight.body);
    assert_eq!(tight.body["settings"], json!({"cpu_slice_ms": 200}));
    host.client
        .start("tight", "spin", json!(null), Some("spin"))
        .await?;
    let run = host.result("spin", Duration::from_secs(20)).await?;
    assert_eq!(run["status"], "ERROR");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("past the limit of 200 ms"),
        "{run}"
    );

    let greedy = deploy_with(
        &host,
        "greedy",
        examples::STEPS,
        "max_memory_bytes=100000000000",
    )
    .await?;
    assert_eq!(greedy.status, 400, "{}", greedy.body);
    assert!(
        greedy.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("above this host's limit of 67108864 bytes")
    );
    let unknown = deploy_with(&host, "odd", examples::STEPS, "threads=4").await?;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.error_code(), Some("invalid_settings"));
    for name in ["greedy", "odd"] {
        assert_eq!(
            host.client
                .get(&format!("/v1/modules/{name}"))
                .await?
                .status,
            404
        );
    }
    Ok(())
}

#[tokio::test]
async fn runs_past_their_time_limit_are_cancelled() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;

    // Per start request.
    let body = json!({"module": "steps", "workflow": "steps_with_pause", "id": "late",
                      "input": {"pause_ms": 10_000}, "timeout_ms": 300});
    assert_eq!(client.post_json("/v1/workflows", &body).await?.status, 202);
    let run = host.result("late", Duration::from_secs(10)).await?;
    assert_eq!(run["status"], "CANCELLED", "{run}");
    assert_eq!(
        run["error"],
        "the run did not finish within its time limit of 300 ms"
    );
    assert!(run["deadline"].is_string());
    // What it did before the limit stays.
    assert_eq!(
        client.events("late").await?.body,
        json!({"step1": "completed"})
    );

    // By the module's default.
    let reply = deploy_with(&host, "hasty", examples::STEPS, "run_timeout_ms=300").await?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    client
        .start(
            "hasty",
            "steps_with_pause",
            json!({"pause_ms": 10_000}),
            Some("hasty-1"),
        )
        .await?;
    let run = host.result("hasty-1", Duration::from_secs(10)).await?;
    assert_eq!(
        run["error"],
        "the run did not finish within its time limit of 300 ms"
    );

    // A run within its limit is not disturbed.
    let body = json!({"module": "steps", "workflow": "steps_workflow", "id": "fast", "timeout_ms": 10_000});
    client.post_json("/v1/workflows", &body).await?;
    assert_eq!(
        host.result("fast", Duration::from_secs(10)).await?["status"],
        "SUCCESS"
    );
    Ok(())
}
