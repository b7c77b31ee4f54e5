//! wasmtime: the one [`Engine`], compiling and validating uploaded
//! components, the per-version `InstancePre` cache, and running a workflow
//! in a fresh instance.

mod bindings;
mod environment;
mod guest_output;
mod handler;
mod instance;
mod limits;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;

/// The generated interfaces of the `workflow` world, whose `Host` traits a
/// run's host implements.
pub use bindings::cairn::workflow as wit;
/// A guest-visible refusal and its code: the WIT's `error`, used directly.
pub use bindings::{HostError, RunResult, WitError as GuestError, WitErrorCode as GuestErrorCode};
pub use environment::{GuestEnvironment, LiveEnvironment, nanos, system_time};
pub use handler::{HandlerClient, HandlerFailure};
pub use instance::{HostFailure, WorkflowImports};
pub use limits::{EPOCH_TICK, GuestLimits, LimitExceeded};
pub use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::domain::ModuleKind;
use bindings::WorkflowPre;
use guest_output::GuestOutput;
use handler::HandlerState;
use instance::InstanceState;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// The interface a workflow module exports.
const WORKFLOWS_EXPORT: &str = "cairn:workflow/workflows@0.1.0";
/// The interface a handler module exports (any WASI 0.2 version).
const HANDLER_EXPORT_PREFIX: &str = "wasi:http/incoming-handler@0.2.";
/// Imports a guest may have, workflow or handler alike: the Cairn
/// interfaces, the WASI 0.2 interfaces that Rust's std (and other
/// languages' runtimes) link against, and `wasi:http` (a workflow's steps
/// make outgoing requests; a handler serves one). WASI is linked with a
/// context that grants nothing: no files, no environment, no sockets;
/// clocks and random numbers are journaled, and outgoing HTTP is refused
/// outside steps and beyond the module's allow-list.
const GUEST_IMPORT_PREFIXES: &[&str] = &[
    "cairn:workflow/",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:http/",
];

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    #[error("module version {0} failed to compile: {1}")]
    Compile(String, String),
}

/// Why an upload is not a workflow module; each message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("the body is empty; upload the bytes of a WebAssembly component")]
    Empty,
    #[error(
        "the body is not a WebAssembly binary (it does not start with \\0asm); upload a component built for the cairn:workflow world, e.g. with `cargo build --target wasm32-wasip2`"
    )]
    NotWasm,
    #[error(
        "the body is a core WebAssembly module, not a component; build for wasm32-wasip2 (or wrap the module with `wasm-tools component new`) so it targets the cairn:workflow world"
    )]
    CoreModule,
    #[error("the component is invalid: {0}")]
    Invalid(String),
    #[error("the component is neither a workflow module nor an HTTP handler: {0}")]
    WrongWorld(String),
    #[error("the module's workflows could not be listed: {0}")]
    Names(String),
}

impl UploadError {
    /// A stable code naming what was wrong with the upload.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty_body",
            Self::NotWasm => "not_wasm",
            Self::CoreModule => "core_module",
            Self::Invalid(_) => "invalid_component",
            Self::WrongWorld(_) => "wrong_world",
            Self::Names(_) => "invalid_workflows",
        }
    }
}

/// A component that passed validation, ready to run with hosts of type `H`.
pub struct ValidatedModule<H: 'static> {
    pub kind: ModuleKind,
    /// The workflows of a workflow module; none for a handler.
    pub workflows: Vec<String>,
    pre: Prepared<H>,
}

/// A component ready to instantiate.
enum Prepared<H: 'static> {
    Workflow(WorkflowPre<InstanceState<H>>),
    Handler(ProxyPre<HandlerState>),
}

// By hand: the derive would ask `H: Clone` of the host type, which no
// instance-ready component needs.
impl<H> Clone for Prepared<H> {
    fn clone(&self) -> Self {
        match self {
            Self::Workflow(pre) => Self::Workflow(pre.clone()),
            Self::Handler(pre) => Self::Handler(pre.clone()),
        }
    }
}

impl<H> Prepared<H> {
    fn component(&self) -> &Component {
        match self {
            Self::Workflow(pre) => pre.instance_pre().component(),
            Self::Handler(pre) => pre.instance_pre().component(),
        }
    }
}

impl<H> std::fmt::Debug for ValidatedModule<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatedModule")
            .field("workflows", &self.workflows)
            .finish_non_exhaustive()
    }
}

