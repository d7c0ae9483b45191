//! The flags of the batch actions, and what they share: opening the store,
//! reading the retry configuration, seeding.
//!
//! [`BatchArgs`] is the one definition of every batch option: the command
//! line, `orchestrator.toml` (see `config.rs`) and `config show` all read
//! it; a flag the file may not set says so with `command_line_only = true`
//! ([`CommandLineOnly`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::{Arg, ArgGroup, Args};
use orchestrator_plugin_host::{CompileCache, Limits, NativePolicy};
use orchestrator_retry::RetryConfig;
use orchestrator_runner::input;
use orchestrator_store::{
    DEFAULT_LEASE, NewJob, PostgresStore, SqliteStore, Store, is_postgres_url,
};

use crate::exit::{self, Exit};

/// Marks, on a flag's definition, that only the command line gives it:
/// actions and one-off requests (`--run`, `--force-reseed`, `--take-over`,
/// …) make no sense as lasting settings, so `orchestrator.toml` refuses
/// them. Written `#[arg(..., command_line_only = true)]`.
pub trait CommandLineOnly {
    fn command_line_only(self, yes: bool) -> Self;
}

/// How the mark is kept: clap keeps no data of ours on an [`Arg`] (its
/// `ArgExt` is unstable), so a marked flag joins a group of its own,
/// `command-line-only:ID`. A group of one changes neither parsing nor
/// help. One group for all of them would not do: in each subcommand, clap
/// rebuilds it from the global flags as a group of which only one member
/// may be given.
const COMMAND_LINE_ONLY: &str = "command-line-only:";

impl CommandLineOnly for Arg {
    fn command_line_only(self, yes: bool) -> Self {
        if !yes {
            return self;
        }
        // clap takes only `'static` ids (its `string` feature is off): a
        // few bytes per marked flag, each time the command is built.
        let group: &'static str =
            Box::leak(format!("{COMMAND_LINE_ONLY}{}", self.get_id()).into_boxed_str());
        self.group(group)
    }
}

/// Whether `arg` of the built `command` is marked [`CommandLineOnly`].
pub fn is_command_line_only(command: &clap::Command, arg: &Arg) -> bool {
    let group = format!("{COMMAND_LINE_ONLY}{}", arg.get_id());
    command.get_groups().any(|g| g.get_id() == group.as_str())
}

/// The state file used when `--state-file` is not given.
pub const DEFAULT_STATE_FILE: &str = "orchestrator-state.sqlite";

/// `--state-file` as a PostgreSQL URL, when it is one.
pub fn postgres_url(path: &Path) -> Option<&str> {
    path.to_str().filter(|p| is_postgres_url(p))
}

/// A store's name for messages: a URL loses its password.
pub fn store_name(path: &Path) -> String {
    match postgres_url(path) {
        Some(url) => orchestrator_store::without_password(url),
        None => path.display().to_string(),
    }
}

/// Opens the store at `path`, a state file or a PostgreSQL URL, creating
/// it (or bringing its schema up to date) if needed.
pub fn open_at(path: &Path, lease: Duration) -> Result<Box<dyn Store>> {
    Ok(match postgres_url(path) {
        Some(url) => Box::new(PostgresStore::open(url, lease)?),
        None => Box::new(SqliteStore::open(path)?),
    })
}

