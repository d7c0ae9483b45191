//! The flags of the batch actions, and what they share: opening the store,
//! reading the retry configuration, seeding.
//!
//! [`BatchArgs`] is the one definition of every batch option: the command
//! line, `orchestrator.toml` (see `config.rs`) and `config show` all read
//! it. A numeric flag is parsed into its type by a [`Bounded`] value
//! parser, so a value out of range is refused while clap parses, in the
//! original tool's words; a flag the file may not set says so with
//! `command_line_only = true` ([`CommandLineOnly`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::builder::TypedValueParser;
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
        value_parser = at_least::<u32>(1),
        allow_negative_numbers = true,
        global = true
    )]
    pub workers: u32,
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
    #[arg(
        long,
        value_name = "A,B,C",
        value_delimiter = ',',
        value_parser = Name,
        global = true
    )]
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
        value_parser = not_negative::<u64>(),
        allow_negative_numbers = true,
        global = true
    )]
    pub grace_period: u64,
    /// How long the platform remembers an idempotency key (Mastodon: one
    /// hour); an attempt cut off by a crash longer ago is held for review.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        value_parser = not_negative::<u64>(),
        allow_negative_numbers = true,
        global = true
    )]
    pub key_window: u64,
    /// Seconds a process holds the jobs it claimed from a PostgreSQL store
    /// without renewing (it renews every third of that); a process that
    /// dies loses its jobs to the others this long after.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = DEFAULT_LEASE.as_secs(),
        value_parser = at_least::<u64>(1).unit(" second"),
        allow_negative_numbers = true,
        global = true
    )]
    pub lease: u64,
    /// Seconds between progress lines during --run (0: none)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 5,
        value_parser = not_negative::<u64>(),
        allow_negative_numbers = true,
        global = true
    )]
    pub progress_interval: u64,
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
        value_parser = at_least::<u64>(1),
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

/// The most MiB `--plugin-memory`, `--response-limit` and
/// `--max-plugin-size` may be: past this, a value is surely a mistake
/// rather than a need.
pub const MAX_MIB: i64 = 4096;

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
        value_parser = at_least::<u32>(1),
        allow_negative_numbers = true,
        global = true
    )]
    pub max_passes: u32,
    /// Delay in seconds between retry passes
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30,
        value_parser = not_negative::<u64>(),
        allow_negative_numbers = true,
        global = true
    )]
    pub retry_delay: u64,
    /// Max retries for infrastructure errors before giving up
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        value_parser = at_least::<u32>(1),
        allow_negative_numbers = true,
        global = true
    )]
    pub infra_retry_limit: u32,
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
        value_parser = not_negative::<u64>(),
        allow_negative_numbers = true,
        global = true
    )]
    pub retry_backoff_cap: u64,
    /// Stop the run when more than PCT percent of its attempts failed
    /// (judged after 10 attempts), e.g. when every token was revoked
    #[arg(
        long,
        value_name = "PCT",
        value_parser = Percentage,
        allow_negative_numbers = true,
        global = true
    )]
    pub halt_on_failure_rate: Option<f64>,
    /// The longest wait a platform or a classifier may ask for; a longer
    /// retry-after is clamped to this, with a log line
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        value_parser = from_to::<u64>(1, MAX_RETRY_AFTER_LIMIT, " (a year)"),
        allow_negative_numbers = true,
        global = true
    )]
    pub max_retry_after: u64,
    /// How long a platform that is down (no answer, across accounts) is
    /// waited for before its failures count against the jobs again; 0:
    /// they always count
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 600,
        value_parser = not_negative::<u64>(),
        allow_negative_numbers = true,
        global = true
    )]
    pub outage_limit: u64,
}

/// The most `--max-retry-after` may be: a year. Waits longer than that are
/// surely a platform's mistake, and the host's arithmetic stays far from
/// overflow.
pub const MAX_RETRY_AFTER_LIMIT: i64 = 366 * 24 * 3600;

