//! `context`: the run's id, and its logs (not repeated by a replay).

use super::RunHost;
use crate::runtime::wit::context;

impl context::Host for RunHost {
    async fn workflow_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.run.to_string())
    }

    async fn log(
        &mut self,
        level: context::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        // A replay re-runs code whose logs were already emitted.
        if self.replaying() {
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
