//! [`AccountAuth`]: one account's credentials — its configured secret and
//! the tokens its platform issued — and the one place they are renewed.
//!
//! Renewals of an account are serialised by one lock: however many of its
//! jobs are in flight, one logs in or refreshes and the others wait for
//! the result. Tokens are read from the store once (a later run starts
//! with the session the last one left), re-read before a renewal (another
//! process may have renewed meanwhile), and written — sealed, durably —
//! before a renewed access token is handed out: a rotated refresh token is
//! never only in memory while its access token is in use.

use std::sync::Arc;

use orchestrator_contract::AuthSupport;
use orchestrator_store::Store;

use crate::flow::{self, ANSWER_BYTES};
use crate::seal::{SealKey, Tokens};
use crate::{Credential, Placement, Refusal, Scheme, Secret, Transport};

/// What the accounts file says of one account's authentication.
#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub name: String,
    pub base_url: String,
    pub scheme: Scheme,
    /// The account's secret, already read: a token, a URL secret, a
    /// password or a first refresh token, as the scheme says.
    pub secret: Option<Secret>,
    /// The `identifier` setting a session logs in with.
    pub identifier: Option<String>,
    /// The `client_id` setting an OAuth 2 refresh sends.
    pub client_id: Option<String>,
}

/// Why an account cannot authenticate as configured: one sentence, after
/// "account NAME: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// Milliseconds since the epoch, as the keeper's clock reads them.
pub type Now = Arc<dyn Fn() -> u64 + Send + Sync>;

/// One account's credentials; see the module documentation.
pub struct AccountAuth {
    spec: AccountSpec,
    support: AuthSupport,
    /// The sealing key, for schemes whose tokens are kept.
    key: Option<SealKey>,
    store: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    now: Now,
    held: tokio::sync::Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Whether the store was read yet.
    loaded: bool,
    tokens: Option<Tokens>,
    /// The platform said the current access token expired.
    stale: bool,
    /// The platform refused the last login or refresh, and until when (ms)
    /// that answer stands: a wrong password or a revoked grant for the
    /// rest of the process, a rate limit until its wait is over. Every job
    /// of the account meets this answer instead of asking again — a
    /// platform that limits logins counts every refused one too.
    refused: Option<(Refusal, u64)>,
}

impl AccountAuth {
    /// The keeper of `spec`'s credentials, once [`AccountAuth::check`]ed.
    pub fn new(
        spec: AccountSpec,
        support: &AuthSupport,
        poster: &str,
        store: Arc<dyn Store>,
        transport: Arc<dyn Transport>,
    ) -> Result<AccountAuth, SetupError> {
        Self::check(&spec, support, poster)?;
        let key = match (spec.scheme, &spec.secret) {
            (Scheme::Session | Scheme::OAuth2, Some(secret)) => {
                Some(SealKey::derive(secret, &spec.name, spec.scheme))
            }
            _ => None,
        };
        Ok(AccountAuth {
            spec,
            support: support.clone(),
            key,
            store,
            transport,
            now: Arc::new(orchestrator_contract::time::now_ms),
            held: Default::default(),
        })
    }

