//! The run's inputs: the jobs file (JSON Lines) and the accounts file (TOML).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use orchestrator_auth::keeper::AccountSpec;
use orchestrator_auth::{Credential, Placement, Scheme};
use orchestrator_plugin_host::{OutboundAccess, Secret};
use orchestrator_store::NewJob;
use serde::Deserialize;

use crate::media::Importer;
pub use crate::media::MediaOptions;

use crate::budget::Rates;

/// Why an input file was refused. Nothing is imported from a refused file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Job {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Accounts { path: PathBuf, reason: String },
    #[error("account {account}: {reason}")]
    Credential { account: String, reason: String },
    /// A job whose attachments its poster cannot read.
    #[error("job {job}: {reason}")]
    Media { job: String, reason: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobLine {
    id: String,
    account: String,
    payload: serde_json::Value,
}

/// Reads a jobs file: one `{"id", "account", "payload"}` object per line;
/// blank lines are skipped. The first bad line refuses the whole file.
/// Media paths resolve from the jobs file's folder, within the default
/// size limit (see [`read_jobs_with`]).
pub fn read_jobs(path: &Path) -> Result<Vec<NewJob>, InputError> {
    read_jobs_with(path, &MediaOptions::default())
}

/// [`read_jobs`], with the files a payload attaches (`media`) checked
/// under `media` (see [`crate::media`]): a bad one refuses the file, naming
/// the job's line.
pub fn read_jobs_with(path: &Path, media: &MediaOptions) -> Result<Vec<NewJob>, InputError> {
    let mut attachments = Importer::new(media, path);
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut jobs = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| InputError::Job {
            path: path.to_owned(),
            line: line_no,
            reason,
        };
        let job: JobLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if job.id.trim().is_empty() {
            return Err(bad("the job id is empty".into()));
        }
        if job.account.trim().is_empty() {
            return Err(bad("the account is empty".into()));
        }
        if !job.payload.is_object() {
            return Err(bad("the payload must be a JSON object".into()));
        }
        if let Some(first) = seen.insert(job.id.clone(), line_no) {
            return Err(bad(format!(
                "job id {:?} was already used on line {first}; ids must be unique",
                job.id
            )));
        }
        let mut job = job;
        attachments.import(&mut job.payload).map_err(bad)?;
        jobs.push(NewJob {
            id: job.id,
            account: job.account,
            payload: job.payload.to_string(),
        });
    }
    Ok(jobs)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    #[serde(default)]
    accounts: BTreeMap<String, AccountEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountEntry {
    base_url: String,
    /// The name of the poster that serves it, when several are given.
    poster: Option<String>,
    /// How it authenticates (see `orchestrator_auth::Scheme`).
    auth: Option<String>,
    /// The account's secret: a token, a URL secret, a password or a first
    /// refresh token, as `auth` says. `token*` are the original tool's
    /// names for the same keys.
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    token: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    /// Hosts (`host[:port]`) this account's posts may reach besides its own.
    #[serde(default)]
    allow_hosts: Vec<String>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    /// How many attempts it may start in a span: `"300/5m"`, or several.
    #[serde(default)]
    rate: Rates,
}

/// One account: its non-secret settings and how to find its token.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    pub name: String,
    pub base_url: String,
    /// The poster that serves it, by name; `None`: the only one given.
    pub poster: Option<String>,
    pub settings: Vec<(String, String)>,
    /// Hosts this account's posts may reach besides its base URL's.
    pub allow_hosts: Vec<String>,
    /// How it authenticates.
    pub scheme: Scheme,
    /// Its own budgets (`rate`); empty: none.
    pub rates: Rates,
    /// Its platform's budgets, shared with every account on that platform,
    /// by the host of its `[platform."host"]` table.
    pub platform_rates: Option<(String, Rates)>,
    token: TokenSource,
}

