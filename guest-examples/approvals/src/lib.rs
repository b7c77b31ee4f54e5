//! Messages: an approval that waits for a decision sent to it, and a
//! collector that receives a topic's messages in the order they were sent.
//! Timers: a reminder that sleeps, durably, before it speaks up.
use std::time::Duration;

use cairn_sdk::{Error, ErrorKind, Result, recv, send, set_event, sleep, workflow_id};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Request {
    subject: String,
    /// How long to wait for a decision, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    60_000
}

#[derive(Serialize, Deserialize)]
struct Decision {
    approved: bool,
    by: String,
}

/// Publishes `status` = `awaiting-decision`, then waits for a message on
/// topic `decision`: `approved` or `rejected` (the run succeeds either way,
/// with the decision), or `expired` (the run fails).
fn approval(request: Request) -> Result<Decision> {
    set_event("subject", &request.subject)?;
    set_event("status", "awaiting-decision")?;
    let timeout = Duration::from_millis(request.timeout_ms);
    let Some(decision) = recv::<Decision>("decision", timeout)? else {
        set_event("status", "expired")?;
        return Err(Error::msg(format!(
            "no decision on {:?} within {} ms",
            request.subject, request.timeout_ms
        )));
    };
    set_event(
        "status",
        if decision.approved {
            "approved"
        } else {
            "rejected"
        },
    )?;
    Ok(decision)
}

#[derive(Deserialize)]
struct Collect {
    count: usize,
    /// The topic to receive on; `""` is the default topic.
    #[serde(default = "item_topic")]
    topic: String,
}

fn item_topic() -> String {
    "item".into()
}

/// Receives `count` messages on `topic` (`item` by default) and returns them in order,
/// publishing `received` (how many so far) after each.
fn collect(request: Collect) -> Result<Vec<serde_json::Value>> {
    let mut items = Vec::with_capacity(request.count);
    set_event("received", &0)?;
    while items.len() < request.count {
        match recv(&request.topic, Duration::from_secs(60))? {
            Some(item) => items.push(item),
            None => return Err(Error::msg(format!("only {} items arrived", items.len()))),
        }
        set_event("received", &items.len())?;
    }
    Ok(items)
}

#[derive(Deserialize)]
struct Decide {
    approval_id: String,
    approved: bool,
}

/// Sends a decision to approval run `approval_id`, signed with this run's
/// id; `false` when there is no such run.
fn decide(request: Decide) -> Result<bool> {
    let decision = Decision {
        approved: request.approved,
        by: workflow_id(),
    };
    match send(&request.approval_id, "decision", &decision, None) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

#[derive(Deserialize)]
struct Notify {
    to: String,
    topic: String,
    key: String,
}

/// Sends `true` to run `to` on `topic` with idempotency key `key`, and
/// says what became of it: `sent`, `duplicate` (a message with that key was
/// delivered before) or `no-such-run`.
fn notify(request: Notify) -> Result<String> {
    let sent = send(&request.to, &request.topic, &true, Some(&request.key));
    Ok(match sent {
        Ok(()) => "sent",
        Err(error) if error.kind() == ErrorKind::Duplicate => "duplicate",
        Err(error) if error.kind() == ErrorKind::NotFound => "no-such-run",
        Err(error) => return Err(error),
    }
    .to_owned())
}

#[derive(Deserialize)]
struct Reminder {
    message: String,
    after_ms: u64,
}

/// Sleeps `after_ms`, then publishes `reminder` and returns it. A crash in
/// between does not restart the sleep: the wake-up time is journaled.
fn reminder(reminder: Reminder) -> Result<String> {
    set_event("status", "sleeping")?;
    sleep(Duration::from_millis(reminder.after_ms));
    set_event("reminder", &reminder.message)?;
    Ok(reminder.message)
}

cairn_sdk::workflows!(approval, collect, decide, notify, reminder);
