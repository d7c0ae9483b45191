//! [`Poster`] and [`Classifier`], the two kinds of loaded plugin (and
//! [`Plugin`], either one, as a file turns out to be), and how the host
//! calls them: each call in a fresh `Store` under the deadline, its answer
//! cut to the sizes the host keeps. Each kind runs on either backend, a
//! wasm component or a trusted native library; a poster has no `classify`
//! and a classifier no `post`, so a call to the wrong kind does not compile.

use std::sync::Arc;
use std::time::Instant;

use orchestrator_contract::{
    AuthSupport, FailureReport, HostFault, JobContext, PluginInfo, PluginKind, PostFailure,
    RateBudget, Receipt, Verdict,
};
use orchestrator_world::classifier::ClassifierPre;
use orchestrator_world::poster::PosterPre;
use orchestrator_world::{v0_2, v0_3};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use crate::media::Attachments;
use crate::native::Native;
use crate::outbound::{self, FaultLog, OutboundAccess};
use crate::state::HostState;
use crate::{Limits, PluginMeta, convert, one_line};

/// A loaded plugin of either kind.
#[derive(Debug)]
pub enum Plugin {
    Poster(Poster),
    Classifier(Classifier),
}

impl Plugin {
    pub fn meta(&self) -> &PluginMeta {
        match self {
            Plugin::Poster(p) => &p.meta,
            Plugin::Classifier(c) => &c.meta,
        }
    }

    pub fn kind(&self) -> PluginKind {
        self.meta().kind
    }

    pub fn info(&self) -> &PluginInfo {
        &self.meta().info
    }

    /// The poster this is, if it is one.
    pub fn as_poster(&self) -> Option<&Poster> {
        match self {
            Plugin::Poster(p) => Some(p),
            Plugin::Classifier(_) => None,
        }
    }

    /// The classifier this is, if it is one.
    pub fn as_classifier(&self) -> Option<&Classifier> {
        match self {
            Plugin::Classifier(c) => Some(c),
            Plugin::Poster(_) => None,
        }
    }

    /// The poster this is, if it is one.
    pub fn into_poster(self) -> Option<Poster> {
        match self {
            Plugin::Poster(p) => Some(p),
            Plugin::Classifier(_) => None,
        }
    }

    /// The classifier this is, if it is one.
    pub fn into_classifier(self) -> Option<Classifier> {
        match self {
            Plugin::Classifier(c) => Some(c),
            Plugin::Poster(_) => None,
        }
    }
}

/// The outcome of one attempt, as the host saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Posted(Receipt),
    /// What the plugin returned (if it returned) and what the host saw (if
    /// anything); at least one of the two is present.
    Failed {
        failure: Option<PostFailure>,
        fault: Option<HostFault>,
    },
}

/// A poster plugin, ready to be called. Cheap to share: each call gets its
/// own `Store` and instance.
pub struct Poster {
    pub(crate) meta: PluginMeta,
    pub(crate) backend: PosterBackend,
    pub(crate) calls: Calls,
    /// How its platform logs in, as it described it (checked).
    pub(crate) auth: Arc<AuthSupport>,
    /// The rate budgets it declared for its platform (checked).
    pub(crate) budgets: Arc<Vec<RateBudget>>,
}

pub(crate) enum PosterBackend {
    Wasm(
        Versioned<
            PosterPre<HostState>,
            v0_3::poster::PosterPre<HostState>,
            v0_2::poster::PosterPre<HostState>,
        >,
    ),
    Native(Native),
}

/// A component of the current contract or of an older one the host still
/// serves. The generated types differ per version; their calls do not.
pub(crate) enum Versioned<Current, V3, V2> {
    Current(Current),
    V0_3(V3),
    V0_2(V2),
}

