//! Why a plugin was refused.

use std::path::PathBuf;

/// Why a plugin file could not be used. Each variant renders as one line
/// that names the file, what is wrong, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin {path}: file not found; check the path or the plugin search path")]
    NotFound { path: PathBuf },

    #[error("plugin {path}: is a directory; give the path of a .wasm file")]
    Directory { path: PathBuf },

    #[error("plugin {path}: cannot read the file: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "plugin {path}: not a WebAssembly file (no `\\0asm` header); plugins are .wasm components"
    )]
    NotWasm { path: PathBuf },

    #[error(
        "plugin {path}: a core WebAssembly module, not a component; build it for wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    CoreModule { path: PathBuf },

    #[error("plugin {path}: the component is invalid and cannot be compiled: {reason}")]
    Compile { path: PathBuf, reason: String },

    #[error(
        "plugin {path}: implements neither the poster nor the classifier world of {package} (it exports none of `{package}/post` or `{package}/classify`)"
    )]
    NoWorld {
        path: PathBuf,
        package: &'static str,
    },

    #[error(
        "plugin {path}: exports both `post` and `classify`; a plugin implements exactly one world"
    )]
    BothWorlds { path: PathBuf },

    #[error(
        "plugin {path}: built against contract {package}@{found}, but this host accepts {package}@{accepted}; rebuild the plugin against a compatible version"
    )]
    IncompatibleContract {
        path: PathBuf,
        package: &'static str,
        found: semver::Version,
        accepted: semver::VersionReq,
    },

    #[error("plugin {path}: does not fit the {kind} world: {reason}")]
    Mismatch {
        path: PathBuf,
        kind: orchestrator_contract::PluginKind,
        reason: String,
    },

    #[error("plugin {path}: `describe` failed: {reason}")]
    Describe { path: PathBuf, reason: String },
}

impl LoadError {
    /// The short reason without the path, for tables that show the path apart.
    pub fn reason(&self) -> String {
        let line = self.to_string();
        match line.split_once(": ") {
            Some((_, rest)) => rest.to_owned(),
            None => line,
        }
    }
}
