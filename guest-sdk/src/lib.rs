//! Write durable [Cairn](https://github.com/) workflows in Rust.
//!
//! A workflow is a plain function from a JSON-deserialisable input to a
//! JSON-serialisable output. It publishes progress with [`set_event`] and waits
//! on other runs with [`get_event`]; both go through the host, which journals
//! them so a run that is interrupted by a crash resumes where it was.
//! [`workflows!`] exports the functions of a module by name.
//!
//! The seed example of DBOS Transact (`stepsWorkflow`) reads:
//!
//! ```no_run
//! use cairn_sdk::set_event;
//!
//! fn steps_workflow(_input: ()) -> cairn_sdk::Result<()> {
//!     // Do some work...
//!     set_event("step1", "completed")?;
//!     // Do some more work...
//!     set_event("step2", "completed")
//! }
//!
//! cairn_sdk::workflows!(steps_workflow);
//! ```
//!
//! Build it as a component with `cargo build --target wasm32-wasip2 --release`
//! (the crate needs `crate-type = ["cdylib"]`) and upload the `.wasm` file to a
//! Cairn host.
//!
//! Workflows must be deterministic: for the same input they must make the same
//! host calls in the same order, because a recovering run is replayed from the
//! journal. Do work with side effects outside the host only if repeating it is
//! harmless.
//!
//! Non-deterministic work (calling other services, reading the clock) goes in
//! a [`step`]: its outcome is journaled, and it is retried under a
//! [`RetryPolicy`] with [`step_with`]. Inside steps, the `http` module
//! (feature `http`) calls other services over `wasi:http`.
//!
//! Outside steps, the clock and random numbers a workflow reads (through
//! `std` or any library) are journaled by the host too, so a replay sees the
//! same values.
//!
//! HTTP handlers (feature `handler`, without the default `workflow`) are
//! written with [`handler!`]; see the `handler` module.
#![deny(missing_docs)]

// The generated bindings name this crate by its public path, so that they
// also resolve from the guest crates that expand `workflows!`.
extern crate self as cairn_sdk;

use std::fmt;
use std::time::Duration;

#[cfg(feature = "workflow")]
use serde::Serialize;
#[cfg(feature = "workflow")]
use serde::de::DeserializeOwned;

#[cfg(feature = "workflow")]
#[doc(hidden)]
pub mod bindings {
    //! Generated bindings of the `cairn:workflow` world (wit-bindgen).
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "wit",
        world: "workflow",
        pub_export_macro: true,
        export_macro_name: "__export_workflow_world",
        default_bindings_module: "::cairn_sdk::bindings",
        runtime_path: "::cairn_sdk::__private::wit_bindgen::rt",
    });
}

#[cfg(feature = "workflow")]
use bindings::cairn::workflow::{children, context, events, messages, streams, timers, types};
#[cfg(all(feature = "handler", not(feature = "workflow")))]
use handler::bindings::cairn::workflow::{context, types};

#[cfg(feature = "handler")]
pub mod handler;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "workflow")]
mod step;
#[cfg(feature = "workflow")]
pub use step::{RetryPolicy, current_attempt, step, step_with};

/// How long [`get_event_default`] waits: the SDK default of 60 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The result type of workflows and of SDK calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a call failed, or why a workflow gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The host refused a value that is not valid JSON.
    InvalidJson,
    /// The host refused a value larger than its limit.
    TooLarge,
    /// The host refused a malformed argument.
    InvalidArgument,
    /// The call is not allowed where it was made.
    NotAllowed,
    /// A module, workflow or run that the call names does not exist.
    NotFound,
    /// The host is too busy to take the call; try again later.
    Unavailable,
    /// A message with this idempotency key was delivered before; nothing
    /// was sent again.
    Duplicate,
    /// A value could not be converted to or from JSON in the guest.
    Serialization,
    /// The workflow itself failed (see [`Error::msg`]).
    Workflow,
    /// A step failed on its last attempt (see [`step_with`]).
    StepFailed,
    /// An outgoing HTTP request failed or was refused (see `http`).
    Http,
}

impl Error {
    /// A workflow failure with a message; the run ends `ERROR` with it.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            kind: ErrorKind::Workflow,
            message: message.to_string(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, for people.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// A timeout as the host takes it: whole milliseconds.
#[cfg_attr(not(any(feature = "workflow", feature = "handler")), allow(dead_code))]
fn millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)
}

