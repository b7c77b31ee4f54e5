//! Payments with retries: a charge is a step, retried with backoff while the
//! payment gateway fails, and journaled once it succeeds, so a recovering run
//! never charges twice.
//!
//! - `charge` talks to a fake gateway inside the module that declines the
//!   first `declines` attempts ("card network timeout").
//! - `charge_remote` posts to a real gateway over HTTP (`gateway_url`); the
//!   module must be deployed with that host in `allowed_hosts`.
//!
//! Both draw the charge's idempotency key at random and read the clock
//! outside the step: the host journals both, so a replay after a crash
//! sends the same key and reports the same time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_sdk::{Result, RetryPolicy, current_attempt, http, set_event, sleep, step_with};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Charge {
    order_id: String,
    amount_cents: u64,
    /// `charge`: how many attempts the fake gateway declines first.
    #[serde(default)]
    declines: u32,
    /// `charge_remote`: where the gateway listens, e.g. `http://127.0.0.1:9000/charges`.
    #[serde(default)]
    gateway_url: String,
    /// Attempts in all before giving up.
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    /// The wait before the first retry; it doubles each time.
    #[serde(default = "default_retry_ms")]
    retry_ms: u64,
    /// A pause after the charge, before the receipt (to show a crash there).
    #[serde(default)]
    pause_ms: u64,
}

fn default_attempts() -> u32 {
    4
}

fn default_retry_ms() -> u64 {
    100
}

#[derive(Serialize, Deserialize)]
struct GatewayReceipt {
    charge_id: String,
}

#[derive(Serialize)]
struct Receipt {
    order_id: String,
    charge_id: String,
    idempotency_key: String,
    /// When the run began, in ms since the epoch (journaled).
    started_at_ms: u64,
}

#[derive(Serialize)]
struct GatewayRequest<'a> {
    order_id: &'a str,
    amount_cents: u64,
    idempotency_key: &'a str,
}

fn charge(input: Charge) -> Result<Receipt> {
    run_charge(input, |request| {
        // The fake gateway: declines the first attempts, then approves.
        if current_attempt() <= request.declines {
            return Err(format!(
                "card network timeout (attempt {})",
                current_attempt()
            ));
        }
        Ok(GatewayReceipt {
            charge_id: format!("ch_{}_{}", request.order_id, request.idempotency_key),
        })
    })
}

fn charge_remote(input: Charge) -> Result<Receipt> {
    run_charge(input, |request| {
        let body = GatewayRequest {
            order_id: &request.order_id,
            amount_cents: request.amount_cents,
            idempotency_key: &request.idempotency_key,
        };
        http::post_json(&request.gateway_url, &body)
            .and_then(http::Response::json::<GatewayReceipt>)
            .map_err(|e| e.to_string())
    })
}

/// What a gateway is asked.
struct ChargeRequest {
    order_id: String,
    amount_cents: u64,
    idempotency_key: String,
    declines: u32,
    gateway_url: String,
}

fn run_charge(
    input: Charge,
    gateway: impl Fn(&ChargeRequest) -> std::result::Result<GatewayReceipt, String>,
) -> Result<Receipt> {
    // Outside a step, both are journaled by the host: a replay sees the same.
    let started_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let idempotency_key = random_key();
    set_event("idempotency_key", &idempotency_key)?;
    set_event("status", "charging")?;

    let request = ChargeRequest {
        order_id: input.order_id.clone(),
        amount_cents: input.amount_cents,
        idempotency_key: idempotency_key.clone(),
        declines: input.declines,
        gateway_url: input.gateway_url,
    };
    let policy = RetryPolicy::attempts(input.max_attempts)
        .interval(Duration::from_millis(input.retry_ms))
        .backoff(2.0);
    let receipt = match step_with("charge", policy, || gateway(&request)) {
        Ok(receipt) => receipt,
        Err(error) => {
            set_event("status", "failed")?;
            return Err(error);
        }
    };
    set_event("status", "charged")?;
    if input.pause_ms > 0 {
        sleep(Duration::from_millis(input.pause_ms));
    }
    set_event("status", "receipted")?;
    Ok(Receipt {
        order_id: input.order_id,
        charge_id: receipt.charge_id,
        idempotency_key,
        started_at_ms,
    })
}

/// 16 random hex digits, from `wasi:random` (what `getrandom`, `rand` and
/// `uuid` use too): a different key per run, the same one on replay.
fn random_key() -> String {
    format!("{:016x}", wasi::random::random::get_random_u64())
}

cairn_sdk::workflows!(charge, charge_remote);
