//! `orchestrator plugins list` and `orchestrator plugins inspect`
//! (`plugins new` is [`crate::commands::new_plugin`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use orchestrator_contract::{CONTRACT_PACKAGE, PluginKind, accepted_versions};
use orchestrator_plugin_host::discover::SearchPath;
use orchestrator_plugin_host::{Backend, CacheUse, Examined, Limits, PluginHost, outbound};
use orchestrator_runner::input;
use serde::Serialize;

use crate::commands::batch::{BatchArgs, LimitArgs};
use crate::exit;
use crate::output::{Table, print, print_json, shown};

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the plugins on the search path, with why any cannot be used.
    ///
    /// Searched, in order: each --plugin-dir, the folders in
    /// ORCHESTRATOR_PLUGIN_PATH (separated like PATH), ./plugins, and the
    /// user's data folder (e.g. ~/.local/share/orchestrator/plugins).
    List(ListArgs),
    /// Print everything the host knows about one plugin file.
    Inspect(InspectArgs),
    /// Write a buildable starting point for a new plugin (Rust, Python or
    /// JavaScript) against the contract this host was built from.
    New(crate::commands::new_plugin::NewArgs),
}

/// `plugins list` and `plugins inspect` also take the options of a run,
/// before or after the command: `--json`, `--accounts-file` (what a poster
/// would be granted), and the plugin limits (`--job-timeout` for
/// `describe`, `--max-plugin-size`, `--allow-host`, the caches, native
/// plugins).
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also search this folder (repeatable); searched before the defaults.
    #[arg(long = "plugin-dir", value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The plugin file (.wasm).
    file: PathBuf,
}

/// What a plugin may use when it runs, as the host would grant it.
#[derive(Debug, Serialize)]
struct Capabilities {
    filesystem: &'static str,
    environment: &'static str,
    sockets: &'static str,
    /// account → hosts its posts may reach (`host:port`), with whether the
    /// host adds the account's credential there.
    outbound_http: Vec<AccountGrant>,
    /// How the poster says its platform logs in (contract 0.3.0), which
    /// the host performs; `None` for a classifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    login: Option<orchestrator_contract::AuthSupport>,
    /// What of a job's attachments the poster reads (contract 0.4.0);
    /// `None` for a classifier, or a poster that did not load.
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<&'static str>,
    /// The rate budgets the poster declares for its platform (contract
    /// 0.4.0), defaults for its accounts; `None` for a classifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_budgets: Option<Vec<orchestrator_contract::RateBudget>>,
    limits: LimitsView,
}

#[derive(Debug, Serialize)]
struct AccountGrant {
    account: String,
    /// The poster the account names in the accounts file, if any.
    poster: Option<String>,
    /// Whether this poster serves it in a run given this plugin: it names
    /// this one, or none.
    served: bool,
    /// The account's `auth` scheme.
    auth: &'static str,
    hosts: Vec<String>,
    credential_added_for: Option<String>,
}

#[derive(Debug, Serialize)]
struct LimitsView {
    deadline_seconds: u64,
    memory_mib: usize,
    response_mib: u64,
}

impl PluginsCommand {
    pub async fn run(self, batch: &BatchArgs) -> Result<u8> {
        match self {
            PluginsCommand::List(args) => list(args, batch).await,
            PluginsCommand::Inspect(args) => inspect(args, batch).await,
            PluginsCommand::New(args) => args.run(),
        }
    }
}

fn search_path(extra: &[PathBuf]) -> SearchPath {
    let mut path = SearchPath::new();
    for dir in extra {
        path.push(dir);
    }
    if let Some(list) = std::env::var_os("ORCHESTRATOR_PLUGIN_PATH") {
        path.push_env_list(&list);
    }
    path.push("plugins");
    if let Some(dirs) = directories::ProjectDirs::from("", "", "orchestrator") {
        path.push(dirs.data_dir().join("plugins"));
    }
    path
}

