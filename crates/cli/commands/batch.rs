//! The flags of the batch actions, and what they share: opening the store,
//! reading the retry configuration, seeding.
//!
//! [`BatchArgs`] is the one definition of every batch option: the command
//! line, `orchestrator.toml` (see `config.rs`) and `config show` all read
//! it. A numeric flag is parsed into its type by a [`Bounded`] value
//! parser, so a value out of range is refused while clap parses, in the
//! original tool's words; a flag the file may not set says so with
//! `command_line_only = true` ([`CommandLineOnly`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::{ArgGroup, Args};
use orchestrator_retry::RetryConfig;
use orchestrator_runner::input;
use orchestrator_store::{
    DEFAULT_LEASE, DEFAULT_POOL, NewJob, PgOptions, PostgresStore, SqliteStore, SslMode, Store,
    TlsOptions, is_postgres_url,
};

pub use crate::commands::limits::LimitArgs;
use crate::exit::{self, Exit};
pub use crate::flags::*;

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
/// it (or bringing its schema up to date) if needed. A URL is connected to
/// with the settings [`connect_with`] was given.
pub fn open_at(path: &Path, lease: Duration) -> Result<Box<dyn Store>> {
    Ok(match postgres_url(path) {
        Some(url) => Box::new(open_postgres(url, lease)?),
        None => Box::new(SqliteStore::open(path)?),
    })
}

/// Opens the PostgreSQL store at `url` with the settings [`connect_with`]
/// was given (TLS, the password, the pool).
pub fn open_postgres(url: &str, lease: Duration) -> Result<PostgresStore> {
    Ok(PostgresStore::open_with(
        url,
        &postgres_options(url, lease)?,
    )?)
}

/// Opens the PostgreSQL store at `url` as [`open_postgres`] does, but
/// changing nothing: a schema behind this build's is
/// [`orchestrator_store::StoreError::NotMigrated`], not migrated.
pub fn open_postgres_unchanged(url: &str, lease: Duration) -> Result<PostgresStore> {
    let options = PgOptions {
        migrate: false,
        ..postgres_options(url, lease)?
    };
    Ok(PostgresStore::open_with(url, &options)?)
}

/// How this process connects to a PostgreSQL store: every command opens
/// its store by path ([`open_at`]), and the connection settings are the
/// batch flags', set once as the program starts ([`connect_with`]).
static CONNECTION: std::sync::OnceLock<Connection> = std::sync::OnceLock::new();

#[derive(Debug, Clone)]
struct Connection {
    postgres: PostgresArgs,
    ca_files: Vec<PathBuf>,
    /// Whether `--state-file` came from the command line (not the
    /// configuration file), where a password in it is seen by all.
    url_on_command_line: bool,
}

/// Sets how [`open_at`] connects to a PostgreSQL store: `args`'
/// connection flags and `--ca-file`s. `url_on_command_line` says whether
/// `--state-file` was given on the command line.
pub fn connect_with(args: &BatchArgs, url_on_command_line: bool) {
    let _ = CONNECTION.set(Connection {
        postgres: args.postgres.clone(),
        ca_files: args.limits.ca_files.clone(),
        url_on_command_line,
    });
}