/// Opens a store that must already exist, for reading only where it can
/// be (the commands that only look: `explain`, `report`).
pub fn open_existing(path: &Path) -> Result<Box<dyn Store>> {
    if postgres_url(path).is_some() {
        return open_at(path, DEFAULT_LEASE);
    }
    if !path.exists() {
        return Err(Exit::new(
            exit::USAGE,
            format!(
                "no state file at {}; give --state-file PATH",
                path.display()
            ),
        )
        .into());
    }
    Ok(Box::new(SqliteStore::open_read_only(path)?))
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").args(["run", "status", "stop_all"])))]
pub struct BatchArgs {
    /// Import the jobs (if given) and run them: a new run retries every job
    /// still open, in passes; a run cut short is resumed instead.
    #[arg(long, help_heading = "Actions", command_line_only = true)]
    pub run: bool,
    /// Show where the batch stands; works while a run is in progress.
    #[arg(long, help_heading = "Actions", command_line_only = true)]
    pub status: bool,
    /// Ask every run on this state file to stop.
    #[arg(long, help_heading = "Actions", command_line_only = true)]
    pub stop_all: bool,
    /// Import the jobs into the state and exit; with --run too, it wins (as
    /// in the original tool): the jobs are imported, not run.
    #[arg(
        long,
        help_heading = "Actions",
        conflicts_with_all = ["status", "stop_all"],
        command_line_only = true
    )]
    pub seed_only: bool,

    /// A plugin (.wasm): exactly one poster, and any number of classifiers,
    /// consulted in the order given before the built-in rules.
    #[arg(long = "plugin", value_name = "PATH", global = true)]
    pub plugins: Vec<PathBuf>,
    /// Jobs file: JSON Lines of {"id", "account", "payload"}.
    #[arg(long, value_name = "FILE", global = true)]
    pub jobs: Option<PathBuf>,
    /// Accounts file (TOML): base URL and credential reference per account.
    #[arg(long, value_name = "FILE", global = true)]
    pub accounts_file: Option<PathBuf>,
    /// The store: an embedded SQLite file, or a PostgreSQL URL
    /// (postgres://user@host/db) that processes on several machines share.
    #[arg(long, value_name = "PATH|URL", default_value = DEFAULT_STATE_FILE, global = true)]
    pub state_file: PathBuf,
    /// Jobs in flight at once.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        allow_negative_numbers = true,
        global = true
    )]
    pub workers: i64,
    /// Discard the stored batch and import the jobs again.
    #[arg(long, global = true, command_line_only = true)]
    pub force_reseed: bool,
    /// With --run, when another run holds the state file: ask it to stop,
    /// wait --grace-period, then SIGTERM and 5 s later SIGKILL it (only its
    /// recorded pid, once checked to be an orchestrator holding this state
    /// file), and take over. --force-kill-ports is the original tool's name.
    #[arg(
        long,
        visible_alias = "force-kill-ports",
        global = true,
        command_line_only = true
    )]
    pub take_over: bool,
    /// Only these accounts' jobs (comma-separated).
    #[arg(long, value_name = "A,B,C", value_delimiter = ',', global = true)]
    pub accounts: Option<Vec<String>>,
    /// Print JSON (with --status).
    #[arg(long, global = true, command_line_only = true)]
    pub json: bool,
    /// Seconds attempts in flight may take to finish after --stop-all or a
    /// first signal; a second signal aborts at once.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30,
        allow_negative_numbers = true,
        global = true
    )]
    pub grace_period: i64,
    /// How long the platform remembers an idempotency key (Mastodon: one
    /// hour); an attempt cut off by a crash longer ago is held for review.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        allow_negative_numbers = true,
        global = true
    )]
    pub key_window: i64,
    /// Seconds a process holds the jobs it claimed from a PostgreSQL store
    /// without renewing (it renews every third of that); a process that
    /// dies loses its jobs to the others this long after.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = DEFAULT_LEASE.as_secs() as i64,
        allow_negative_numbers = true, global = true)]
    pub lease: i64,
    /// Seconds between progress lines during --run (0: none)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 5,
        allow_negative_numbers = true,
        global = true
    )]
    pub progress_interval: i64,
    /// With --run: retry the jobs held for review.
    #[arg(long, global = true, command_line_only = true)]
    pub release_held: bool,

    #[command(flatten)]
    pub retry: RetryArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    /// `[platform."host"]` tables of the configuration file.
    #[arg(skip)]
    pub platforms: std::collections::BTreeMap<String, crate::config::Platform>,
}