#[derive(Debug, Clone)]
enum TokenSource {
    None,
    Inline(Secret),
    /// The variable, and the key that named it (`secret_env` or
    /// `token_env`), for messages.
    Env(String, &'static str),
    File(PathBuf, &'static str),
}

impl AccountConfig {
    /// An account at `base_url` without a token or settings.
    pub fn new(name: &str, base_url: &str) -> Self {
        AccountConfig {
            name: name.to_owned(),
            base_url: base_url.to_owned(),
            poster: None,
            settings: Vec::new(),
            allow_hosts: Vec::new(),
            scheme: Scheme::Bearer,
            rates: Rates::default(),
            platform_rates: None,
            token: TokenSource::None,
        }
    }

    /// Reads the token now, once, so attempts never touch the environment
    /// or the disk for it; the message never contains the token.
    pub fn resolve_token(&mut self) -> Result<(), InputError> {
        if let Some(secret) = self.token()? {
            self.token = TokenSource::Inline(secret);
        }
        Ok(())
    }

    /// What this account's posts may reach: its own base-URL host, its
    /// `allow_hosts`, and `extra` hosts granted to every account; with its
    /// secret, once resolved, when the scheme sends it as it is (`bearer`,
    /// `url-secret`). A password or refresh token is never sent by a
    /// poster's request: the account's [`orchestrator_auth::AccountAuth`]
    /// gives the credential instead (see [`AccountConfig::access_with`]).
    pub fn access(&self, extra: &[String]) -> OutboundAccess {
        let credential = match (&self.token, self.scheme) {
            (TokenSource::Inline(secret), Scheme::Bearer) => {
                Some(Credential::fixed(Placement::Bearer, secret.clone()))
            }
            (TokenSource::Inline(secret), Scheme::UrlSecret) => {
                Some(Credential::fixed(Placement::UrlPath, secret.clone()))
            }
            _ => None,
        };
        self.access_with(extra, credential)
    }

    /// [`AccountConfig::access`] with `credential` instead.
    pub fn access_with(&self, extra: &[String], credential: Option<Credential>) -> OutboundAccess {
        extra.iter().chain(&self.allow_hosts).fold(
            OutboundAccess::with_credential(&self.base_url, credential),
            |access, host| access.grant(host),
        )
    }

    /// What its credentials' keeper needs: the scheme, the secret (read
    /// by [`AccountConfig::resolve_token`]) and the settings a login sends.
    pub fn auth_spec(&self) -> AccountSpec {
        let setting = |key: &str| {
            self.settings
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        AccountSpec {
            name: self.name.clone(),
            base_url: self.base_url.clone(),
            scheme: self.scheme,
            secret: match &self.token {
                TokenSource::Inline(secret) => Some(secret.clone()),
                _ => None,
            },
            identifier: setting("identifier"),
            client_id: setting("client_id"),
        }
    }

    /// Whether the accounts file gives this account a token at all.
    pub fn has_token(&self) -> bool {
        !matches!(self.token, TokenSource::None)
    }

    /// The account's token, read now from wherever the accounts file says.
    /// The message never contains the token.
    fn token(&self) -> Result<Option<Secret>, InputError> {
        let err = |reason: String| InputError::Credential {
            account: self.name.clone(),
            reason,
        };
        match &self.token {
            TokenSource::None => Ok(None),
            TokenSource::Inline(secret) => Ok(Some(secret.clone())),
            TokenSource::Env(var, key) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
                _ => Err(err(format!(
                    "{key} = {var:?}, but that environment variable is not set"
                ))),
            },
            TokenSource::File(path, key) => match std::fs::read_to_string(path) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
                Ok(_) => Err(err(format!("{key} {} is empty", path.display()))),
                Err(e) => Err(err(format!("cannot read {key} {}: {e}", path.display()))),
            },
        }
    }
}

/// Reads the accounts file:
///
/// ```toml
/// [accounts.alice]
/// base_url = "https://mastodon.example"
/// auth = "bearer"                  # or "url-secret", "session", "oauth2"
/// secret_env = "ALICE_TOKEN"       # or secret_file = "path", or secret = "..." (tests);
///                                  # token_env, token_file, token mean the same
/// settings = { language = "en" }   # non-secret, passed to the plugin
/// allow_hosts = ["media.example"]   # more hosts its posts may reach
/// poster = "mastodon-poster"       # the --plugin poster serving it, when several are given
/// rate = "300/5m"                  # at most 300 attempts in any 5 minutes (or a list of rates)
/// ```
/// A parse error of the accounts file as one line that names the line and
/// its key but never quotes a value: the value may be a token. (toml's own
/// message shows the whole line, and serde's type errors show the value.)
fn accounts_syntax_error(text: &str, error: &toml::de::Error) -> String {
    let message = error
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let message = match message.split_once(", expected ") {
        Some((found, expected))
            if found.starts_with("invalid type") || found.starts_with("invalid value") =>
        {
            format!("a value of the wrong type (not shown), expected {expected}")
        }
        _ => message,
    };
    let Some(span) = error.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(key, _)| key.trim())
        .filter(|key| !key.is_empty() && key.len() <= 64 && !key.contains(['"', '\'']));
    match key {
        Some(key) => format!("line {line} ({key}): {message}"),
        None => format!("line {line}: {message}"),
    }
}