/// One plugin as `plugins list --json` and `plugins inspect --json` show it.
#[derive(Debug, Serialize)]
struct PluginRecord {
    name: String,
    version: Option<String>,
    description: Option<String>,
    kind: Option<String>,
    contract: Option<String>,
    backend: Backend,
    compatible: bool,
    /// Why the host refuses it, when it does.
    reason: Option<String>,
    path: PathBuf,
    sha256: Option<String>,
    size: Option<u64>,
    /// `hit` (compiled code came from the cache), `stored` (compiled now
    /// and cached), `compiled` (the cache is off) or none (not compiled).
    cache: Option<CacheUse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    imports: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exports: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capabilities: Option<Capabilities>,
}

impl PluginRecord {
    fn from_examined(e: &Examined, with_interfaces: bool) -> Self {
        let stem = e
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let interfaces = e.interfaces.as_ref().filter(|_| with_interfaces);
        let mut record = PluginRecord {
            name: stem,
            version: None,
            description: None,
            kind: e.kind.map(|k| k.to_string()),
            contract: e.contract.as_ref().map(|v| v.to_string()),
            backend: e.backend.unwrap_or(Backend::Wasm),
            compatible: e.outcome.is_ok(),
            reason: e.outcome.as_ref().err().map(|err| err.reason()),
            path: e.path.clone(),
            sha256: e.sha256.clone(),
            size: e.size,
            cache: e.cache,
            imports: interfaces.map(|i| i.imports.clone()),
            exports: interfaces.map(|i| i.exports.clone()),
            capabilities: None,
        };
        if let Ok(plugin) = &e.outcome {
            let info = plugin.info();
            record.name = info.name.clone();
            record.version = Some(info.version.clone());
            record.description = Some(info.description.clone());
        }
        record
    }
}

/// Whether the host takes the plugin, and on what terms.
fn status(r: &PluginRecord) -> String {
    match (&r.reason, r.backend) {
        (None, Backend::Native) => "compatible (native: runs unsandboxed)".into(),
        (None, Backend::Wasm) => "compatible".into(),
        (Some(reason), _) => format!("refused: {reason}"),
    }
}

fn dash(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".into())
}

/// The `CACHED` column: was the compiled code already in the cache?
fn cached(cache: Option<CacheUse>) -> String {
    match cache {
        Some(CacheUse::Hit) => "yes",
        Some(CacheUse::Stored) => "now",
        Some(CacheUse::Compiled) => "off",
        Some(CacheUse::NotCompiled) | None => "-",
    }
    .into()
}

async fn list(args: ListArgs, batch: &BatchArgs) -> Result<u8> {
    let host = host(&batch.limits)?;
    let search = search_path(&args.plugin_dirs);
    let mut records = Vec::new();
    for path in search.candidates() {
        records.push(PluginRecord::from_examined(
            &host.examine(&path).await,
            false,
        ));
    }
    if batch.json {
        print_json(&records)?;
        return Ok(exit::SUCCESS);
    }
    if records.is_empty() {
        let dirs: Vec<String> = search
            .dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        print(&format!(
            "no plugins found; searched: {}\nadd a folder with --plugin-dir DIR or ORCHESTRATOR_PLUGIN_PATH\n",
            dirs.join(", ")
        ))?;
        return Ok(exit::SUCCESS);
    }
    let mut table = Table::new(vec![
        "NAME", "VERSION", "KIND", "CONTRACT", "BACKEND", "CACHED", "PATH", "STATUS",
    ]);
    for r in &records {
        table.row(vec![
            r.name.clone(),
            dash(&r.version),
            dash(&r.kind),
            dash(&r.contract),
            r.backend.as_str().to_string(),
            cached(r.cache),
            r.path.display().to_string(),
            status(r),
        ]);
    }
    print(&table.render())?;
    Ok(exit::SUCCESS)
}

