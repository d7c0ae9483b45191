//! `orchestrator.toml`: the batch options, read from a file as if they
//! were given on the command line, beneath the real one.
//!
//! [`ConfigFile`] is the key type. Its keys are listed nowhere: they are
//! the options of [`BatchArgs`], each named by its field in kebab case
//! (the flag's long name; a list's is plural: `plugins`, `accounts`,
//! `allow-hosts`), but for the flags marked `command_line_only`.
//! [`ConfigFile::read`] turns each key into the arguments its flag takes
//! (`workers = 8` is `--workers=8`, a list gives the flag once per item,
//! `true` gives a switch) and has clap check them, so the file is held to
//! the flags' own parsers and ranges, and an error names the file and
//! line. [`ConfigFile::beneath`] puts them in front of the command line for
//! the options it does not give: the command line wins over the file, the
//! file over the defaults (ripgrep's "config as extra arguments"). A
//! relative path in the file is taken as the flag takes it: from the
//! working directory. [`ConfigFile::effective`] says, for `config show`,
//! each option's value and where it came from. The `[platform."host"]`
//! tables are the file's alone ([`Platform`]).

use std::collections::BTreeMap;
use std::error::Error as _;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command};

use crate::commands::batch::{BadValue, BatchArgs, is_command_line_only, store_name};

/// The file looked for in the working directory.
pub const DEFAULT_CONFIG: &str = "orchestrator.toml";

/// The table of the platform settings; not a flag.
const PLATFORM: &str = "platform";

/// Each option's effective value and where it came from.
#[derive(Debug, Default)]
pub struct Effective {
    pub file: Option<PathBuf>,
    /// (key, value, source)
    pub values: Vec<(String, String, String)>,
}

/// Settings for every account on one platform (by base-URL host):
/// `[platform."mastodon.example"]` with `settings = {...}` (defaults under
/// each account's own) and `allow-hosts = [...]`.
pub use orchestrator_runner::Platform;

/// Why the configuration file was refused: one line, naming the file and,
/// for a key, its line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{at}: unknown key `{key}`; keys are the long flag names, e.g. max-passes")]
    UnknownKey { at: String, key: String },
    #[error("{at}: {flag} is for the command line only, not for a configuration file")]
    CommandLineOnly { at: String, flag: String },
    #[error("{at}: {key} has the wrong type: {reason}")]
    WrongType {
        at: String,
        key: String,
        reason: String,
    },
    #[error(
        "{at}: {key} is an empty list, which no flag can give; leave the key out for the default"
    )]
    EmptyList { at: String, key: String },
    #[error("{at}: {key} {why}")]
    BadValue {
        at: String,
        key: String,
        why: String,
    },
}

/// One key of the file, as the arguments its flag takes.
#[derive(Debug)]
struct Setting {
    /// The flag's clap id.
    id: clap::Id,
    /// `orchestrator.toml:3`
    at: String,
    args: Vec<OsString>,
}

/// The configuration file, read and checked.
#[derive(Debug, Default)]
pub struct ConfigFile {
    path: Option<PathBuf>,
    settings: Vec<Setting>,
    /// Where the `[platform…]` tables start, when there are any.
    platforms_at: String,
    pub platforms: BTreeMap<String, Platform>,
}

/// The batch options as clap builds them: what the keys are drawn from.
fn options() -> Command {
    let mut options = BatchArgs::augment_args(
        Command::new("orchestrator")
            .args_override_self(true)
            .disable_help_flag(true),
    );
    options.build();
    options
}

/// The key of `arg` in the file: its field's name, in kebab case.
fn key_of(arg: &Arg) -> String {
    arg.get_id().as_str().replace('_', "-")
}

/// Whether the file may set `arg`, one of `options`.
fn is_key(options: &Command, arg: &Arg) -> bool {
    arg.get_long().is_some() && !is_command_line_only(options, arg)
}

/// The options the file may set, in the order of the flags.
fn keys(options: &Command) -> impl Iterator<Item = &Arg> {
    options.get_arguments().filter(|arg| is_key(options, arg))
}

