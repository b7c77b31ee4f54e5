//! The one `bindgen!` of the host, over `wit/`, and the conversions between
//! its generated types and the host's own.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "workflow",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::cairn::workflow::context::Level;
pub use self::cairn::workflow::types::{Error as WitError, ErrorCode as WitErrorCode};

use super::host::{GuestError, GuestErrorCode};

impl From<GuestError> for WitError {
    fn from(error: GuestError) -> Self {
        let code = match error.code {
            GuestErrorCode::InvalidJson => WitErrorCode::InvalidJson,
            GuestErrorCode::TooLarge => WitErrorCode::TooLarge,
            GuestErrorCode::InvalidArgument => WitErrorCode::InvalidArgument,
            GuestErrorCode::NotAllowed => WitErrorCode::NotAllowed,
        };
        WitError {
            code,
            message: error.message,
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
