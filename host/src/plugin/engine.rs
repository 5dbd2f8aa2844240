//! The one wasmtime `Engine` of the host, its settings, and the epoch ticker that enforces
//! per-call time limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A call's time limit is checked at every tick, so a guest
/// in a busy loop is stopped at most one tick after its limit; a tick also yields to the
/// async executor, so a busy guest never starves the host's other tasks for longer.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Upper bound on concurrent plugin instances when pooling. Each slot reserves virtual
/// address space for its linear memory (not RAM), so this bounds reservation, not usage.
const POOLED_INSTANCES: u32 = 256;

/// Build the engine. Pooling (fast instantiation: instances reuse pre-reserved slots and
/// copy-on-write memory images) is the default; `pooling = false`, or a machine that cannot
/// reserve the address space, falls back to on-demand allocation.
pub(super) fn build_engine(pooling: bool, max_memory_bytes: usize) -> wasmtime::Result<(Engine, bool)> {
    if pooling {
        match Engine::new(&config(Some(max_memory_bytes))) {
            Ok(engine) => return Ok((engine, true)),
            Err(error) => {
                tracing::warn!(%error, "pooling allocator unavailable; using on-demand allocation")
            }
        }
    }
    Ok((Engine::new(&config(None))?, false))
}

fn config(pool_memory_bytes: Option<usize>) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.async_support(true);
    // Time limits: the ticker below advances the epoch; each store gets a deadline callback.
    config.epoch_interruption(true);
    if let Some(max_memory_bytes) = pool_memory_bytes {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOLED_INSTANCES);
        // A component holds several core instances and memories (an adapter, libc, the
        // language runtime); these ceilings fit the Rust, Python and JS components we ship.
        pool.total_core_instances(POOLED_INSTANCES * 4);
        pool.total_memories(POOLED_INSTANCES * 2);
        pool.total_tables(POOLED_INSTANCES * 4);
        pool.max_memories_per_component(4);
        pool.max_tables_per_component(8);
        pool.max_core_instances_per_component(64);
        pool.max_memory_size(max_memory_bytes);
        // A freed slot is reset by rewriting the pages the instance touched (found with the
        // PAGEMAP_SCAN ioctl where the kernel has it) instead of madvise, which costs a TLB
        // shootdown on every core: instantiate + call + drop 76 -> 22 µs median here. Each
        // warm slot keeps up to this much resident.
        pool.linear_memory_keep_resident(1 << 20);
        pool.table_keep_resident(64 << 10);
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(super) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(super) fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        // A plain thread: it must keep ticking even when every runtime worker is busy
        // running guest code.
        std::thread::Builder::new()
            .name("fedmcp-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
