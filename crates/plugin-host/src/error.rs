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

    #[error(
        "plugin {path}: not a regular file (a device or a pipe); give the path of a .wasm file"
    )]
    NotRegular { path: PathBuf },

    #[error(
        "plugin {path}: larger than --max-plugin-size {limit_mib} MiB; raise the limit if the file is right"
    )]
    TooLarge { path: PathBuf, limit_mib: u64 },

    #[error("plugin {path}: cannot read the file: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "plugin {path}: not a WebAssembly file (no `\\0asm` header) nor a native library; plugins are .wasm components (or, with --allow-native, shared libraries)"
    )]
    NotWasm { path: PathBuf },

    #[error(
        "plugin {path}: a native library (sha256 {sha256}), which would run unsandboxed with all of the host's access; pass --allow-native to trust it, and --native-sha256 {sha256} to trust only this build"
    )]
    NativeNotAllowed { path: PathBuf, sha256: String },

    #[error(
        "plugin {path}: a native library whose sha256 {sha256} is not pinned; pass --native-sha256 {sha256} (or add it to native-sha256 in orchestrator.toml) to trust this build"
    )]
    NativeNotPinned { path: PathBuf, sha256: String },

    #[error(
        "plugin {path}: this native library changed since this process loaded it, and a process cannot load a second build of one library; restart to use the new build"
    )]
    NativeChanged { path: PathBuf },

    #[error("plugin {path}: cannot load the native library: {reason}")]
    NativeOpen { path: PathBuf, reason: String },

    #[error(
        "plugin {path}: the native library has no `{symbol}`; it does not implement the orchestrator's native plugin ABI (see the README's Native plugins)"
    )]
    NativeSymbol { path: PathBuf, symbol: &'static str },

    #[error(
        "plugin {path}: `orchestrator_abi_version` says {found:?}, not a semver version; build the plugin against orchestrator-native-plugin or the README's ABI"
    )]
    NativeVersion { path: PathBuf, found: String },

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
        accepted: orchestrator_contract::AcceptedVersions,
    },

    #[error("plugin {path}: does not fit the {kind} world: {reason}")]
    Mismatch {
        path: PathBuf,
        kind: orchestrator_contract::PluginKind,
        reason: String,
    },

    #[error(
        "plugin {path}: a classifier is given no network, but it imports {import}; build it without HTTP (componentize-js: --disable http fetch-event)"
    )]
    ClassifierWithNetwork { path: PathBuf, import: String },

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