/// What every plugin call may use; the host enforces these.
#[derive(Debug, Args)]
#[command(next_help_heading = "Plugin Limits")]
pub struct LimitArgs {
    /// Wall-clock seconds one attempt (or classification) may take
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60,
        allow_negative_numbers = true,
        global = true
    )]
    pub job_timeout: i64,
    /// Linear memory per plugin instance, in MiB
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 64,
        allow_negative_numbers = true,
        global = true
    )]
    pub plugin_memory: i64,
    /// Largest HTTP response body a poster may receive, in MiB
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 4,
        allow_negative_numbers = true,
        global = true
    )]
    pub response_limit: i64,
    /// Largest plugin file the host reads, in MiB; only regular files are
    /// read at all
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 256,
        allow_negative_numbers = true,
        global = true
    )]
    pub max_plugin_size: i64,
    /// Also let posters reach HOST[:PORT] (repeatable); by default a poster
    /// reaches only its account's base-URL host
    #[arg(long = "allow-host", value_name = "HOST[:PORT]", global = true)]
    pub allow_hosts: Vec<String>,
    /// Also trust the certificate authorities in this PEM file for
    /// platform connections (repeatable), e.g. a private instance's
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

    pub fn limits(&self) -> Result<Limits> {
        let at_least_1 = |value: i64, flag: &str| -> Result<u64> {
            if value < 1 {
                return Err(Exit::new(exit::USAGE, format!("{flag} must be at least 1")).into());
            }
            Ok(value as u64)
        };
        let timeout = at_least_1(self.job_timeout, "--job-timeout")?;
        let memory = at_least_1(self.plugin_memory, "--plugin-memory")?;
        let response = at_least_1(self.response_limit, "--response-limit")?;
        let plugin_size = at_least_1(self.max_plugin_size, "--max-plugin-size")?;
        // Past these, a value is surely a mistake rather than a need.
        if memory > 4096 {
            return Err(
                Exit::new(exit::USAGE, "--plugin-memory must be at most 4096 (MiB)").into(),
            );
        }
        if response > 4096 {
            return Err(
                Exit::new(exit::USAGE, "--response-limit must be at most 4096 (MiB)").into(),
            );
        }
        if plugin_size > 4096 {
            return Err(
                Exit::new(exit::USAGE, "--max-plugin-size must be at most 4096 (MiB)").into(),
            );
        }
        Ok(Limits {
            deadline: std::time::Duration::from_secs(timeout),
            memory_bytes: (memory as usize) << 20,
            response_bytes: response << 20,
            plugin_file_bytes: plugin_size << 20,
            ..Limits::default()
        })
    }
}

/// The help heading's description is added by `main` (clap has no place
/// for one); keep the two in step.
pub const RETRY_HEADING: &str = "Retry Configuration";
pub const RETRY_DESCRIPTION: &str = "Options for controlling multi-pass retry behavior";

#[derive(Debug, Args)]
#[command(next_help_heading = RETRY_HEADING)]
pub struct RetryArgs {
    /// Maximum retry passes for failed jobs
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        allow_negative_numbers = true,
        global = true
    )]
    pub max_passes: i64,
    /// Delay in seconds between retry passes
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30,
        allow_negative_numbers = true,
        global = true
    )]
    pub retry_delay: i64,
    /// Max retries for infrastructure errors before giving up
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        allow_negative_numbers = true,
        global = true
    )]
    pub infra_retry_limit: i64,
    /// Do not retry jobs with unknown/unclassified errors
    #[arg(long, global = true)]
    pub no_retry_unknown: bool,
    /// Retry non-retryable failures too
    #[arg(long, global = true)]
    pub retry_include_non_retryable: bool,
    /// Back off exponentially between passes (from --retry-delay, doubling,
    /// with jitter) instead of waiting the same delay each time
    #[arg(long, global = true)]
    pub retry_backoff: bool,
    /// The longest wait --retry-backoff grows to, in seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 600,
        allow_negative_numbers = true,
        global = true
    )]
    pub retry_backoff_cap: i64,
    /// Stop the run when more than PCT percent of its attempts failed
    /// (judged after 10 attempts), e.g. when every token was revoked
    #[arg(long, value_name = "PCT", allow_negative_numbers = true, global = true)]
    pub halt_on_failure_rate: Option<f64>,
    /// The longest wait a platform or a classifier may ask for; a longer
    /// retry-after is clamped to this, with a log line
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        allow_negative_numbers = true,
        global = true
    )]
    pub max_retry_after: i64,
    /// How long a platform that is down (no answer, across accounts) is
    /// waited for before its failures count against the jobs again; 0:
    /// they always count
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 600,
        allow_negative_numbers = true,
        global = true
    )]
    pub outage_limit: i64,
}

