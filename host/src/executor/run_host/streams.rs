//! `streams`: appends journaled with their write (or, inside a step,
//! written at least once without a journal entry), closes, and reads as
//! journaled waits that park like `get-event`.

use super::{RunHost, Waited, invalid};
use crate::domain::{self, JournalWrite, OperationKind, StreamRead, WorkflowId};
use crate::executor::parking::WaitOn;
use crate::executor::streams::StreamSpan;
use crate::runtime::wit::{streams, types};
use crate::runtime::{GuestError, GuestErrorCode, HostError, HostFailure};
use crate::store::{Change, StoreError};

impl RunHost {
    /// Refuse a name that is no stream name, or a stream this run closed.
    fn writable_stream(&self, name: &str) -> Result<(), GuestError> {
        domain::validate_stream_name(name)
            .map_err(|e| GuestError::new(GuestErrorCode::InvalidArgument, e.0))?;
        if self.closed_streams.contains(name) {
            return Err(GuestError::new(
                GuestErrorCode::NotAllowed,
                format!(
                    "stream {name:?} of run {} is closed; nothing more can be written to it",
                    self.run
                ),
            ));
        }
        Ok(())
    }

    /// Wake this host's readers of the run's streams; other hosts hear of
    /// the append from the store.
    fn appended(&self, stream: &str) {
        self.exec.wake(&Change::Stream {
            run: self.run.clone(),
            stream: stream.to_owned(),
        });
    }

    /// An append from inside step `op`: not journaled (the step is, as a
    /// whole), fenced by the run's epoch, at least once.
    async fn append_in_step(
        &self,
        op: u32,
        name: String,
        value: String,
    ) -> Result<(), HostFailure> {
        self.cursor.charge((name.len() + value.len()) as u64)?;
        let (store, run, epoch, now) = (
            self.exec.store.clone(),
            self.run.clone(),
            self.epoch,
            self.exec.clock.now(),
        );
        let stream = name.clone();
        // In a task of its own, like a journal write.
        let written = tokio::spawn(async move {
            store
                .append_stream(&run, epoch, op, &stream, &value, now)
                .await
        })
        .await
        .map_err(|failed| HostFailure::Host(format!("stream write failed: {failed}")))?;
        match written {
            Ok(()) => {
                self.appended(&name);
                Ok(())
            }
            Err(error @ (StoreError::RunNotPending { .. } | StoreError::Fenced { .. })) => Err(
                HostFailure::Host(format!("run {} was taken over: {error}", self.run)),
            ),
            Err(error) => Err(HostFailure::Host(format!("stream write failed: {error}"))),
        }
    }
}

impl streams::Host for RunHost {
    async fn write_stream(&mut self, name: String, value: String) -> Result<(), HostError> {
        let _call = self.host_call("write-stream");
        self.writable_stream(&name)?;
        self.check_value(&format!("value for stream {name:?}"), &value)?;
        if let Some(step) = self.cursor.current_step_op() {
            return Ok(self.append_in_step(step, name, value).await?);
        }
        let (op, recorded) = self.next_operation(OperationKind::WriteStream, &name)?;
        if recorded.is_some() {
            // Replay: appended already; its value (stored apart) counts.
            self.cursor.charge(value.len() as u64)?;
            return Ok(());
        }
        self.write(JournalWrite::Stream {
            op,
            stream: name.clone(),
            value: Some(value),
        })
        .await?;
        self.appended(&name);
        Ok(())
    }

    async fn close_stream(&mut self, name: String) -> Result<(), HostError> {
        let _call = self.host_call("close-stream");
        self.outside_step("close-stream")?;
        domain::validate_stream_name(&name)
            .map_err(|e| GuestError::new(GuestErrorCode::InvalidArgument, e.0))?;
        if self.closed_streams.contains(&name) {
            // Closed already: nothing to do, on every replay alike.
            return Ok(());
        }
        let (op, recorded) = self.next_operation(OperationKind::CloseStream, &name)?;
        if recorded.is_none() {
            self.write(JournalWrite::Stream {
                op,
                stream: name.clone(),
                value: None,
            })
            .await?;
            self.appended(&name);
        }
        self.closed_streams.insert(name);
        Ok(())
    }

    async fn read_stream(
        &mut self,
        workflow_id: String,
        name: String,
        offset: u64,
        timeout_ms: u64,
    ) -> Result<types::StreamRead, HostError> {
        let _call = self.host_call("read-stream");
        self.outside_step("read-stream")?;
        let target = match WorkflowId::parse(&workflow_id) {
            Ok(target) => target,
            Err(e) => return invalid(GuestErrorCode::InvalidArgument, e.0),
        };
        if let Err(e) = domain::validate_stream_name(&name) {
            return invalid(GuestErrorCode::InvalidArgument, e.0);
        }
        let exec = self.exec.clone();
        let reach = self.reach.clone();
        let max_bytes = exec.limits.max_value_bytes;
        let (target_run, stream) = (target.clone(), name.clone());
        // A run outside this module's reach reads as one that does not
        // exist: nothing, until the wait ends.
        let read = async || {
            if let Some(reach) = &reach {
                match exec.store.get_run(&target_run).await? {
                    Some(run) if reach.covers(&run.module) => {}
                    _ => return Ok(None),
                }
            }
            let span = StreamSpan {
                name: &stream,
                offset,
                limit: domain::MAX_STREAM_READ,
                max_bytes,
            };
            let read = exec.read_stream_once(&target_run, span).await?;
            Ok(Some(read).filter(StreamRead::is_news))
        };
        let waited = self
            .journaled_wait(
                OperationKind::ReadStream,
                format!("{target}/{name}@{offset}"),
                timeout_ms,
                WaitOn::stream(target.clone(), name.clone(), offset),
                read,
                |_| None,
                |op, name, outcome: Option<StreamRead>, deadline| JournalWrite::WaitCompleted {
                    op,
                    kind: OperationKind::ReadStream,
                    name,
                    outcome: outcome.map(|read| read.encode()),
                    deadline,
                },
            )
            .await?;
        let (values, closed) = match waited {
            Waited::Now(read) => {
                let read = read.unwrap_or_default();
                (
                    read.values.into_iter().map(|(_, v)| v).collect(),
                    read.closed,
                )
            }
            Waited::Recorded(None) => (Vec::new(), false),
            Waited::Recorded(Some(text)) => StreamRead::decode(&text).ok_or_else(|| {
                HostFailure::Host(format!(
                    "the journaled read-stream of run {} is corrupt: {text:?}",
                    self.run
                ))
            })?,
        };
        Ok(types::StreamRead { values, closed })
    }
}
