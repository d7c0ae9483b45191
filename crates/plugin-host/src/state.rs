//! [`HostState`]: what one call's `Store` holds — the WASI context that
//! grants nothing, the outbound HTTP hooks, the memory limiter — and the
//! linker that gives a plugin the host functions of its world.

use std::sync::Arc;

use orchestrator_world::{log, media, v0_2, v0_3};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::Limits;
use crate::media::Attachments;
use crate::outbound::{self, FaultLog, OutboundAccess, OutboundHooks};

/// Refuses memory growth past the limit, and remembers that it did so a
/// trap that follows is reported as out-of-memory.
pub(crate) struct MemoryLimiter {
    max: usize,
    pub(crate) refused: Option<usize>,
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
pub(crate) struct HostState {
    plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    pub(crate) memory: MemoryLimiter,
    /// The job's attachments, checked by the host: what `media` serves.
    pub(crate) media: Attachments,
}

impl HostState {
    pub(crate) fn new(
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
            media: Attachments::default(),
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
        self.plugin_log(level, message);
    }
}

/// The frozen contracts' `log` imports: their levels are today's, under
/// each version's own name.
macro_rules! frozen_log {
    ($($version:ident),*) => {$(
        impl $version::log::Host for HostState {
            async fn log(&mut self, level: $version::log::Level, message: String) {
                use $version::log::Level as Old;
                let level = match level {
                    Old::Trace => log::Level::Trace,
                    Old::Debug => log::Level::Debug,
                    Old::Info => log::Level::Info,
                    Old::Warn => log::Level::Warn,
                    Old::Error => log::Level::Error,
                };
                self.plugin_log(level, message);
            }
        }
    )*};
}

frozen_log!(v0_2, v0_3);

/// A poster's own job's attachments, and nothing else: the names, types,
/// sizes and alt texts, and the checked bytes in bounded pieces.
impl media::Host for HostState {
    async fn attachments(&mut self) -> Vec<media::Attachment> {
        self.media
            .iter()
            .enumerate()
            .map(|(index, a)| media::Attachment {
                index: index as u32,
                name: a.name.clone(),
                media_type: a.media_type.clone(),
                size: a.bytes.len() as u64,
                description: a.description.clone(),
            })
            .collect()
    }

    async fn read(
        &mut self,
        index: u32,
        offset: u64,
        length: u32,
    ) -> Result<Vec<u8>, media::MediaError> {
        self.media
            .read(index, offset, length)
            .map(|bytes| bytes.to_vec())
            .ok_or(media::MediaError::NoSuchAttachment(index))
    }
}

impl HostState {
    fn plugin_log(&self, level: log::Level, message: String) {
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

/// A linker for one world: the WASI a guest's standard library needs to
/// start (the `WasiCtx` grants none of its resources), `log` of every
/// contract version served, and for posters outbound HTTP and `media`.
pub(crate) fn linker(engine: &Engine, poster: bool) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    if poster {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        media::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    }
    log::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    v0_3::log::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    v0_2::log::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(linker)
}
