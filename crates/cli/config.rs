//! `orchestrator.toml`: every batch option the flags have, in one file.
//!
//! The file is `--config PATH`, or `orchestrator.toml` in the working
//! directory when it exists. Keys are the flags' long names (lists take the
//! plural: `plugins`, `accounts`, `allow-hosts`); a flag given on the command
//! line wins over the file, and the file over the defaults. An unknown key is
//! an error naming the file and line. [`Effective`] records where each value
//! came from, for `orchestrator config show`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::de::DeserializeOwned;

use crate::commands::batch::BatchArgs;
use crate::exit::{self, Exit};

/// The file looked for in the working directory.
pub const DEFAULT_CONFIG: &str = "orchestrator.toml";

/// Each option's effective value and where it came from.
#[derive(Debug, Default)]
pub struct Effective {
    pub file: Option<PathBuf>,
    /// (key, value, source)
    pub values: Vec<(&'static str, String, String)>,
}

/// Settings for every account on one platform (by base-URL host):
/// `[platform."mastodon.example"]` with `settings = {...}` (defaults under
/// each account's own) and `allow-hosts = [...]`.
pub use orchestrator_runner::Platform;

/// Config key → the clap id of its flag.
const KEYS: &[(&str, &str)] = &[
    ("plugins", "plugins"),
    ("jobs", "jobs"),
    ("accounts-file", "accounts_file"),
    ("state-file", "state_file"),
    ("workers", "workers"),
    ("accounts", "accounts"),
    ("grace-period", "grace_period"),
    ("key-window", "key_window"),
    ("lease", "lease"),
    ("progress-interval", "progress_interval"),
    ("max-passes", "max_passes"),
    ("retry-delay", "retry_delay"),
    ("max-retry-after", "max_retry_after"),
    ("outage-limit", "outage_limit"),
    ("infra-retry-limit", "infra_retry_limit"),
    ("no-retry-unknown", "no_retry_unknown"),
    ("retry-include-non-retryable", "retry_include_non_retryable"),
    ("retry-backoff", "retry_backoff"),
    ("retry-backoff-cap", "retry_backoff_cap"),
    ("halt-on-failure-rate", "halt_on_failure_rate"),
    ("job-timeout", "job_timeout"),
    ("plugin-memory", "plugin_memory"),
    ("response-limit", "response_limit"),
    ("max-plugin-size", "max_plugin_size"),
    ("allow-hosts", "allow_hosts"),
    ("no-cache", "no_cache"),
    ("ca-files", "ca_files"),
    ("allow-native", "allow_native"),
    ("native-sha256", "native_sha256"),
];

/// The line of `key = …` in `text`, for messages.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            if key.starts_with('[') {
                return l.starts_with(key);
            }
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
                || l.strip_prefix(&format!("\"{key}\"")).is_some()
        })
        .map_or(1, |i| i + 1)
}

fn value<T: DeserializeOwned>(v: &toml::Value, key: &str, at: &str) -> Result<T> {
    v.clone().try_into().map_err(|e: toml::de::Error| {
        Exit::new(
            exit::USAGE,
            format!("{at}: {key} has the wrong type: {}", e.message()),
        )
        .into()
    })
}

/// Fills `args` from the configuration file where the command line was
/// silent, and says where every value came from.
pub fn apply(
    args: &mut BatchArgs,
    matches: &ArgMatches,
    explicit: Option<&Path>,
) -> Result<Effective> {
    let path = match explicit {
        Some(p) => Some(p.to_owned()),
        None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.is_file()),
    };
    let mut effective = Effective {
        file: path.clone(),
        values: Vec::new(),
    };
    let (text, table) = match &path {
        None => (String::new(), toml::Table::new()),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Exit::new(exit::USAGE, format!("cannot read {}: {e}", path.display()))
            })?;
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                Exit::new(
                    exit::USAGE,
                    format!(
                        "{}: {}",
                        path.display(),
                        e.to_string()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                )
            })?;
            (text, table)
        }
    };
    let shown = path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if let Some(platforms) = table.get("platform") {
        let at = format!("{shown}:{}", line_of(&text, "[platform"));
        let platforms: std::collections::BTreeMap<String, Platform> =
            value(platforms, "platform", &at)?;
        for (host, platform) in &platforms {
            effective.values.push((
                "platform",
                format!(
                    "{host}: settings {:?}, allow-hosts {:?}",
                    platform.settings, platform.allow_hosts
                ),
                at.clone(),
            ));
        }
        args.platforms = platforms;
    }
    for key in table.keys() {
        if key == "platform" {
            continue;
        }
        if !KEYS.iter().any(|(k, _)| *k == key.as_str()) {
            return Err(Exit::new(
                exit::USAGE,
                format!(
                    "{shown}:{}: unknown key `{key}`; keys are the long flag names, e.g. max-passes",
                    line_of(&text, key)
                ),
            )
            .into());
        }
    }
    for (key, id) in KEYS {
        let from_flag = matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        let source = match (from_flag, table.get(*key)) {
            (true, _) => "command line".to_string(),
            (false, Some(v)) => {
                let at = format!("{shown}:{}", line_of(&text, key));
                set(args, key, v, &at)?;
                at
            }
            (false, None) => "default".to_string(),
        };
        effective.values.push((key, show(args, key), source));
    }
    Ok(effective)
}