/// The most `--max-retry-after` may be: a year. Waits longer than that are
/// surely a platform's mistake, and the host's arithmetic stays far from
/// overflow.
pub const MAX_RETRY_AFTER_LIMIT: i64 = 366 * 24 * 3600;

impl BatchArgs {
    /// Checks every flag before any work is done.
    pub fn validate(&self) -> Result<RetryConfig> {
        let config = RetryConfig::from_flags(
            self.retry.max_passes,
            self.retry.retry_delay,
            self.retry.infra_retry_limit,
            !self.retry.no_retry_unknown,
            self.retry.retry_include_non_retryable,
        )?;
        let config = if self.retry.retry_backoff {
            if self.retry.retry_backoff_cap < 0 {
                return Err(
                    Exit::new(exit::USAGE, "--retry-backoff-cap cannot be negative").into(),
                );
            }
            config.with_backoff(self.retry.retry_backoff_cap as u64)
        } else {
            config
        };
        if !(1..=MAX_RETRY_AFTER_LIMIT).contains(&self.retry.max_retry_after) {
            return Err(Exit::new(
                exit::USAGE,
                format!("--max-retry-after must be from 1 to {MAX_RETRY_AFTER_LIMIT} (a year)"),
            )
            .into());
        }
        if self.retry.outage_limit < 0 {
            return Err(Exit::new(exit::USAGE, "--outage-limit cannot be negative").into());
        }
        if let Some(pct) = self.retry.halt_on_failure_rate
            && !(0.0..=100.0).contains(&pct)
        {
            return Err(Exit::new(
                exit::USAGE,
                "--halt-on-failure-rate must be a percentage from 0 to 100",
            )
            .into());
        }
        self.limits.limits()?;
        if self.progress_interval < 0 {
            return Err(Exit::new(exit::USAGE, "--progress-interval cannot be negative").into());
        }
        if self.key_window < 0 {
            return Err(Exit::new(exit::USAGE, "--key-window cannot be negative").into());
        }
        if self.lease < 1 {
            return Err(Exit::new(exit::USAGE, "--lease must be at least 1 second").into());
        }
        if self.grace_period < 0 {
            return Err(Exit::new(exit::USAGE, "--grace-period cannot be negative").into());
        }
        if self.workers < 1 {
            return Err(Exit::new(exit::USAGE, "--workers must be at least 1").into());
        }
        if let Some(accounts) = &self.accounts
            && accounts.iter().any(|a| a.trim().is_empty())
        {
            return Err(Exit::new(exit::USAGE, "--accounts has an empty name").into());
        }
        Ok(config)
    }

    /// Opens the store, creating it (or bringing its schema up to date)
    /// if needed.
    pub fn open_store(&self) -> Result<Box<dyn Store>> {
        open_at(
            &self.state_file,
            Duration::from_secs(self.lease.max(1) as u64),
        )
    }

    /// Whether the store already exists: a PostgreSQL store always may.
    pub fn store_exists(&self) -> bool {
        postgres_url(&self.state_file).is_some() || self.state_file.exists()
    }

    /// The store's name for messages: a URL loses its password.
    pub fn store_name(&self) -> String {
        store_name(&self.state_file)
    }

    /// Reads `--jobs`; a file with a bad line is refused whole.
    pub fn read_jobs(jobs: &Path) -> Result<Vec<NewJob>> {
        Ok(input::read_jobs(jobs)?)
    }

    /// Imports jobs (after `--force-reseed` clears the store), keeping
    /// those already stored.
    pub fn seed(
        &self,
        store: &dyn Store,
        jobs: &[NewJob],
        source: &Path,
    ) -> Result<orchestrator_store::ImportSummary> {
        if self.force_reseed {
            let discarded = store.job_count()?;
            store.clear()?;
            eprintln!(
                "--force-reseed: discarded the stored batch ({}, with its runs and attempts)",
                crate::output::count(discarded, "job")
            );
        }
        Ok(store.import(jobs, &source.display().to_string())?)
    }
}