/// How a guest's `run` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOutcome {
    /// `ok(output)`: the output JSON text.
    Returned(String),
    /// `err(message)`: the workflow failed.
    Failed(String),
    /// The guest trapped, or the host trapped it for its own fault
    /// ([`HostFailure::Run`]).
    Trapped(String),
    /// The host could not serve the guest ([`HostFailure::Host`]); the run
    /// is not at fault.
    HostFailed(String),
}

/// Owns the engine and the compiled modules, and runs workflows whose
/// imports hosts of type `H` serve (the executor's journaled host). Cheap
/// to clone.
pub struct Runtime<H: 'static> {
    inner: Arc<Inner<H>>,
}

impl<H> Clone for Runtime<H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<H: 'static> {
    engine: Engine,
    linker: Linker<InstanceState<H>>,
    /// For listing an upload's workflows, before any run exists.
    inspect_linker: Linker<InstanceState<()>>,
    handler_linker: Linker<HandlerState>,
    /// Ready-to-instantiate modules, by version.
    modules: Mutex<HashMap<String, Prepared<H>>>,
    /// Where compiled components are kept across restarts; `None` disables it.
    cache_dir: Option<PathBuf>,
    /// Distinguishes compiled artifacts of incompatible engine builds.
    engine_hash: String,
    limits: GuestLimits,
}

impl<H> std::fmt::Debug for Runtime<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache_dir", &self.inner.cache_dir)
            .finish_non_exhaustive()
    }
}

/// A linker of workflow instances: WASI that grants nothing and `wasi:http`
/// for steps.
fn wasi_linker<H: Send + 'static>(engine: &Engine) -> wasmtime::Result<Linker<InstanceState<H>>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// WASI, and the Cairn imports, served by the instance's host.
fn workflow_linker<H: WorkflowImports>(
    engine: &Engine,
) -> wasmtime::Result<Linker<InstanceState<H>>> {
    let mut linker = wasi_linker(engine)?;
    bindings::Workflow::add_to_linker::<_, wasmtime::component::HasSelf<H>>(
        &mut linker,
        InstanceState::host_called,
    )?;
    Ok(linker)
}