/// What `--run` would grant the plugin, for `plugins inspect`.
fn capabilities(
    batch: &BatchArgs,
    kind: Option<PluginKind>,
    poster: Option<&orchestrator_plugin_host::Poster>,
    name: Option<&str>,
) -> Result<Capabilities> {
    let limits = Limits::default();
    let mut outbound_http = Vec::new();
    if kind == Some(PluginKind::Poster)
        && let Some(file) = &batch.accounts_file
    {
        let accounts = input::read_accounts(file)?;
        for account in accounts.values() {
            let access = account.access(&batch.limits.allow_hosts);
            outbound_http.push(AccountGrant {
                account: account.name.clone(),
                poster: account.poster.clone(),
                served: account.poster.as_deref().is_none_or(|p| Some(p) == name),
                auth: account.scheme.as_str(),
                hosts: access.granted.clone(),
                credential_added_for: outbound::authority_of(&account.base_url)
                    .filter(|_| account.has_token()),
            });
        }
    }
    Ok(Capabilities {
        filesystem: "none",
        environment: "none (no variables, no arguments, no stdio)",
        sockets: "none (no TCP, UDP or name lookups)",
        outbound_http,
        login: (kind == Some(PluginKind::Poster))
            .then(|| poster.map(|p| p.auth().clone()).unwrap_or_default()),
        media: poster.map(|p| {
            if p.takes_media() {
                "its own job's attachments, read-only, as the host checked them"
            } else {
                "none (built against a contract before 0.4.0: jobs with attachments are refused)"
            }
        }),
        rate_budgets: poster.map(|p| p.rate_budgets().to_vec()),
        limits: LimitsView {
            deadline_seconds: limits.deadline.as_secs(),
            memory_mib: limits.memory_bytes >> 20,
            response_mib: limits.response_bytes >> 20,
        },
    })
}

/// The rate budgets a poster declares, in one line, as an accounts file
/// writes them.
fn budgets_line(budgets: &[orchestrator_contract::RateBudget]) -> String {
    if budgets.is_empty() {
        return "none declared (give accounts a `rate` to keep a budget)".into();
    }
    let parts: Vec<String> = budgets
        .iter()
        .map(|b| {
            let per = humantime::format_duration(std::time::Duration::from_millis(b.per_ms));
            let whom = if b.platform {
                "per platform"
            } else {
                "per account"
            };
            format!("{}/{per} {whom}", b.count)
        })
        .collect();
    format!(
        "{} (defaults; an account's own `rate` wins)",
        parts.join(", ")
    )
}

