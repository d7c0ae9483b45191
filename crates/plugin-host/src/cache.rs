//! [`CompileCache`]: compiled plugins on disk, so a second start does not
//! compile again.
//!
//! An entry is keyed by the plugin file's SHA-256 and the engine's
//! compatibility hash (wasmtime's version and every setting that changes the
//! machine code), so a changed plugin, a new orchestrator or another engine
//! configuration simply misses. The entry holds a SHA-256 of the compiled
//! bytes in front of them: a truncated, corrupt or foreign file fails that
//! check and is compiled again (and replaced) rather than handed to
//! wasmtime, which may only deserialize what it serialized itself.
//! Entries are written to a temporary file and renamed, so a reader never
//! sees half of one. An entry not used for [`UNUSED_FOR`] is removed the
//! next time an entry is stored, so old builds do not pile up.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The compiled-plugin cache in one folder.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheUse {
    /// Loaded from the cache.
    Hit,
    /// Compiled, and stored for next time.
    Stored,
    /// Compiled; the cache is off or could not be written.
    Compiled,
    /// Nothing to compile: a native library.
    NotCompiled,
}

const DIGEST: usize = 32;

/// How long an unused entry is kept.
pub const UNUSED_FOR: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

impl CompileCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CompileCache { dir: dir.into() }
    }

    /// The user's cache folder for compiled plugins, e.g.
    /// `~/.cache/orchestrator/compiled`.
    pub fn default_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "orchestrator")
            .map(|d| d.cache_dir().join("compiled"))
    }

    /// Where the entry for a plugin with this SHA-256 lives for `engine`.
    fn entry(&self, engine: &Engine, plugin_sha256: &str) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{plugin_sha256}-{:016x}.cwasm", hasher.finish()))
    }

    /// The cached component, when there is a sound entry for it.
    pub fn get(&self, engine: &Engine, plugin_sha256: &str) -> Option<Component> {
        let path = self.entry(engine, plugin_sha256);
        let bytes = std::fs::read(&path).ok()?;
        let Some(compiled) = checked(&bytes) else {
            tracing::warn!(path = %path.display(), "ignoring a corrupt compiled-plugin cache entry");
            return None;
        };
        // SAFETY: wasmtime requires the bytes to come from `serialize` of a
        // compatible engine. They do: the digest in front proves they are the
        // bytes `put` wrote (not a truncated, corrupted or foreign file), and
        // wasmtime itself checks the engine's version and settings in the
        // header, refusing (not misreading) a mismatch.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, compiled) };
        match component {
            Ok(component) => {
                // Used now: keep it through the next pruning.
                let _ = std::fs::File::options()
                    .append(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                Some(component)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring a compiled-plugin cache entry: {e:#}");
                None
            }
        }
    }

    /// Stores `component`; failures (a read-only or full disk) only cost
    /// the next start a compile, so they are logged, not returned.
    pub fn put(&self, engine: &Engine, plugin_sha256: &str, component: &Component) -> bool {
        let write = || -> std::io::Result<()> {
            let compiled = component.serialize().map_err(std::io::Error::other)?;
            std::fs::create_dir_all(&self.dir)?;
            let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
            use std::io::Write;
            file.write_all(&Sha256::digest(&compiled))?;
            file.write_all(&compiled)?;
            file.persist(self.entry(engine, plugin_sha256))
                .map_err(|e| e.error)?;
            Ok(())
        };
        match write() {
            Ok(()) => {
                self.prune();
                true
            }
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), "cannot cache a compiled plugin: {e}");
                false
            }
        }
    }
}

impl CompileCache {
    /// Removes entries unused for [`UNUSED_FOR`]; best effort.
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = std::time::SystemTime::now();
        for entry in entries.flatten() {
            let path = entry.path();
            let stale = path.extension().is_some_and(|e| e == "cwasm")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > UNUSED_FOR));
            if stale {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The compiled bytes of an entry whose digest matches them.
fn checked(entry: &[u8]) -> Option<&[u8]> {
    if entry.len() <= DIGEST {
        return None;
    }
    let (digest, compiled) = entry.split_at(DIGEST);
    (Sha256::digest(compiled).as_slice() == digest).then_some(compiled)
}
