//! The wasmtime [`Engine`] every plugin runs on: the [`Limits`] of every
//! call, the pooled instance allocator sized for them, and the epoch timer
//! that enforces deadlines.

use std::time::Duration;

use wasmtime::{Config, Engine};

/// What the host allows every call, whatever the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time for one call, spinning or waiting on HTTP.
    pub deadline: Duration,
    /// Linear memory per instance, in bytes.
    pub memory_bytes: usize,
    /// Largest HTTP response body a poster may receive, in bytes.
    pub response_bytes: u64,
    /// Calls that may run at once (a run: its workers, plus one): the size
    /// of the pooled instance allocator, when the machine allows one.
    pub concurrency: u32,
    /// Largest plugin file the host reads, in bytes.
    pub plugin_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(60),
            memory_bytes: 64 << 20,
            response_bytes: 4 << 20,
            concurrency: 16,
            plugin_file_bytes: 256 << 20,
        }
    }
}

/// The most core instances, memories and tables one plugin may have: a
/// Rust component has a handful, one built by componentize-py a few dozen.
const PER_COMPONENT: u32 = 64;

/// Freed regions that wait to be handed back to the kernel together: one
/// TLB shootdown per batch rather than per call.
const DECOMMIT_BATCH: u32 = 32;

/// The pool's decommit queues: one per thread, up to 16, as wasmtime shards
/// them.
fn decommit_shards() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16) as u32)
}

/// How much of a pooled memory, table or stack stays resident between
/// calls: about what a call of a small plugin touches.
const KEEP_RESIDENT: usize = 64 << 10;

/// The engine's configuration for `limits`: instances from a pool sized for
/// `limits.concurrency` (no mmap or munmap per call; memory images copied
/// in, which for small plugins beats mapping them copy-on-write, with or
/// without the pagemap reset below), or allocated on demand.
fn engine_config(limits: &Limits, pooled: bool) -> Config {
    let mut config = Config::new();
    // Deadlines interrupt guest code itself, not only the future
    // around it: a guest spinning in a loop never returns to await.
    config.epoch_interruption(true);
    // Reserve only what a memory may grow to, not 4 GiB per instance, so
    // ten thousand instances fit the address space; the price is a bounds
    // check per access, which an I/O-bound plugin does not notice.
    config.memory_reservation(limits.memory_bytes as u64);
    config.memory_guard_size(64 << 10);
    config.memory_init_cow(false);
    if pooled {
        let slots = limits.concurrency.max(1);
        // A freed memory, table or stack waits in a decommit queue (one per
        // thread shard, flushed at DECOMMIT_BATCH regions) before its slot is
        // free again. An allocation that finds the pool full flushes the
        // queues, but a queue another thread is flushing at that moment is
        // invisible to it: without room for every queue's worth, a busy run
        // fails attempts with "maximum concurrent limit reached".
        let queued = decommit_shards() * DECOMMIT_BATCH * 2;
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            // Core instances are only counted (a componentize-py component
            // has more than a dozen), not reserved.
            .total_core_instances(slots.saturating_mul(PER_COMPONENT))
            .total_memories(slots.saturating_mul(2).saturating_add(queued))
            .total_tables(slots.saturating_mul(4).saturating_add(queued))
            .total_stacks(slots.saturating_add(queued))
            .max_memory_size(limits.memory_bytes)
            .max_core_instances_per_component(PER_COMPONENT)
            .max_memories_per_component(PER_COMPONENT)
            .max_tables_per_component(PER_COMPONENT)
            // Reset the pages a call touched with memset, rather than
            // handing them back to the kernel (madvise, a TLB shootdown on
            // every core) and faulting them in again on the next call.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .async_stack_keep_resident(KEEP_RESIDENT)
            .decommit_batch_size(DECOMMIT_BATCH as usize);
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), find the pages a
        // call dirtied wherever they are and reset them (up to the
        // keep-resident size) with memset, instead of memset on the first
        // pages and madvise on the rest: no TLB shootdown, no page fault on
        // the next call. A 20,000-job run spent half as much CPU in the
        // kernel with it.
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the WebAssembly engine: {0}")]
pub struct EngineError(pub(crate) String);

/// How often the engine's epoch advances: the granularity of deadlines,
/// and how often a spinning guest yields its thread to other attempts.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// An engine for `limits`, its epoch advancing for as long as it lives.
pub(crate) fn start(limits: &Limits) -> Result<Engine, EngineError> {
    // The pool reserves its address space up front; where that is
    // refused (a `ulimit -v`, a small address space), allocate on demand.
    let engine = match Engine::new(&engine_config(limits, true)) {
        Ok(engine) => engine,
        Err(e) => {
            tracing::debug!("no pooled instance allocator ({e:#}); allocating on demand");
            Engine::new(&engine_config(limits, false)).map_err(|e| EngineError(format!("{e:#}")))?
        }
    };
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("orchestrator-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map_err(|e| EngineError(format!("cannot start the epoch timer: {e}")))?;
    Ok(engine)
}
