//! Messages between runs and from the outside world, and their idempotency
//! keys: who may name which key, and what a duplicate journals.

use super::{InvalidValue, MAX_WORKFLOW_ID_LEN, WorkflowId};

/// The namespace of the idempotency keys the host makes itself (a
/// workflow's `send` without a key of its own): no client, handler or
/// workflow may name a key in it, so none can make the host's message a
/// duplicate of its own.
pub const HOST_KEY_PREFIX: &str = "cairn:";

/// Check an idempotency key given with a message: 1 to 255 bytes, outside
/// the host's namespace.
pub fn validate_idempotency_key(key: &str) -> Result<(), InvalidValue> {
    if key.is_empty() || key.len() > MAX_WORKFLOW_ID_LEN {
        return Err(InvalidValue(format!(
            "an idempotency key must be 1 to {MAX_WORKFLOW_ID_LEN} bytes long, got {}",
            key.len()
        )));
    }
    if key.starts_with(HOST_KEY_PREFIX) {
        return Err(InvalidValue(format!(
            "idempotency keys starting with {HOST_KEY_PREFIX:?} are the host's own (it keys a workflow's send without a key that way); choose another key"
        )));
    }
    Ok(())
}

/// The idempotency key of operation `op`'s `send` of run `sender` when the
/// workflow gave none: the send's place in the journal, in the host's
/// namespace.
pub fn host_message_key(sender: &WorkflowId, op: u32) -> String {
    format!("{HOST_KEY_PREFIX}{sender}#{op}")
}

/// The journaled outcome of a `send` whose message was a duplicate of one
/// delivered before (`true`: delivered; `false`: no such run).
pub const SEND_DUPLICATE_OUTCOME: &str = "\"duplicate\"";
/// The journaled outcome of a `send` refused because the target run holds
/// its budget of messages not yet received.
pub const SEND_FULL_OUTCOME: &str = "\"full\"";

/// A message to deliver to run `run` on `topic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub run: WorkflowId,
    pub topic: String,
    /// JSON text.
    pub message: String,
    /// A message with a key already delivered to the run is not delivered
    /// again.
    pub idempotency_key: Option<String>,
}

/// A message waiting to be received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its position: messages of a (run, topic) are received in this order.
    pub seq: i64,
    /// JSON text.
    pub message: String,
}

/// Whether a message was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// A message with the same idempotency key was delivered before.
    Duplicate,
}

/// A message sent to a run, as listed: received or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Its place among the messages sent to the run.
    pub seq: i64,
    pub topic: String,
    /// JSON text.
    pub message: String,
    /// The sender's idempotency key (`cairn:<run>#<op>` for a workflow's
    /// send without one).
    pub idempotency_key: Option<String>,
    pub sent_at: super::Millis,
    /// The operation of the run's `recv` that received it, if one has.
    pub received_by_op: Option<u32>,
    /// When that `recv` was journaled.
    pub received_at: Option<super::Millis>,
}
