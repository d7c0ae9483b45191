//! What a component file is, before anything of it runs.

use std::path::Path;

use orchestrator_contract::{CONTRACT_PACKAGE, PluginKind, accepted_versions};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::LoadError;

/// The import or export names of a component, e.g.
/// `orchestrator:plugin/post@0.1.0` or `wasi:http/outgoing-handler@0.2.12`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Interfaces {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

pub(crate) fn interfaces(engine: &Engine, component: &Component) -> Interfaces {
    let ty = component.component_type();
    Interfaces {
        imports: ty
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect(),
        exports: ty
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect(),
    }
}

/// Checks the file's header so that a text file or a core module gets its
/// own message instead of a compiler error.
pub(crate) fn check_format(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(LoadError::NotWasm {
            path: path.to_owned(),
        });
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(LoadError::CoreModule {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Splits `orchestrator:plugin/post@0.1.0` into `("post", 0.1.0)`.
fn contract_export(name: &str) -> Option<(&str, Option<semver::Version>)> {
    let rest = name.strip_prefix(CONTRACT_PACKAGE)?.strip_prefix('/')?;
    match rest.split_once('@') {
        Some((iface, version)) => Some((iface, semver::Version::parse(version).ok())),
        None => Some((rest, None)),
    }
}

/// The plugin's kind and the contract version it was built against, read
/// from its export names; `None` for an export without a version.
pub(crate) fn detect(
    path: &Path,
    interfaces: &Interfaces,
) -> Result<(PluginKind, Option<semver::Version>), LoadError> {
    let mut found = Vec::new();
    for name in &interfaces.exports {
        if let Some((iface, version)) = contract_export(name) {
            for kind in [PluginKind::Poster, PluginKind::Classifier] {
                if iface == kind.interface() {
                    found.push((kind, version.clone()));
                }
            }
        }
    }
    match found.as_slice() {
        [] => Err(LoadError::NoWorld {
            path: path.to_owned(),
            package: CONTRACT_PACKAGE,
        }),
        [one] => Ok(one.clone()),
        _ => Err(LoadError::BothWorlds {
            path: path.to_owned(),
        }),
    }
}

/// Refuses contract versions outside [`accepted_versions`].
pub(crate) fn check_version(
    path: &Path,
    version: Option<&semver::Version>,
) -> Result<semver::Version, LoadError> {
    // An unversioned export predates versioning: treat it as 0.0.0, which
    // no host accepts, rather than guessing.
    let version = version
        .cloned()
        .unwrap_or_else(|| semver::Version::new(0, 0, 0));
    let accepted = accepted_versions();
    if !accepted.matches(&version) {
        return Err(LoadError::IncompatibleContract {
            path: path.to_owned(),
            package: CONTRACT_PACKAGE,
            found: version,
            accepted,
        });
    }
    Ok(version)
}