/// The options [`open_at`] opens `url` with; warns (once) when the URL
/// holds a password and came from the command line.
fn postgres_options(url: &str, lease: Duration) -> Result<PgOptions> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let Some(connection) = CONNECTION.get() else {
        return Ok(PgOptions {
            lease,
            ..PgOptions::default()
        });
    };
    if connection.url_on_command_line && orchestrator_store::url_has_password(url) {
        WARNED.call_once(|| {
            tracing::warn!(
                "the PostgreSQL password is on the command line (in --state-file), where other local users and the shell's history see it; use PGPASSWORD, ~/.pgpass or --password-file instead"
            )
        });
    }
    let mut extra_roots = Vec::new();
    for file in &connection.ca_files {
        let certs = orchestrator_plugin_host::outbound::read_pem_certificates(file)
            .map_err(|e| Exit::new(exit::USAGE, format!("--ca-file: {e}")))?;
        extra_roots.extend(certs);
    }
    let args = &connection.postgres;
    Ok(PgOptions {
        lease,
        tls: TlsOptions {
            mode: args.sslmode.map(SslMode::from),
            root_cert: args.sslrootcert.clone(),
            extra_roots,
        },
        pool_size: args.db_pool as usize,
        password_file: args.password_file.clone(),
        migrate: true,
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
    /// With --run: check the jobs and their media, the accounts and their
    /// tokens, the plugins and each account's poster, and say per account
    /// what a run would attempt, skip and why, and the earliest finish the
    /// rate budgets allow; contacts no platform, changes nothing stored.
    /// Exit 0 when a run could start, 2 with every problem listed.
    #[arg(
        long,
        help_heading = "Actions",
        requires = "run",
        command_line_only = true
    )]
    pub dry_run: bool,

    /// A plugin (.wasm): one poster, or one per platform (each account names
    /// its own: `poster` in the accounts file), and any number of
    /// classifiers, consulted in the order given before the built-in rules.
    #[arg(long = "plugin", value_name = "PATH", global = true)]
    pub plugins: Vec<PathBuf>,
    /// Jobs file: JSON Lines of {"id", "account", "payload"}.
    #[arg(long, value_name = "FILE", global = true)]
    pub jobs: Option<PathBuf>,
    /// Accounts file (TOML): base URL and credential reference per account.
    #[arg(long, value_name = "FILE", global = true)]
    pub accounts_file: Option<PathBuf>,
    /// The folder the jobs' media paths are relative to (default: the jobs
    /// file's); a path that leads out of it is refused
    #[arg(long, value_name = "DIR", global = true)]
    pub media_root: Option<PathBuf>,
    /// Largest file a job may attach, in MiB
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = DEFAULT_MEDIA_MIB,
        value_parser = at_least::<u64>(1).at_most(MAX_MEDIA_MIB, " (MiB)"),
        allow_negative_numbers = true,
        global = true
    )]
    pub max_media_size: u64,
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
        value_parser = not_negative::<u64>().at_most(MAX_SECONDS, " (a year)"),
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
        value_parser = not_negative::<u64>().at_most(MAX_SECONDS, " (a year)"),
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
        value_parser = at_least::<u64>(1).unit(" second").at_most(MAX_SECONDS, " (a year)"),
        allow_negative_numbers = true,
        global = true
    )]
    pub lease: u64,
    /// Seconds between progress lines during --run (0: none)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 5,
        value_parser = not_negative::<u64>().at_most(MAX_SECONDS, " (a year)"),
        allow_negative_numbers = true,
        global = true
    )]
    pub progress_interval: u64,
    /// With --run: retry the jobs held for review.
    #[arg(long, global = true, command_line_only = true)]
    pub release_held: bool,
    /// With --run: serve Prometheus metrics at http://ADDR/metrics while
    /// the run lasts. ADDR is IP:PORT (0.0.0.0:PORT for every interface),
    /// or a port alone for 127.0.0.1; port 0 picks a free one
    #[arg(long, value_name = "ADDR", value_parser = listen_address, global = true)]
    pub metrics_listen: Option<SocketAddr>,

    #[command(flatten)]
    pub retry: RetryArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub postgres: PostgresArgs,

    /// `[platform."host"]` tables of the configuration file.
    #[arg(skip)]
    pub platforms: std::collections::BTreeMap<String, crate::config::Platform>,
}