impl BatchArgs {
    /// The retry configuration the flags give; clap has checked every
    /// flag's range before any work is done.
    pub fn validate(&self) -> Result<RetryConfig> {
        let r = &self.retry;
        let config = RetryConfig::from_flags(
            i64::from(r.max_passes),
            i64::try_from(r.retry_delay).unwrap_or(i64::MAX),
            i64::from(r.infra_retry_limit),
            !r.no_retry_unknown,
            r.retry_include_non_retryable,
        )?;
        Ok(if r.retry_backoff {
            config.with_backoff(r.retry_backoff_cap)
        } else {
            config
        })
    }

    /// Opens the store, creating it (or bringing its schema up to date)
    /// if needed.
    pub fn open_store(&self) -> Result<Box<dyn Store>> {
        open_at(&self.state_file, Duration::from_secs(self.lease))
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

/// A flag's value that its parser refused, in the original tool's words
/// (`--max-passes must be at least 1`): `main` prints it alone, as the
/// original did, and `config.rs` puts the file's key and line in front.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{flag} {why}")]
pub struct BadValue {
    /// `--max-passes`
    pub flag: String,
    /// `must be at least 1`
    pub why: String,
}

/// The flag's name as messages give it.
fn flag_of(arg: Option<&Arg>) -> String {
    match arg.and_then(Arg::get_long) {
        Some(long) => format!("--{long}"),
        None => arg.map(|a| a.get_id().to_string()).unwrap_or_default(),
    }
}

/// Runs `check` as clap's value parser, so that its error is clap's
/// "invalid value" error with the reason as its source: a number that is
/// no number reads as clap says it, one out of range as [`BadValue`].
fn parse_with<T: Clone + Send + Sync + 'static>(
    command: &clap::Command,
    arg: Option<&Arg>,
    value: &std::ffi::OsStr,
    check: impl Fn(&str) -> Result<T, Box<dyn std::error::Error + Send + Sync>>
    + Clone
    + Send
    + Sync
    + 'static,
) -> Result<T, clap::Error> {
    check.parse_ref(command, arg, value)
}

/// The unsigned types a [`Bounded`] flag is parsed into.
pub trait Whole: TryFrom<i64> + Clone + Send + Sync + 'static {
    /// The largest value, as the message for a larger one gives it.
    const MAX: i64;
}

impl Whole for u32 {
    const MAX: i64 = u32::MAX as i64;
}

impl Whole for u64 {
    const MAX: i64 = i64::MAX;
}

