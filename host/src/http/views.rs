//! The JSON shapes of the API's answers, borrowed from the domain records.

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::domain::{
    JournalEntry, Millis, ModuleInfo, ModuleSettings, ModuleVersion, OperationKind, QueueName,
    RunRecord, WorkflowId,
};
use crate::executor::Waiting;
use crate::triggers::{Manifest, RouteSpec, ScheduleDecl};

#[derive(Serialize)]
pub(super) struct EventView<'a> {
    pub(super) key: &'a str,
    pub(super) value: Box<RawValue>,
}

#[derive(Serialize)]
pub(super) struct RunView<'a> {
    pub(super) id: &'a str,
    pub(super) module: &'a str,
    pub(super) version: &'a str,
    pub(super) workflow: &'a str,
    pub(super) status: &'static str,
    pub(super) input: Option<Box<RawValue>>,
    pub(super) output: Option<Box<RawValue>>,
    pub(super) error: Option<&'a str>,
    pub(super) attempts: u32,
    pub(super) created_at: String,
    pub(super) updated_at: String,
    /// When the run must have finished, if it has a time limit.
    pub(super) deadline: Option<String>,
    /// The run that started this one, for a child workflow.
    pub(super) parent: Option<&'a str>,
    /// The run this one was forked from.
    pub(super) forked_from: Option<&'a str>,
    /// What a `PENDING` run waits for, if it waits (shown by the run's own
    /// page, not in listings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) waiting: Option<WaitingView>,
    /// The queue the run was admitted through, for a queued run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) queue: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) priority: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) deduplication_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) partition_key: Option<&'a str>,
    /// The earliest the run may start, for a delayed start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) start_at: Option<String>,
    /// When it left `ENQUEUED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) dequeued_at: Option<String>,
    /// For an `ENQUEUED` run: where it stands in its queue (1 leaves next).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) position: Option<u64>,
}

/// What a waiting run waits for.
#[derive(Serialize)]
pub(super) struct WaitingView {
    /// `event`, `message`, `child`, `sleep`, `retry` or `stream`.
    pub(super) kind: &'static str,
    /// `run/key` of an event, a message's topic, a child's id, a timer's name.
    pub(super) target: String,
    pub(super) deadline: Option<String>,
    /// Whether the run gave up its instance while it waits.
    pub(super) parked: bool,
    pub(super) parked_at: Option<String>,
}

impl From<Waiting> for WaitingView {
    fn from(waiting: Waiting) -> Self {
        Self {
            kind: waiting.wait.kind.as_str(),
            target: waiting.wait.target(),
            deadline: waiting.wait.deadline.map(timestamp),
            parked: waiting.parked,
            parked_at: waiting.since.map(timestamp),
        }
    }
}

impl<'a> From<&'a RunRecord> for RunView<'a> {
    fn from(run: &'a RunRecord) -> Self {
        let admission = run.admission.as_ref();
        Self {
            id: run.id.as_str(),
            module: run.module.as_str(),
            version: run.version.as_str(),
            workflow: &run.workflow,
            status: run.status.as_str(),
            input: RawValue::from_string(run.input.clone()).ok(),
            output: run
                .output
                .clone()
                .and_then(|o| RawValue::from_string(o).ok()),
            error: run.error.as_deref(),
            attempts: run.attempts,
            created_at: timestamp(run.created_at),
            updated_at: timestamp(run.updated_at),
            deadline: run.deadline.map(timestamp),
            parent: run.parent.as_ref().map(WorkflowId::as_str),
            forked_from: run.forked_from.as_ref().map(WorkflowId::as_str),
            waiting: None,
            queue: admission
                .and_then(|a| a.queue.as_ref())
                .map(QueueName::as_str),
            priority: admission.filter(|a| a.queue.is_some()).map(|a| a.priority),
            deduplication_id: admission.and_then(|a| a.deduplication_id.as_deref()),
            partition_key: admission.and_then(|a| a.partition_key.as_deref()),
            start_at: admission.and_then(|a| a.start_at).map(timestamp),
            dequeued_at: run.dequeued_at.map(timestamp),
            position: None,
        }
    }
}

