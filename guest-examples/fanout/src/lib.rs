//! Child workflows: a fan-out that starts one child per item, then collects
//! their results in order.
use std::time::Duration;

use cairn_sdk::{
    ChildOptions, Error, Result, await_child, set_event, sleep, start_child, start_child_with,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct FanOut {
    items: Vec<i64>,
    /// How long each child works, in milliseconds.
    #[serde(default)]
    work_ms: u64,
    /// Start the children through this queue.
    #[serde(default)]
    queue: Option<String>,
    /// Start each child no earlier than this long after the fan-out asks.
    #[serde(default)]
    delay_ms: Option<u64>,
}

#[derive(Deserialize)]
struct Square {
    x: i64,
    work_ms: u64,
}

/// Starts a `square` child per item, then awaits each and returns the
/// squares, in the order of the items.
fn fan_out(request: FanOut) -> Result<Vec<i64>> {
    let children = request
        .items
        .iter()
        .map(|x| {
            let input = serde_json::json!({"x": x, "work_ms": request.work_ms});
            if request.queue.is_none() && request.delay_ms.is_none() {
                return start_child("fanout", "square", &input, None);
            }
            let options = ChildOptions {
                queue: request.queue.clone(),
                delay: request.delay_ms.map(Duration::from_millis),
                ..ChildOptions::default()
            };
            start_child_with("fanout", "square", &input, None, &options)
        })
        .collect::<Result<Vec<String>>>()?;
    set_event("children", &children)?;
    let mut squares = Vec::with_capacity(children.len());
    for child in &children {
        let result = await_child(child, Duration::from_secs(300))?
            .ok_or_else(|| Error::msg(format!("child {child} did not finish in time")))?;
        if !result.succeeded() {
            return Err(Error::msg(format!(
                "child {child} ended {}: {}",
                result.status,
                result.error.unwrap_or_default()
            )));
        }
        let square = result
            .output_as::<i64>()?
            .ok_or_else(|| Error::msg(format!("child {child} returned no number")))?;
        squares.push(square);
    }
    Ok(squares)
}

/// Works for `work_ms` (a durable sleep), then returns `x * x`.
fn square(request: Square) -> Result<i64> {
    if request.work_ms > 0 {
        sleep(Duration::from_millis(request.work_ms));
    }
    request
        .x
        .checked_mul(request.x)
        .ok_or_else(|| Error::msg("the square overflows"))
}

#[derive(Deserialize)]
struct AwaitRun {
    id: String,
}

/// Awaits run `id`, child or not, and returns its status: for the tests
/// that a workflow may await only its own children.
fn await_run(request: AwaitRun) -> Result<String> {
    let result = await_child(&request.id, Duration::from_secs(5))?
        .ok_or_else(|| Error::msg(format!("run {} did not finish in time", request.id)))?;
    Ok(result.status.to_string())
}

cairn_sdk::workflows!(fan_out, square, await_run);
