//! Loads, checks and runs orchestrator plugins.
//!
//! Start from [`PluginHost`]: it owns the wasmtime [`Engine`] and one linker
//! per world, and [`PluginHost::load`] turns a `.wasm` file into a [`Plugin`]
//! — compiled, its kind read from its exports, its contract version checked
//! against [`orchestrator_contract::accepted_versions`], type-checked with
//! `instantiate_pre`, and described. A bad file is refused with a
//! [`LoadError`] that renders as one line.
//!
//! Every call gets a fresh `Store` with nothing granted but what the host
//! decides: no filesystem, environment or sockets; outbound HTTP for posters
//! only to the hosts in its [`OutboundAccess`], with credentials added by the
//! host ([`outbound`]). Plugin discovery for `plugins list` is in
//! [`discover`].

mod cache;
mod convert;
pub mod discover;
mod error;
mod inspect;
mod native;
pub mod outbound;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator_contract::{
    FailureReport, HostFault, JobContext, PluginInfo, PluginKind, PostFailure, Receipt, Verdict,
};
use orchestrator_world::classifier::ClassifierPre;
use orchestrator_world::log;
use orchestrator_world::poster::PosterPre;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use cache::{CacheUse, CompileCache};
pub use error::LoadError;
pub use inspect::Interfaces;
pub use native::NativePolicy;
pub use outbound::{OutboundAccess, Secret};

