//! Access control: admin and invoke bearer tokens, and no open host off
//! loopback.

use cairn_tests::{Host, cairn_binary, examples};
use serde_json::json;

#[tokio::test]
async fn tokens_decide_who_may_deploy_and_who_may_invoke() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(
        dir.path(),
        &[
            "--admin-token",
            "admin-token-000001",
            "--invoke-token",
            "invoke-token-00001",
            "--invoke-token",
            "invoke-token-00002",
        ],
    )
    .await?;
    let anonymous = &host.client;
    let admin = host.client.with_token("admin-token-000001");
    let invoker = host.client.with_token("invoke-token-00002");
    let stranger = host.client.with_token("guess");
    let steps = || examples::bytes(examples::STEPS);

    assert_eq!(
        anonymous.get("/healthz").await?.status,
        200,
        "liveness stays open"
    );
    for client in [anonymous, &stranger] {
        let reply = client.get("/v1/modules").await?;
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.error_code(), Some("unauthorized"));
        assert_eq!(client.deploy("steps", steps()).await?.status, 401);
    }
    let refused = invoker.deploy("steps", steps()).await?;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.error_code(), Some("forbidden"));
    assert_eq!(
        admin.get("/v1/modules").await?.body,
        json!({"modules": []}),
        "nothing deployed"
    );

    assert_eq!(admin.deploy("steps", steps()).await?.status, 201);
    let started = invoker
        .start("steps", "steps_workflow", json!(null), Some("t"))
        .await?;
    assert_eq!(started.status, 202, "{}", started.body);
    assert_eq!(
        invoker.event("t", "step2", 10_000).await?.body["value"],
        "completed"
    );
    assert_eq!(anonymous.event("t", "step2", 0).await?.status, 401);

    let log = host.log_contents();
    for token in [
        "admin-token-000001",
        "invoke-token-00001",
        "invoke-token-00002",
    ] {
        assert!(!log.contains(token), "the log shows a token: {log}");
    }
    Ok(())
}

#[tokio::test]
async fn a_host_without_tokens_refuses_to_listen_beyond_loopback() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let output = tokio::process::Command::new(cairn_binary())
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("CAIRN_ADMIN_TOKEN")
        .env_remove("CAIRN_INVOKE_TOKENS")
        .output()
        .await?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without access tokens"), "{stderr}");
    assert!(stderr.contains("--admin-token"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn an_open_loopback_host_says_so_when_it_starts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    assert!(host.log_contents().contains("no access tokens configured"));
    Ok(())
}
