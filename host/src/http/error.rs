//! Errors of the HTTP API and the one place they become status codes.
//! Bodies are `{"error": {"code", "message"}}`. A 5xx says only "internal
//! error"; its detail travels with the error to where the response is made,
//! and is logged there.

use hyper::StatusCode;

use crate::domain::ErrorKind;
use crate::executor::ExecutorError;
use crate::runtime::UploadError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The methods a path serves, for a 405's `Allow` header.
    pub allow: Option<String>,
    /// What went wrong inside the host, for the log only.
    pub detail: Option<String>,
}

/// The status of a refusal of each kind.
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// A refusal of `kind`: its status follows from the kind.
    pub fn of(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self::with_status(status_of(kind), code, message)
    }

    /// A refusal only HTTP has a word for (401, 403, 405, 408, 415, 502).
    pub fn with_status(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            allow: None,
            detail: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Invalid, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::of(ErrorKind::NotFound, code, message)
    }

    /// Too much in flight: retry later (the answer says after how long).
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Unavailable, "overloaded", message)
    }

    /// The path exists, but not for this method.
    pub fn method_not_allowed(allowed: String) -> Self {
        Self {
            allow: Some(allowed.clone()),
            ..Self::with_status(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("allowed: {allowed}"),
            )
        }
    }

    /// The host failed: the client learns only that.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self {
            detail: Some(detail.to_string()),
            ..Self::of(ErrorKind::Internal, "internal", "internal error")
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl From<UploadError> for ApiError {
    fn from(error: UploadError) -> Self {
        Self::bad_request(error.code(), error.to_string())
    }
}

impl From<ExecutorError> for ApiError {
    fn from(error: ExecutorError) -> Self {
        match error {
            ExecutorError::Store(store) if !matches!(store, StoreError::StorageFull(_)) => {
                Self::internal(store)
            }
            error => Self::of(error.kind(), error.code(), error.to_string()),
        }
    }
}