fn set(args: &mut BatchArgs, key: &str, v: &toml::Value, at: &str) -> Result<()> {
    let r = &mut args.retry;
    let l = &mut args.limits;
    match key {
        "plugins" => args.plugins = value(v, key, at)?,
        "jobs" => args.jobs = Some(value(v, key, at)?),
        "accounts-file" => args.accounts_file = Some(value(v, key, at)?),
        "state-file" => args.state_file = value(v, key, at)?,
        "workers" => args.workers = value(v, key, at)?,
        "accounts" => args.accounts = Some(value(v, key, at)?),
        "grace-period" => args.grace_period = value(v, key, at)?,
        "key-window" => args.key_window = value(v, key, at)?,
        "lease" => args.lease = value(v, key, at)?,
        "progress-interval" => args.progress_interval = value(v, key, at)?,
        "max-passes" => r.max_passes = value(v, key, at)?,
        "retry-delay" => r.retry_delay = value(v, key, at)?,
        "max-retry-after" => r.max_retry_after = value(v, key, at)?,
        "outage-limit" => r.outage_limit = value(v, key, at)?,
        "infra-retry-limit" => r.infra_retry_limit = value(v, key, at)?,
        "no-retry-unknown" => r.no_retry_unknown = value(v, key, at)?,
        "retry-include-non-retryable" => r.retry_include_non_retryable = value(v, key, at)?,
        "retry-backoff" => r.retry_backoff = value(v, key, at)?,
        "retry-backoff-cap" => r.retry_backoff_cap = value(v, key, at)?,
        "halt-on-failure-rate" => r.halt_on_failure_rate = Some(value(v, key, at)?),
        "job-timeout" => l.job_timeout = value(v, key, at)?,
        "plugin-memory" => l.plugin_memory = value(v, key, at)?,
        "response-limit" => l.response_limit = value(v, key, at)?,
        "max-plugin-size" => l.max_plugin_size = value(v, key, at)?,
        "allow-hosts" => l.allow_hosts = value(v, key, at)?,
        "no-cache" => l.cache.no_cache = value(v, key, at)?,
        "ca-files" => l.ca_files = value(v, key, at)?,
        "allow-native" => l.native.allow_native = value(v, key, at)?,
        "native-sha256" => l.native.native_sha256 = value(v, key, at)?,
        _ => unreachable!("every key in KEYS is handled"),
    }
    Ok(())
}

fn show(args: &BatchArgs, key: &str) -> String {
    let r = &args.retry;
    let l = &args.limits;
    let paths = |p: &[PathBuf]| {
        p.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let opt_path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    match key {
        "plugins" => paths(&args.plugins),
        "jobs" => opt_path(&args.jobs).unwrap_or_default(),
        "accounts-file" => opt_path(&args.accounts_file).unwrap_or_default(),
        "state-file" => crate::commands::batch::store_name(&args.state_file),
        "workers" => args.workers.to_string(),
        "accounts" => args
            .accounts
            .as_ref()
            .map(|a| a.join(", "))
            .unwrap_or_else(|| "all".into()),
        "grace-period" => format!("{}s", args.grace_period),
        "key-window" => format!("{}s", args.key_window),
        "lease" => format!("{}s", args.lease),
        "progress-interval" => format!("{}s", args.progress_interval),
        "max-passes" => r.max_passes.to_string(),
        "retry-delay" => format!("{}s", r.retry_delay),
        "max-retry-after" => format!("{}s", r.max_retry_after),
        "outage-limit" => format!("{}s", r.outage_limit),
        "infra-retry-limit" => r.infra_retry_limit.to_string(),
        "no-retry-unknown" => r.no_retry_unknown.to_string(),
        "retry-include-non-retryable" => r.retry_include_non_retryable.to_string(),
        "retry-backoff" => r.retry_backoff.to_string(),
        "retry-backoff-cap" => format!("{}s", r.retry_backoff_cap),
        "halt-on-failure-rate" => r
            .halt_on_failure_rate
            .map(|p| format!("{p}%"))
            .unwrap_or_else(|| "off".into()),
        "job-timeout" => format!("{}s", l.job_timeout),
        "plugin-memory" => format!("{} MiB", l.plugin_memory),
        "response-limit" => format!("{} MiB", l.response_limit),
        "max-plugin-size" => format!("{} MiB", l.max_plugin_size),
        "allow-hosts" => l.allow_hosts.join(", "),
        "no-cache" => l.cache.no_cache.to_string(),
        "ca-files" => paths(&l.ca_files),
        "allow-native" => l.native.allow_native.to_string(),
        "native-sha256" => l.native.native_sha256.join(", "),
        _ => String::new(),
    }
}