/// A value the host may or may not have, decoded from JSON.
#[cfg_attr(not(any(feature = "workflow", feature = "handler")), allow(dead_code))]
fn decode_optional<T: serde::de::DeserializeOwned>(json: Option<String>) -> Result<Option<T>> {
    Ok(json.map(|json| serde_json::from_str(&json)).transpose()?)
}

/// What a read of a stream found: its values from the offset asked for,
/// and whether the stream has ended after them.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamChunk<T> {
    /// The values, oldest first; the next read starts `values.len()` later.
    pub values: Vec<T>,
    /// The stream has ended: closed by its run, or the run has ended.
    pub closed: bool,
}

impl<T: serde::de::DeserializeOwned> StreamChunk<T> {
    #[cfg_attr(not(any(feature = "workflow", feature = "handler")), allow(dead_code))]
    fn decode(values: Vec<String>, closed: bool) -> Result<Self> {
        let values = values
            .iter()
            .map(|json| serde_json::from_str(json))
            .collect::<Result<_, _>>()?;
        Ok(Self { values, closed })
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// Its final status.
    pub status: RunStatus,
    /// The output of a run that succeeded.
    pub output: Option<serde_json::Value>,
    /// The error of a run that did not.
    pub error: Option<String>,
}

/// The status a run ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// It returned an output.
    Success,
    /// It failed (returned an error, trapped, or broke a limit).
    Error,
    /// It was cancelled, or ran out of its time limit.
    Cancelled,
    /// It was recovered more often than the host allows.
    MaxRecoveryAttemptsExceeded,
}

impl RunStatus {
    /// The host's name of the status, as the HTTP API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Error => "ERROR",
            Self::Cancelled => "CANCELLED",
            Self::MaxRecoveryAttemptsExceeded => "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
        }
    }

    #[cfg_attr(not(any(feature = "workflow", feature = "handler")), allow(dead_code))]
    fn parse(status: &str) -> Result<Self> {
        [
            Self::Success,
            Self::Error,
            Self::Cancelled,
            Self::MaxRecoveryAttemptsExceeded,
        ]
        .into_iter()
        .find(|known| known.as_str() == status)
        .ok_or_else(|| {
            Error::msg(format!(
                "the host reported an unknown run status {status:?}"
            ))
        })
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RunResult {
    #[cfg_attr(not(any(feature = "workflow", feature = "handler")), allow(dead_code))]
    fn decode(status: String, output: Option<String>, error: Option<String>) -> Result<Self> {
        Ok(RunResult {
            status: RunStatus::parse(&status)?,
            output: decode_optional(output)?,
            error,
        })
    }

    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.status == RunStatus::Success
    }

    /// The output of a run that succeeded, as a `T`; `None` for a run that
    /// did not succeed.
    ///
    /// ```
    /// # use cairn_sdk::{RunResult, RunStatus};
    /// let result = RunResult { status: RunStatus::Success, output: Some(serde_json::json!(49)), error: None };
    /// assert_eq!(result.output_as::<i64>().unwrap(), Some(49));
    /// ```
    pub fn output_as<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>> {
        match (&self.output, self.succeeded()) {
            (Some(output), true) => Ok(Some(T::deserialize(output)?)),
            _ => Ok(None),
        }
    }
}

/// `From` the host's `error` of a world's bindings: each world's bindings
/// have a type of their own.
macro_rules! error_from_wit {
    ($($types:ident)::+) => {
        impl From<$($types)::+::Error> for $crate::Error {
            fn from(error: $($types)::+::Error) -> Self {
                use $($types)::+::ErrorCode;
                let kind = match error.code {
                    ErrorCode::InvalidJson => $crate::ErrorKind::InvalidJson,
                    ErrorCode::TooLarge => $crate::ErrorKind::TooLarge,
                    ErrorCode::InvalidArgument => $crate::ErrorKind::InvalidArgument,
                    ErrorCode::NotAllowed => $crate::ErrorKind::NotAllowed,
                    ErrorCode::NotFound => $crate::ErrorKind::NotFound,
                    ErrorCode::Unavailable => $crate::ErrorKind::Unavailable,
                    ErrorCode::Duplicate => $crate::ErrorKind::Duplicate,
                };
                Self {
                    kind,
                    message: error.message,
                }
            }
        }
    };
}
#[cfg_attr(
    not(all(feature = "workflow", feature = "handler")),
    allow(unused_imports)
)]
pub(crate) use error_from_wit;

error_from_wit!(types);

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Self {
            kind: ErrorKind::Serialization,
            message: error.to_string(),
        }
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::msg(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::msg(message)
    }
}