/// Whether the command line (or the environment) gave the option `id`.
fn from_command_line(given: &ArgMatches, id: &str) -> bool {
    matches!(
        given.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

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

/// One value of the file as the command line writes it.
fn word(value: &toml::Value) -> Result<String, String> {
    use toml::Value;
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(n) => Ok(n.to_string()),
        Value::Float(x) => Ok(x.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        Value::Datetime(d) => Ok(d.to_string()),
        Value::Array(_) => Err("expected one value, not a list".into()),
        Value::Table(_) => Err("expected a value, not a table".into()),
    }
}

/// The arguments that give `arg` the value `value` has in the file, from
/// how the flag takes values: a switch is given or not, a list flag once
/// per item, any other flag once.
fn as_args(arg: &Arg, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let flag = format!("--{}", arg.get_long().unwrap_or_default());
    let given = |value: &toml::Value| -> Result<OsString, String> {
        Ok(format!("{flag}={}", word(value)?).into())
    };
    match arg.get_action() {
        action @ (ArgAction::SetTrue | ArgAction::SetFalse) => match value {
            toml::Value::Boolean(yes) => Ok(if *yes == matches!(action, ArgAction::SetTrue) {
                vec![flag.into()]
            } else {
                Vec::new()
            }),
            _ => Err("expected true or false".into()),
        },
        ArgAction::Append => match value {
            toml::Value::Array(items) => items.iter().map(given).collect(),
            one => Ok(vec![given(one)?]),
        },
        ArgAction::Set => Ok(vec![given(value)?]),
        _ => Err(format!("{flag} cannot be set in a file")),
    }
}

/// `text` on one line, as every error of this program is.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What clap says is wrong with a value, without its `error:` and usage.
fn reason(error: &clap::Error) -> String {
    match error.source() {
        Some(source) => source.to_string(),
        None => {
            let rendered = error.render().to_string();
            let line = one_line(rendered.split("\n\n").next().unwrap_or_default());
            line.strip_prefix("error: ").unwrap_or(&line).to_string()
        }
    }
}

impl Setting {
    /// The setting of the key `key`, at `at`, to `value`, checked by the
    /// flag's own parser on this key alone, so that an error is this
    /// line's.
    fn of(
        options: &mut Command,
        key: &str,
        value: &toml::Value,
        at: String,
    ) -> Result<Setting, ConfigError> {
        let Some(arg) = options.get_arguments().find(|arg| key_of(arg) == key) else {
            return Err(ConfigError::UnknownKey {
                at,
                key: key.into(),
            });
        };
        if !is_key(options, arg) {
            return Err(ConfigError::CommandLineOnly {
                at,
                flag: format!("--{}", arg.get_long().unwrap_or(key)),
            });
        }
        let wrong = |at, reason| ConfigError::WrongType {
            at,
            key: key.into(),
            reason,
        };
        // A list flag given no value is no flag given, and "none" is not
        // every option's default: `accounts = []` would run them all.
        if value.as_array().is_some_and(Vec::is_empty) {
            return Err(ConfigError::EmptyList {
                at,
                key: key.into(),
            });
        }
        let id = arg.get_id().clone();
        let args = match as_args(arg, value) {
            Ok(args) => args,
            Err(reason) => return Err(wrong(at, reason)),
        };
        let argv = std::iter::once(OsString::from("orchestrator")).chain(args.clone());
        if let Err(e) = options.try_get_matches_from_mut(argv) {
            let bad = e.source().and_then(|s| s.downcast_ref::<BadValue>());
            return Err(match bad {
                Some(bad) => ConfigError::BadValue {
                    at,
                    key: key.into(),
                    why: bad.why.clone(),
                },
                None => wrong(at, reason(&e)),
            });
        }
        Ok(Setting { id, at, args })
    }
}

impl ConfigFile {
    /// Reads `explicit`, or `orchestrator.toml` in the working directory
    /// when there is one, and checks every key as clap checks its flag.
    pub fn read(explicit: Option<&Path>) -> Result<ConfigFile, ConfigError> {
        let path = match explicit {
            Some(path) => path.to_owned(),
            None => match Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.is_file()) {
                Some(path) => path,
                None => return Ok(ConfigFile::default()),
            },
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let syntax = |e: toml::de::Error| ConfigError::Syntax {
            path: shown.clone(),
            message: one_line(&e.to_string()),
        };
        let table: toml::Table = text.parse().map_err(syntax)?;
        let at = |key: &str| format!("{shown}:{}", line_of(&text, key));
        let mut file = ConfigFile {
            path: Some(path.clone()),
            ..ConfigFile::default()
        };
        let mut options = options();
        for (key, value) in &table {
            if key == PLATFORM {
                let at = at(&format!("[{PLATFORM}"));
                file.platforms = value.clone().try_into().map_err(|e: toml::de::Error| {
                    ConfigError::WrongType {
                        at: at.clone(),
                        key: key.clone(),
                        reason: e.message().to_string(),
                    }
                })?;
                file.platforms_at = at;
            } else {
                let setting = Setting::of(&mut options, key, value, at(key))?;
                file.settings.push(setting);
            }
        }
        Ok(file)
    }

    /// `argv` (the program's name first) with the file's settings in front
    /// of the rest, but for the options `given` (its parse) has from the
    /// command line: theirs are replaced, not added to, as a list flag's
    /// would be.
    pub fn beneath(&self, given: &ArgMatches, argv: &[OsString]) -> Vec<OsString> {
        let (program, rest) = argv
            .split_first()
            .map_or((None, argv), |(p, r)| (Some(p), r));
        let from_file = self
            .settings
            .iter()
            .filter(|s| !from_command_line(given, s.id.as_str()))
            .flat_map(|s| s.args.iter());
        program
            .into_iter()
            .chain(from_file)
            .chain(rest)
            .cloned()
            .collect()
    }

    /// Each option's value in `parsed` (the command line beneath which the
    /// file was put) and where it came from, as `given` (the command line
    /// alone) and the file tell.
    pub fn effective(&self, given: &ArgMatches, parsed: &ArgMatches) -> Effective {
        let mut values = Vec::new();
        for (host, platform) in &self.platforms {
            values.push((
                PLATFORM.to_string(),
                format!(
                    "{host}: settings {:?}, allow-hosts {:?}",
                    platform.settings, platform.allow_hosts
                ),
                self.platforms_at.clone(),
            ));
        }
        let options = options();
        for arg in keys(&options) {
            let id = arg.get_id().as_str();
            let source = match self.settings.iter().find(|s| s.id == id) {
                _ if from_command_line(given, id) => "command line".to_string(),
                Some(setting) => setting.at.clone(),
                None => "default".to_string(),
            };
            values.push((key_of(arg), value_of(arg, parsed), source));
        }
        Effective {
            file: self.path.clone(),
            values,
        }
    }
}

/// `arg`'s value in `matches` as `config show` prints it: in the unit its
/// value name says, a list joined by commas, and a PostgreSQL URL without
/// its password.
fn value_of(arg: &Arg, matches: &ArgMatches) -> String {
    let Some(raw) = matches.get_raw(arg.get_id().as_str()) else {
        return "(not set)".into();
    };
    let unit = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map(|name| name.as_str());
    raw.map(|value| {
        let value = store_name(Path::new(value));
        match unit {
            Some("SECONDS") => format!("{value}s"),
            Some("MIB") => format!("{value} MiB"),
            Some("PCT") => format!("{value}%"),
            _ => value,
        }
    })
    .collect::<Vec<_>>()
    .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_are_the_options_the_file_may_set() {
        let options = options();
        let keys: Vec<String> = keys(&options).map(key_of).collect();
        for key in [
            "plugins",
            "accounts",
            "allow-hosts",
            "ca-files",
            "max-passes",
            "metrics-listen",
            "media-root",
            "max-media-size",
            "sslmode",
            "sslrootcert",
            "password-file",
            "db-pool",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
        for flag in [
            "run",
            "status",
            "stop-all",
            "seed-only",
            "force-reseed",
            "take-over",
            "json",
            "release-held",
        ] {
            assert!(!keys.iter().any(|k| k == flag), "{flag} in {keys:?}");
        }
        assert_eq!(keys.len(), 36, "{keys:?}");
    }

    #[test]
    fn each_kind_of_flag_takes_its_value_from_toml() {
        let options = options();
        let arg = |id: &str| options.get_arguments().find(|a| a.get_id() == id).unwrap();
        let value = |text: &str| text.parse::<toml::Table>().unwrap()["k"].clone();
        let args = |id: &str, text: &str| {
            as_args(arg(id), &value(text)).map(|a| {
                a.into_iter()
                    .map(|a| a.into_string().unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(args("workers", "k = 8").unwrap(), ["--workers=8"]);
        assert_eq!(
            args("halt_on_failure_rate", "k = 12.5").unwrap(),
            ["--halt-on-failure-rate=12.5"]
        );
        assert_eq!(
            args("plugins", "k = [\"a.wasm\", \"b.wasm\"]").unwrap(),
            ["--plugin=a.wasm", "--plugin=b.wasm"]
        );
        assert_eq!(
            args("accounts", "k = [\"a\", \"b\"]").unwrap(),
            ["--accounts=a", "--accounts=b"]
        );
        assert_eq!(args("no_cache", "k = true").unwrap(), ["--no-cache"]);
        assert!(args("no_cache", "k = false").unwrap().is_empty());
        assert!(args("no_cache", "k = 1").is_err());
        assert!(args("workers", "k = [1, 2]").is_err());
    }

    #[test]
    fn the_command_line_wins_over_the_file_and_the_file_over_the_defaults() {
        use clap::{CommandFactory, FromArgMatches};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.toml");
        std::fs::write(
            &path,
            "plugins = [\"a.wasm\", \"b.wasm\"]\nworkers = 8\nmax-passes = 5\n",
        )
        .unwrap();
        let file = ConfigFile::read(Some(&path)).unwrap();
        let argv: Vec<OsString> = [
            "orchestrator",
            "--plugin",
            "c.wasm",
            "explain",
            "x",
            "--workers",
            "2",
        ]
        .map(OsString::from)
        .into();
        let mut command = crate::Cli::command();
        let given = command.try_get_matches_from_mut(argv.clone()).unwrap();
        let parsed = command
            .try_get_matches_from_mut(file.beneath(&given, &argv))
            .unwrap();
        let batch = crate::Cli::from_arg_matches(&parsed).unwrap().batch;
        // A list on the command line replaces the file's.
        assert_eq!(batch.plugins, [PathBuf::from("c.wasm")]);
        assert_eq!(batch.workers, 2);
        assert_eq!(batch.retry.max_passes, 5);
        assert_eq!(batch.retry.retry_delay, 30);
        let effective = file.effective(&given, &parsed);
        let row = |key: &str| {
            let (_, value, source) = effective.values.iter().find(|(k, ..)| k == key).unwrap();
            format!("{value} from {source}")
        };
        assert_eq!(row("plugins"), "c.wasm from command line");
        assert_eq!(row("workers"), "2 from command line");
        assert_eq!(row("max-passes"), format!("5 from {}:3", path.display()));
        assert_eq!(row("retry-delay"), "30s from default");
        assert_eq!(row("jobs"), "(not set) from default");
    }

    #[test]
    fn an_empty_list_is_refused_rather_than_read_as_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.toml");
        std::fs::write(&path, "accounts = []\n").unwrap();
        let error = ConfigFile::read(Some(&path)).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}:1: accounts is an empty list", path.display())),
            "{error}"
        );
    }

    #[test]
    fn a_flag_for_the_command_line_only_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.toml");
        std::fs::write(&path, "workers = 2\nforce-reseed = true\n").unwrap();
        let error = ConfigFile::read(Some(&path)).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "{}:2: --force-reseed is for the command line only, not for a configuration file",
                path.display()
            )
        );
    }
}