/// Instantiates a [`Versioned`] pre-instance in `$store` and evaluates
/// `$body` with the instance as `$instance`, whichever version it is.
macro_rules! instantiated {
    ($pre:expr, $store:ident, |$instance:ident| $body:expr) => {
        match $pre {
            Versioned::Current(pre) => {
                let $instance = pre.instantiate_async(&mut *$store).await?;
                $body
            }
            Versioned::V0_3(pre) => {
                let $instance = pre.instantiate_async(&mut *$store).await?;
                $body
            }
            Versioned::V0_2(pre) => {
                let $instance = pre.instantiate_async(&mut *$store).await?;
                $body
            }
        }
    };
}

/// A classifier plugin, ready to be called, shared as [`Poster`] is.
pub struct Classifier {
    pub(crate) meta: PluginMeta,
    pub(crate) backend: ClassifierBackend,
    pub(crate) calls: Calls,
}

pub(crate) enum ClassifierBackend {
    Wasm(
        Versioned<
            ClassifierPre<HostState>,
            v0_3::classifier::ClassifierPre<HostState>,
            v0_2::classifier::ClassifierPre<HostState>,
        >,
    ),
    Native(Native),
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster").field("meta", &self.meta).finish()
    }
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("meta", &self.meta)
            .finish()
    }
}

/// What every call of a plugin shares: the engine, the host's limits and
/// its keep-alive connections.
pub(crate) struct Calls {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    pub(crate) pool: outbound::Pool,
}

impl Calls {
    /// A fresh store for one call of the plugin `meta` describes, granted
    /// `access`, its deadline starting now.
    fn store(
        &self,
        meta: &PluginMeta,
        access: OutboundAccess,
        faults: FaultLog,
    ) -> Store<HostState> {
        let name: Arc<str> = if meta.info.name.is_empty() {
            Arc::from(meta.path.display().to_string())
        } else {
            Arc::from(meta.info.name.as_str())
        };
        let mut store = Store::new(
            &self.engine,
            HostState::new(name, access, faults, self.limits, self.pool.clone()),
        );
        store.limiter(|s| &mut s.memory);
        let deadline = Instant::now() + self.limits.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                // Let other attempts on this thread run, then check again.
                UpdateDeadline::Yield(1)
            })
        });
        store
    }

    /// One call of the plugin `meta` describes, in a fresh store granted
    /// `access` (faults its hooks see go to `faults`), under the deadline.
    async fn call<R>(
        &self,
        meta: &PluginMeta,
        access: OutboundAccess,
        faults: FaultLog,
        call: impl AsyncFnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, HostFault> {
        let mut store = self.store(meta, access, faults);
        self.guarded(&mut store, call).await
    }

    /// Runs one call under the deadline, and turns what went wrong into the
    /// host fault that explains it.
    async fn guarded<R>(
        &self,
        store: &mut Store<HostState>,
        call: impl AsyncFnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, HostFault> {
        let deadline_ms = self.limits.deadline.as_millis() as u64;
        // The outer timeout covers a guest blocked in a host call (waiting
        // on HTTP), where epochs are not checked.
        match tokio::time::timeout(self.limits.deadline, call(&mut *store)).await {
            Err(_) => Err(HostFault::Timeout(deadline_ms)),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if let Some(desired) = store.data().memory.refused {
                    return Err(HostFault::OutOfMemory(format!(
                        "tried to grow linear memory to {} MiB, past the {} MiB limit",
                        desired >> 20,
                        self.limits.memory_bytes >> 20
                    )));
                }
                if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                    return Err(HostFault::Timeout(deadline_ms));
                }
                Err(trap(e))
            }
        }
    }
}

impl Poster {
    pub fn meta(&self) -> &PluginMeta {
        &self.meta
    }

    pub fn info(&self) -> &PluginInfo {
        &self.meta.info
    }