    /// Whether `spec` can work with a poster that describes `support`
    /// (`poster` names it in messages): checked before anything runs.
    pub fn check(
        spec: &AccountSpec,
        support: &AuthSupport,
        poster: &str,
    ) -> Result<(), SetupError> {
        let scheme = spec.scheme;
        let missing = || {
            SetupError(format!(
                "auth = \"{scheme}\" needs {}: give secret_env, secret_file or secret",
                scheme.secret_is()
            ))
        };
        match scheme {
            Scheme::Bearer => {}
            Scheme::UrlSecret => {
                let secret = spec.secret.as_ref().ok_or_else(missing)?;
                if !url_path_safe(secret.expose()) {
                    return Err(SetupError(
                        "its url-secret may hold only letters, digits and - _ . ~ / (no empty or .. segments); give the part of the URL the poster leaves to {secret}".into(),
                    ));
                }
            }
            Scheme::Session => {
                if support.session.is_none() {
                    return Err(SetupError(format!(
                        "auth = \"session\", but its poster {poster} describes no session login (contract 0.2.0 posters describe none); use a poster that logs in, or another auth"
                    )));
                }
                spec.secret.as_ref().ok_or_else(missing)?;
                if spec.identifier.as_deref().is_none_or(str::is_empty) {
                    return Err(SetupError(
                        "auth = \"session\" needs an `identifier` setting: the handle or e-mail it logs in with".into(),
                    ));
                }
            }
            Scheme::OAuth2 => {
                if support.oauth2.is_none() {
                    return Err(SetupError(format!(
                        "auth = \"oauth2\", but its poster {poster} describes no OAuth 2 token endpoint (contract 0.2.0 posters describe none); use a poster that does, or another auth"
                    )));
                }
                spec.secret.as_ref().ok_or_else(missing)?;
                if spec.client_id.as_deref().is_none_or(str::is_empty) {
                    return Err(SetupError(
                        "auth = \"oauth2\" needs a `client_id` setting: the id of the app it was authorised for".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Reads time from `now` instead of the wall clock (tests).
    pub fn with_clock(mut self, now: Now) -> Self {
        self.now = now;
        self
    }

    pub fn scheme(&self) -> Scheme {
        self.spec.scheme
    }

    /// What the next attempt sends: `None` for an account with no secret
    /// at all (a `bearer` account without a token). Logs in or refreshes
    /// first when the tokens are missing, about to expire, or expired.
    pub async fn credential(&self) -> Result<Option<Credential>, Refusal> {
        let secret = match (self.spec.scheme, &self.spec.secret) {
            (Scheme::Bearer | Scheme::UrlSecret, None) => return Ok(None),
            (Scheme::Bearer, Some(token)) => {
                return Ok(Some(Credential::fixed(Placement::Bearer, token.clone())));
            }
            (Scheme::UrlSecret, Some(s)) => {
                return Ok(Some(Credential::fixed(Placement::UrlPath, s.clone())));
            }
            (_, secret) => secret.clone(),
        };
        let mut held = self.held.lock().await;
        let just_read = !held.loaded;
        if just_read {
            held.tokens = self.stored().await?;
            held.loaded = true;
        }
        let now = (self.now)();
        if let Some(tokens) = held
            .tokens
            .as_ref()
            .filter(|t| !held.stale && fresh(t, now))
        {
            return Ok(Some(self.issued(tokens, secret)));
        }
        if let Some((refusal, until)) = &held.refused
            && now < *until
        {
            return Err(refusal.clone());
        }
        // Another process sharing the store may have renewed since this one
        // read it (just now, it did not).
        if !just_read
            && let Some(stored) = self.stored().await?
            && held
                .tokens
                .as_ref()
                .is_none_or(|t| stored.generation > t.generation)
            && fresh(&stored, now)
        {
            held.stale = false;
            let credential = self.issued(&stored, secret);
            held.tokens = Some(stored);
            return Ok(Some(credential));
        }
        let tokens = match self.renew(held.tokens.as_ref()).await {
            Ok(tokens) => tokens,
            Err(refusal) => {
                if let Refusal::Platform {
                    status,
                    retry_after_ms,
                    ..
                } = &refusal
                {
                    let until = match (status, retry_after_ms) {
                        (429, wait) | (_, wait @ Some(_)) => {
                            now.saturating_add(wait.unwrap_or(1000))
                        }
                        _ => u64::MAX,
                    };
                    held.refused = Some((refusal.clone(), until));
                }
                return Err(refusal);
            }
        };
        held.refused = None;
        let credential = self.issued(&tokens, secret);
        held.tokens = Some(tokens);
        held.stale = false;
        Ok(Some(credential))
    }

    /// The platform said the access token of `generation` expired: the
    /// next attempt renews it — once, however many attempts say so.
    pub async fn expired(&self, generation: u64) {
        let mut held = self.held.lock().await;
        if held
            .tokens
            .as_ref()
            .is_some_and(|t| t.generation == generation)
        {
            held.stale = true;
        }
    }

    /// Whether a failed attempt's answer means its access token expired:
    /// HTTP 401, or a code the poster named, for schemes that renew.
    pub fn is_expired_answer(&self, status: Option<u16>, code: Option<&str>) -> bool {
        matches!(self.spec.scheme, Scheme::Session | Scheme::OAuth2)
            && (status == Some(401) || code.is_some_and(|c| self.support.is_expired_code(c)))
    }

    fn issued(&self, tokens: &Tokens, secret: Option<Secret>) -> Credential {
        let scrub = [Some(tokens.access.clone()), tokens.refresh.clone(), secret]
            .into_iter()
            .flatten()
            .collect();
        Credential {
            placement: Placement::Bearer,
            secret: tokens.access.clone(),
            generation: tokens.generation,
            scrub,
        }
    }

    /// The tokens the store holds for this account, if they open under
    /// this account's secret.
    async fn stored(&self) -> Result<Option<Tokens>, Refusal> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let (store, name) = (self.store.clone(), self.spec.name.clone());
        let sealed = tokio::task::spawn_blocking(move || store.sealed_tokens(&name))
            .await
            .map_err(|e| Refusal::Store(e.to_string()))?
            .map_err(|e| Refusal::Store(e.to_string()))?;
        Ok(sealed.and_then(|s| key.open(&s)))
    }

    /// Logs in or refreshes, and stores the result before returning it.
    async fn renew(&self, previous: Option<&Tokens>) -> Result<Tokens, Refusal> {
        let spec = &self.spec;
        let secret = spec.secret.as_ref().expect("checked in new");
        let issued = match spec.scheme {
            Scheme::Session => {
                let login = self.support.session.as_ref().expect("checked in new");
                let refreshed = match previous.and_then(|t| t.refresh.as_ref()) {
                    Some(refresh) => {
                        let what = "the session refresh";
                        let request = flow::session_refresh_request(&spec.base_url, login, refresh);
                        match self.exchange(what, request).await {
                            Ok(answer) => {
                                match flow::session_answer(what, login, &answer, (self.now)()) {
                                    Ok(issued) => Some(issued),
                                    // Refused (expired, revoked): log in again below.
                                    Err(refusal) => {
                                        tracing::info!(account = %spec.name, "{}", self.scrubbed(refusal));
                                        None
                                    }
                                }
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    None => None,
                };
                match refreshed {
                    Some(issued) => issued,
                    None => {
                        let what = "the login";
                        let identifier = spec.identifier.as_deref().unwrap_or_default();
                        let request =
                            flow::login_request(&spec.base_url, login, identifier, secret);
                        let answer = self.exchange(what, request).await?;
                        tracing::info!(account = %spec.name, "logging in to {}", spec.base_url);
                        flow::session_answer(what, login, &answer, (self.now)())
                            .map_err(|r| self.scrubbed(r))?
                    }
                }
            }
            Scheme::OAuth2 => {
                let oauth2 = self.support.oauth2.as_ref().expect("checked in new");
                let refresh = previous.and_then(|t| t.refresh.as_ref()).unwrap_or(secret);
                let client_id = spec.client_id.as_deref().unwrap_or_default();
                let request = flow::oauth2_request(&spec.base_url, oauth2, refresh, client_id);
                let answer = self.exchange("the OAuth 2 refresh", request).await?;
                let mut issued = flow::oauth2_answer(&answer, (self.now)()).map_err(|r| {
                    match self.scrubbed(r) {
                        Refusal::Platform { what, status, code, message, retry_after_ms } if status == 400 || status == 401 => Refusal::Platform {
                            what,
                            status,
                            code,
                            message: format!("{message}; if the account is locked out, authorise it again and give its new refresh token as its secret"),
                            retry_after_ms,
                        },
                        other => other,
                    }
                })?;
                // A platform that does not rotate keeps the one sent good.
                issued.refresh = issued.refresh.or_else(|| Some(refresh.clone()));
                issued
            }
            Scheme::Bearer | Scheme::UrlSecret => unreachable!("fixed secrets are never renewed"),
        };
        let now = (self.now)();
        let lifetime_ms = issued
            .lifetime_ms
            .unwrap_or(match self.support.token_lifetime_secs {
                0 => 3600 * 1000,
                s => s.saturating_mul(1000),
            });
        let tokens = Tokens {
            access: issued.access,
            refresh: issued.refresh,
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(lifetime_ms),
            generation: previous.map_or(0, |t| t.generation).saturating_add(1),
        };
        // Durable before use: a crash after this line finds the rotated
        // refresh token; a crash before it never used the new access token.
        let sealed = self
            .key
            .as_ref()
            .expect("renewing schemes seal")
            .seal(&tokens);
        let (store, name) = (self.store.clone(), spec.name.clone());
        tokio::task::spawn_blocking(move || store.seal_tokens(&name, &sealed))
            .await
            .map_err(|e| Refusal::Store(e.to_string()))?
            .map_err(|e| Refusal::Store(e.to_string()))?;
        tracing::debug!(account = %spec.name, generation = tokens.generation, "tokens renewed");
        Ok(tokens)
    }

    async fn exchange(
        &self,
        what: &'static str,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, Refusal> {
        self.transport
            .send(request, ANSWER_BYTES)
            .await
            .map_err(|reason| self.scrubbed(Refusal::Unreachable { what, reason }))
    }

    /// A refusal with every secret of the account cut out of its texts: a
    /// platform may echo what it was sent.
    fn scrubbed(&self, refusal: Refusal) -> Refusal {
        let secret = self.spec.secret.as_ref().map(|s| s.expose().to_owned());
        let cut = |text: String| match &secret {
            Some(s) if s.len() >= crate::SCRUB_MIN_BYTES => text.replace(s.as_str(), "[redacted]"),
            _ => text,
        };
        match refusal {
            Refusal::Platform {
                what,
                status,
                code,
                message,
                retry_after_ms,
            } => Refusal::Platform {
                what,
                status,
                code: code.map(cut),
                message: cut(message),
                retry_after_ms,
            },
            Refusal::Unreachable { what, reason } => Refusal::Unreachable {
                what,
                reason: cut(reason),
            },
            Refusal::Store(reason) => Refusal::Store(cut(reason)),
        }
    }
}

/// Whether `tokens` can still be sent at `now`: not within the last fifth
/// of their life (at most a minute), so an attempt does not start with a
/// token that expires while it runs.
fn fresh(tokens: &Tokens, now: u64) -> bool {
    let life = tokens.expires_at_ms.saturating_sub(tokens.issued_at_ms);
    let margin = (life / 5).min(60_000);
    now.saturating_add(margin) < tokens.expires_at_ms
}

/// Whether `secret` can stand in a URL path as it is.
fn url_path_safe(secret: &str) -> bool {
    !secret.is_empty()
        && secret.len() <= 2048
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~/".contains(&b))
        && secret
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

#[cfg(test)]
mod tests;