use outbound::{FaultLog, OutboundHooks};

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
/// in, which for small plugins beats mapping them copy-on-write), or
/// allocated on demand.
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
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Refuses memory growth past the limit, and remembers that it did so a
/// trap that follows is reported as out-of-memory.
struct MemoryLimiter {
    max: usize,
    refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The per-call state inside a plugin's `Store`.
struct HostState {
    plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    memory: MemoryLimiter,
}

impl HostState {
    fn new(
        plugin: Arc<str>,
        access: OutboundAccess,
        faults: FaultLog,
        limits: Limits,
        pool: outbound::Pool,
    ) -> Self {
        HostState {
            plugin,
            // Nothing inherited: no environment, arguments, preopened
            // directories or stdio, and no sockets or name lookups.
            wasi: WasiCtx::builder()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks {
                access,
                faults,
                response_bytes: limits.response_bytes,
                pool,
            },
            memory: MemoryLimiter {
                max: limits.memory_bytes,
                refused: None,
            },
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) {
        // A plugin's line is one line of the host's log, of a bounded size,
        // that cannot drive the terminal.
        use orchestrator_contract::text::{MESSAGE_BYTES, bounded, printable};
        let message = bounded(message, MESSAGE_BYTES);
        let message = printable(&message);
        let plugin = &*printable(&self.plugin);
        match level {
            log::Level::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }
}

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the WebAssembly engine: {0}")]
pub struct EngineError(String);

/// The wasmtime engine and one linker per world, shared by every plugin.
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    poster_linker: Arc<Linker<HostState>>,
    classifier_linker: Arc<Linker<HostState>>,
    limits: Limits,
    cache: Option<CompileCache>,
    /// Keep-alive connections shared by every poster call.
    pool: outbound::Pool,
    native: NativePolicy,
}

/// How often the engine's epoch advances: the granularity of deadlines,
/// and how often a spinning guest yields its thread to other attempts.
const EPOCH_TICK: Duration = Duration::from_millis(10);

impl PluginHost {
    /// A host with the default [`Limits`].
    pub fn new() -> Result<Self, EngineError> {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Result<Self, EngineError> {
        // The pool reserves its address space up front; where that is
        // refused (a `ulimit -v`, a small address space), allocate on demand.
        let engine = match Engine::new(&engine_config(&limits, true)) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::debug!("no pooled instance allocator ({e:#}); allocating on demand");
                Engine::new(&engine_config(&limits, false))
                    .map_err(|e| EngineError(format!("{e:#}")))?
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
        let link = |http: bool| -> wasmtime::Result<Linker<HostState>> {
            let mut linker = Linker::new(&engine);
            // The WASI a Rust or C guest's standard library needs to start;
            // the `WasiCtx` grants none of its resources.
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            if http {
                wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
            }
            log::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
            Ok(linker)
        };
        let poster_linker = link(true).map_err(|e| EngineError(format!("{e:#}")))?;
        let classifier_linker = link(false).map_err(|e| EngineError(format!("{e:#}")))?;
        Ok(PluginHost {
            engine,
            poster_linker: Arc::new(poster_linker),
            classifier_linker: Arc::new(classifier_linker),
            limits,
            cache: None,
            pool: outbound::pool(&[]),
            native: NativePolicy::default(),
        })
    }

    /// Keeps compiled plugins in `cache` (or, with `None`, compiles every
    /// load afresh).
    pub fn with_cache(mut self, cache: Option<CompileCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Also trusts these certificate authorities for platform connections
    /// (a private instance, a test server).
    pub fn with_trusted_certificates(mut self, certs: &[outbound::Certificate]) -> Self {
        // The pool from `with_limits` already trusts the default roots.
        if !certs.is_empty() {
            self.pool = outbound::pool(certs);
        }
        self
    }

    /// Lets native plugins load, under `policy`.
    pub fn with_native(mut self, policy: NativePolicy) -> Self {
        self.native = policy;
        self
    }

    /// Reads, compiles, checks and describes the plugin at `path`.
    pub async fn load(&self, path: &Path) -> Result<Plugin, LoadError> {
        self.examine(path).await.outcome
    }

    /// Like [`PluginHost::load`], but also keeps what was learned before a
    /// refusal (hash, interfaces, kind, contract version), for
    /// `plugins list` and `plugins inspect`.
    pub async fn examine(&self, path: &Path) -> Examined {
        let mut examined = Examined {
            path: path.to_owned(),
            sha256: None,
            size: None,
            kind: None,
            contract: None,
            interfaces: None,
            cache: None,
            backend: None,
            outcome: Err(LoadError::NotFound {
                path: path.to_owned(),
            }),
        };
        examined.outcome = self.examine_into(path, &mut examined).await;
        examined
    }

    async fn examine_into(&self, path: &Path, seen: &mut Examined) -> Result<Plugin, LoadError> {
        let bytes = read(path, self.limits.plugin_file_bytes)?;
        let sha256 = hex(&Sha256::digest(&bytes));
        seen.sha256 = Some(sha256.clone());
        seen.size = Some(bytes.len() as u64);
        if native::is_native_library(&bytes) {
            seen.backend = Some(Backend::Native);
            return self.load_native(path, sha256, bytes.len() as u64, seen);
        }
        seen.backend = Some(Backend::Wasm);
        let (component, cache) = self.compile(path, &bytes, &sha256)?;
        seen.cache = Some(cache);
        let interfaces = inspect::interfaces(&self.engine, &component);
        seen.interfaces = Some(interfaces.clone());
        let (kind, version) = inspect::detect(path, &interfaces)?;
        seen.kind = Some(kind);
        seen.contract = version.clone();
        let contract = inspect::check_version(path, version.as_ref())?;
        let mismatch = |e: wasmtime::Error| LoadError::Mismatch {
            path: path.to_owned(),
            kind,
            reason: one_line(&format!("{e:#}")),
        };
        let runtime = match kind {
            PluginKind::Poster => {
                let pre = self
                    .poster_linker
                    .instantiate_pre(&component)
                    .map_err(mismatch)?;
                Runtime::Poster(PosterPre::new(pre).map_err(mismatch)?)
            }
            PluginKind::Classifier => {
                let pre = self
                    .classifier_linker
                    .instantiate_pre(&component)
                    .map_err(mismatch)?;
                Runtime::Classifier(ClassifierPre::new(pre).map_err(mismatch)?)
            }
        };
        let mut plugin = Plugin {
            meta: PluginMeta {
                path: path.to_owned(),
                sha256,
                size: bytes.len() as u64,
                info: PluginInfo {
                    name: String::new(),
                    version: String::new(),
                    description: String::new(),
                },
                kind,
                contract,
                interfaces,
                cache,
                backend: Backend::Wasm,
            },
            runtime,
            limits: self.limits,
            pool: self.pool.clone(),
        };
        plugin.meta.info = plugin.describe().await.map_err(|e| LoadError::Describe {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(plugin)
    }

    /// A trusted native library, under the host's [`NativePolicy`].
    fn load_native(
        &self,
        path: &Path,
        sha256: String,
        size: u64,
        seen: &mut Examined,
    ) -> Result<Plugin, LoadError> {
        let loaded = native::load(
            path,
            &sha256,
            &self.native,
            &mut seen.contract,
            &mut seen.kind,
        )?;
        seen.interfaces = Some(loaded.interfaces.clone());
        if loaded.info.name.is_empty() {
            return Err(LoadError::Describe {
                path: path.to_owned(),
                reason: "it has no name".into(),
            });
        }
        Ok(Plugin {
            meta: PluginMeta {
                path: path.to_owned(),
                sha256,
                size,
                info: loaded.info.bounded(),
                kind: loaded.kind,
                contract: loaded.contract,
                interfaces: loaded.interfaces,
                cache: CacheUse::NotCompiled,
                backend: Backend::Native,
            },
            runtime: Runtime::Native(loaded.native),
            limits: self.limits,
            pool: self.pool.clone(),
        })
    }

    /// The compiled component, from the cache when it has it.
    fn compile(
        &self,
        path: &Path,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, CacheUse), LoadError> {
        inspect::check_format(path, bytes)?;
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&self.engine, sha256))
        {
            return Ok((component, CacheUse::Hit));
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            reason: one_line(&format!("{e:#}")),
        })?;
        let stored = self
            .cache
            .as_ref()
            .is_some_and(|c| c.put(&self.engine, sha256, &component));
        let used = if stored {
            CacheUse::Stored
        } else {
            CacheUse::Compiled
        };
        Ok((component, used))
    }
}

/// Reads a plugin file, checked before it is read: a regular file (not a
/// folder, a device such as `/dev/zero`, or a pipe) of at most `limit`
/// bytes, and read no further than that should it grow meanwhile.
fn read(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let unreadable = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotFound {
            path: path.to_owned(),
        },
        _ => LoadError::Unreadable {
            path: path.to_owned(),
            source,
        },
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        return Err(LoadError::Directory {
            path: path.to_owned(),
        });
    }
    if !meta.is_file() {
        return Err(LoadError::NotRegular {
            path: path.to_owned(),
        });
    }
    let too_large = || LoadError::TooLarge {
        path: path.to_owned(),
        limit_mib: limit >> 20,
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|file| file.take(limit.saturating_add(1)).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

impl PluginHost {
    /// The SHA-256 of a plugin file, in hex: how a changed plugin file is
    /// noticed. The file is checked as [`PluginHost::load`] checks it.
    pub fn file_sha256(&self, path: &Path) -> Result<String, LoadError> {
        Ok(hex(&Sha256::digest(read(
            path,
            self.limits.plugin_file_bytes,
        )?)))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// wasmtime's messages may span lines; a refusal is one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What [`PluginHost::examine`] learned about a file, up to the point where
/// it was refused (if it was).
#[derive(Debug)]
pub struct Examined {
    pub path: PathBuf,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub kind: Option<PluginKind>,
    /// The contract version of its exports, when they carry one.
    pub contract: Option<semver::Version>,
    pub interfaces: Option<Interfaces>,
    /// Whether the compiled code came from the cache, once compiled.
    pub cache: Option<CacheUse>,
    /// What the file is, once its header was read.
    pub backend: Option<Backend>,
    pub outcome: Result<Plugin, LoadError>,
}

/// How a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// A WebAssembly component in wasmtime's sandbox.
    Wasm,
    /// A trusted shared library, unsandboxed in the host's process.
    Native,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Wasm => "wasm",
            Backend::Native => "native",
        }
    }
}

/// Everything the host knows about a loaded plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginMeta {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub info: PluginInfo,
    pub kind: PluginKind,
    #[serde(serialize_with = "serialize_display")]
    pub contract: semver::Version,
    pub interfaces: Interfaces,
    /// Whether the compiled code came from the cache.
    pub cache: CacheUse,
    pub backend: Backend,
}

fn serialize_display<S: serde::Serializer>(
    v: &impl std::fmt::Display,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

enum Runtime {
    Poster(PosterPre<HostState>),
    Classifier(ClassifierPre<HostState>),
    Native(native::Native),
}

/// A checked plugin, ready to be called. Cheap to share: each call gets its
/// own `Store` and instance.
pub struct Plugin {
    meta: PluginMeta,
    runtime: Runtime,
    limits: Limits,
    pool: outbound::Pool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("meta", &self.meta).finish()
    }
}

/// The outcome of one attempt, as the host saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Posted(Receipt),
    /// What the plugin returned (if it returned) and what the host saw (if
    /// anything); at least one of the two is present.
    Failed {
        failure: Option<PostFailure>,
        fault: Option<HostFault>,
    },
}

impl Plugin {
    pub fn meta(&self) -> &PluginMeta {
        &self.meta
    }

