//! The executor's errors, and their one classification: each knows its
//! [`ErrorKind`] and a stable code, from which the HTTP layer derives its
//! status and the guest-facing imports their error code.

use crate::domain::{ErrorKind, InvalidValue, RunStatus};
use crate::runtime::{GuestError, GuestErrorCode, UploadError};
use crate::store::StoreError;

pub type Result<T, E = ExecutorError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("module {0} is not deployed")]
    UnknownModule(String),
    #[error("run {0} does not exist")]
    UnknownRun(String),
    #[error("run {0} exists already; choose another id")]
    RunExists(String),
    #[error("module {module} has no workflow {workflow:?}; it has: {available}")]
    UnknownWorkflow {
        module: String,
        workflow: String,
        available: String,
    },
    #[error(
        "run {id} already exists for {existing_module}/{existing_workflow}, not {module}/{workflow}; use another id"
    )]
    Conflict {
        id: String,
        existing_module: String,
        existing_workflow: String,
        module: String,
        workflow: String,
    },
    #[error("queue {0} does not exist; create it with PUT /v1/queues/{0}")]
    UnknownQueue(String),
    #[error("schedule {0} does not exist; create it with PUT /v1/schedules/{0}")]
    UnknownSchedule(String),
    /// A start with a deduplication id that a run of the queue holds.
    #[error(
        "run {existing} of queue {queue} holds deduplication id {deduplication_id:?} (it is ENQUEUED or PENDING); start again once it has ended"
    )]
    Duplicate {
        queue: String,
        deduplication_id: String,
        existing: String,
    },
    /// A queue that runs still wait in cannot be deleted.
    #[error("queue {queue} holds {waiting} ENQUEUED runs; cancel them or let them start first")]
    QueueBusy { queue: String, waiting: u64 },
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    InvalidRoutes(String),
    /// The run is not in a status the operation applies to.
    #[error("run {id} is {status}; {what}")]
    WrongStatus {
        id: String,
        status: RunStatus,
        what: &'static str,
    },
    #[error("{0}")]
    RouteConflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// The run holds its budget of messages not yet received.
    #[error("{0}")]
    RunFull(String),
    /// Too much work in flight; the client should retry later.
    #[error("{0}")]
    Overloaded(String),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<InvalidValue> for ExecutorError {
    fn from(e: InvalidValue) -> Self {
        Self::InvalidInput(e.0)
    }
}

impl ExecutorError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::UnknownModule(_)
            | Self::UnknownRun(_)
            | Self::UnknownWorkflow { .. }
            | Self::UnknownQueue(_)
            | Self::UnknownSchedule(_) => ErrorKind::NotFound,
            Self::RunExists(_)
            | Self::Duplicate { .. }
            | Self::QueueBusy { .. }
            | Self::Conflict { .. }
            | Self::WrongStatus { .. }
            | Self::RouteConflict(_)
            | Self::RunFull(_) => ErrorKind::Conflict,
            Self::InvalidInput(_) | Self::InvalidRoutes(_) | Self::Upload(_) => ErrorKind::Invalid,
            Self::TooLarge(_) => ErrorKind::TooLarge,
            Self::Overloaded(_) => ErrorKind::Unavailable,
            Self::Store(StoreError::StorageFull(_)) => ErrorKind::StorageFull,
            Self::Store(_) => ErrorKind::Internal,
        }
    }

    /// A stable, machine-readable code: the `error.code` of an HTTP answer.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownModule(_) => "module_not_found",
            Self::UnknownRun(_) => "run_not_found",
            Self::UnknownWorkflow { .. } => "workflow_not_found",
            Self::UnknownQueue(_) => "queue_not_found",
            Self::UnknownSchedule(_) => "schedule_not_found",
            Self::Duplicate { .. } => "duplicate",
            Self::QueueBusy { .. } => "queue_busy",
            Self::RunExists(_) | Self::Conflict { .. } => "conflict",
            Self::WrongStatus { .. } => "wrong_status",
            Self::RouteConflict(_) => "route_conflict",
            Self::InvalidInput(_) => "invalid_request",
            Self::InvalidRoutes(_) => "invalid_routes",
            Self::Upload(upload) => upload.code(),
            Self::TooLarge(_) => "too_large",
            Self::RunFull(_) => "run_full",
            Self::Overloaded(_) => "overloaded",
            Self::Store(StoreError::StorageFull(_)) => "storage_full",
            Self::Store(_) => "internal",
        }
    }

    /// The refusal a guest sees when a call it made on the executor (a
    /// child's start, a handler's client call) failed. A failure of the
    /// host's own is logged here and reaches the guest without its detail.
    pub(crate) fn into_guest_error(self) -> GuestError {
        let code = match self.kind() {
            ErrorKind::NotFound => GuestErrorCode::NotFound,
            ErrorKind::TooLarge => GuestErrorCode::TooLarge,
            ErrorKind::Unavailable | ErrorKind::StorageFull | ErrorKind::Internal => {
                GuestErrorCode::Unavailable
            }
            ErrorKind::Conflict | ErrorKind::Invalid => GuestErrorCode::InvalidArgument,
        };
        if let Self::Store(store) = &self
            && !matches!(store, StoreError::StorageFull(_))
        {
            tracing::error!(error = %store, "a guest's call failed in the store");
            return GuestError::new(code, "the host could not serve the call; retry later");
        }
        GuestError::new(code, self.to_string())
    }
}