/// One journal entry.
#[derive(Serialize)]
pub(super) struct StepView<'a> {
    pub(super) op: u32,
    pub(super) kind: &'static str,
    pub(super) name: &'a str,
    pub(super) outcome: Option<Box<RawValue>>,
    /// For a finished wait (`get-event`, `recv`, `await-child`): whether it
    /// gave up at its deadline, which tells "nothing came" from a `null`
    /// that came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) timed_out: Option<bool>,
    /// The error of a step attempt that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<&'a str>,
    /// A step attempt's number, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) attempt: Option<u32>,
    pub(super) completed: bool,
    /// For a wait, when it gives up; for a failed step attempt, when the
    /// next attempt starts.
    pub(super) deadline: Option<String>,
    pub(super) started_at: String,
    pub(super) recorded_at: String,
}

impl<'a> From<&'a JournalEntry> for StepView<'a> {
    fn from(entry: &'a JournalEntry) -> Self {
        Self {
            op: entry.op,
            kind: entry.kind.as_str(),
            name: &entry.name,
            outcome: entry
                .outcome
                .clone()
                .and_then(|o| RawValue::from_string(o).ok()),
            timed_out: match entry.kind {
                OperationKind::GetEvent | OperationKind::Recv | OperationKind::AwaitChild
                    if entry.completed =>
                {
                    Some(entry.outcome.is_none())
                }
                _ => None,
            },
            error: entry.error.as_deref(),
            attempt: entry.attempt,
            completed: entry.completed,
            deadline: entry.deadline.map(timestamp),
            started_at: timestamp(entry.started_at.unwrap_or(entry.recorded_at)),
            recorded_at: timestamp(entry.recorded_at),
        }
    }
}

#[derive(Serialize)]
pub(super) struct DeployedView<'a> {
    pub(super) name: &'a str,
    pub(super) version: &'a str,
    pub(super) kind: &'static str,
    pub(super) workflows: &'a [String],
    pub(super) settings: &'a ModuleSettings,
    /// The module's routes, as deployed with this version.
    pub(super) routes: &'a [RouteSpec],
    /// The schedules its manifest declares.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(super) schedules: &'a [ScheduleDecl],
}

impl<'a> DeployedView<'a> {
    pub(super) fn new(module: &'a ModuleVersion, routes: &'a Manifest) -> Self {
        Self {
            name: module.name.as_str(),
            version: module.version.as_str(),
            kind: module.kind.as_str(),
            workflows: &module.workflows,
            settings: &module.settings,
            routes: &routes.routes,
            schedules: &routes.schedules,
        }
    }
}

#[derive(Serialize)]
pub(super) struct VersionView<'a> {
    pub(super) version: &'a str,
    pub(super) kind: &'static str,
    pub(super) workflows: &'a [String],
    pub(super) settings: &'a ModuleSettings,
    pub(super) size: u64,
    pub(super) deployed_at: String,
}

#[derive(Serialize)]
pub(super) struct ModuleView<'a> {
    pub(super) name: &'a str,
    /// The current version.
    pub(super) version: &'a str,
    pub(super) kind: &'static str,
    pub(super) workflows: &'a [String],
    /// The routes of the current deployment.
    pub(super) routes: &'a [RouteSpec],
    /// The schedules its manifest declares.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(super) schedules: &'a [ScheduleDecl],
    /// Every deployed version, the current one first.
    pub(super) versions: Vec<VersionView<'a>>,
}

impl<'a> ModuleView<'a> {
    pub(super) fn new(module: &'a ModuleInfo, routes: &'a Manifest) -> Self {
        let current = module.current();
        Self {
            name: module.name.as_str(),
            version: current.version.as_str(),
            kind: current.kind.as_str(),
            workflows: &current.workflows,
            routes: &routes.routes,
            schedules: &routes.schedules,
            versions: module
                .versions
                .iter()
                .map(|v| VersionView {
                    version: v.version.as_str(),
                    kind: v.kind.as_str(),
                    workflows: &v.workflows,
                    settings: &v.settings,
                    size: v.size,
                    deployed_at: timestamp(v.deployed_at),
                })
                .collect(),
        }
    }
}

pub(super) fn timestamp(ms: Millis) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}
