//! [`Post`] and [`Classify`]: what the runner asks of its plugins. The
//! plugin host's [`Poster`] and [`Classifier`] implement them (either
//! backend); tests give the runner plain Rust ones.

use std::future::Future;
use std::pin::Pin;

use orchestrator_contract::{
    AuthSupport, FailureReport, HostFault, JobContext, PluginInfo, RateBudget, Verdict,
};
use orchestrator_plugin_host::{
    Attachments, Attempt, Classifier, OutboundAccess, PluginMeta, Poster,
};

/// A boxed future: the traits are used as objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes one attempt of a job.
pub trait Post: Send + Sync {
    fn info(&self) -> &PluginInfo;
    /// The file it was loaded from, so a changed file can be reloaded
    /// between passes; `None` when it is not a file's.
    fn loaded_from(&self) -> Option<&PluginMeta> {
        None
    }
    /// How its platform logs in, as it describes it (nothing: its
    /// accounts use `bearer` or `url-secret`).
    fn auth(&self) -> AuthSupport {
        AuthSupport::default()
    }
    /// One attempt of `job`, reaching only what `access` grants.
    fn post<'a>(&'a self, job: &'a JobContext, access: OutboundAccess) -> BoxFuture<'a, Attempt>;
    /// Whether it reads a job's attachments (a contract-0.4.0 poster); the
    /// host gives a job with attachments to no other.
    fn takes_media(&self) -> bool {
        false
    }
    /// The rate budgets it declares for its platform: defaults for the
    /// accounts it serves (none: no default).
    fn rate_budgets(&self) -> Vec<RateBudget> {
        Vec::new()
    }
    /// [`Post::post`] of a job whose attachments the host checked, for a
    /// poster that [`Post::takes_media`].
    fn post_with_media<'a>(
        &'a self,
        job: &'a JobContext,
        access: OutboundAccess,
        media: Attachments,
    ) -> BoxFuture<'a, Attempt> {
        let _ = media;
        self.post(job, access)
    }
}

/// Says what a failure was.
pub trait Classify: Send + Sync {
    fn info(&self) -> &PluginInfo;
    /// As [`Post::loaded_from`].
    fn loaded_from(&self) -> Option<&PluginMeta> {
        None
    }
    fn classify<'a>(
        &'a self,
        report: &'a FailureReport,
    ) -> BoxFuture<'a, Result<Verdict, HostFault>>;
}

impl Post for Poster {
    fn info(&self) -> &PluginInfo {
        Poster::info(self)
    }

    fn loaded_from(&self) -> Option<&PluginMeta> {
        Some(self.meta())
    }

    fn auth(&self) -> AuthSupport {
        Poster::auth(self).clone()
    }

    fn post<'a>(&'a self, job: &'a JobContext, access: OutboundAccess) -> BoxFuture<'a, Attempt> {
        Box::pin(Poster::post(self, job, access))
    }

    fn takes_media(&self) -> bool {
        Poster::takes_media(self)
    }

    fn rate_budgets(&self) -> Vec<RateBudget> {
        Poster::rate_budgets(self).to_vec()
    }

    fn post_with_media<'a>(
        &'a self,
        job: &'a JobContext,
        access: OutboundAccess,
        media: Attachments,
    ) -> BoxFuture<'a, Attempt> {
        Box::pin(Poster::post_with_media(self, job, access, media))
    }
}

impl Classify for Classifier {
    fn info(&self) -> &PluginInfo {
        Classifier::info(self)
    }

    fn loaded_from(&self) -> Option<&PluginMeta> {
        Some(self.meta())
    }

    fn classify<'a>(
        &'a self,
        report: &'a FailureReport,
    ) -> BoxFuture<'a, Result<Verdict, HostFault>> {
        Box::pin(Classifier::classify(self, report))
    }
}
