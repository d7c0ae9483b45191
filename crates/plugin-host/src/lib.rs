//! Loads, checks and runs orchestrator plugins.
//!
//! Start from [`PluginHost`] ([`load`]): it owns the wasmtime engine
//! ([`engine`]) and one linker per world, and [`PluginHost::load`] turns a
//! file into a [`Plugin`] — a [`Poster`] or a [`Classifier`] ([`plugin`]),
//! each running as a wasm component or, with `--allow-native`, a trusted
//! native library. A component is compiled, its kind read from its
//! exports, its contract version checked against
//! [`orchestrator_contract::accepted_versions`], type-checked with
//! `instantiate_pre`, and described. A bad file is refused with a
//! [`LoadError`] that renders as one line.
//!
//! Every call gets a fresh `Store` ([`state`]) with nothing granted but
//! what the host decides: no filesystem, environment or sockets; outbound
//! HTTP for posters only to the hosts in its [`OutboundAccess`], with
//! credentials added by the host ([`outbound`]); a contract-0.4.0 poster
//! reads its own job's attachments, as the host checked them ([`media`]).
//! Plugin discovery for `plugins list` is in [`discover`].

mod cache;
mod convert;
pub mod discover;
mod engine;
mod error;
mod inspect;
mod load;
pub mod media;
mod native;
pub mod outbound;
mod plugin;
mod state;

use std::path::PathBuf;

use orchestrator_contract::{PluginInfo, PluginKind};

pub use cache::{CacheUse, CompileCache};
pub use engine::{EngineError, Limits};
pub use error::LoadError;
pub use inspect::Interfaces;
pub use load::{Examined, PluginHost};
pub use media::{Attachment, Attachments};
pub use native::NativePolicy;
pub use outbound::{OutboundAccess, Secret};
pub use plugin::{Attempt, Classifier, Plugin, Poster};

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// wasmtime's messages may span lines; a refusal is one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
