//! [`PluginHost`]: the engine, one linker per world and the host's
//! policies; [`PluginHost::load`] turns a file into a checked [`Plugin`],
//! and [`PluginHost::examine`] keeps what it learned on the way, for
//! `plugins list` and `plugins inspect`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use orchestrator_contract::{HostFault, PluginInfo, PluginKind, RateBudget};
use orchestrator_world::classifier::ClassifierPre;
use orchestrator_world::poster::PosterPre;
use orchestrator_world::{v0_2, v0_3};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::engine::{self, EngineError, Limits};
use crate::plugin::{
    Calls, Classifier, ClassifierBackend, Plugin, Poster, PosterBackend, Versioned,
};
use crate::state::{self, HostState};
use crate::{
    Backend, CacheUse, CompileCache, Interfaces, LoadError, NativePolicy, PluginMeta, hex, inspect,
    native, one_line, outbound,
};

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

impl PluginHost {
    /// A host with the default [`Limits`].
    pub fn new() -> Result<Self, EngineError> {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Result<Self, EngineError> {
        let engine = engine::start(&limits)?;
        let link =
            |poster| state::linker(&engine, poster).map_err(|e| EngineError(format!("{e:#}")));
        let poster_linker = link(true)?;
        let classifier_linker = link(false)?;
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
        // wasmtime would say only that the import has no implementation;
        // the reason is the contract's: classifiers are pure.
        if kind == PluginKind::Classifier
            && let Some(import) = interfaces
                .imports
                .iter()
                .find(|i| i.starts_with("wasi:http/"))
        {
            return Err(LoadError::ClassifierWithNetwork {
                path: path.to_owned(),
                import: import.clone(),
            });
        }
        let contract = inspect::check_version(path, version.as_ref())?;
        // A 0.2.x or 0.3.x component links that version's interfaces; the
        // rest are current.
        let old = (contract.major == 0).then_some(contract.minor);
        let mismatch = |e: wasmtime::Error| LoadError::Mismatch {
            path: path.to_owned(),
            kind,
            reason: one_line(&format!("{e:#}")),
        };
        let meta = PluginMeta {
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
        };
        let described = |e: HostFault| LoadError::Describe {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        Ok(match kind {
            PluginKind::Poster => {
                let pre = self
                    .poster_linker
                    .instantiate_pre(&component)
                    .map_err(mismatch)?;
                let pre = match old {
                    Some(2) => {
                        Versioned::V0_2(v0_2::poster::PosterPre::new(pre).map_err(mismatch)?)
                    }
                    Some(3) => {
                        Versioned::V0_3(v0_3::poster::PosterPre::new(pre).map_err(mismatch)?)
                    }
                    _ => Versioned::Current(PosterPre::new(pre).map_err(mismatch)?),
                };
                let mut poster = Poster {
                    meta,
                    backend: PosterBackend::Wasm(pre),
                    calls: self.calls(),
                    auth: Default::default(),
                    budgets: Default::default(),
                };
                poster.meta.info = poster.describe().await.map_err(described)?;
                poster.budgets = Arc::new(
                    RateBudget::checked(poster.describe_limits().await.map_err(described)?)
                        .map_err(|reason| LoadError::Describe {
                            path: path.to_owned(),
                            reason,
                        })?,
                );
                poster.auth = Arc::new(
                    poster
                        .describe_auth()
                        .await
                        .map_err(described)?
                        .checked()
                        .map_err(|reason| LoadError::Describe {
                            path: path.to_owned(),
                            reason: format!("it describes its platform's login wrongly: {reason}"),
                        })?,
                );
                Plugin::Poster(poster)
            }
            PluginKind::Classifier => {
                let pre = self
                    .classifier_linker
                    .instantiate_pre(&component)
                    .map_err(mismatch)?;
                let pre = match old {
                    Some(2) => Versioned::V0_2(
                        v0_2::classifier::ClassifierPre::new(pre).map_err(mismatch)?,
                    ),
                    Some(3) => Versioned::V0_3(
                        v0_3::classifier::ClassifierPre::new(pre).map_err(mismatch)?,
                    ),
                    _ => Versioned::Current(ClassifierPre::new(pre).map_err(mismatch)?),
                };
                let mut classifier = Classifier {
                    meta,
                    backend: ClassifierBackend::Wasm(pre),
                    calls: self.calls(),
                };
                classifier.meta.info = classifier.describe().await.map_err(described)?;
                Plugin::Classifier(classifier)
            }
        })
    }

    /// What every call of a plugin loaded here shares.
    fn calls(&self) -> Calls {
        Calls {
            engine: self.engine.clone(),
            limits: self.limits,
            pool: self.pool.clone(),
        }
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
        let meta = PluginMeta {
            path: path.to_owned(),
            sha256,
            size,
            info: loaded.info.bounded(),
            kind: loaded.kind,
            contract: loaded.contract,
            interfaces: loaded.interfaces,
            cache: CacheUse::NotCompiled,
            backend: Backend::Native,
        };
        Ok(match loaded.kind {
            PluginKind::Poster => Plugin::Poster(Poster {
                meta,
                backend: PosterBackend::Native(loaded.native),
                calls: self.calls(),
                auth: Default::default(),
                budgets: Default::default(),
            }),
            PluginKind::Classifier => Plugin::Classifier(Classifier {
                meta,
                backend: ClassifierBackend::Native(loaded.native),
                calls: self.calls(),
            }),
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

/// The host's own requests — logins and refreshes — go through the same
/// pool as the plugins', with the same trusted roots.
impl orchestrator_auth::Transport for PluginHost {
    fn send(
        &self,
        request: http::Request<bytes::Bytes>,
        limit: usize,
    ) -> orchestrator_auth::Exchange<'_> {
        Box::pin(outbound::exchange(self.pool.clone(), request, limit))
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