#[cfg(feature = "workflow")]
/// Publish, or overwrite, the event `key` of the current run with `value`
/// serialised as JSON. The event is durable when this returns.
pub fn set_event<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
    let json = serde_json::to_string(value)?;
    events::set_event(key, &json).map_err(Error::from)
}

#[cfg(feature = "workflow")]
/// Wait up to `timeout` for the event `key` of run `workflow_id` and return its
/// value, or `None` when the time runs out. A zero timeout looks once.
pub fn get_event<T: DeserializeOwned>(
    workflow_id: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<T>> {
    decode_optional(events::get_event(workflow_id, key, millis(timeout))?)
}

#[cfg(feature = "workflow")]
/// [`get_event`] with the SDK's default timeout, [`DEFAULT_TIMEOUT`].
pub fn get_event_default<T: DeserializeOwned>(workflow_id: &str, key: &str) -> Result<Option<T>> {
    get_event(workflow_id, key, DEFAULT_TIMEOUT)
}

#[cfg(feature = "workflow")]
/// Send `message` (serialised as JSON) to run `workflow_id` on `topic`. With
/// an `idempotency_key`, a message with the same key already delivered to
/// that run is not delivered again. The send is journaled: a recovering run
/// does not send again. Fails with [`ErrorKind::NotFound`] when the run does
/// not exist.
pub fn send<T: Serialize + ?Sized>(
    workflow_id: &str,
    topic: &str,
    message: &T,
    idempotency_key: Option<&str>,
) -> Result<()> {
    let json = serde_json::to_string(message)?;
    messages::send(workflow_id, topic, &json, idempotency_key).map_err(Error::from)
}

#[cfg(feature = "workflow")]
/// Receive the oldest message sent to this run on `topic`, waiting up to
/// `timeout` for one; `None` when the time runs out. Each message is
/// received once.
pub fn recv<T: DeserializeOwned>(topic: &str, timeout: Duration) -> Result<Option<T>> {
    decode_optional(messages::recv(topic, millis(timeout))?)
}

#[cfg(feature = "workflow")]
/// Append `value` (serialised as JSON) to stream `name` of this run. From
/// the workflow itself, exactly once (journaled); inside a [`step`], at
/// least once: a step run again appends again. Fails with
/// [`ErrorKind::NotAllowed`] once the stream is closed.
pub fn write_stream<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<()> {
    let json = serde_json::to_string(value)?;
    streams::write_stream(name, &json).map_err(Error::from)
}

#[cfg(feature = "workflow")]
/// Close stream `name` of this run: readers see its end after its last
/// value. A run's streams are closed when it ends; close one to end it
/// earlier. Not inside a step.
pub fn close_stream(name: &str) -> Result<()> {
    streams::close_stream(name).map_err(Error::from)
}

#[cfg(feature = "workflow")]
/// Read stream `name` of run `workflow_id` from `offset` (0: the first
/// value), waiting up to `timeout` for a value or the stream's end; an
/// empty, open chunk when the time runs out. Journaled like [`get_event`].
pub fn read_stream<T: DeserializeOwned>(
    workflow_id: &str,
    name: &str,
    offset: u64,
    timeout: Duration,
) -> Result<StreamChunk<T>> {
    let read = streams::read_stream(workflow_id, name, offset, millis(timeout))?;
    StreamChunk::decode(read.values, read.closed)
}

#[cfg(feature = "workflow")]
/// Start workflow `workflow` of module `module` with `input` as a child of
/// this run, and return its id (without `id`, `<this run's id>.<n>`). The
/// start is journaled: a recovering run does not start the child again.
pub fn start_child<I: Serialize + ?Sized>(
    module: &str,
    workflow: &str,
    input: &I,
    id: Option<&str>,
) -> Result<String> {
    let input = serde_json::to_string(input)?;
    children::start_child(module, workflow, &input, id).map_err(Error::from)
}

#[cfg(feature = "workflow")]
/// How a child is admitted if not at once, for [`start_child_with`]: the
/// start options of `POST /v1/workflows` (see the README's queues).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildOptions {
    /// Admit the child through this queue: `ENQUEUED` until it has room.
    pub queue: Option<String>,
    /// Lower leaves first, in a queue that honours priorities.
    pub priority: Option<i32>,
    /// Refused while a run of the queue with this id is `ENQUEUED` or
    /// `PENDING`.
    pub deduplication_id: Option<String>,
    /// The partition of a partitioned queue.
    pub partition_key: Option<String>,
    /// Start the child no earlier than this long after the call.
    pub delay: Option<Duration>,
}

