//! Coordination between two runs through events: an order waits for the
//! outcome of its payment, published by another workflow run.
use std::time::Duration;

use cairn_sdk::{Error, Result, get_event, log, set_event};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Order {
    order_id: String,
    amount_cents: u64,
    /// How long to wait for the payment, in milliseconds.
    #[serde(default = "default_payment_timeout_ms")]
    payment_timeout_ms: u64,
}

fn default_payment_timeout_ms() -> u64 {
    30_000
}

#[derive(Serialize, Deserialize)]
struct PaymentOutcome {
    approved: bool,
    reference: String,
}

#[derive(Serialize)]
struct Receipt {
    order_id: String,
    status: &'static str,
    payment_reference: String,
}

/// The id under which the payment of an order runs. Both sides derive it, so
/// the order can wait on the payment before the payment has even started.
fn payment_run_id(order_id: &str) -> String {
    format!("payment-{order_id}")
}

/// Publishes `status` as it goes: `placed`, `awaiting-payment`, then `paid`
/// and `shipped`, or `payment-declined` / `payment-timeout`.
fn order(order: Order) -> Result<Receipt> {
    set_event("status", "placed")?;
    set_event("amount_cents", &order.amount_cents)?;
    set_event("status", "awaiting-payment")?;

    let payment_id = payment_run_id(&order.order_id);
    let timeout = Duration::from_millis(order.payment_timeout_ms);
    let Some(outcome) = get_event::<PaymentOutcome>(&payment_id, "outcome", timeout)? else {
        set_event("status", "payment-timeout")?;
        return Err(Error::msg(format!(
            "no payment outcome from run {payment_id} within {} ms",
            order.payment_timeout_ms
        )));
    };
    if !outcome.approved {
        set_event("status", "payment-declined")?;
        return Err(Error::msg(format!(
            "payment {} was declined",
            outcome.reference
        )));
    }
    set_event("status", "paid")?;
    log::info(
        "order paid",
        &[
            ("order_id", &order.order_id),
            ("reference", &outcome.reference),
        ],
    );
    set_event("status", "shipped")?;
    Ok(Receipt {
        order_id: order.order_id,
        status: "shipped",
        payment_reference: outcome.reference,
    })
}

#[derive(Deserialize)]
struct Payment {
    order_id: String,
    approve: bool,
}

/// Decides a payment and publishes the outcome as the event `outcome`. Start
/// it with the id `payment-<order_id>`.
fn payment(payment: Payment) -> Result<PaymentOutcome> {
    let outcome = PaymentOutcome {
        approved: payment.approve,
        reference: format!("pay-{}", payment.order_id),
    };
    set_event("outcome", &outcome)?;
    Ok(outcome)
}

cairn_sdk::workflows!(order, payment);
