//! [`LimitArgs`]: what every plugin call may use (time, memory, response
//! size, hosts), whether native plugins may load, and where compiled
//! plugins are cached — the plugin host's side of the flags.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use orchestrator_plugin_host::{CompileCache, Limits, NativePolicy};

use crate::commands::batch::{MAX_MIB, MAX_SECONDS};
use crate::exit::{self, Exit};
use crate::flags::at_least;

/// What every plugin call may use; the host enforces these.
#[derive(Debug, Args)]
#[command(next_help_heading = "Plugin Limits")]
pub struct LimitArgs {
    /// Wall-clock seconds one attempt (or classification) may take
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60,
        value_parser = at_least::<u64>(1).at_most(MAX_SECONDS, " (a year)"),
        allow_negative_numbers = true,
        global = true
    )]
    pub job_timeout: u64,
    /// Linear memory per plugin instance, in MiB
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 64,
        value_parser = at_least::<u64>(1).at_most(MAX_MIB, " (MiB)"),
        allow_negative_numbers = true,
        global = true
    )]
    pub plugin_memory: u64,
    /// Largest HTTP response body a poster may receive, in MiB
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 4,
        value_parser = at_least::<u64>(1).at_most(MAX_MIB, " (MiB)"),
        allow_negative_numbers = true,
        global = true
    )]
    pub response_limit: u64,
    /// Largest plugin file the host reads, in MiB; only regular files are
    /// read at all
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 256,
        value_parser = at_least::<u64>(1).at_most(MAX_MIB, " (MiB)"),
        allow_negative_numbers = true,
        global = true
    )]
    pub max_plugin_size: u64,
    /// Also let posters reach HOST[:PORT] (repeatable); by default a poster
    /// reaches only its account's base-URL host
    #[arg(long = "allow-host", value_name = "HOST[:PORT]", global = true)]
    pub allow_hosts: Vec<String>,
    /// Also trust the certificate authorities in this PEM file for
    /// platform connections and a PostgreSQL store's (repeatable), e.g. a
    /// private instance's
    #[arg(long = "ca-file", value_name = "PEM", global = true)]
    pub ca_files: Vec<PathBuf>,

    #[command(flatten)]
    pub cache: CacheArgs,

    #[command(flatten)]
    pub native: NativeArgs,
}

/// Whether trusted native plugins may load.
#[derive(Debug, Args)]
pub struct NativeArgs {
    /// Let native plugins (shared libraries) load; they run unsandboxed,
    /// with the host's access to files, network and the accounts' tokens
    #[arg(long, global = true)]
    pub allow_native: bool,
    /// Load only native plugins with this SHA-256 (repeatable); see
    /// `plugins inspect` for a file's hash
    #[arg(long = "native-sha256", value_name = "HEX", global = true)]
    pub native_sha256: Vec<String>,
}

impl NativeArgs {
    pub fn policy(&self) -> NativePolicy {
        NativePolicy {
            allow: self.allow_native,
            sha256_pins: self
                .native_sha256
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
        }
    }
}

/// Where compiled plugins are kept between starts.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Compile plugins afresh instead of using the compiled-plugin cache
    /// (ORCHESTRATOR_CACHE_DIR, or e.g. ~/.cache/orchestrator/compiled)
    #[arg(long, global = true)]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The cache to use, unless it is turned off.
    pub fn cache(&self) -> Option<CompileCache> {
        if self.no_cache {
            return None;
        }
        std::env::var_os("ORCHESTRATOR_CACHE_DIR")
            .filter(|dir| !dir.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(CompileCache::default_dir)
            .map(CompileCache::new)
    }
}

impl LimitArgs {
    /// The extra certificate authorities of `--ca-file`.
    pub fn trusted_certificates(
        &self,
    ) -> Result<Vec<orchestrator_plugin_host::outbound::Certificate>> {
        let mut all = Vec::new();
        for file in &self.ca_files {
            let certs = orchestrator_plugin_host::outbound::read_pem_certificates(file)
                .map_err(|e| Exit::new(exit::USAGE, format!("--ca-file: {e}")))?;
            all.extend(certs);
        }
        Ok(all)
    }

    /// The host's limits; clap checked each value's range (at most
    /// [`MAX_MIB`]).
    pub fn limits(&self) -> Result<Limits> {
        Ok(Limits {
            deadline: std::time::Duration::from_secs(self.job_timeout),
            memory_bytes: (self.plugin_memory as usize) << 20,
            response_bytes: self.response_limit << 20,
            plugin_file_bytes: self.max_plugin_size << 20,
            ..Limits::default()
        })
    }
}
