//! Limits on one guest instance: memory and tables through a resource
//! limiter, CPU through epoch deadlines. A guest past a limit traps with a
//! message that names the limit; the host goes on serving everyone else.

use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter};

/// How often the engine's epoch advances: the granularity of CPU slices. A
/// guest that does not call the host yields to the async runtime at every
/// tick, so one busy guest cannot starve the others or the HTTP server.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-instance limits; the host's configuration sets them.
#[derive(Debug, Clone)]
pub struct GuestLimits {
    /// Largest linear memory of an instance, in bytes.
    pub max_memory_bytes: usize,
    /// Largest table of an instance, in elements.
    pub max_table_elements: usize,
    /// Longest a guest may run without calling the host.
    pub cpu_slice: Duration,
    /// Longest a guest may run in all, over one instance's life (one
    /// execution of a run, one handler call), however often it calls the
    /// host: calls that journal nothing (`workflow-id`, `log`) would
    /// otherwise let it spin for ever.
    pub cpu_budget: Duration,
    /// Guest instances alive at once, across the host: the size of the
    /// pooling allocator, whose memory is reserved when the host starts.
    pub max_instances: u32,
    /// Most core instances one component instance may create (language
    /// runtimes compose many: CPython's about 40).
    pub max_core_instances_per_component: u32,
}

impl Default for GuestLimits {
    fn default() -> Self {
        Self {
            max_memory_bytes: 64 * 1024 * 1024,
            max_table_elements: 100_000,
            cpu_slice: Duration::from_secs(5),
            cpu_budget: Duration::from_secs(300),
            max_instances: 2048,
            max_core_instances_per_component: 128,
        }
    }
}

impl GuestLimits {
    /// The CPU slice in epoch ticks (at least one).
    pub(super) fn cpu_slice_ticks(&self) -> u32 {
        ticks(self.cpu_slice)
    }
}

/// `time` in epoch ticks, at least one.
fn ticks(time: Duration) -> u32 {
    let ticks = time.as_millis() / EPOCH_TICK.as_millis();
    u32::try_from(ticks).unwrap_or(u32::MAX).max(1)
}

impl GuestLimits {}

/// A guest went past one of its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LimitExceeded(pub String);

/// The resource limiter of one instance.
#[derive(Debug, Clone)]
pub(super) struct InstanceLimiter {
    limits: GuestLimits,
}

impl InstanceLimiter {
    pub(super) fn new(limits: GuestLimits) -> Self {
        Self { limits }
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limit = self.limits.max_memory_bytes;
        if desired > limit {
            return Err(wasmtime::Error::new(LimitExceeded(format!(
                "the guest's memory would grow to {desired} bytes, past the limit of {limit} bytes ({} MiB)",
                limit / (1024 * 1024)
            ))));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limit = self.limits.max_table_elements;
        if desired > limit {
            return Err(wasmtime::Error::new(LimitExceeded(format!(
                "a guest table would grow to {desired} elements, past the limit of {limit}"
            ))));
        }
        Ok(true)
    }
}

/// The pooling allocator for `limits`: every instance's memories, tables
/// and stacks come from slots reserved up front, so the host's footprint is
/// bounded, and an instantiation past the pool fails instead of exhausting
/// the machine.
/// How much of a linear memory (from its start) is zeroed in place when its
/// slot is freed, rather than given back to the kernel: a Rust guest's 1 MiB
/// stack and its heap fit in this.
const KEEP_RESIDENT_MEMORY_BYTES: usize = 4 << 20;
/// The same for tables.
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;

pub(super) fn pooling(limits: &GuestLimits) -> wasmtime::PoolingAllocationConfig {
    // A component built by Rust for wasm32-wasip2 holds a few core
    // instances (the program, the WASI adapter, shims), CPython's about 40
    // (most without a memory); each has at most a memory and a table. The
    // pool's total is an average per instance: it reserves address space,
    // not memory.
    const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
    let instances = limits.max_instances.max(1);
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances * CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(limits.max_core_instances_per_component)
        .total_memories(instances * 2)
        .total_tables(instances * CORE_INSTANCES_PER_COMPONENT)
        .total_stacks(instances)
        .max_memory_size(limits.max_memory_bytes)
        .table_elements(limits.max_table_elements)
        // Keep the memory of a few idle slots committed, for quick reuse.
        .max_unused_warm_slots(64)
        // Reset a slot for reuse by zeroing only the pages its instance
        // touched (found with Linux's PAGEMAP_SCAN where the kernel has it),
        // not by `madvise`: that unmaps the pages, which makes every CPU
        // flush its TLB and the next instance fault each page in again.
        // Measured on the seed benchmark, this is most of the kernel time
        // spent per run (see README, Benchmark).
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY_BYTES)
        .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES)
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

/// Store state that is metered: its instance limiter, and the epoch ticks
/// the guest has run since it last called the host.
pub(super) trait Metered: 'static {
    fn limiter(&mut self) -> &mut InstanceLimiter;
    fn busy_ticks(&mut self) -> &mut u32;
}

/// Put a store under its limits: memory and tables through the limiter;
/// CPU through epoch deadlines, yielding to the async runtime at every tick
/// and trapping after a whole slice without a host call, or once the
/// instance's whole budget is spent.
pub(super) fn meter<T: Metered>(store: &mut wasmtime::Store<T>, limits: &GuestLimits) {
    store.limiter(|state| state.limiter());
    let slice_ticks = limits.cpu_slice_ticks();
    let slice = limits.cpu_slice;
    let (budget, budget_ticks) = (limits.cpu_budget, ticks(limits.cpu_budget));
    let mut spent: u32 = 0;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut context| {
        spent = spent.saturating_add(1);
        if spent > budget_ticks {
            return Err(wasmtime::Error::new(LimitExceeded(format!(
                "the guest ran for {} ms in this execution, past its CPU budget of {} ms (--max-cpu-ms)",
                u64::from(spent) * EPOCH_TICK.as_millis() as u64,
                budget.as_millis()
            ))));
        }
        let busy = context.data_mut().busy_ticks();
        *busy += 1;
        if *busy > slice_ticks {
            return Err(wasmtime::Error::new(LimitExceeded(format!(
                "the guest ran for {} ms without calling the host, past the limit of {} ms",
                u64::from(*busy) * EPOCH_TICK.as_millis() as u64,
                slice.as_millis()
            ))));
        }
        Ok(wasmtime::UpdateDeadline::Yield(1))
    });
}

/// Advance `engine`'s epoch every [`EPOCH_TICK`] for as long as the engine
/// lives.
pub(super) fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("cairn-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
