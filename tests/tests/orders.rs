//! Coordination between runs: an order waits on the event of its payment run.

use std::time::Duration;

use cairn_tests::Host;
use serde_json::json;

#[tokio::test]
async fn an_order_ships_once_its_payment_is_approved() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;

    let order = client
        .start(
            "orders",
            "order",
            json!({"order_id": "42", "amount_cents": 1999}),
            Some("order-42"),
        )
        .await?;
    assert_eq!(order.status, 202, "{}", order.body);
    // The order publishes its progress and waits for the payment run, which
    // does not exist yet.
    let status = client.event("order-42", "status", 10_000).await?;
    assert!(
        ["placed", "awaiting-payment"].contains(&status.body["value"].as_str().unwrap()),
        "{}",
        status.body
    );

    let payment = client
        .start(
            "orders",
            "payment",
            json!({"order_id": "42", "approve": true}),
            Some("payment-42"),
        )
        .await?;
    assert_eq!(payment.status, 202, "{}", payment.body);

    let run = host.result("order-42", Duration::from_secs(20)).await?;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(
        run["output"],
        json!({"order_id": "42", "status": "shipped", "payment_reference": "pay-42"})
    );
    let events = client.events("order-42").await?;
    assert_eq!(
        events.body,
        json!({"status": "shipped", "amount_cents": 1999})
    );
    Ok(())
}

#[tokio::test]
async fn a_declined_payment_fails_the_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;
    // Payment first this time: the order finds its outcome without waiting.
    client
        .start(
            "orders",
            "payment",
            json!({"order_id": "7", "approve": false}),
            Some("payment-7"),
        )
        .await?;
    host.result("payment-7", Duration::from_secs(10)).await?;
    client
        .start(
            "orders",
            "order",
            json!({"order_id": "7", "amount_cents": 5}),
            Some("order-7"),
        )
        .await?;
    let run = host.result("order-7", Duration::from_secs(10)).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    assert_eq!(run["error"], "payment pay-7 was declined");
    let status = client.event("order-7", "status", 0).await?;
    assert_eq!(status.body["value"], "payment-declined");
    Ok(())
}

#[tokio::test]
async fn an_order_gives_up_when_no_payment_comes_in_time() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host::start_with_examples(dir.path(), &[]).await?;
    let client = &host.client;
    client
        .start(
            "orders",
            "order",
            json!({"order_id": "9", "amount_cents": 5, "payment_timeout_ms": 300}),
            Some("order-9"),
        )
        .await?;
    let run = host.result("order-9", Duration::from_secs(10)).await?;
    assert_eq!(run["status"], "ERROR", "{run}");
    assert_eq!(
        run["error"],
        "no payment outcome from run payment-9 within 300 ms"
    );
    // The wait is journaled with its outcome: none.
    let steps = client.get("/v1/workflows/order-9/steps").await?;
    let wait = steps.body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "get-event")
        .cloned()
        .unwrap();
    assert_eq!(wait["name"], "payment-9/outcome");
    assert_eq!(wait["outcome"], json!(null));
    assert_eq!(wait["completed"], true);
    Ok(())
}
