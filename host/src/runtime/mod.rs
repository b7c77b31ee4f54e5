//! wasmtime: the one [`Engine`], compiling and validating uploaded
//! components, the per-version `InstancePre` cache, and running a workflow
//! in a fresh instance.

mod bindings;
mod cache;
mod environment;
mod guest_output;
mod handler;
mod instance;
mod limits;
mod outgoing;
mod validate;
mod world;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;

/// The generated interfaces of the `workflow` world, whose `Host` traits a
/// run's host implements.
pub use bindings::cairn::workflow as wit;
/// A guest-visible refusal and its code: the WIT's `error`, used directly.
pub use bindings::{HostError, RunResult, WitError as GuestError, WitErrorCode as GuestErrorCode};
pub use environment::{GuestEnvironment, LiveEnvironment, nanos, system_time};
pub use handler::{HandlerBounds, HandlerClient, HandlerFailure};
pub use instance::{HostFailure, WorkflowImports};
pub use limits::{EPOCH_TICK, GuestLimits, LimitExceeded};
pub use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
pub use world::NEWEST_WASI;

use crate::domain::{ModuleDigest, ModuleKind};
use crate::metrics::metrics;
use bindings::WorkflowPre;
use guest_output::GuestOutput;
use handler::HandlerState;
use instance::InstanceState;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

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
    #[error("the component cannot run on this host: {0}")]
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
    /// The host ended the instance while the run waits
    /// ([`HostFailure::Parked`]).
    Parked,
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
    modules: Mutex<HashMap<ModuleDigest, Prepared<H>>>,
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

    /// Check that `bytes` are a workflow module or a handler and list its
    /// workflows. Its imports and exports are checked from the bytes first,
    /// so a component that cannot run here costs no compile; then it is
    /// compiled (on a blocking thread), unless a compiled form of the same
    /// bytes is at hand, and its `names` are run.
    pub async fn validate(&self, bytes: &[u8]) -> Result<ValidatedModule<H>, UploadError> {
        validate::check_header(bytes)?;
        let (imports, exports) = world::names_in(bytes)?;
        world::classify(&imports, &exports)?;
        let version = ModuleDigest::of(bytes);
        let component = match self.compiled(&version) {
            Some(component) => component,
            None => {
                tracing::info!(%version, bytes = bytes.len(), "compiling an upload");
                let runtime = self.clone();
                let owned = bytes.to_vec();
                tokio::task::spawn_blocking(move || {
                    Component::new(&runtime.inner.engine, &owned)
                        .map_err(|e| UploadError::Invalid(format!("{e:#}")))
                })
                .await
                .map_err(|e| UploadError::Invalid(format!("compilation was interrupted: {e}")))??
            }
        };
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
    pub fn install(&self, version: &ModuleDigest, module: &ValidatedModule<H>) {
        self.store_compiled(version, module.pre.component());
        self.inner
            .modules
            .lock()
            .expect("module cache lock")
            .insert(version.clone(), module.pre.clone());
    }

    /// The compiled form of `version`, if this host has one: in memory, or
    /// in the cache on disk.
    fn compiled(&self, version: &ModuleDigest) -> Option<Component> {
        let loaded = self
            .inner
            .modules
            .lock()
            .expect("module cache lock")
            .get(version)
            .map(|pre| pre.component().clone());
        loaded.or_else(|| self.load_compiled(version))
    }

    /// The runnable form of `version`, compiling `bytes` (or loading the
    /// compiled form from disk) the first time it is asked for.
    async fn module(
        &self,
        version: &ModuleDigest,
        bytes: impl AsyncFnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Prepared<H>, String> {
        if let Some(pre) = self
            .inner
            .modules
            .lock()
            .expect("module cache lock")
            .get(version)
        {
            metrics().compiled_module("memory");
            return Ok(pre.clone());
        }
        let component = match self.load_compiled(version) {
            Some(component) => {
                metrics().compiled_module("disk");
                component
            }
            None => {
                metrics().compiled_module("compiled");
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
            .insert(version.clone(), pre.clone());
        Ok(pre)
    }

    /// Run `workflow` of module `version` with `input` in a fresh instance,
    /// its host calls served by `host`.
    pub async fn run(
        &self,
        version: &ModuleDigest,
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
        let instantiating = Instant::now();
        let instance = match pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => return GuestOutcome::Trapped(format!("instantiation failed: {e:#}")),
        };
        metrics().instantiated(instantiating.elapsed());
        match instance
            .cairn_workflow_workflows()
            .call_run(&mut store, workflow, &input.to_owned())
            .await
        {
            Ok(Ok(output)) => GuestOutcome::Returned(output),
            Ok(Err(message)) => GuestOutcome::Failed(message),
            Err(trap) => match trap.downcast_ref::<HostFailure>() {
                Some(HostFailure::Host(message)) => GuestOutcome::HostFailed(message.clone()),
                Some(HostFailure::Parked) => GuestOutcome::Parked,
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