    /// What the plugin says of itself (a native library said it on load).
    pub(crate) async fn describe(&self) -> Result<PluginInfo, HostFault> {
        let pre = match &self.backend {
            PosterBackend::Native(_) => return Ok(self.meta.info.clone()),
            PosterBackend::Wasm(pre) => pre,
        };
        let (access, faults) = (OutboundAccess::default(), FaultLog::default());
        let info = self
            .calls
            .call(&self.meta, access, faults, async |store| {
                instantiated!(pre, store, |instance| {
                    instance
                        .orchestrator_plugin_metadata()
                        .call_describe(store)
                        .await
                })
            })
            .await?;
        Ok(convert::plugin_info(info).bounded())
    }

    /// How its platform logs in and refreshes, as it describes it. A
    /// 0.2.0 or native poster describes nothing: its accounts use
    /// `bearer` or `url-secret`.
    pub(crate) async fn describe_auth(&self) -> Result<AuthSupport, HostFault> {
        let (access, faults) = (OutboundAccess::default(), FaultLog::default());
        match &self.backend {
            PosterBackend::Wasm(Versioned::Current(pre)) => {
                let support = self
                    .calls
                    .call(&self.meta, access, faults, async |store| {
                        let instance = pre.instantiate_async(&mut *store).await?;
                        instance
                            .orchestrator_plugin_auth()
                            .call_describe_auth(store)
                            .await
                    })
                    .await?;
                Ok(convert::auth_support(support))
            }
            PosterBackend::Wasm(Versioned::V0_3(pre)) => {
                let support = self
                    .calls
                    .call(&self.meta, access, faults, async |store| {
                        let instance = pre.instantiate_async(&mut *store).await?;
                        instance
                            .orchestrator_plugin_auth()
                            .call_describe_auth(store)
                            .await
                    })
                    .await?;
                Ok(convert::auth_support_v0_3(support))
            }
            _ => Ok(AuthSupport::default()),
        }
    }

