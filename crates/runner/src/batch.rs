//! [`Batch`]: what a run works with — its posters (each account served by
//! the one it names, or by the only one given), the classifiers in the
//! order given, the accounts with their platforms' settings — and
//! [`Batch::assemble`], which puts it together from loaded plugins and the
//! accounts file, enforcing the rules a batch must keep.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use orchestrator_auth::{AccountAuth, Transport};
use orchestrator_contract::RateBudget;
use orchestrator_plugin_host::{Plugin, PluginHost};
use orchestrator_store::{NewJob, Store};

use crate::budget::{Rate, Rates};
use crate::input::{self, AccountConfig, InputError};
use crate::plugins::{Classify, Post};

/// What the run works with.
#[derive(Clone)]
pub struct Batch {
    /// In the order given, never empty; an account's is
    /// [`Batch::poster_for`].
    pub(crate) posters: Vec<Arc<dyn Post>>,
    /// Each account's poster, as an index into `posters`.
    poster_of: BTreeMap<String, usize>,
    /// Consulted in order; the built-in rules come last.
    pub classifiers: Vec<Arc<dyn Classify>>,
    pub accounts: BTreeMap<String, AccountConfig>,
    /// Each account's credentials, once [`Batch::authenticate`] made them;
    /// without, accounts send their secret as it is (`bearer`,
    /// `url-secret`) and the others none.
    pub(crate) auth: BTreeMap<String, Arc<AccountAuth>>,
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
    /// Budgets shared by every account on the platform (`"300/5m"`).
    #[serde(default)]
    pub rate: crate::budget::Rates,
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
    #[error(
        "account {account} names no poster, and --plugin gives {} ({}); add poster = \"NAME\" to its entry in the accounts file",
        .posters.len(), .posters.join(" and ")
    )]
    PosterNotNamed {
        account: String,
        posters: Vec<String>,
    },
    #[error(
        "account {account} names poster {poster:?}, which no --plugin gives (posters given: {})",
        .given.join(", ")
    )]
    UnknownPoster {
        account: String,
        poster: String,
        given: Vec<String>,
    },
    #[error("--plugin gives two posters named {0}; give each poster once")]
    DuplicatePoster(String),
    #[error("account {account}: {reason}")]
    Auth { account: String, reason: String },
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
        Batch::new(posters, classifiers, accounts, reload_with)
    }

    /// A batch of these plugins and accounts: each account is served by the
    /// poster it names, or by the only one given.
    pub fn new(
        posters: Vec<Arc<dyn Post>>,
        classifiers: Vec<Arc<dyn Classify>>,
        accounts: BTreeMap<String, AccountConfig>,
        reload_with: Option<PluginHost>,
    ) -> Result<Batch, AssembleError> {
        let names: Vec<String> = posters.iter().map(|p| p.info().name.clone()).collect();
        if names.is_empty() {
            return Err(AssembleError::NoPoster);
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(AssembleError::DuplicatePoster(name.clone()));
            }
        }
        let mut poster_of = BTreeMap::new();
        for (name, account) in &accounts {
            let index = match &account.poster {
                Some(wanted) => names.iter().position(|n| n == wanted).ok_or_else(|| {
                    AssembleError::UnknownPoster {
                        account: name.clone(),
                        poster: wanted.clone(),
                        given: names.clone(),
                    }
                })?,
                None if names.len() == 1 => 0,
                None => {
                    return Err(AssembleError::PosterNotNamed {
                        account: name.clone(),
                        posters: names,
                    });
                }
            };
            poster_of.insert(name.clone(), index);
        }
        let mut accounts = accounts;
        for (name, account) in accounts.iter_mut() {
            with_default_budgets(account, &posters[poster_of[name]].rate_budgets());
        }
        Ok(Batch {
            posters,
            poster_of,
            classifiers,
            accounts,
            auth: BTreeMap::new(),
            reload_with,
        })
    }

    /// Refuses `jobs` of which one has attachments that its account's
    /// poster cannot read (a native one, or one built against a contract
    /// before 0.4.0), before anything is imported or run.
    pub fn check_media(&self, jobs: &[NewJob]) -> Result<(), InputError> {
        for job in jobs {
            crate::media::readable_by(&job.payload, self.poster_for(&job.account).as_ref())
                .map_err(|reason| InputError::Media {
                    job: job.id.clone(),
                    reason,
                })?;
        }
        Ok(())
    }

    /// Checks each account's scheme against what its poster says of the
    /// platform's login, before anything is opened or imported.
    pub fn check_auth(&self) -> Result<(), AssembleError> {
        for (name, account) in &self.accounts {
            let poster = self.poster_for(name);
            AccountAuth::check(&account.auth_spec(), &poster.auth(), &poster.info().name).map_err(
                |e| AssembleError::Auth {
                    account: name.clone(),
                    reason: e.to_string(),
                },
            )?;
        }
        Ok(())
    }

    /// Gives each account the keeper of its credentials, checked against
    /// what its poster says of the platform's login: an account whose
    /// scheme cannot work is refused now, before anything runs. Tokens the
    /// platforms issue are kept in `store`; logins and refreshes go
    /// through `transport`.
    pub fn authenticate(
        &mut self,
        store: Arc<dyn Store>,
        transport: Arc<dyn Transport>,
    ) -> Result<(), AssembleError> {
        for (name, account) in &self.accounts {
            let poster = self.poster_for(name);
            let auth = AccountAuth::new(
                account.auth_spec(),
                &poster.auth(),
                &poster.info().name,
                store.clone(),
                transport.clone(),
            )
            .map_err(|e| AssembleError::Auth {
                account: name.clone(),
                reason: e.to_string(),
            })?;
            self.auth.insert(name.clone(), Arc::new(auth));
        }
        Ok(())
    }

    /// The keeper of `account`'s credentials, once authenticated.
    pub fn auth_for(&self, account: &str) -> Option<&Arc<AccountAuth>> {
        self.auth.get(account)
    }

    /// The poster that serves `account`: the one it names, or the only one.
    pub fn poster_for(&self, account: &str) -> &Arc<dyn Post> {
        &self.posters[self.poster_of.get(account).copied().unwrap_or(0)]
    }

    /// The posters, in the order given.
    pub fn posters(&self) -> &[Arc<dyn Post>] {
        &self.posters
    }

    /// Every plugin of the batch loaded from a file, posters first, as the
    /// store records them for whoever looks at the run.
    pub fn plugins_in_use(&self) -> Vec<orchestrator_store::PluginUse> {
        let posters = self.posters.iter().filter_map(|p| p.loaded_from());
        let classifiers = self.classifiers.iter().filter_map(|c| c.loaded_from());
        posters
            .chain(classifiers)
            .map(|meta| orchestrator_store::PluginUse {
                name: meta.info.name.clone(),
                version: meta.info.version.clone(),
                kind: meta.kind.as_str().to_owned(),
                backend: meta.backend.as_str().to_owned(),
                sha256: meta.sha256.clone(),
            })
            .collect()
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
    under_platforms(&mut accounts, platforms);
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

/// The rate budgets `declared` by an account's poster, where the accounts
/// file and the platform's table give none.
fn with_default_budgets(account: &mut AccountConfig, declared: &[RateBudget]) {
    let of = |platform: bool| {
        Rates(
            declared
                .iter()
                .filter(|b| b.platform == platform)
                .map(|b| Rate {
                    count: b.count,
                    per: std::time::Duration::from_millis(b.per_ms),
                })
                .collect(),
        )
    };
    if account.rates.is_empty() {
        account.rates = of(false);
    }
    let platform = of(true);
    if account.platform_rates.is_none()
        && !platform.is_empty()
        && let Some(host) = platform_host(&account.base_url)
    {
        account.platform_rates = Some((host, platform));
    }
}

/// The host a `[platform."host"]` table names for `base_url`: its host,
/// without the port.
fn platform_host(base_url: &str) -> Option<String> {
    orchestrator_plugin_host::outbound::authority_of(base_url)
        .and_then(|a| a.rsplit_once(':').map(|(h, _)| h.to_owned()))
}

/// Puts each account under its platform's table, by the host of its base
/// URL: the platform's settings under its own, its hosts, its budgets.
pub fn under_platforms(
    accounts: &mut BTreeMap<String, AccountConfig>,
    platforms: &BTreeMap<String, Platform>,
) {
    for account in accounts.values_mut() {
        let host = platform_host(&account.base_url);
        if let Some((host, platform)) = host.and_then(|h| platforms.get(&h).map(|p| (h, p))) {
            for (key, value) in &platform.settings {
                if !account.settings.iter().any(|(k, _)| k == key) {
                    account.settings.push((key.clone(), value.clone()));
                }
            }
            account
                .allow_hosts
                .extend(platform.allow_hosts.iter().cloned());
            if !platform.rate.is_empty() {
                account.platform_rates = Some((host, platform.rate.clone()));
            }
        }
    }
}
