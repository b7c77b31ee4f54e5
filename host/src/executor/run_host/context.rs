//! `context`: the run's id, and its logs (not repeated by a replay, and
//! bounded per execution: a guest that logs in a loop floods nothing).

use super::RunHost;
use crate::runtime::wit::context;

/// Log lines one execution of a run may emit; later ones are dropped (the
/// guest goes on, bounded by its CPU budget).
pub(super) const MAX_LOG_LINES: u32 = 10_000;

impl context::Host for RunHost {
    async fn workflow_id(&mut self) -> wasmtime::Result<String> {
        let _call = self.host_call("workflow-id");
        Ok(self.run.to_string())
    }

    async fn log(
        &mut self,
        level: context::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let _call = self.host_call("log");
        // A replay re-runs code whose logs were already emitted.
        if self.replaying() {
            return Ok(());
        }
        self.log_lines = self.log_lines.saturating_add(1);
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(run = %self.run, "the run logged {MAX_LOG_LINES} lines in one execution; its further lines are dropped");
            }
            return Ok(());
        }
        crate::executor::emit_guest_log(
            level.into(),
            &format!("run {}", self.run),
            &message,
            &fields,
        );
        Ok(())
    }
}
