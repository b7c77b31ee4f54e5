//! What a waiting run waits for, and until when: stored when the run parks
//! (it then holds no instance), so that a restart or another host knows
//! what wakes it.

use std::str::FromStr;

use super::{InvalidValue, Millis, WorkflowId};

/// The kind of thing a run waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitKind {
    /// An event of a run (`get-event`).
    Event,
    /// A message to the waiting run on a topic (`recv`).
    Message,
    /// A child run's end (`await-child`).
    Child,
    /// A durable timer (`sleep`).
    Sleep,
    /// A step's next attempt, after a failed one.
    Retry,
    /// A value of a run's stream at an offset, or the stream's end
    /// (`read-stream`).
    Stream,
}

impl WaitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Message => "message",
            Self::Child => "child",
            Self::Sleep => "sleep",
            Self::Retry => "retry",
            Self::Stream => "stream",
        }
    }
}

impl FromStr for WaitKind {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "event" => Ok(Self::Event),
            "message" => Ok(Self::Message),
            "child" => Ok(Self::Child),
            "sleep" => Ok(Self::Sleep),
            "retry" => Ok(Self::Retry),
            "stream" => Ok(Self::Stream),
            other => Err(InvalidValue(format!(
                "unknown wait kind {other:?}; expected event, message, child, sleep, retry or stream"
            ))),
        }
    }
}

/// One wait of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunWait {
    pub kind: WaitKind,
    /// The run whose event or end is awaited; for a message, the waiting
    /// run itself; none for a timer.
    pub on_run: Option<WorkflowId>,
    /// The event key, message topic or stream name; for a timer, what the
    /// guest named (a sleep's duration, a step's name); empty for a child.
    pub on_key: String,
    /// For a stream: the offset of the value awaited.
    pub on_offset: Option<u64>,
    /// The wait's journaled deadline.
    pub deadline: Option<Millis>,
    /// The latest time to wake the run: the wait's deadline, or the run's
    /// own time limit if that comes first.
    pub wake_at: Millis,
}

impl RunWait {
    /// What the wait is on, as people read it: `run/key` for an event, the
    /// topic for a message, the child's id, or the timer's name.
    pub fn target(&self) -> String {
        match (self.kind, &self.on_run) {
            (WaitKind::Event, Some(run)) => format!("{run}/{}", self.on_key),
            (WaitKind::Child, Some(run)) => run.to_string(),
            (WaitKind::Stream, Some(run)) => {
                format!("{run}/{}@{}", self.on_key, self.on_offset.unwrap_or(0))
            }
            _ => self.on_key.clone(),
        }
    }
}

/// A parked run's wait, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedWait {
    pub wait: RunWait,
    pub parked_at: Millis,
}
