//! Errors of the HTTP API and the one place they become status codes.
//! Bodies are `{"error": {"code", "message"}}`; a 5xx says only
//! "internal error", the detail goes to the log.

use hyper::StatusCode;

use crate::executor::ExecutorError;
use crate::runtime::UploadError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error while serving a request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl From<UploadError> for ApiError {
    fn from(error: UploadError) -> Self {
        let code = match error {
            UploadError::Empty => "empty_body",
            UploadError::NotWasm => "not_wasm",
            UploadError::CoreModule => "core_module",
            UploadError::Invalid(_) => "invalid_component",
            UploadError::WrongWorld(_) => "wrong_world",
            UploadError::Names(_) => "invalid_workflows",
        };
        Self::bad_request(code, error.to_string())
    }
}

impl From<ExecutorError> for ApiError {
    fn from(error: ExecutorError) -> Self {
        let message = error.to_string();
        match error {
            ExecutorError::UnknownModule(_) => Self::not_found("module_not_found", message),
            ExecutorError::UnknownRun(_) => Self::not_found("run_not_found", message),
            ExecutorError::RunExists(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            ExecutorError::UnknownWorkflow { .. } => Self::not_found("workflow_not_found", message),
            ExecutorError::Conflict { .. } => Self::new(StatusCode::CONFLICT, "conflict", message),
            ExecutorError::InvalidInput(_) => Self::bad_request("invalid_request", message),
            ExecutorError::InvalidRoutes(_) => Self::bad_request("invalid_routes", message),
            ExecutorError::WrongStatus { .. } => {
                Self::new(StatusCode::CONFLICT, "wrong_status", message)
            }
            ExecutorError::RouteConflict(_) => {
                Self::new(StatusCode::CONFLICT, "route_conflict", message)
            }
            ExecutorError::TooLarge(_) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            ExecutorError::Overloaded(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
            }
            ExecutorError::Upload(upload) => upload.into(),
            ExecutorError::Store(store) => Self::internal(store),
        }
    }
}
