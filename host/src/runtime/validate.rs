//! What an upload must be: a component (not a core module or junk) that
//! exports the workflow interface or an HTTP handler and imports nothing
//! the host does not serve (`world.rs`); a workflow module's workflows are
//! listed from an instance whose Cairn imports trap.

use std::sync::Arc;

use wasmtime::component::{Component, Linker};

use super::bindings::WorkflowPre;
use super::guest_output::GuestOutput;
use super::{
    GuestEnvironment, HostFailure, LiveEnvironment, Runtime, UploadError, WorkflowImports,
    describe_trap, sealed_wasi,
};
use crate::domain::ModuleKind;

impl<H: WorkflowImports> Runtime<H> {
    /// What kind of module a compiled component is, and whether its
    /// imports stay within what the host serves (see `world.rs`).
    pub(super) fn check_world(&self, component: &Component) -> Result<ModuleKind, UploadError> {
        let ty = component.component_type();
        let engine = &self.inner.engine;
        let exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let imports: Vec<String> = ty
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        super::world::classify(&imports, &exports)
    }

    /// The workflows a workflow module lists, from an instance that runs
    /// no workflow: its Cairn imports trap if called.
    pub(super) async fn list_workflows(
        &self,
        component: &Component,
    ) -> Result<Vec<String>, UploadError> {
        let refused = |e: wasmtime::Error| UploadError::WrongWorld(format!("{e:#}"));
        let mut linker = self.inner.inspect_linker.clone();
        stub_cairn_imports(&mut linker, component).map_err(refused)?;
        let pre = linker
            .instantiate_pre(component)
            .and_then(WorkflowPre::new)
            .map_err(refused)?;
        let environment: Arc<dyn GuestEnvironment> = Arc::new(LiveEnvironment);
        let wasi = sealed_wasi("upload", GuestOutput::new("upload", "stderr"), &environment);
        let mut store = self.new_store(wasi, (), environment, self.inner.limits.clone());
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| UploadError::Names(format!("instantiation failed: {e:#}")))?;
        let names = instance
            .cairn_workflow_workflows()
            .call_names(&mut store)
            .await
            .map_err(|e| UploadError::Names(describe_trap(&e, "")))?;
        if names.is_empty() {
            return Err(UploadError::Names("it defines no workflow".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for name in &names {
            crate::domain::validate_workflow_name(name).map_err(|e| UploadError::Names(e.0))?;
            if !seen.insert(name) {
                return Err(UploadError::Names(format!(
                    "workflow {name:?} is listed twice"
                )));
            }
        }
        Ok(names)
    }
}

/// Define every function of the Cairn interfaces `component` imports as a
/// trap: an upload being inspected runs no workflow, so it may call none.
/// (Not `Linker::define_unknown_imports_as_traps`: that would also stub the
/// WASI interfaces a guest imports at a newer 0.2.x than the linker's, with
/// resource types of its own.)
fn stub_cairn_imports<T: 'static>(
    linker: &mut Linker<T>,
    component: &Component,
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    let engine = component.engine();
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !name.starts_with("cairn:workflow/") {
            continue;
        }
        let mut stubs = linker.instance(name)?;
        for (function, item) in instance.exports(engine) {
            if let ComponentItem::ComponentFunc(_) = item.ty {
                let call = format!("{name}#{function}");
                stubs.func_new(function, move |_, _, _, _| {
                    Err(wasmtime::Error::new(HostFailure::Run(format!(
                        "{call} was called while the module was inspected; a workflow module may call the host only while a workflow runs"
                    ))))
                })?;
            }
        }
    }
    Ok(())
}

/// The first eight bytes tell a component from a core module or junk.
pub(super) fn check_header(bytes: &[u8]) -> Result<(), UploadError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_VERSION: &[u8] = &[0x01, 0x00, 0x00, 0x00];
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if !bytes.starts_with(MAGIC) {
        return Err(UploadError::NotWasm);
    }
    if bytes.get(4..8) == Some(CORE_VERSION) {
        return Err(UploadError::CoreModule);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_junk_and_core_modules_from_components() {
        assert_eq!(check_header(b""), Err(UploadError::Empty));
        assert_eq!(check_header(b"hello world"), Err(UploadError::NotWasm));
        assert_eq!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(UploadError::CoreModule)
        );
        assert_eq!(check_header(b"\0asm\x0d\0\x01\0"), Ok(()));
    }
}
