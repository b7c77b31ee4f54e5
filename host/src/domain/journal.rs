//! The journal: the kinds of journaled host calls, an entry as stored, a
//! write with its effect, and the event history.

use std::str::FromStr;

use super::{InvalidValue, Message, Millis, NewMessage};

/// The kind of a journaled host call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    SetEvent,
    GetEvent,
    Send,
    Recv,
    Sleep,
    StartChild,
    AwaitChild,
    /// One attempt of a step: non-deterministic work run by the guest,
    /// whose output (or error) is journaled.
    Step,
    /// A reading of the wall or monotonic clock outside a step.
    Clock,
    /// The seed of the random numbers a run draws outside steps.
    Random,
    /// An append to one of the run's streams.
    WriteStream,
    /// The end of one of the run's streams.
    CloseStream,
    /// A read of a run's stream, a wait like `get-event`.
    ReadStream,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SetEvent => "set-event",
            Self::GetEvent => "get-event",
            Self::Send => "send",
            Self::Recv => "recv",
            Self::Sleep => "sleep",
            Self::StartChild => "start-child",
            Self::AwaitChild => "await-child",
            Self::Step => "step",
            Self::Clock => "clock",
            Self::Random => "random",
            Self::WriteStream => "write-stream",
            Self::CloseStream => "close-stream",
            Self::ReadStream => "read-stream",
        }
    }
}

impl FromStr for OperationKind {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "set-event" => Ok(Self::SetEvent),
            "get-event" => Ok(Self::GetEvent),
            "send" => Ok(Self::Send),
            "recv" => Ok(Self::Recv),
            "sleep" => Ok(Self::Sleep),
            "start-child" => Ok(Self::StartChild),
            "await-child" => Ok(Self::AwaitChild),
            "step" => Ok(Self::Step),
            "clock" => Ok(Self::Clock),
            "random" => Ok(Self::Random),
            "write-stream" => Ok(Self::WriteStream),
            "close-stream" => Ok(Self::CloseStream),
            "read-stream" => Ok(Self::ReadStream),
            other => Err(InvalidValue(format!("unknown operation kind {other:?}"))),
        }
    }
}

/// One entry of a run's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Operation number: 0, 1, 2, ... in the order the guest made its calls.
    pub op: u32,
    pub kind: OperationKind,
    /// What the call was about, to detect non-determinism and to show in the
    /// journal: the key for `set-event`, `<workflow-id>/<key>` for `get-event`.
    pub name: String,
    /// The recorded outcome (JSON text); `None` when the call has no value
    /// (`set-event`, a `get-event` that timed out) or is not finished.
    pub outcome: Option<String>,
    /// For waits: when the wait gives up. For a step attempt that failed:
    /// when the next attempt starts (`None`: there is none, the step failed).
    pub deadline: Option<Millis>,
    /// False while a wait is in progress: its deadline is recorded, its
    /// outcome is not yet.
    pub completed: bool,
    /// The error of a step attempt that failed.
    pub error: Option<String>,
    /// A step attempt's number, from 1.
    pub attempt: Option<u32>,
    /// When a step attempt started (other entries start when recorded).
    pub started_at: Option<Millis>,
    pub recorded_at: Millis,
}

impl JournalEntry {
    /// For a step attempt: the step's output if it succeeded.
    pub fn step_output(&self) -> Option<&str> {
        match self.error {
            None => self.outcome.as_deref(),
            Some(_) => None,
        }
    }
}

/// A write to a run's journal, applied atomically with its effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalWrite {
    /// Journal a `set-event`, upsert the event and append it to the history.
    SetEvent { op: u32, key: String, value: String },
    /// Journal the start of a `get-event` wait: its deadline.
    GetEventStarted {
        op: u32,
        name: String,
        deadline: Millis,
    },
    /// Journal the outcome of a `get-event` (insert, or complete a started one).
    GetEventCompleted {
        op: u32,
        name: String,
        outcome: Option<String>,
        deadline: Millis,
    },
    /// Journal a `send` and, if the target run exists, deliver the message
    /// (once per idempotency key). The outcome is whether it was delivered.
    Send {
        op: u32,
        /// `<target>/<topic>`.
        name: String,
        message: NewMessage,
        delivered: bool,
    },
    /// Journal a `sleep` and its wake-up time.
    Sleep {
        op: u32,
        /// The duration asked for, in ms: a replay must ask for the same.
        name: String,
        deadline: Millis,
    },
    /// Journal a call whose effect is elsewhere (starting a child run) or
    /// that has none: its outcome alone.
    Recorded {
        op: u32,
        kind: OperationKind,
        name: String,
        outcome: Option<String>,
    },
    /// Journal the start of a wait without an effect (`await-child`).
    WaitStarted {
        op: u32,
        kind: OperationKind,
        name: String,
        deadline: Millis,
    },
    /// Journal the outcome of such a wait.
    WaitCompleted {
        op: u32,
        kind: OperationKind,
        name: String,
        outcome: Option<String>,
        deadline: Millis,
    },
    /// Journal the start of a `recv` wait: its deadline.
    RecvStarted {
        op: u32,
        name: String,
        deadline: Millis,
    },
    /// Journal the outcome of a `recv`, consuming the message it received.
    RecvCompleted {
        op: u32,
        name: String,
        received: Option<Message>,
        deadline: Millis,
    },
    /// Journal one attempt of a step: its output, or its error and when the
    /// next attempt starts (`retry_at`; `None` when the step gave up).
    StepAttempt {
        op: u32,
        name: String,
        attempt: u32,
        started_at: Millis,
        output: Result<String, String>,
        retry_at: Option<Millis>,
    },
    /// Journal a `write-stream` (a value) or `close-stream` (`None`) and
    /// append it to the stream.
    Stream {
        op: u32,
        stream: String,
        value: Option<String>,
    },
}

impl JournalWrite {
    pub fn op(&self) -> u32 {
        match self {
            Self::SetEvent { op, .. }
            | Self::GetEventStarted { op, .. }
            | Self::GetEventCompleted { op, .. }
            | Self::Send { op, .. }
            | Self::Sleep { op, .. }
            | Self::Recorded { op, .. }
            | Self::WaitStarted { op, .. }
            | Self::WaitCompleted { op, .. }
            | Self::RecvStarted { op, .. }
            | Self::RecvCompleted { op, .. }
            | Self::StepAttempt { op, .. }
            | Self::Stream { op, .. } => *op,
        }
    }
}

/// One write in a run's event history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// The set-event's operation in its run: the history's order.
    pub op: u32,
    pub key: String,
    pub value: String,
    pub recorded_at: Millis,
}
