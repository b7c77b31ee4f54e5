//! The one place where a committed change becomes wake-ups of the waiters
//! on this host: this host's own writes, once they have committed, and the
//! changes other hosts announce (PostgreSQL's notifications) alike.

use super::Inner;
use super::waiters::WaitKey;
use crate::domain::WorkflowId;
use crate::store::Change;

impl Inner {
    /// Wake whoever waits here for `change`. Call after its commit.
    pub(crate) fn wake(&self, change: &Change) {
        match change {
            Change::Event { run, key } => self.wake_event(run, key, None),
            Change::Message { run, topic } => self.waiters.publish(
                &WaitKey::Message {
                    run: run.clone(),
                    topic: topic.clone(),
                },
                None,
            ),
            Change::Stream { run, .. } => self.waiters.publish(&WaitKey::Stream(run.clone()), None),
            Change::Finished(run) => {
                self.waiters.publish(&WaitKey::Finished(run.clone()), None);
                self.waiters.publish(&WaitKey::Stream(run.clone()), None);
                self.waiters.publish(&WaitKey::Activity(run.clone()), None);
            }
            // Not a wait: the catalog is reloaded by whoever learns of it.
            Change::Deployed(_) => {}
        }
    }

    /// Wake the readers of event `key` of `run`; with the `value` this host
    /// wrote, they need not read it back.
    pub(crate) fn wake_event(&self, run: &WorkflowId, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.known.set(run, key, value);
        }
        self.waiters.publish(&WaitKey::Activity(run.clone()), None);
        self.waiters.publish(
            &WaitKey::Event {
                run: run.clone(),
                key: key.to_owned(),
            },
            value,
        );
    }
}