/// How a PostgreSQL store (`--state-file postgres://…`) is connected to.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "PostgreSQL Store")]
pub struct PostgresArgs {
    /// TLS to the database, as libpq's sslmode: disable, prefer (TLS when
    /// the server offers it), require (encrypted, not verified),
    /// verify-ca, verify-full (the certificate names the host); the URL's
    /// own sslmode wins
    #[arg(
        long,
        value_name = "MODE",
        value_enum,
        env = "PGSSLMODE",
        global = true
    )]
    pub sslmode: Option<SslModeArg>,
    /// The certificate authorities (PEM) to trust for the database, alone
    /// (default: the Mozilla roots and --ca-file); `system` for those,
    /// with verify-full. The URL's own sslrootcert wins
    #[arg(long, value_name = "PEM|system", env = "PGSSLROOTCERT", global = true)]
    pub sslrootcert: Option<PathBuf>,
    /// A file holding the database password alone (only its owner may
    /// read it), for a URL without one; else PGPASSWORD, else ~/.pgpass
    /// (PGPASSFILE)
    #[arg(long, value_name = "FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Connections each process keeps to the database at most, besides
    /// one for its writer
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_POOL as u32,
        value_parser = from_to::<u32>(1, 1000, ""),
        allow_negative_numbers = true,
        global = true
    )]
    pub db_pool: u32,
}

/// `--sslmode`'s values: the store's [`SslMode`].
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SslModeArg {
    Disable,
    // libpq's `allow` (the clear first, TLS if the server insists) is
    // taken as `prefer`, which connects wherever `allow` does and encrypts
    // more often: a `PGSSLMODE=allow` in the shell works. (A comment, not
    // a doc comment, which the help would list.)
    #[value(alias = "allow")]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl From<SslModeArg> for SslMode {
    fn from(mode: SslModeArg) -> SslMode {
        match mode {
            SslModeArg::Disable => SslMode::Disable,
            SslModeArg::Prefer => SslMode::Prefer,
            SslModeArg::Require => SslMode::Require,
            SslModeArg::VerifyCa => SslMode::VerifyCa,
            SslModeArg::VerifyFull => SslMode::VerifyFull,
        }
    }
}

/// The value parser of `--metrics-listen`: `IP:PORT` (`[::1]:PORT`),
/// `localhost:PORT`, or a port alone. Without an IP it is the loopback
/// address: the metrics reach the network only when the address says so.
pub fn listen_address(text: &str) -> Result<SocketAddr, BadValue> {
    let loopback = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let port = text.strip_prefix("localhost:").unwrap_or(text);
    if let Ok(port) = port.parse::<u16>() {
        return Ok(loopback(port));
    }
    text.parse().map_err(|_| BadValue {
        flag: "--metrics-listen".into(),
        why: format!(
            "must be IP:PORT (e.g. 127.0.0.1:9464) or a port alone, not {:?}",
            text
        ),
    })
}

/// `--max-media-size` by default: Mastodon's limit for images.
pub const DEFAULT_MEDIA_MIB: u64 = orchestrator_runner::media::DEFAULT_MAX_BYTES >> 20;

/// The most MiB `--max-media-size` may be: four such files are what the
/// host holds in memory for one attempt at most
/// ([`orchestrator_runner::media::MEMORY_BUDGET`]).
pub const MAX_MEDIA_MIB: i64 = (orchestrator_runner::media::MEMORY_BUDGET >> 20) as i64
    / orchestrator_runner::media::MAX_ATTACHMENTS as i64;

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
        value_parser = not_negative::<u64>().at_most(MAX_SECONDS, " (a year)"),
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
        value_parser = not_negative::<u64>().at_most(MAX_SECONDS, " (a year)"),
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
        value_parser = from_to::<u64>(1, MAX_SECONDS, " (a year)"),
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
        value_parser = not_negative::<u64>().at_most(MAX_SECONDS, " (a year)"),
        allow_negative_numbers = true,
        global = true
    )]
    pub outage_limit: u64,
}

/// The most seconds any duration flag may be (`--max-retry-after`,
/// `--retry-delay`, `--job-timeout`, …): a year. Longer is surely a
/// mistake, and the host's time arithmetic stays far from overflow.
pub const MAX_SECONDS: i64 = 366 * 24 * 3600;

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

    /// Reads `--jobs`, checking the files its jobs attach under
    /// `--media-root` and `--max-media-size`; a file with a bad line is
    /// refused whole.
    pub fn read_jobs(&self, jobs: &Path) -> Result<Vec<NewJob>> {
        let media = input::MediaOptions {
            root: self.media_root.clone(),
            max_bytes: self.max_media_size << 20,
        };
        Ok(input::read_jobs_with(jobs, &media)?)
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