/// What a poster says of its platform's login, in one line.
fn login_line(login: &orchestrator_contract::AuthSupport) -> String {
    let mut ways = vec!["bearer", "url-secret"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    if let Some(s) = &login.session {
        ways.push(format!(
            "session (login {}, refresh {})",
            shown(&s.login_path),
            shown(&s.refresh_path)
        ));
    }
    if let Some(o) = &login.oauth2 {
        ways.push(format!("oauth2 (token endpoint {})", shown(&o.token_path)));
    }
    format!("accounts may use {}", ways.join(", "))
}

/// The host that examines plugins, under the limits a run would have.
fn host(limits: &LimitArgs) -> Result<PluginHost> {
    Ok(PluginHost::with_limits(limits.limits()?)?
        .with_cache(limits.cache.cache())
        .with_native(limits.native.policy()))
}

async fn inspect(args: InspectArgs, batch: &BatchArgs) -> Result<u8> {
    let host = host(&batch.limits)?;
    let examined = host.examine(&args.file).await;
    let mut record = PluginRecord::from_examined(&examined, true);
    // A native plugin is not confined: there is nothing to grant.
    if examined.backend != Some(Backend::Native) {
        let name = examined
            .outcome
            .as_ref()
            .ok()
            .map(|p| p.info().name.as_str());
        let poster = examined.outcome.as_ref().ok().and_then(|p| p.as_poster());
        record.capabilities = Some(capabilities(batch, examined.kind, poster, name)?);
    }
    // A file that is not even a component has nothing to show but the error.
    if examined.interfaces.is_some() {
        if batch.json {
            print_json(&record)?;
        } else {
            print(&render_inspect(&record))?;
        }
    }
    match examined.outcome {
        Ok(_) => Ok(exit::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

fn render_inspect(r: &PluginRecord) -> String {
    let mut out = String::new();
    // Name, version, description and path come from the plugin and the
    // disk: each is shown escaped, on its own line.
    let mut line =
        |key: &str, value: String| out.push_str(&format!("{key:<13}{}\n", shown(&value)));
    line("name", r.name.clone());
    line("version", dash(&r.version));
    line("description", dash(&r.description));
    line("kind", dash(&r.kind));
    line(
        "contract",
        format!(
            "{CONTRACT_PACKAGE}@{} (this host accepts {})",
            dash(&r.contract),
            accepted_versions()
        ),
    );
    line("status", status(r));
    line(
        "backend",
        match r.backend {
            Backend::Native => {
                "native (unsandboxed: runs in the host's process with all of its access)".into()
            }
            Backend::Wasm => "wasm (sandboxed)".to_string(),
        },
    );
    line("path", r.path.display().to_string());
    line(
        "size",
        r.size.map(|s| format!("{s} bytes")).unwrap_or_default(),
    );
    line("sha256", dash(&r.sha256));
    line(
        "cached",
        match r.cache {
            Some(CacheUse::Hit) => "yes (compiled code loaded from the cache)".into(),
            Some(CacheUse::Stored) => "now (compiled and stored in the cache)".into(),
            Some(CacheUse::Compiled) => "off (compiled, not cached)".into(),
            Some(CacheUse::NotCompiled) | None => "-".into(),
        },
    );
    for (title, names) in [("imports", &r.imports), ("exports", &r.exports)] {
        let names = names.as_deref().unwrap_or_default();
        out.push_str(&format!("{title} ({}):\n", names.len()));
        for name in names {
            out.push_str(&format!("  {}\n", shown(name)));
        }
    }
    if let Some(c) = &r.capabilities {
        out.push_str("capabilities:\n");
        out.push_str(&format!("  filesystem   {}\n", c.filesystem));
        out.push_str(&format!("  environment  {}\n", c.environment));
        out.push_str(&format!("  sockets      {}\n", c.sockets));
        let http = match r.kind.as_deref() {
            Some("poster") if c.outbound_http.is_empty() => {
                "only each job's account base-URL host (give --accounts-file to list them)".into()
            }
            Some("poster") => "per account:".into(),
            _ => "none".to_string(),
        };
        if let Some(login) = &c.login {
            out.push_str(&format!("  login        {}\n", login_line(login)));
        }
        if let Some(media) = c.media {
            out.push_str(&format!("  media        {media}\n"));
        }
        if let Some(budgets) = &c.rate_budgets {
            out.push_str(&format!("  rate         {}\n", budgets_line(budgets)));
        }
        out.push_str(&format!("  http         {http}\n"));
        for grant in &c.outbound_http {
            if !grant.served {
                let other = grant.poster.as_deref().unwrap_or_default();
                out.push_str(&format!(
                    "    {}: served by {}, not this poster\n",
                    shown(&grant.account),
                    shown(other)
                ));
                continue;
            }
            let credential = grant
                .credential_added_for
                .as_ref()
                .map(|h| match grant.auth {
                    "url-secret" => {
                        format!(" (url-secret: put in place of {{secret}} for {h} only)")
                    }
                    "session" => {
                        format!(" (session: the host logs in; access token added for {h} only)")
                    }
                    "oauth2" => {
                        format!(" (oauth2: the host refreshes; access token added for {h} only)")
                    }
                    _ => format!(" (bearer: token added for {h} only)"),
                })
                .unwrap_or_else(|| format!(" ({}: no secret given)", grant.auth));
            out.push_str(&format!(
                "    {}: {}{credential}\n",
                shown(&grant.account),
                grant.hosts.join(", ")
            ));
        }
        out.push_str(&format!(
            "  limits       {} s per call, {} MiB memory, {} MiB per HTTP response\n",
            c.limits.deadline_seconds, c.limits.memory_mib, c.limits.response_mib
        ));
    }
    out
}
