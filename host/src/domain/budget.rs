//! What a run keeps in the database, in bytes, for its storage budget: its
//! journal entries with their outcomes and errors, the events it published
//! and the messages it sent or received. An estimate by design (indexes and
//! row headers are one fixed overhead per entry), but one that grows with
//! every byte a guest can make the host store.

use super::{JournalEntry, JournalWrite};

/// Counted for every journal entry besides its texts: its row and index
/// entries.
pub const ENTRY_OVERHEAD_BYTES: u64 = 64;

fn len(text: &str) -> u64 {
    text.len() as u64
}

fn opt(text: &Option<String>) -> u64 {
    text.as_deref().map_or(0, len)
}

impl JournalWrite {
    /// The bytes this write stores.
    pub fn stored_bytes(&self) -> u64 {
        ENTRY_OVERHEAD_BYTES
            + match self {
                Self::SetEvent { key, value, .. } => len(key) + len(value),
                Self::GetEventStarted { name, .. }
                | Self::Sleep { name, .. }
                | Self::WaitStarted { name, .. }
                | Self::RecvStarted { name, .. } => len(name),
                Self::GetEventCompleted { name, outcome, .. }
                | Self::Recorded { name, outcome, .. }
                | Self::WaitCompleted { name, outcome, .. } => len(name) + opt(outcome),
                Self::Send { name, message, .. } => {
                    len(name) + len(&message.message) + opt(&message.idempotency_key)
                }
                Self::RecvCompleted { name, received, .. } => {
                    len(name) + received.as_ref().map_or(0, |m| len(&m.message))
                }
                Self::Stream { stream, value, .. } => len(stream) + opt(value),
                Self::StepAttempt { name, output, .. } => {
                    len(name)
                        + match output {
                            Ok(text) | Err(text) => len(text),
                        }
                }
            }
    }
}

impl JournalEntry {
    /// The bytes this entry stores in the journal (an event's value is
    /// stored apart, and counted when the workflow publishes it).
    pub fn stored_bytes(&self) -> u64 {
        ENTRY_OVERHEAD_BYTES + len(&self.name) + opt(&self.outcome) + opt(&self.error)
    }
}