#[cfg(feature = "workflow")]
/// [`start_child`] through a queue, or after a delay: the child is
/// `ENQUEUED` until it may start. Journaled like [`start_child`].
pub fn start_child_with<I: Serialize + ?Sized>(
    module: &str,
    workflow: &str,
    input: &I,
    id: Option<&str>,
    options: &ChildOptions,
) -> Result<String> {
    let input = serde_json::to_string(input)?;
    let options = children::ChildOptions {
        queue: options.queue.clone(),
        priority: options.priority,
        deduplication_id: options.deduplication_id.clone(),
        partition_key: options.partition_key.clone(),
        delay_ms: options.delay.map(millis),
    };
    children::start_child_with(module, workflow, &input, id, &options).map_err(Error::from)
}

#[cfg(feature = "workflow")]
/// Wait up to `timeout` for run `workflow_id` to end and return how; `None`
/// if it has not by then. Journaled like [`get_event`].
pub fn await_child(workflow_id: &str, timeout: Duration) -> Result<Option<RunResult>> {
    match children::await_child(workflow_id, millis(timeout))? {
        Some(result) => Ok(Some(RunResult::decode(
            result.status,
            result.output,
            result.error,
        )?)),
        None => Ok(None),
    }
}

#[cfg(feature = "workflow")]
/// The id of the run that started this one as its child; `None` for a run
/// started from outside.
pub fn parent_id() -> Result<Option<String>> {
    Ok(children::parent_id()?)
}

#[cfg(feature = "workflow")]
/// Sleep for `duration`, durably: the wake-up time is journaled, so a run
/// recovered after a crash sleeps only what is left.
pub fn sleep(duration: Duration) {
    timers::sleep(millis(duration));
}

#[cfg(feature = "workflow")]
/// The id of the run being executed.
pub fn workflow_id() -> String {
    context::workflow_id()
}

/// Structured logging, tagged by the host with the run's id (in a handler,
/// with the module's name).
pub mod log {
    use super::context::{self, Level};

    fn emit(level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        context::log(level, message, &fields);
    }

    /// Log at debug level, with extra key/value fields.
    pub fn debug(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Debug, message, fields);
    }
    /// Log at info level, with extra key/value fields.
    pub fn info(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Info, message, fields);
    }
    /// Log at warn level, with extra key/value fields.
    pub fn warn(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Warn, message, fields);
    }
    /// Log at error level, with extra key/value fields.
    pub fn error(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Error, message, fields);
    }
}

#[cfg(feature = "workflow")]
/// Export the workflows of a module: each argument is a function
/// `fn(I) -> Result<O>` where `I: DeserializeOwned` and `O: Serialize`,
/// exported under the function's name. Use it once per module.
///
/// ```no_run
/// fn greet(name: String) -> cairn_sdk::Result<String> {
///     Ok(format!("hello, {name}"))
/// }
/// cairn_sdk::workflows!(greet);
/// ```
#[macro_export]
macro_rules! workflows {
    ($($workflow:ident),+ $(,)?) => {
        struct __CairnWorkflows;

        impl $crate::bindings::exports::cairn::workflow::workflows::Guest for __CairnWorkflows {
            fn names() -> ::std::vec::Vec<::std::string::String> {
                ::std::vec![$(::std::string::String::from(stringify!($workflow))),+]
            }

            fn run(
                name: ::std::string::String,
                input: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, ::std::string::String> {
                match name.as_str() {
                    $(stringify!($workflow) => $crate::__private::invoke(stringify!($workflow), $workflow, &input),)+
                    other => ::std::result::Result::Err(::std::format!(
                        "this module has no workflow named {other:?}; it has: {}",
                        [$(stringify!($workflow)),+].join(", ")
                    )),
                }
            }
        }

        $crate::bindings::__export_workflow_world!(__CairnWorkflows with_types_in $crate::bindings);
    };
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// Decode the input, run the workflow, encode its output.
    pub fn invoke<I: DeserializeOwned, O: Serialize>(
        name: &str,
        workflow: fn(I) -> crate::Result<O>,
        input: &str,
    ) -> Result<String, String> {
        let input: I = serde_json::from_str(input)
            .map_err(|e| format!("invalid input for workflow {name:?}: {e}"))?;
        let output = workflow(input).map_err(|e| e.to_string())?;
        serde_json::to_string(&output)
            .map_err(|e| format!("cannot encode the output of workflow {name:?} as JSON: {e}"))
    }
}
