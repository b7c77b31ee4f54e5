//! The host's bindings of `wit/`, and the conversions between their
//! generated types and the host's own.
//!
//! Two worlds, two `bindgen!`s: a workflow's linker must offer the workflow
//! imports and nothing else, a handler's the `client` interface and nothing
//! else. The second reuses the first's types, so both speak one `error`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "workflow",
    imports: { default: async | trappable },
    exports: { default: async },
});

/// The `handler` world: the `client` interface handlers import.
pub mod handler {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "handler",
        imports: { default: async | trappable },
        with: {
            "cairn:workflow/types": super::cairn::workflow::types,
            "cairn:workflow/context": super::cairn::workflow::context,
        },
    });
}

pub use self::cairn::workflow::context::Level;
pub use self::cairn::workflow::types::{Error as WitError, ErrorCode as WitErrorCode, RunResult};

use super::instance::{GuestError, GuestErrorCode};

impl From<GuestError> for WitError {
    fn from(error: GuestError) -> Self {
        let code = match error.code {
            GuestErrorCode::InvalidJson => WitErrorCode::InvalidJson,
            GuestErrorCode::TooLarge => WitErrorCode::TooLarge,
            GuestErrorCode::InvalidArgument => WitErrorCode::InvalidArgument,
            GuestErrorCode::NotAllowed => WitErrorCode::NotAllowed,
            GuestErrorCode::NotFound => WitErrorCode::NotFound,
            GuestErrorCode::Unavailable => WitErrorCode::Unavailable,
        };
        WitError {
            code,
            message: error.message,
        }
    }
}

impl From<super::handler::RunResult> for RunResult {
    fn from(result: super::handler::RunResult) -> Self {
        RunResult {
            status: result.status,
            output: result.output,
            error: result.error,
        }
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
