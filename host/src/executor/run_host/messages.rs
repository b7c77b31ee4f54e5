//! `messages`: `send`, delivered once per idempotency key with its journal
//! entry, and `recv` as a journaled wait.

use super::{RunHost, Waited, invalid};
use crate::domain::{self, JournalWrite, NewMessage, OperationKind, WorkflowId};
use crate::executor::waiters::WaitKey;
use crate::runtime::wit::messages;
use crate::runtime::{GuestError, GuestErrorCode, HostError, HostFailure};
use crate::store::Change;

impl messages::Host for RunHost {
    async fn send(
        &mut self,
        workflow_id: String,
        topic: String,
        message: String,
        idempotency_key: Option<String>,
    ) -> Result<(), HostError> {
        let _call = self.host_call("send");
        if let Err(refusal) = self.outside_step("send") {
            return Err(refusal.into());
        }
        // Refusals that depend on the arguments alone take no operation.
        let target = match WorkflowId::parse(&workflow_id) {
            Ok(target) => target,
            Err(e) => return invalid(GuestErrorCode::InvalidArgument, e.0),
        };
        if let Err(e) = domain::validate_topic(&topic) {
            return invalid(GuestErrorCode::InvalidArgument, e.0);
        }
        if let Err(refusal) = self.check_value("message", &message) {
            return Err(refusal.into());
        }
        if let Some(Err(e)) = idempotency_key
            .as_deref()
            .map(domain::validate_idempotency_key)
        {
            return invalid(GuestErrorCode::InvalidArgument, e.0);
        }
        let name = format!("{target}/{topic}");
        let (op, recorded) = self.next_operation(OperationKind::Send, &name)?;
        // The journaled outcome: `true` delivered, `false` no such run, or
        // the duplicate of a message delivered before.
        let outcome = match recorded {
            // Replay: sent (or not) already; never again.
            Some(entry) => entry.outcome,
            None => {
                // Whether the target exists is decided once, here, and
                // journaled with the send: a replay gives the same answer.
                // A run outside this module's reach is as good as absent.
                let exists = self
                    .exec
                    .store
                    .get_run(&target)
                    .await
                    .map_err(|e| HostFailure::Host(format!("reading run failed: {e}")))?
                    .is_some_and(|run| self.reaches(&run.module));
                // So is whether the target holds its budget of messages.
                let full = match exists {
                    false => None,
                    true => self
                        .exec
                        .message_budget_refusal(&target, message.len())
                        .await
                        .map_err(|e| HostFailure::Host(format!("reading messages failed: {e}")))?,
                };
                if let Some(refusal) = full {
                    self.write(JournalWrite::Recorded {
                        op,
                        kind: OperationKind::Send,
                        name,
                        outcome: Some(domain::SEND_FULL_OUTCOME.to_owned()),
                    })
                    .await?;
                    return invalid(GuestErrorCode::TooLarge, refusal);
                }
                let keyed = idempotency_key.is_some();
                // Without a key of the caller's, the send's own place in
                // the journal is one (in the host's namespace): a message is
                // delivered once even if the journal were lost.
                let idempotency_key = Some(
                    idempotency_key.unwrap_or_else(|| domain::host_message_key(&self.run, op)),
                );
                self.write(JournalWrite::Send {
                    op,
                    name,
                    message: NewMessage {
                        run: target.clone(),
                        topic: topic.clone(),
                        message,
                        idempotency_key,
                    },
                    delivered: exists,
                })
                .await?;
                if exists {
                    self.exec.wake(&Change::Message {
                        run: target.clone(),
                        topic,
                    });
                }
                if !exists {
                    Some("false".to_owned())
                } else if keyed {
                    // The store journaled whether the key was new.
                    self.exec
                        .store
                        .journal_entry(&self.run, op)
                        .await
                        .map_err(|e| HostFailure::Host(format!("reading the journal failed: {e}")))?
                        .and_then(|entry| entry.outcome)
                } else {
                    Some("true".to_owned())
                }
            }
        };
        match outcome.as_deref() {
            Some("true") => Ok(()),
            Some(domain::SEND_FULL_OUTCOME) => invalid(
                GuestErrorCode::TooLarge,
                format!(
                    "run {target} held its budget of messages not yet received; the message was not sent"
                ),
            ),
            Some(domain::SEND_DUPLICATE_OUTCOME) => invalid(
                GuestErrorCode::Duplicate,
                format!(
                    "a message with this idempotency key was delivered to run {target} before; it was not sent again"
                ),
            ),
            _ => invalid(
                GuestErrorCode::NotFound,
                format!("run {target} does not exist; the message was not sent"),
            ),
        }
    }

    async fn recv(&mut self, topic: String, timeout_ms: u64) -> Result<Option<String>, HostError> {
        let _call = self.host_call("recv");
        if let Err(refusal) = self.outside_step("recv") {
            return Err(refusal.into());
        }
        if let Err(e) = domain::validate_topic(&topic) {
            return Err(HostError::from(GuestError::new(
                GuestErrorCode::InvalidArgument,
                e.0,
            )));
        }
        let store = self.exec.store.clone();
        let run = self.run.clone();
        let waited = self
            .journaled_wait(
                OperationKind::Recv,
                topic.clone(),
                timeout_ms,
                WaitKey::Message {
                    run: run.clone(),
                    topic: topic.clone(),
                }
                .into(),
                || store.next_message(&run, &topic),
                // A wake-up only says that something arrived: read it.
                |_| None,
                |op, name, received, deadline| JournalWrite::RecvCompleted {
                    op,
                    name,
                    received,
                    deadline,
                },
            )
            .await?;
        Ok(match waited {
            Waited::Recorded(outcome) => outcome,
            Waited::Now(received) => received.map(|m| m.message),
        })
    }
}