impl<H: WorkflowImports> Runtime<H> {
    pub fn new(cache_dir: Option<PathBuf>, limits: GuestLimits) -> Result<Self> {
        let engine_error = |e: wasmtime::Error| RuntimeError::Engine(e.to_string());
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Guests that spin are interrupted at each epoch tick (see limits.rs).
        config.epoch_interruption(true);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(
            limits::pooling(&limits),
        ));
        let engine = Engine::new(&config).map_err(engine_error)?;
        limits::start_epoch_ticker(&engine);
        let linker = workflow_linker(&engine).map_err(engine_error)?;
        let inspect_linker = wasi_linker(&engine).map_err(engine_error)?;
        let handler_linker = handler::linker(&engine).map_err(engine_error)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                RuntimeError::Engine(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                inspect_linker,
                handler_linker,
                modules: Mutex::new(HashMap::new()),
                cache_dir,
                engine_hash: format!("{:016x}", hasher.finish()),
                limits,
            }),
        })
    }

    /// The host's limits on guests (modules may tighten them).
    pub fn limits(&self) -> &GuestLimits {
        &self.inner.limits
    }

    /// Check that `bytes` are a workflow module and list its workflows. This
    /// compiles the component (on a blocking thread) and runs its `names`.
    pub async fn validate(&self, bytes: &[u8]) -> Result<ValidatedModule<H>, UploadError> {
        check_header(bytes)?;
        let runtime = self.clone();
        let owned = bytes.to_vec();
        let component = tokio::task::spawn_blocking(move || {
            Component::new(&runtime.inner.engine, &owned)
                .map_err(|e| UploadError::Invalid(format!("{e:#}")))
        })
        .await
        .map_err(|e| UploadError::Invalid(format!("compilation was interrupted: {e}")))??;
        let kind = self.check_world(&component)?;
        let pre = self
            .prepare(&component, kind)
            .map_err(UploadError::WrongWorld)?;
        let workflows = match &pre {
            Prepared::Workflow(_) => self.list_workflows(&component).await?,
            Prepared::Handler(_) => Vec::new(),
        };
        Ok(ValidatedModule {
            kind,
            workflows,
            pre,
        })
    }

    /// Make a validated module runnable under `version`, and keep its compiled
    /// form on disk.
    pub fn install(&self, version: &str, module: &ValidatedModule<H>) {
        self.store_compiled(version, module.pre.component());
        self.inner
            .modules
            .lock()
            .expect("module cache lock")
            .insert(version.to_owned(), module.pre.clone());
    }

    /// The runnable form of `version`, compiling `bytes` (or loading the
    /// compiled form from disk) the first time it is asked for.
    async fn module(
        &self,
        version: &str,
        bytes: impl AsyncFnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Prepared<H>, String> {
        if let Some(pre) = self
            .inner
            .modules
            .lock()
            .expect("module cache lock")
            .get(version)
        {
            return Ok(pre.clone());
        }
        let component = match self.load_compiled(version) {
            Some(component) => component,
            None => {
                let bytes = bytes().await?;
                tracing::info!(%version, "compiling a module");
                let runtime = self.clone();
                let component = tokio::task::spawn_blocking(move || {
                    Component::new(&runtime.inner.engine, &bytes)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("module version {version} failed to compile: {e:#}"))?;
                self.store_compiled(version, &component);
                component
            }
        };
        let kind = self.check_world(&component).map_err(|e| e.to_string())?;
        let pre = self.prepare(&component, kind)?;
        self.inner
            .modules
            .lock()
            .expect("module cache lock")
            .insert(version.to_owned(), pre.clone());
        Ok(pre)
    }

    /// Run `workflow` of module `version` with `input` in a fresh instance,
    /// its host calls served by `host`.
    pub async fn run(
        &self,
        version: &str,
        bytes: impl AsyncFnOnce() -> Result<Vec<u8>, String>,
        host: H,
        workflow: &str,
        input: &str,
        limits: GuestLimits,
    ) -> GuestOutcome {
        let run_id = host.run_id();
        let pre = match self.module(version, bytes).await {
            Ok(Prepared::Workflow(pre)) => pre,
            Ok(Prepared::Handler(_)) => {
                return GuestOutcome::Trapped(format!(
                    "module version {version} is an HTTP handler, not a workflow module"
                ));
            }
            Err(message) => return GuestOutcome::HostFailed(message),
        };
        let stderr = GuestOutput::new(&run_id, "stderr");
        let environment = host.environment();
        let wasi = sealed_wasi(&run_id, stderr.clone(), &environment);
        let mut store = self.new_store(wasi, host, environment, limits);
        let instance = match pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => return GuestOutcome::Trapped(format!("instantiation failed: {e:#}")),
        };
        match instance
            .cairn_workflow_workflows()
            .call_run(&mut store, workflow, &input.to_owned())
            .await
        {
            Ok(Ok(output)) => GuestOutcome::Returned(output),
            Ok(Err(message)) => GuestOutcome::Failed(message),
            Err(trap) => match trap.downcast_ref::<HostFailure>() {
                Some(HostFailure::Host(message)) => GuestOutcome::HostFailed(message.clone()),
                _ => GuestOutcome::Trapped(describe_trap(&trap, &stderr.tail())),
            },
        }
    }

    /// A store for one workflow instance, under its limits.
    fn new_store<T: Send + 'static>(
        &self,
        wasi: wasmtime_wasi::WasiCtx,
        host: T,
        environment: Arc<dyn GuestEnvironment>,
        limits: GuestLimits,
    ) -> Store<InstanceState<T>> {
        let limiter = limits::InstanceLimiter::new(limits.clone());
        let state = InstanceState::new(wasi, host, environment, limiter);
        let mut store = Store::new(&self.inner.engine, state);
        limits::meter(&mut store, &limits);
        store
    }

    /// What kind of module the component is, from its exports, and whether
    /// its imports stay within what that kind is offered.
    fn check_world(&self, component: &Component) -> Result<ModuleKind, UploadError> {
        let ty = component.component_type();
        let engine = &self.inner.engine;
        let exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let kind = if exports.iter().any(|name| name == WORKFLOWS_EXPORT) {
            Some(ModuleKind::Workflow)
        } else if exports
            .iter()
            .any(|name| name.starts_with(HANDLER_EXPORT_PREFIX))
        {
            Some(ModuleKind::Handler)
        } else {
            None
        };
        let allowed = GUEST_IMPORT_PREFIXES;
        let offered = "cairn:workflow/*@0.1.0 and WASI 0.2 cli, io, clocks, random and http";
        let to = match kind {
            Some(ModuleKind::Workflow) | None => "workflows",
            Some(ModuleKind::Handler) => "handlers",
        };
        let unexpected: Vec<String> = ty
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .filter(|name| !allowed.iter().any(|p| name.starts_with(p)))
            .collect();
        let mut problems = Vec::new();
        if kind.is_none() {
            problems.push(format!(
                "it must export {WORKFLOWS_EXPORT} (a workflow module) or wasi:http/incoming-handler@0.2 (an HTTP handler), but exports [{}]",
                exports.join(", ")
            ));
        }
        if !unexpected.is_empty() {
            problems.push(format!(
                "it imports [{}], which the host does not offer to {to} (allowed: {offered}; no file system, no sockets)",
                unexpected.join(", "),
            ));
        }
        match kind {
            Some(kind) if problems.is_empty() => Ok(kind),
            _ => Err(UploadError::WrongWorld(problems.join("; "))),
        }
    }

    fn prepare(&self, component: &Component, kind: ModuleKind) -> Result<Prepared<H>, String> {
        let mismatch =
            |e: wasmtime::Error| format!("its imports do not match what the host provides: {e:#}");
        let exports = |e: wasmtime::Error| format!("its exports do not match the world: {e:#}");
        Ok(match kind {
            ModuleKind::Workflow => {
                let pre = self
                    .inner
                    .linker
                    .instantiate_pre(component)
                    .map_err(mismatch)?;
                Prepared::Workflow(WorkflowPre::new(pre).map_err(exports)?)
            }
            ModuleKind::Handler => {
                let pre = self
                    .inner
                    .handler_linker
                    .instantiate_pre(component)
                    .map_err(mismatch)?;
                Prepared::Handler(ProxyPre::new(pre).map_err(exports)?)
            }
        })
    }

    /// The workflows a workflow module lists, from an instance that runs
    /// no workflow: its Cairn imports trap if called.
    async fn list_workflows(&self, component: &Component) -> Result<Vec<String>, UploadError> {
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

    fn cache_path(&self, version: &str) -> Option<PathBuf> {
        let digest = version.strip_prefix("sha256:").unwrap_or(version);
        self.inner
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{digest}-{}.cwasm", self.inner.engine_hash)))
    }

    fn store_compiled(&self, version: &str, component: &Component) {
        let Some(path) = self.cache_path(version) else {
            return;
        };
        if path.exists() {
            return;
        }
        let written = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_atomically(&path, &bytes).map_err(|e| e.to_string()));
        if let Err(error) = written {
            // Only a cost: the next start compiles the module again.
            tracing::warn!(%error, path = %path.display(), "cannot cache a compiled module");
        }
    }

    fn load_compiled(&self, version: &str) -> Option<Component> {
        let path = self.cache_path(version)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store_compiled` of an engine with
        // the same compatibility hash (it is in the file name), in a
        // directory owned by this host; wasmtime checks its header as well.
        #[expect(unsafe_code, reason = "loading our own precompiled artifact")]
        let loaded = unsafe { Component::deserialize_file(&self.inner.engine, &path) };
        match loaded {
            Ok(component) => {
                tracing::info!(%version, "loaded a compiled module from the cache");
                Some(component)
            }
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "ignoring an unusable compiled module");
                None
            }
        }
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
fn check_header(bytes: &[u8]) -> Result<(), UploadError> {
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

/// WASI that grants nothing: no preopened directories, no environment, no
/// arguments, no network; stdout and stderr go to the host's log.
fn sealed_wasi(
    run_id: &str,
    stderr: GuestOutput,
    env: &Arc<dyn GuestEnvironment>,
) -> wasmtime_wasi::WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(GuestOutput::new(run_id, "stdout"))
        .stderr(stderr)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    environment::install(&mut builder, env);
    builder.build()
}

/// A trap as people need it: the cause, what the guest last wrote to
/// stderr (a Rust panic message lands there), then the guest backtrace.
fn describe_trap(error: &wasmtime::Error, stderr: &str) -> String {
    if let Some(failure) = error.downcast_ref::<HostFailure>() {
        return failure.to_string();
    }
    let mut message = if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
        limit.to_string()
    } else {
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => trap.to_string(),
            None => error.to_string(),
        }
    };
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        message.push_str("\nguest stderr: ");
        message.push_str(stderr);
    }
    if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        message.push_str(&format!("\n{backtrace}"));
    }
    message
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
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
