//! HTTP triggers of workflow modules, end to end: routes deployed with a
//! module (as a multipart form), requests under `/app/` that start runs and
//! answer at once, with an event, or with the result; conflicts between
//! modules refused; a redeployment replacing the routes.

use std::time::Duration;

use cairn_tests::{Host, examples};
use serde_json::json;

use examples::ORDERS_ROUTES;

async fn host_with_order_routes(dir: &std::path::Path) -> anyhow::Result<Host> {
    let host = Host::start(dir, &[]).await?;
    let deployed = host
        .client
        .deploy_with_routes(
            "orders",
            examples::bytes(examples::ORDERS),
            Some(std::fs::read(ORDERS_ROUTES)?),
        )
        .await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    assert_eq!(deployed.body["routes"].as_array().unwrap().len(), 2);
    Ok(host)
}

/// The `status` an order route answers with: the event's value when the
/// route first finds it set. The order goes on meanwhile, up to where it
/// waits for its payment, so either of its first two statuses is right.
fn assert_order_status(body: &serde_json::Value) {
    assert!(
        *body == json!("placed") || *body == json!("awaiting-payment"),
        "an order status before payment: {body}"
    );
}

#[tokio::test]
async fn a_route_answers_with_an_event_and_the_run_goes_on() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_order_routes(dir.path()).await?;
    let client = &host.client;

    // The order answers as soon as it is placed, and keeps working.
    let placed = client
        .post_json(
            "/app/orders",
            &json!({"order_id": "9", "amount_cents": 500}),
        )
        .await?;
    assert_eq!(placed.status, 200, "{}", placed.body);
    assert_order_status(&placed.body);

    // The payment route waits for the payment's result; its run id comes
    // from the path, so the order (waiting on `payment-9`) sees it.
    let paid = client
        .post_json(
            "/app/orders/9/payment",
            &json!({"order_id": "9", "approve": true}),
        )
        .await?;
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(paid.body, json!({"approved": true, "reference": "pay-9"}));
    let payment = host.result("payment-9", Duration::from_secs(10)).await?;
    assert_eq!(payment["status"], "SUCCESS");

    // The same request again finds the same run (the id is a key).
    let again = client
        .post_json(
            "/app/orders/9/payment",
            &json!({"order_id": "9", "approve": true}),
        )
        .await?;
    assert_eq!(again.body, paid.body);
    Ok(())
}

#[tokio::test]
async fn a_failed_run_behind_a_route_is_a_502_with_its_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_order_routes(dir.path()).await?;
    let reply = host
        .client
        .post_json("/app/orders/5/payment", &json!({"not": "a payment"}))
        .await?;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.error_code(), Some("workflow_failed"));
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("run payment-5 ended ERROR"), "{message}");
    assert!(message.contains("missing field"), "{message}");
    Ok(())
}

#[tokio::test]
async fn accepted_routes_pass_the_whole_request_and_point_at_the_run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start(dir.path(), &[]).await?;
    let manifest = json!({"routes": [
        {"method": "PUT", "path": "/steps/{n}", "workflow": "steps_workflow", "id": "steps-{n}"}
    ]});
    let deployed = host
        .client
        .deploy_with_routes(
            "steps",
            examples::bytes(examples::STEPS),
            Some(manifest.to_string().into_bytes()),
        )
        .await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);

    let reply = host
        .client
        .send(
            hyper::Method::PUT,
            "/app/steps/7?color=blue&size=x%20l",
            Some("application/json"),
            "{\"a\": [1, 2]}".into(),
        )
        .await?;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["id"], "steps-7");
    assert_eq!(reply.headers["location"], "/v1/workflows/steps-7");
    let run = host.client.status("steps-7").await?;
    assert_eq!(
        run.body["input"],
        json!({
            "method": "PUT",
            "path": "/app/steps/7",
            "params": {"n": "7"},
            "query": {"color": "blue", "size": "x l"},
            "body": {"a": [1, 2]},
        })
    );

    // Not JSON: refused, nothing started.
    let bad = host
        .client
        .send(
            hyper::Method::PUT,
            "/app/steps/8",
            Some("application/json"),
            "{oops".into(),
        )
        .await?;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.error_code(), Some("invalid_json"));
    assert_eq!(host.client.status("steps-8").await?.status, 404);

    // Unknown paths and methods.
    let missing = host.client.get("/app/nothing").await?;
    assert_eq!(missing.error_code(), Some("route_not_found"));
    let wrong_method = host.client.get("/app/steps/7").await?;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.headers["allow"], "PUT");
    Ok(())
}

#[tokio::test]
async fn conflicting_routes_are_refused_naming_both_and_redeploys_replace_routes()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = host_with_order_routes(dir.path()).await?;
    let client = &host.client;

    let clash = json!({"routes": [
        {"method": "POST", "path": "/orders/{id}/payment", "workflow": "steps_workflow"}
    ]});
    let refused = client
        .deploy_with_routes(
            "steps",
            examples::bytes(examples::STEPS),
            Some(clash.to_string().into_bytes()),
        )
        .await?;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.error_code(), Some("route_conflict"));
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("POST /orders/{id}/payment of module steps"),
        "{message}"
    );
    assert!(
        message.contains("POST /orders/{order_id}/payment of module orders"),
        "{message}"
    );
    assert_eq!(
        client.get("/v1/modules/steps").await?.status,
        404,
        "nothing stored"
    );

    // A manifest that names a workflow the module lacks: refused, nothing stored.
    let wrong = json!({"routes": [{"method": "GET", "path": "/x", "workflow": "nope"}]});
    let refused = client
        .deploy_with_routes(
            "steps",
            examples::bytes(examples::STEPS),
            Some(wrong.to_string().into_bytes()),
        )
        .await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.error_code(), Some("invalid_routes"));
    assert_eq!(client.get("/v1/modules/steps").await?.status, 404);

    // Redeployed without routes: its routes are gone, and the path is free.
    let redeployed = client
        .deploy("orders", examples::bytes(examples::ORDERS))
        .await?;
    assert_eq!(redeployed.status, 200, "{}", redeployed.body);
    assert_eq!(redeployed.body["routes"], json!([]));
    let gone = client.post_json("/app/orders", &json!({})).await?;
    assert_eq!(gone.error_code(), Some("route_not_found"), "{}", gone.body);
    let taken = client
        .deploy_with_routes(
            "steps",
            examples::bytes(examples::STEPS),
            Some(clash.to_string().into_bytes()),
        )
        .await?;
    assert_eq!(taken.status, 201, "{}", taken.body);
    Ok(())
}

#[tokio::test]
async fn routes_survive_a_restart_and_need_an_invoke_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tokens = [
        "--admin-token",
        "admin-secret-0123456789",
        "--invoke-token",
        "invoke-secret-0123456789",
    ];
    let host = Host::start(dir.path(), &tokens).await?;
    let admin = host.client.with_token("admin-secret-0123456789");
    let deployed = admin
        .deploy_with_routes(
            "orders",
            examples::bytes(examples::ORDERS),
            Some(std::fs::read(ORDERS_ROUTES)?),
        )
        .await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    drop(host);

    let host = Host::start(dir.path(), &tokens).await?;
    let body = json!({"order_id": "1", "amount_cents": 1});
    let anonymous = host.client.post_json("/app/orders", &body).await?;
    assert_eq!(anonymous.status, 401);
    let placed = host
        .client
        .with_token("invoke-secret-0123456789")
        .post_json("/app/orders", &body)
        .await?;
    assert_eq!(placed.status, 200, "{}", placed.body);
    assert_order_status(&placed.body);
    Ok(())
}