/// How a [`Bounded`] flag words a value below its minimum.
#[derive(Debug, Clone, Copy)]
enum Below {
    /// `must be at least 1`, with a unit after the number if any.
    AtLeast(&'static str),
    /// `cannot be negative`
    NotNegative,
    /// `must be from 1 to 31622400 (a year)`, above the maximum too.
    FromTo(&'static str),
}

/// The value parser of a whole-number flag: parsed as a signed number, so
/// `-1` reaches the check (with `allow_negative_numbers`), checked against
/// its range, and given as `T`.
#[derive(Debug)]
pub struct Bounded<T> {
    min: i64,
    /// The maximum and the words after it in the message.
    max: Option<(i64, &'static str)>,
    below: Below,
    into: std::marker::PhantomData<fn() -> T>,
}

// Derived, these would ask `T: Clone`.
impl<T> Clone for Bounded<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Bounded<T> {}

/// `min` or more: "must be at least {min}".
pub const fn at_least<T>(min: i64) -> Bounded<T> {
    Bounded {
        min,
        max: None,
        below: Below::AtLeast(""),
        into: std::marker::PhantomData,
    }
}

/// 0 or more: "cannot be negative".
pub const fn not_negative<T>() -> Bounded<T> {
    Bounded {
        below: Below::NotNegative,
        ..at_least(0)
    }
}

/// From `min` to `max`, both said in one message: "must be from {min} to
/// {max}{note}".
pub const fn from_to<T>(min: i64, max: i64, note: &'static str) -> Bounded<T> {
    Bounded {
        min,
        max: Some((max, note)),
        below: Below::FromTo(note),
        into: std::marker::PhantomData,
    }
}

impl<T> Bounded<T> {
    /// The unit after the minimum: "must be at least 1 second".
    pub const fn unit(self, unit: &'static str) -> Self {
        Bounded {
            below: Below::AtLeast(unit),
            ..self
        }
    }

    /// At most `max` as well: "must be at most {max}{note}".
    pub const fn at_most(self, max: i64, note: &'static str) -> Self {
        Bounded {
            max: Some((max, note)),
            ..self
        }
    }
}

impl<T: Whole> Bounded<T> {
    /// `n` as a `T`, or the words for what is wrong with it.
    fn check(self, n: i64) -> Result<T, String> {
        let (min, max) = (self.min, self.max);
        if let Below::FromTo(note) = self.below
            && let Some((max, _)) = max
            && !(min..=max).contains(&n)
        {
            return Err(format!("must be from {min} to {max}{note}"));
        }
        if n < min {
            return Err(match self.below {
                Below::NotNegative => "cannot be negative".to_string(),
                Below::AtLeast(unit) | Below::FromTo(unit) => {
                    format!("must be at least {min}{unit}")
                }
            });
        }
        let (max, note) = max.unwrap_or((T::MAX, ""));
        match T::try_from(n) {
            Ok(value) if n <= max => Ok(value),
            _ => Err(format!("must be at most {max}{note}")),
        }
    }
}

impl<T: Whole> TypedValueParser for Bounded<T> {
    type Value = T;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let (bounds, flag) = (*self, flag_of(arg));
        parse_with(command, arg, value, move |text| {
            let n: i64 = text.parse()?;
            bounds.check(n).map_err(|why| {
                BadValue {
                    flag: flag.clone(),
                    why,
                }
                .into()
            })
        })
    }
}

/// The value parser of a percentage: a number from 0 to 100.
#[derive(Debug, Clone, Copy)]
pub struct Percentage;

impl TypedValueParser for Percentage {
    type Value = f64;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<f64, clap::Error> {
        let flag = flag_of(arg);
        parse_with(command, arg, value, move |text| {
            let pct: f64 = text.parse()?;
            if !(0.0..=100.0).contains(&pct) {
                return Err(BadValue {
                    flag: flag.clone(),
                    why: "must be a percentage from 0 to 100".into(),
                }
                .into());
            }
            Ok(pct)
        })
    }
}

/// The value parser of a name in a list (`--accounts a,b`): not blank.
#[derive(Debug, Clone, Copy)]
pub struct Name;

impl TypedValueParser for Name {
    type Value = String;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let flag = flag_of(arg);
        parse_with(command, arg, value, move |text| {
            if text.trim().is_empty() {
                return Err(BadValue {
                    flag: flag.clone(),
                    why: "has an empty name".into(),
                }
                .into());
            }
            Ok(text.to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_range_says_what_is_wrong_in_the_original_words() {
        let why = |r: Result<u64, String>| r.unwrap_err();
        assert_eq!(
            at_least::<u32>(1).check(0).unwrap_err(),
            "must be at least 1"
        );
        assert_eq!(
            at_least::<u32>(1)
                .check(i64::from(u32::MAX) + 1)
                .unwrap_err(),
            "must be at most 4294967295"
        );
        assert_eq!(
            why(at_least(1).unit(" second").check(0)),
            "must be at least 1 second"
        );
        assert_eq!(why(not_negative().check(-1)), "cannot be negative");
        assert_eq!(not_negative::<u64>().check(0), Ok(0));
        let mib = at_least::<u64>(1).at_most(MAX_MIB, " (MiB)");
        assert_eq!(why(mib.check(0)), "must be at least 1");
        assert_eq!(why(mib.check(4097)), "must be at most 4096 (MiB)");
        assert_eq!(mib.check(4096), Ok(4096));
        let year = from_to::<u64>(1, MAX_RETRY_AFTER_LIMIT, " (a year)");
        for wrong in [-1, 0, MAX_RETRY_AFTER_LIMIT + 1] {
            assert_eq!(
                why(year.check(wrong)),
                "must be from 1 to 31622400 (a year)"
            );
        }
        assert_eq!(year.check(1), Ok(1));
    }
}