    pub fn kind(&self) -> PluginKind {
        self.meta.kind
    }

    pub fn info(&self) -> &PluginInfo {
        &self.meta.info
    }

    fn store(&self, access: OutboundAccess, faults: FaultLog) -> Store<HostState> {
        let engine = match &self.runtime {
            Runtime::Poster(pre) => pre.engine(),
            Runtime::Classifier(pre) => pre.engine(),
            Runtime::Native(_) => unreachable!("native plugins have no store"),
        };
        let name: Arc<str> = if self.meta.info.name.is_empty() {
            Arc::from(self.meta.path.display().to_string())
        } else {
            Arc::from(self.meta.info.name.as_str())
        };
        let mut store = Store::new(
            engine,
            HostState::new(name, access, faults, self.limits, self.pool.clone()),
        );
        store.limiter(|s| &mut s.memory);
        let deadline = Instant::now() + self.limits.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                // Let other attempts on this thread run, then check again.
                UpdateDeadline::Yield(1)
            })
        });
        store
    }

    /// Runs one call under the deadline, and turns what went wrong into the
    /// host fault that explains it.
    async fn guarded<R>(
        &self,
        store: &mut Store<HostState>,
        call: impl AsyncFnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, HostFault> {
        let deadline_ms = self.limits.deadline.as_millis() as u64;
        // The outer timeout covers a guest blocked in a host call (waiting
        // on HTTP), where epochs are not checked.
        match tokio::time::timeout(self.limits.deadline, call(&mut *store)).await {
            Err(_) => Err(HostFault::Timeout(deadline_ms)),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if let Some(desired) = store.data().memory.refused {
                    return Err(HostFault::OutOfMemory(format!(
                        "tried to grow linear memory to {} MiB, past the {} MiB limit",
                        desired >> 20,
                        self.limits.memory_bytes >> 20
                    )));
                }
                if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                    return Err(HostFault::Timeout(deadline_ms));
                }
                Err(trap(e))
            }
        }
    }

    async fn describe(&self) -> Result<PluginInfo, HostFault> {
        if let Runtime::Native(_) = &self.runtime {
            return Ok(self.meta.info.clone());
        }
        let mut store = self.store(OutboundAccess::default(), FaultLog::default());
        let info = self
            .guarded(&mut store, async |store| match &self.runtime {
                Runtime::Poster(pre) => {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    instance
                        .orchestrator_plugin_metadata()
                        .call_describe(store)
                        .await
                }
                Runtime::Classifier(pre) => {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    instance
                        .orchestrator_plugin_metadata()
                        .call_describe(store)
                        .await
                }
                Runtime::Native(_) => unreachable!("answered above"),
            })
            .await?;
        Ok(convert::plugin_info(info).bounded())
    }

    /// One attempt of `job`, reaching only what `access` grants. What the
    /// plugin returns is cut to the sizes the host keeps
    /// ([`orchestrator_contract::text`]).
    ///
    /// # Panics
    /// If this plugin is not a poster; check [`Plugin::kind`] first.
    pub async fn post(&self, job: &JobContext, access: OutboundAccess) -> Attempt {
        match self.post_unbounded(job, access).await {
            Attempt::Posted(receipt) => Attempt::Posted(receipt.bounded()),
            Attempt::Failed { failure, fault } => Attempt::Failed {
                failure: failure.map(PostFailure::bounded),
                fault: fault.map(HostFault::bounded),
            },
        }
    }

    async fn post_unbounded(&self, job: &JobContext, access: OutboundAccess) -> Attempt {
        if let Runtime::Native(native) = &self.runtime {
            assert_eq!(
                self.meta.kind,
                PluginKind::Poster,
                "post called on a classifier"
            );
            return match native.post(job, &access, self.limits.deadline).await {
                Ok(Ok(receipt)) => Attempt::Posted(receipt),
                Ok(Err(failure)) => Attempt::Failed {
                    failure: Some(failure),
                    fault: None,
                },
                Err(fault) => Attempt::Failed {
                    failure: None,
                    fault: Some(fault),
                },
            };
        }
        let Runtime::Poster(pre) = &self.runtime else {
            panic!("post called on a {} plugin", self.meta.kind);
        };
        let faults = FaultLog::default();
        let mut store = self.store(access, faults.clone());
        let job = convert::job(job);
        let result = self
            .guarded(&mut store, async |store| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .orchestrator_plugin_post()
                    .call_post(store, &job)
                    .await
            })
            .await;
        // The first fault the host saw is the one that explains the failure.
        let fault = faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .cloned();
        match result {
            Ok(Ok(receipt)) => Attempt::Posted(convert::receipt(receipt)),
            Ok(Err(failure)) => Attempt::Failed {
                failure: Some(convert::failure_from_wit(failure)),
                fault,
            },
            // A fault the hooks saw (a denied request) explains the trap or
            // timeout that followed it.
            Err(e) => Attempt::Failed {
                failure: None,
                fault: Some(fault.unwrap_or(e)),
            },
        }
    }

    /// Asks this classifier about a failure; its answer is cut to the
    /// sizes the host keeps ([`orchestrator_contract::text`]).
    ///
    /// # Panics
    /// If this plugin is not a classifier; check [`Plugin::kind`] first.
    pub async fn classify(&self, report: &FailureReport) -> Result<Verdict, HostFault> {
        self.classify_unbounded(report)
            .await
            .map(Verdict::bounded)
            .map_err(HostFault::bounded)
    }

    async fn classify_unbounded(&self, report: &FailureReport) -> Result<Verdict, HostFault> {
        if let Runtime::Native(native) = &self.runtime {
            assert_eq!(
                self.meta.kind,
                PluginKind::Classifier,
                "classify called on a poster"
            );
            return native.classify(report, self.limits.deadline).await;
        }
        let Runtime::Classifier(pre) = &self.runtime else {
            panic!("classify called on a {} plugin", self.meta.kind);
        };
        let mut store = self.store(OutboundAccess::default(), FaultLog::default());
        let report = convert::report(report);
        let verdict = self
            .guarded(&mut store, async |store| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .orchestrator_plugin_classify()
                    .call_classify(store, &report)
                    .await
            })
            .await?;
        Ok(convert::verdict(verdict))
    }
}

/// A wasmtime error from running guest code, as a host fault.
fn trap(e: wasmtime::Error) -> HostFault {
    HostFault::Trap(one_line(&format!("{e:#}")))
}
