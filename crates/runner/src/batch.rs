//! [`Batch`]: what a run works with — one poster, the classifiers in the
//! order given, the accounts with their platforms' settings — and
//! [`Batch::assemble`], which puts it together from loaded plugins and the
//! accounts file, enforcing the rules a batch must keep.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use orchestrator_plugin_host::{Plugin, PluginHost};

use crate::input::{self, AccountConfig, InputError};
use crate::plugins::{Classify, Post};

/// What the run works with.
#[derive(Clone)]
pub struct Batch {
    pub poster: Arc<dyn Post>,
    /// Consulted in order; the built-in rules come last.
    pub classifiers: Vec<Arc<dyn Classify>>,
    pub accounts: BTreeMap<String, AccountConfig>,
    /// Reloads a plugin whose file changed, before the next pass; `None`
    /// keeps the plugins loaded at the start.
    pub reload_with: Option<PluginHost>,
}

/// Settings for every account on one platform, by the host of its base
/// URL: defaults under each account's own settings, and hosts its posters
/// may also reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Platform {
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    #[serde(default)]
    pub allow_hosts: Vec<String>,
}

/// Why a batch cannot be put together.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(
        "--run needs a poster plugin: add --plugin POSTER.wasm (see `orchestrator plugins list`)"
    )]
    NoPlugins,
    #[error("--run needs exactly one poster plugin, and every --plugin given is a classifier")]
    NoPoster,
    #[error("--run takes exactly one poster plugin; got {}", .0.join(" and "))]
    Posters(Vec<String>),
    #[error("--accounts names {account}, which {file} does not define")]
    UnknownAccount { account: String, file: String },
    #[error(transparent)]
    Input(#[from] InputError),
}

impl Batch {
    /// A batch of `plugins` (exactly one poster, any number of classifiers,
    /// which keep their order) and `accounts`.
    pub fn assemble(
        plugins: Vec<Plugin>,
        accounts: BTreeMap<String, AccountConfig>,
        reload_with: Option<PluginHost>,
    ) -> Result<Batch, AssembleError> {
        if plugins.is_empty() {
            return Err(AssembleError::NoPlugins);
        }
        let mut posters: Vec<Arc<dyn Post>> = Vec::new();
        let mut classifiers: Vec<Arc<dyn Classify>> = Vec::new();
        for plugin in plugins {
            match plugin {
                Plugin::Poster(p) => posters.push(Arc::new(p)),
                Plugin::Classifier(c) => classifiers.push(Arc::new(c)),
            }
        }
        let poster = match posters.len() {
            1 => posters.remove(0),
            0 => return Err(AssembleError::NoPoster),
            _ => {
                return Err(AssembleError::Posters(
                    posters.iter().map(|p| p.info().name.clone()).collect(),
                ));
            }
        };
        Ok(Batch {
            poster,
            classifiers,
            accounts,
            reload_with,
        })
    }
}

/// The accounts of `file`, each under its platform's settings (its own
/// win), checked against `only` (`--accounts`), their tokens resolved now
/// rather than in the middle of a pass.
pub fn read_accounts(
    file: &Path,
    platforms: &BTreeMap<String, Platform>,
    only: Option<&[String]>,
) -> Result<BTreeMap<String, AccountConfig>, AssembleError> {
    let mut accounts = input::read_accounts(file)?;
    for account in accounts.values_mut() {
        let host = orchestrator_plugin_host::outbound::authority_of(&account.base_url)
            .and_then(|a| a.rsplit_once(':').map(|(h, _)| h.to_owned()));
        if let Some(platform) = host.and_then(|h| platforms.get(&h)) {
            for (key, value) in &platform.settings {
                if !account.settings.iter().any(|(k, _)| k == key) {
                    account.settings.push((key.clone(), value.clone()));
                }
            }
            account
                .allow_hosts
                .extend(platform.allow_hosts.iter().cloned());
        }
    }
    if let Some(unknown) = only
        .into_iter()
        .flatten()
        .find(|a| !accounts.contains_key(*a))
    {
        return Err(AssembleError::UnknownAccount {
            account: unknown.clone(),
            file: file.display().to_string(),
        });
    }
    for account in accounts.values_mut() {
        account.resolve_token()?;
    }
    Ok(accounts)
}
