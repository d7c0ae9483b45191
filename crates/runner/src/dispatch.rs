//! One pass: attempts in flight on tokio, bounded by `workers`, one per
//! account at a time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use orchestrator_auth::{AccountAuth, Refusal};
use orchestrator_contract::{
    Account, Category, FailureReport, HostFault, JobContext, PostFailure, RetryScope, Verdict,
};
use orchestrator_plugin_host::outbound::authority_of;
use orchestrator_plugin_host::{Attempt, OutboundAccess};
use orchestrator_retry::{Decision, JobHistory, builtin_classification, decide};
use orchestrator_store::{
    Answer, AttemptOutcome, Consulted, Decided, RunPass, Store, StoreError, StoredJob,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::budget::Budgets;
use crate::media;
use crate::outage::{Outages, Seen};
use crate::pause::{Pauses, Waiter};
use crate::{
    Batch, CallKind, Clock, PluginCall, RunCounters, RunError, RunEvent, RunOptions, Runner,
};
use orchestrator_contract::text::printable;

/// Runs `jobs` in pass `at`. Returns whether a stop cut the pass short.
pub(crate) async fn run_pass(
    runner: &Runner,
    at: RunPass,
    jobs: Vec<StoredJob>,
    report: Arc<dyn Fn(RunEvent) + Send + Sync>,
    stop_sender: watch::Sender<bool>,
) -> Result<bool, RunError> {
    let batch = &runner.batch();
    let (store, options, counters) = (&runner.store, &runner.options, &runner.counters);
    let mut stop = stop_sender.subscribe();
    // One queue per account, in import order: an account never has two
    // attempts in flight, so its own rate limit sees one client.
    let mut queues: BTreeMap<String, Vec<StoredJob>> = BTreeMap::new();
    for job in jobs {
        queues.entry(job.account.clone()).or_default().push(job);
    }
    let workers = Arc::new(Semaphore::new(options.workers.max(1) as usize));
    let mut tasks = JoinSet::new();
    for (name, mut queue) in queues {
        let account = batch
            .accounts
            .get(&name)
            .ok_or_else(|| RunError::UnknownAccounts(name.clone()))?;
        // Worked out once for all of the account's attempts.
        let queue_of = QueueOf {
            context: Account {
                name: account.name.clone(),
                base_url: account.base_url.clone(),
                settings: account.settings.clone(),
            },
            access: account.access(&options.allow_hosts),
            waiter: Waiter::of(account),
        };
        // A job told to wait goes behind its account's other jobs, which
        // need not wait with it (stable: import order otherwise).
        queue.sort_by_key(|job| job.not_before_ms.unwrap_or(0));
        let ctx = AttemptCtx {
            store: store.clone(),
            batch: batch.clone(),
            options: options.clone(),
            at,
            report: report.clone(),
            stop: stop_sender.clone(),
            counters: counters.clone(),
            pauses: runner.pauses.clone(),
            budgets: runner.budgets.clone(),
            outages: runner.outages.clone(),
            clock: runner.clock.clone(),
        };
        let workers = workers.clone();
        let mut stop = stop.clone();
        tasks.spawn(async move {
            for job in queue {
                // Wait out the job's own retry-after and any pause of its
                // account or platform, then for a worker; a pause that began
                // meanwhile sends it back to waiting.
                // A wait stored by an earlier run, when limits were other,
                // lasts no longer than this run allows.
                let latest = ctx
                    .clock
                    .now_ms()
                    .saturating_add(ctx.options.max_retry_after.as_millis() as u64);
                // Then for the account's and its platform's rate budgets,
                // which no retry-after limit shortens.
                let (permit, taken) = loop {
                    let now = ctx.clock.now_ms();
                    let until = job
                        .not_before_ms
                        .max(ctx.pauses.until(&queue_of.waiter))
                        .map(|t| t.min(latest))
                        .max(ctx.budgets.wait_until(&job.account, now));
                    let wait = until.map_or(0, |t| t.saturating_sub(now));
                    if wait > 0 {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                            _ = stop.wait_for(|s| *s) => return Ok(()),
                        }
                    }
                    let permit = tokio::select! {
                        permit = workers.clone().acquire_owned() => permit,
                        _ = stop.wait_for(|s| *s) => return Ok(()),
                    };
                    let Ok(permit) = permit else { return Ok(()) };
                    if *stop.borrow() {
                        return Ok(());
                    }
                    let now = ctx.clock.now_ms();
                    // Spent only once the attempt may start: another
                    // account of the platform may have spent it meanwhile.
                    if ctx.pauses.until(&queue_of.waiter).is_none_or(|t| t <= now)
                        && ctx.budgets.take(&job.account, now).is_ok()
                    {
                        break (permit, now);
                    }
                };
                ctx.attempt(&queue_of, job, taken).await?;
                drop(permit);
            }
            Ok::<(), RunError>(())
        });
    }

    let mut stopping: Option<tokio::time::Instant> = None;
    loop {
        let grace_over = async {
            match stopping {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = tasks.join_next() => match next {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    tasks.abort_all();
                    return Err(e);
                }
                Some(Err(join)) if join.is_cancelled() => {}
                Some(Err(join)) => std::panic::resume_unwind(join.into_panic()),
            },
            _ = stop.wait_for(|s| *s), if stopping.is_none() => {
                report(RunEvent::Stopping { grace: options.grace });
                stopping = Some(tokio::time::Instant::now() + options.grace);
            }
            _ = grace_over => {
                // Attempts still in flight stay recorded as such; the next
                // run treats them as uncertain.
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    Ok(stopping.is_some() || *stop.borrow())
}

/// What every attempt of one account's queue shares.
struct QueueOf {
    /// The account as plugins see it.
    context: Account,
    access: OutboundAccess,
    waiter: Waiter,
}

/// What an attempt of the account may reach, with the credential its
/// keeper gives now (logging in or refreshing first when it must), and
/// that credential's generation; or, when none could be had, the failed
/// attempt that says why — the poster is not called.
async fn credential(
    queue_of: &QueueOf,
    auth: Option<&Arc<AccountAuth>>,
) -> Result<(OutboundAccess, u64), Attempt> {
    let Some(auth) = auth else {
        return Ok((queue_of.access.clone(), 0));
    };
    match auth.credential().await {
        Ok(credential) => {
            let generation = credential.as_ref().map_or(0, |c| c.generation);
            let mut access = queue_of.access.clone();
            access.credential = authority_of(&queue_of.context.base_url).zip(credential);
            Ok((access, generation))
        }
        Err(refusal) => Err(match &refusal {
            Refusal::Platform {
                status,
                code,
                retry_after_ms,
                ..
            } => Attempt::Failed {
                failure: Some(
                    PostFailure {
                        message: refusal.to_string(),
                        http_status: Some(*status),
                        error_code: code.clone(),
                        retry_after_ms: *retry_after_ms,
                        rate_limit_reset: None,
                        transport_error: None,
                    }
                    // Cut to the sizes the host keeps, as a poster's failure is.
                    .bounded(),
                ),
                fault: None,
            },
            // No answer, or no durable place for the tokens: the host's
            // own infrastructure, retried as such.
            Refusal::Unreachable { .. } | Refusal::Store(_) => Attempt::Failed {
                failure: None,
                fault: Some(HostFault::ConnectionError(refusal.to_string()).bounded()),
            },
        }),
    }
}

/// What one attempt needs.
struct AttemptCtx {
    store: Arc<dyn Store>,
    batch: Arc<Batch>,
    options: RunOptions,
    at: RunPass,
    report: Arc<dyn Fn(RunEvent) + Send + Sync>,
    stop: watch::Sender<bool>,
    counters: Arc<RunCounters>,
    pauses: Arc<Pauses>,
    budgets: Arc<Budgets>,
    outages: Arc<Outages>,
    clock: Arc<dyn Clock>,
}

impl AttemptCtx {
    /// Runs one attempt, and holds back whom its retry-after names.
    /// Spends `account`'s budgets again when its request goes out later
    /// after `taken` than the budgets' margins allow (see
    /// [`crate::budget::Budgets::late_after_ms`]), waiting for them first
    /// if it must.
    async fn spend_again_if_late(&self, account: &str, taken: u64) {
        let Some(late_after) = self.budgets.late_after_ms(account) else {
            return;
        };
        if self.clock.now_ms().saturating_sub(taken) <= late_after {
            return;
        }
        loop {
            let now = self.clock.now_ms();
            match self.budgets.take(account, now) {
                Ok(()) => return,
                Err(until) => {
                    let wait = until.saturating_sub(now).max(1);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
    }

    /// Runs one attempt of `job`, whose rate budgets were spent at
    /// `taken` (ms since the epoch).
    async fn attempt(
        &self,
        queue_of: &QueueOf,
        job: StoredJob,
        taken: u64,
    ) -> Result<(), RunError> {
        // Durable before the plugin runs; committed with the other
        // attempts' writes of the moment.
        let pass = self.at.pass;
        let attempt_id = match self.store.queue_begin_attempt(&job, self.at).await {
            Ok(id) => id,
            // Another process recovered the job while this one could not
            // reach the store; it is that process's to attempt now.
            Err(StoreError::LeaseLost(job)) => {
                tracing::warn!(
                    "skipping job {}: another process took it over",
                    printable(&job)
                );
                return Ok(());
            }
            // An operator cancelled it since it was handed out.
            Err(StoreError::NotEligible { job, state }) => {
                tracing::info!("skipping job {}: it is {state} now", printable(&job));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        (self.report)(RunEvent::AttemptStarted { pass });
        // tokio's clock: under a paused one (the tests'), times are exact.
        let started = tokio::time::Instant::now();
        let mut calls = Vec::new();
        let context = JobContext {
            job_id: job.id.clone(),
            account: queue_of.context.clone(),
            // Without the host's paths to the job's attachments.
            payload: media::guest_payload(&job.payload),
            attempt: job.attempts + 1,
            pass,
            idempotency_key: job.idempotency_key.clone(),
        };
        let instance = queue_of.waiter.instance();
        let mut outage = None;
        let auth = self.batch.auth_for(&job.account);
        // Set when the host fails the attempt itself, before the poster.
        let mut refused = None;
        let (attempted, token_expired) = match credential(queue_of, auth).await {
            Ok((access, generation)) => {
                let poster = self.batch.poster_for(&job.account);
                // The job's attachments, read and checked against the
                // import (nothing to do for a job without any); held until
                // the attempt is over.
                let media = media::check(&job.payload, poster.as_ref()).await;
                if media.is_ok() {
                    self.spend_again_if_late(&job.account, taken).await;
                }
                let called = tokio::time::Instant::now();
                let attempted = match &media {
                    Ok(None) => poster.post(&context, access).await,
                    Ok(Some(checked)) => {
                        let attachments = checked.attachments.clone();
                        poster.post_with_media(&context, access, attachments).await
                    }
                    Err(why) => why.attempt(),
                };
                match media {
                    Err(why) => refused = Some(why),
                    Ok(_) => calls.push(PluginCall {
                        plugin: poster.info().name.clone(),
                        call: CallKind::Post,
                        took: called.elapsed(),
                    }),
                }
                // The platform said the token expired: the next attempt of
                // the account renews it, once.
                let expired = match (auth, &attempted) {
                    (
                        Some(auth),
                        Attempt::Failed {
                            failure: Some(f), ..
                        },
                    ) if auth.is_expired_answer(f.http_status, f.error_code.as_deref()) => {
                        auth.expired(generation).await;
                        true
                    }
                    _ => false,
                };
                (attempted, expired)
            }
            Err(failed) => (failed, false),
        };
        let (outcome, summary) = match attempted {
            Attempt::Posted(receipt) => {
                self.platform_answered(instance, &queue_of.context.name);
                let summary = format!("posted {}", receipt.remote_id);
                (AttemptOutcome::Succeeded(receipt), summary)
            }
            Attempt::Failed { failure, fault } => {
                let report = FailureReport {
                    job: context,
                    failure,
                    fault,
                };
                // The host's own refusal is no classifier's to decide.
                let decided = match &refused {
                    Some(why) => why.decided(),
                    None => self.classify(&report, &mut calls).await,
                };
                let mut decided = self.clamp_wait(&job.id, decided);
                // A classifier cannot know that the host renews the token
                // before the account's next attempt: that makes it retryable.
                if token_expired && decided.category != Category::Retryable {
                    decided.reason = format!(
                        "the access token expired, and the host renews it before the next attempt ({} said {}: {})",
                        decided.decided_by, decided.category, decided.reason
                    );
                    decided.category = Category::Retryable;
                    decided.decided_by = "built-in".into();
                }
                let infra = u32::from(decided.category == Category::Infrastructure);
                let mut decision = decide(
                    &self.options.config,
                    decided.category,
                    JobHistory {
                        passes_attempted: job.passes_attempted + 1,
                        infrastructure_failures: job.infrastructure_failures + infra,
                    },
                );
                // A platform that is down is waited for, not failed: the
                // attempt counts against none of the job's budgets.
                // The platform's wait is recorded as the attempt's, so a run
                // started meanwhile honours it too.
                if got_no_answer(&report) {
                    let now = self.clock.now_ms();
                    let seen = self.outages.no_answer(instance, &job.account, now);
                    if let Seen::Down { until_ms, began } = seen {
                        decision = Decision::Defer;
                        decided.retry_after_ms = Some(until_ms.saturating_sub(now));
                        decided.scope = RetryScope::Platform;
                        outage = Some(began);
                    }
                } else if refused.is_none() {
                    self.platform_answered(instance, &queue_of.context.name);
                }
                let summary = format!("{}: {} ({:?})", decided.category, decided.reason, decision);
                let not_before_ms = decided
                    .retry_after_ms
                    .map(|ms| self.clock.now_ms().saturating_add(ms));
                (
                    AttemptOutcome::Failed {
                        failure: report.failure,
                        fault: report.fault,
                        classification: decided,
                        decision,
                        not_before_ms,
                    },
                    summary,
                )
            }
        };
        let took = started.elapsed();
        self.store
            .queue_finish_attempt(attempt_id, &outcome)
            .await?;
        if outage == Some(true) {
            (self.report)(RunEvent::PlatformDown {
                account: queue_of.context.name.clone(),
            });
        }
        // A wait that holds back others is said once, not by every attempt
        // that meets it.
        if let AttemptOutcome::Failed {
            classification,
            not_before_ms: Some(until),
            ..
        } = &outcome
            && classification.scope != RetryScope::Job
            && self
                .pauses
                .extends(classification.scope, &queue_of.waiter, *until)
        {
            self.pauses
                .hold(classification.scope, &queue_of.waiter, *until);
            (self.report)(RunEvent::Paused {
                scope: classification.scope,
                account: queue_of.context.name.clone(),
                seconds: until.saturating_sub(self.clock.now_ms()) as f64 / 1000.0,
                reason: classification.reason.clone(),
            });
        }
        // An attempt that found the platform down says nothing of the jobs.
        if outage.is_none() {
            self.count(matches!(outcome, AttemptOutcome::Failed { .. }));
        }
        tracing::debug!(
            job = %printable(&job.id),
            account = %printable(&job.account),
            pass = pass,
            "{}",
            printable(&summary)
        );
        let failed = match &outcome {
            AttemptOutcome::Succeeded(_) => None,
            AttemptOutcome::Failed { classification, .. } => Some(classification.category),
        };
        (self.report)(RunEvent::AttemptFinished {
            job: job.id,
            account: job.account,
            pass,
            failed,
            summary,
            took,
            calls,
        });
        Ok(())
    }

    /// Counts the attempt, and halts the run when too many failed.
    fn count(&self, failed: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let finished = self.counters.finished.fetch_add(1, Relaxed) + 1;
        let failures =
            self.counters.failed.fetch_add(u64::from(failed), Relaxed) + u64::from(failed);
        if let Some(limit) = self.options.halt_on_failure_rate
            && finished >= crate::HALT_MIN_ATTEMPTS
            && failures as f64 * 100.0 > limit * finished as f64
            && !*self.stop.borrow()
        {
            (self.report)(RunEvent::Halting {
                failed: failures,
                finished,
                limit,
            });
            let _ = self.stop.send(true);
        }
    }

    /// The platform `instance` answered an attempt of `account`: an outage
    /// of it is over.
    fn platform_answered(&self, instance: &str, account: &str) {
        if let Some(down_ms) = self.outages.answered(instance, self.clock.now_ms()) {
            (self.report)(RunEvent::PlatformBack {
                account: account.to_owned(),
                seconds: down_ms as f64 / 1000.0,
            });
        }
    }

    /// Clamps the wait `decided` asks for to `--max-retry-after`, saying so
    /// in the log and in the recorded reason.
    fn clamp_wait(&self, job: &str, mut decided: Decided) -> Decided {
        let max = self.options.max_retry_after;
        let max_ms = max.as_millis() as u64;
        if let Some(asked) = decided.retry_after_ms.filter(|ms| *ms > max_ms) {
            let asked = humantime::format_duration(Duration::from_millis(asked));
            tracing::warn!(
                "job {}: a wait of {asked} was asked for; waiting --max-retry-after {}s instead",
                printable(job),
                max.as_secs()
            );
            decided.reason = format!(
                "{} (asked to wait {asked}; clamped to --max-retry-after {}s)",
                decided.reason,
                max.as_secs()
            );
            decided.retry_after_ms = Some(max_ms);
        }
        decided
    }

    /// Classifier plugins in order, then the built-in rules. A classifier
    /// that fails is skipped, with a warning, rather than failing the run;
    /// every answer, faults included, goes into the attempt's record, and
    /// every call, timed, into `calls`.
    async fn classify(&self, report: &FailureReport, calls: &mut Vec<PluginCall>) -> Decided {
        let mut consulted = Vec::new();
        for classifier in &self.batch.classifiers {
            let name = classifier.info().name.clone();
            let called = tokio::time::Instant::now();
            let verdict = classifier.classify(report).await;
            calls.push(PluginCall {
                plugin: name.clone(),
                call: CallKind::Classify,
                took: called.elapsed(),
            });
            match verdict {
                Ok(Verdict::Decided(c)) => {
                    consulted.push(Consulted {
                        classifier: name.clone(),
                        answer: Answer::Decided(c.category),
                    });
                    return Decided {
                        category: c.category,
                        reason: c.reason,
                        // A classifier may not shorten what the platform asked.
                        retry_after_ms: c
                            .retry_after_ms
                            .max(report.failure.as_ref().and_then(|f| f.retry_after_ms)),
                        scope: c.scope,
                        decided_by: name,
                        consulted,
                    };
                }
                Ok(Verdict::NoOpinion) => consulted.push(Consulted {
                    classifier: name,
                    answer: Answer::NoOpinion,
                }),
                Err(fault) => {
                    tracing::warn!(
                        classifier = %printable(&name),
                        "classifier failed, asking the next one: {}",
                        printable(&fault.to_string())
                    );
                    consulted.push(Consulted {
                        classifier: name,
                        answer: Answer::Fault(fault),
                    });
                }
            }
        }
        let c = builtin_classification(report);
        Decided {
            category: c.category,
            reason: c.reason,
            retry_after_ms: c.retry_after_ms,
            scope: c.scope,
            decided_by: "built-in".into(),
            consulted,
        }
    }
}

/// Whether the platform gave no answer to the attempt: the host could not
/// reach it, the transport failed, or a gateway said the server behind it
/// is not there (502, 503, 504).
fn got_no_answer(report: &FailureReport) -> bool {
    if matches!(report.fault, Some(HostFault::ConnectionError(_))) {
        return true;
    }
    report
        .failure
        .as_ref()
        .is_some_and(|f| f.transport_error.is_some() || matches!(f.http_status, Some(502..=504)))
}
