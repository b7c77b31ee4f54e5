//! `events`: `set-event` journaled with its write, `get-event` as a
//! journaled wait.

use super::{RunHost, Waited, invalid};
use crate::domain::{self, JournalWrite, OperationKind, WorkflowId};
use crate::executor::waiters::WaitKey;
use crate::runtime::wit::events;
use crate::runtime::{GuestError, GuestErrorCode, HostError};

impl events::Host for RunHost {
    async fn set_event(&mut self, key: String, value: String) -> Result<(), HostError> {
        let _call = self.host_call("set-event");
        if let Err(refusal) = self.outside_step("set-event") {
            return Err(refusal.into());
        }
        // Refusals depend on the arguments alone, so they take no operation
        // number: a replay refuses the same calls the same way.
        if let Err(e) = domain::validate_event_key(&key) {
            return invalid(GuestErrorCode::InvalidArgument, e.0);
        }
        if let Err(refusal) = self.check_value(&format!("value of event {key:?}"), &value) {
            return Err(refusal.into());
        }
        let (op, recorded) = self.next_operation(OperationKind::SetEvent, &key)?;
        if recorded.is_some() {
            // Replay: already written and published; never write it again.
            // Its value (stored apart from the journal) still counts.
            self.cursor.charge((key.len() + value.len()) as u64)?;
            return Ok(());
        }
        self.write(JournalWrite::SetEvent {
            op,
            key: key.clone(),
            value: value.clone(),
        })
        .await?;
        self.exec.wake_event(&self.run, &key, Some(&value));
        Ok(())
    }

    async fn get_event(
        &mut self,
        workflow_id: String,
        key: String,
        timeout_ms: u64,
    ) -> Result<Option<String>, HostError> {
        let _call = self.host_call("get-event");
        if let Err(refusal) = self.outside_step("get-event") {
            return Err(refusal.into());
        }
        let target = match WorkflowId::parse(&workflow_id) {
            Ok(target) => target,
            Err(e) => {
                return Err(HostError::from(GuestError::new(
                    GuestErrorCode::InvalidArgument,
                    e.0,
                )));
            }
        };
        if let Err(e) = domain::validate_event_key(&key) {
            return Err(HostError::from(GuestError::new(
                GuestErrorCode::InvalidArgument,
                e.0,
            )));
        }
        let name = format!("{target}/{key}");
        let store = self.exec.store.clone();
        // The events of a run outside this module's reach read as unset:
        // each read looks whether the run is visible (yet), and a value
        // published meanwhile is read, not taken as it comes.
        let reach = self.reach.clone();
        let narrowed = reach.is_some();
        let read = async || {
            if let Some(reach) = &reach {
                match store.get_run(&target).await? {
                    Some(run) if reach.covers(&run.module) => {}
                    _ => return Ok(None),
                }
            }
            store.get_event(&target, &key).await
        };
        let waited = self
            .journaled_wait(
                OperationKind::GetEvent,
                name,
                timeout_ms,
                WaitKey::Event {
                    run: target.clone(),
                    key: key.clone(),
                }
                .into(),
                read,
                |value| (!narrowed).then(|| value.to_owned()),
                |op, name, outcome, deadline| JournalWrite::GetEventCompleted {
                    op,
                    name,
                    outcome,
                    deadline,
                },
            )
            .await?;
        Ok(match waited {
            Waited::Recorded(outcome) => outcome,
            Waited::Now(outcome) => outcome,
        })
    }
}
