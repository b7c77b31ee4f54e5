//! The host's bindings of `wit/`, the types guests and host share, and
//! the one error type of every fallible import.
//!
//! Two worlds, two `bindgen!`s: a workflow's linker must offer the workflow
//! imports and nothing else, a handler's the `client` interface and nothing
//! else. The second reuses the first's types, so both speak one `error`.
//!
//! The generated types are the host's own: the executor implements the
//! generated `Host` traits (`executor/run_host.rs`), and a fallible import
//! returns [`HostError`], which is either the guest's `error` or a trap.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "workflow",
    imports: { default: async | trappable },
    exports: { default: async },
    trappable_error_type: { "cairn:workflow/types.error" => HostError },
});

/// The `handler` world: the `client` interface handlers import.
pub mod handler {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "handler-imports",
        imports: { default: async | trappable },
        with: {
            "cairn:workflow/types": super::cairn::workflow::types,
            "cairn:workflow/context": super::cairn::workflow::context,
        },
    });
}

pub use self::cairn::workflow::context::Level;
pub use self::cairn::workflow::types::{Error as WitError, ErrorCode as WitErrorCode, RunResult};

use super::instance::HostFailure;

impl WitError {
    pub fn new(code: WitErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// How a fallible import fails: with an `error` the guest gets to handle,
/// or with a trap, when the host will not (or cannot) serve the call.
/// `?` turns a refusal ([`WitError`]) into the former and a
/// [`HostFailure`] into the latter.
#[derive(Debug)]
pub enum HostError {
    Guest(WitError),
    Trap(wasmtime::Error),
}

impl HostError {
    /// What the generated glue hands the guest: its error, or the trap.
    pub fn into_guest(self) -> wasmtime::Result<WitError> {
        match self {
            Self::Guest(error) => Ok(error),
            Self::Trap(trap) => Err(trap),
        }
    }

    /// The guest's error, if this is one (for tests and logs).
    pub fn guest(&self) -> Option<&WitError> {
        match self {
            Self::Guest(error) => Some(error),
            Self::Trap(_) => None,
        }
    }

    /// The host's failure, if this is a trap for one.
    pub fn failure(&self) -> Option<&HostFailure> {
        match self {
            Self::Guest(_) => None,
            Self::Trap(trap) => trap.downcast_ref::<HostFailure>(),
        }
    }
}

impl From<WitError> for HostError {
    fn from(error: WitError) -> Self {
        Self::Guest(error)
    }
}

impl From<HostFailure> for HostError {
    fn from(failure: HostFailure) -> Self {
        Self::Trap(wasmtime::Error::new(failure))
    }
}

impl From<Level> for tracing::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        }
    }
}