pub fn read_accounts(path: &Path) -> Result<BTreeMap<String, AccountConfig>, InputError> {
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| InputError::Accounts {
        path: path.to_owned(),
        reason,
    };
    let file: AccountsFile =
        toml::from_str(&text).map_err(|e| bad(accounts_syntax_error(&text, &e)))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut accounts = BTreeMap::new();
    for (name, entry) in file.accounts {
        if !(entry.base_url.starts_with("http://") || entry.base_url.starts_with("https://")) {
            return Err(bad(format!(
                "account {name}: base_url {:?} is not an http(s) URL",
                entry.base_url
            )));
        }
        let sources = [
            entry.secret.is_some(),
            entry.secret_env.is_some(),
            entry.secret_file.is_some(),
            entry.token.is_some(),
            entry.token_env.is_some(),
            entry.token_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(bad(format!(
                "account {name}: give one of secret, secret_env or secret_file (or token, token_env, token_file)"
            )));
        }
        let scheme = match entry.auth.as_deref() {
            None => Scheme::Bearer,
            Some(text) => Scheme::parse(text).ok_or_else(|| {
                bad(format!(
                    "account {name}: auth {text:?} is not a scheme this host knows; use one of {}",
                    Scheme::NAMES.join(", ")
                ))
            })?,
        };
        let token = if let Some(t) = entry.secret.or(entry.token) {
            TokenSource::Inline(Secret::new(t))
        } else if let Some(var) = entry.secret_env {
            TokenSource::Env(var, "secret_env")
        } else if let Some(var) = entry.token_env {
            TokenSource::Env(var, "token_env")
        } else if let Some(file) = entry.secret_file {
            TokenSource::File(base.join(file), "secret_file")
        } else if let Some(file) = entry.token_file {
            TokenSource::File(base.join(file), "token_file")
        } else {
            TokenSource::None
        };
        accounts.insert(
            name.clone(),
            AccountConfig {
                name,
                base_url: entry.base_url,
                poster: entry.poster,
                settings: entry.settings.into_iter().collect(),
                allow_hosts: entry.allow_hosts,
                scheme,
                rates: entry.rate,
                platform_rates: None,
                token,
            },
        );
    }
    Ok(accounts)
}

/// The accounts among `used` (with `only`, just those) that `known` lacks,
/// sorted and once each; `None` when there is none.
pub fn missing_accounts<'a>(
    used: impl IntoIterator<Item = &'a str>,
    known: &BTreeMap<String, AccountConfig>,
    only: Option<&[String]>,
) -> Option<String> {
    let mut missing: Vec<&str> = used
        .into_iter()
        .filter(|a| !known.contains_key(*a))
        .filter(|a| only.is_none_or(|only| only.iter().any(|o| o == a)))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    (!missing.is_empty()).then(|| missing.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_bad_line_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "jobs.jsonl",
            "{\"id\":\"a\",\"account\":\"x\",\"payload\":{}}\n\n{\"id\":\"b\",\"account\":\"x\"}\n",
        );
        let err = read_jobs(&path).unwrap_err().to_string();
        assert!(
            err.contains("jobs.jsonl:3: missing field `payload`"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let line = "{\"id\":\"a\",\"account\":\"x\",\"payload\":{}}\n";
        let path = write(dir.path(), "jobs.jsonl", &format!("{line}{line}"));
        let err = read_jobs(&path).unwrap_err().to_string();
        assert!(
            err.contains(":2: job id \"a\" was already used on line 1"),
            "{err}"
        );
    }

    #[test]
    fn accounts_find_their_tokens() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "bob.token", "bob-secret\n");
        let path = write(
            dir.path(),
            "accounts.toml",
            "[accounts.alice]\nbase_url = \"http://a\"\ntoken = \"t\"\n\
             [accounts.bob]\nbase_url = \"http://b\"\ntoken_file = \"bob.token\"\n\
             [accounts.carol]\nbase_url = \"http://c\"\ntoken_env = \"ORCHESTRATOR_TEST_UNSET_VAR\"\n",
        );
        let mut accounts = read_accounts(&path).unwrap();
        assert_eq!(accounts["alice"].token().unwrap().unwrap().expose(), "t");
        assert_eq!(
            accounts["bob"].token().unwrap().unwrap().expose(),
            "bob-secret"
        );
        let err = accounts["carol"].token().unwrap_err().to_string();
        assert!(err.contains("ORCHESTRATOR_TEST_UNSET_VAR"), "{err}");
        // Once resolved, the token is the one sent: bob's file is read no more.
        let bob = accounts.get_mut("bob").unwrap();
        bob.resolve_token().unwrap();
        std::fs::remove_file(dir.path().join("bob.token")).unwrap();
        let access = bob.access(&["extra.example".into()]);
        assert_eq!(access.granted, ["b:80", "extra.example:443"]);
        let (host, token) = access.credential.unwrap();
        assert_eq!(
            (host.as_str(), token.secret.expose()),
            ("b:80", "bob-secret")
        );
    }

    #[test]
    fn unknown_keys_in_accounts_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "accounts.toml",
            "[accounts.alice]\nbase_url = \"http://a\"\npassword = \"x\"\n",
        );
        let err = read_accounts(&path).unwrap_err().to_string();
        assert!(err.contains("password"), "{err}");
    }

    #[test]
    fn a_broken_accounts_file_never_quotes_a_token() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            // A misspelt key: its line and key, not the line's value.
            (
                "[accounts.alice]\nbase_url = \"http://a\"\ntokn = \"s3cret-token\"\n",
                "line 3 (tokn): unknown field `tokn`, expected one of",
            ),
            // An unquoted token.
            (
                "[accounts.alice]\nbase_url = \"http://a\"\ntoken = s3cret-token\n",
                "line 3 (token): ",
            ),
            // A token of the wrong type.
            (
                "[accounts.alice]\nbase_url = \"http://a\"\ntoken = 31337\n",
                "line 3 (token): a value of the wrong type (not shown), expected a string",
            ),
        ] {
            let path = write(dir.path(), "accounts.toml", text);
            let err = read_accounts(&path).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains("s3cret") && !err.contains("31337"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}