    /// The rate budgets its platform keeps, as it declares them: a 0.4.0
    /// poster's `limits`; none for older and native posters.
    pub(crate) async fn describe_limits(&self) -> Result<Vec<RateBudget>, HostFault> {
        let (access, faults) = (OutboundAccess::default(), FaultLog::default());
        match &self.backend {
            PosterBackend::Wasm(Versioned::Current(pre)) => {
                let budgets = self
                    .calls
                    .call(&self.meta, access, faults, async |store| {
                        let instance = pre.instantiate_async(&mut *store).await?;
                        instance
                            .orchestrator_plugin_limits()
                            .call_rate_budgets(store)
                            .await
                    })
                    .await?;
                Ok(convert::rate_budgets(budgets))
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The rate budgets it declared on load: defaults for its accounts.
    pub fn rate_budgets(&self) -> &[RateBudget] {
        &self.budgets
    }

    /// Whether it can read a job's attachments: a poster built against
    /// contract 0.4.0 or later imports `media`. Older and native posters
    /// cannot, so the host does not give them jobs with attachments.
    pub fn takes_media(&self) -> bool {
        matches!(self.backend, PosterBackend::Wasm(Versioned::Current(_)))
    }

    /// How its platform logs in, as it described it on load.
    pub fn auth(&self) -> &AuthSupport {
        &self.auth
    }

    /// One attempt of `job`, reaching only what `access` grants. What the
    /// plugin returns is cut to the sizes the host keeps
    /// ([`orchestrator_contract::text`]).
    pub async fn post(&self, job: &JobContext, access: OutboundAccess) -> Attempt {
        self.post_with_media(job, access, Attachments::default())
            .await
    }

    /// [`Poster::post`] of a job whose attachments the host checked:
    /// the plugin reads `media`, and nothing else, through the `media`
    /// interface. A poster that cannot ([`Poster::takes_media`]) is not
    /// given them.
    pub async fn post_with_media(
        &self,
        job: &JobContext,
        access: OutboundAccess,
        media: Attachments,
    ) -> Attempt {
        match self.post_unbounded(job, access, media).await {
            Attempt::Posted(receipt) => Attempt::Posted(receipt.bounded()),
            Attempt::Failed { failure, fault } => Attempt::Failed {
                failure: failure.map(PostFailure::bounded),
                fault: fault.map(HostFault::bounded),
            },
        }
    }

    async fn post_unbounded(
        &self,
        job: &JobContext,
        access: OutboundAccess,
        media: Attachments,
    ) -> Attempt {
        let pre = match &self.backend {
            PosterBackend::Native(native) => {
                return match native.post(job, &access, self.calls.limits.deadline).await {
                    Ok(Ok(receipt)) => Attempt::Posted(receipt),
                    Ok(Err(failure)) => Attempt::Failed {
                        failure: Some(failure),
                        fault: None,
                    },
                    Err(fault) => Attempt::Failed {
                        failure: None,
                        fault: Some(fault),
                    },
                };
            }
            PosterBackend::Wasm(pre) => pre,
        };
        let faults = FaultLog::default();
        let job = convert::job(job);
        let mut store = self.calls.store(&self.meta, access, faults.clone());
        store.data_mut().media = media;
        let result = self
            .calls
            .guarded(&mut store, async |store| {
                instantiated!(pre, store, |instance| {
                    instance
                        .orchestrator_plugin_post()
                        .call_post(store, &job)
                        .await
                })
            })
            .await;
        // The first fault the host saw is the one that explains the failure.
        let fault = faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .cloned();
        match result {
            Ok(Ok(receipt)) => Attempt::Posted(convert::receipt(receipt)),
            Ok(Err(failure)) => Attempt::Failed {
                failure: Some(convert::failure_from_wit(failure)),
                fault,
            },
            // A fault the hooks saw (a denied request) explains the trap or
            // timeout that followed it.
            Err(e) => Attempt::Failed {
                failure: None,
                fault: Some(fault.unwrap_or(e)),
            },
        }
    }
}

impl Classifier {
    pub fn meta(&self) -> &PluginMeta {
        &self.meta
    }

    pub fn info(&self) -> &PluginInfo {
        &self.meta.info
    }

    /// What the plugin says of itself (a native library said it on load).
    pub(crate) async fn describe(&self) -> Result<PluginInfo, HostFault> {
        let pre = match &self.backend {
            ClassifierBackend::Native(_) => return Ok(self.meta.info.clone()),
            ClassifierBackend::Wasm(pre) => pre,
        };
        let (access, faults) = (OutboundAccess::default(), FaultLog::default());
        let info = self
            .calls
            .call(&self.meta, access, faults, async |store| {
                instantiated!(pre, store, |instance| {
                    instance
                        .orchestrator_plugin_metadata()
                        .call_describe(store)
                        .await
                })
            })
            .await?;
        Ok(convert::plugin_info(info).bounded())
    }

    /// Asks this classifier about a failure; its answer is cut to the
    /// sizes the host keeps ([`orchestrator_contract::text`]).
    pub async fn classify(&self, report: &FailureReport) -> Result<Verdict, HostFault> {
        self.classify_unbounded(report)
            .await
            .map(Verdict::bounded)
            .map_err(HostFault::bounded)
    }

    async fn classify_unbounded(&self, report: &FailureReport) -> Result<Verdict, HostFault> {
        let pre = match &self.backend {
            ClassifierBackend::Native(native) => {
                return native.classify(report, self.calls.limits.deadline).await;
            }
            ClassifierBackend::Wasm(pre) => pre,
        };
        let (access, faults) = (OutboundAccess::default(), FaultLog::default());
        let report = convert::report(report);
        let verdict = self
            .calls
            .call(&self.meta, access, faults, async |store| {
                instantiated!(pre, store, |instance| {
                    instance
                        .orchestrator_plugin_classify()
                        .call_classify(store, &report)
                        .await
                })
            })
            .await?;
        Ok(convert::verdict(verdict))
    }
}

/// A wasmtime error from running guest code, as a host fault.
fn trap(e: wasmtime::Error) -> HostFault {
    HostFault::Trap(one_line(&format!("{e:#}")))
}
