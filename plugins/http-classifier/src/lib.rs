//! A classifier for HTTP platforms.
//!
//! It decides from the HTTP status family and from the transport faults the
//! host saw; faults that are not about HTTP (traps, memory, denied requests)
//! get "no opinion", so the host's built-in rules decide them.

wit_bindgen::generate!({
    world: "classifier",
    path: "../../wit/0.2.0",
});

use exports::orchestrator::plugin::{classify, metadata};
use orchestrator::plugin::log::{Level, log};
use orchestrator::plugin::types::{
    Category, Classification, FailureReport, HostFault, PluginInfo, PostFailure, RetryScope,
    Verdict,
};

struct HttpClassifier;

impl metadata::Guest for HttpClassifier {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "http-classifier".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Classifies HTTP platform failures by status family and transport fault"
                .into(),
        }
    }
}

impl classify::Guest for HttpClassifier {
    fn classify(report: FailureReport) -> Verdict {
        let verdict = classify_report(&report);
        if let Verdict::Decided(c) = &verdict {
            log(
                Level::Debug,
                &format!("job {}: {:?}: {}", report.job.job_id, c.category, c.reason),
            );
        }
        verdict
    }
}

fn decided(category: Category, reason: String, retry_after_ms: Option<u64>) -> Verdict {
    Verdict::Decided(Classification {
        category,
        reason,
        retry_after_ms,
        scope: RetryScope::Job,
    })
}

fn classify_report(report: &FailureReport) -> Verdict {
    match &report.fault {
        Some(HostFault::ConnectionError(detail)) => {
            return decided(
                Category::Infrastructure,
                format!("could not reach the platform ({detail})"),
                None,
            );
        }
        Some(HostFault::Timeout(ms)) => {
            return decided(
                Category::Infrastructure,
                format!("the attempt timed out after {ms} ms"),
                None,
            );
        }
        // Not about HTTP: let the host's rules decide.
        Some(_) => return Verdict::NoOpinion,
        None => {}
    }
    let Some(failure) = &report.failure else {
        return Verdict::NoOpinion;
    };
    if let Some(transport) = &failure.transport_error {
        return decided(
            Category::Infrastructure,
            format!("no response from the platform ({transport})"),
            None,
        );
    }
    match failure.http_status {
        Some(status) => by_status(status, failure, &report.job.account.name),
        None => decided(
            Category::Unknown,
            format!("not an HTTP failure: {}", failure.message),
            None,
        ),
    }
}

fn by_status(status: u16, failure: &PostFailure, account: &str) -> Verdict {
    let said = failure
        .error_code
        .as_deref()
        .map(|e| format!(": \"{e}\""))
        .unwrap_or_default();
    let wait = failure.retry_after_ms;
    match status {
        401 => decided(
            Category::NonRetryable,
            format!(
                "HTTP 401{said}: the access token of account {account} is invalid or revoked; fix the token and rerun"
            ),
            None,
        ),
        403 => decided(
            Category::NonRetryable,
            format!(
                "HTTP 403{said}: account {account} may not post (suspended, disabled or missing the write scope)"
            ),
            None,
        ),
        404 => decided(
            Category::NonRetryable,
            format!(
                "HTTP 404{said}: the endpoint does not exist; check the base URL of account {account}"
            ),
            None,
        ),
        410 => decided(
            Category::NonRetryable,
            format!("HTTP 410{said}: account {account} or the resource is gone"),
            None,
        ),
        422 => decided(
            Category::NonRetryable,
            format!("HTTP 422{said}: the platform rejected the content; edit the job's payload"),
            None,
        ),
        408 | 425 | 429 | 500 | 502 | 503 | 504 => {
            let what = match status {
                408 => "the platform timed out reading the request",
                425 => "the platform asked to retry later (too early)",
                429 => "rate limited",
                _ => "the platform had a server error",
            };
            // A rate limit is the account's budget; a server that asks
            // everyone to wait is down for every account on it.
            let (scope, whom) = match status {
                429 => (RetryScope::Account, "the account"),
                _ if failure.rate_limit_reset.is_some() => (RetryScope::Account, "the account"),
                500..=599 => (RetryScope::Platform, "every account on the instance"),
                _ => (RetryScope::Job, "this job"),
            };
            let after = wait
                .map(|ms| format!("; {whom} waits {}", human_ms(ms)))
                .unwrap_or_default();
            Verdict::Decided(Classification {
                category: Category::Retryable,
                reason: format!("HTTP {status}{said}: {what}{after}"),
                retry_after_ms: wait,
                scope,
            })
        }
        _ => decided(
            Category::Unknown,
            format!("HTTP {status}{said}: not a status this classifier knows"),
            wait,
        ),
    }
}

/// A wait as the host writes durations: whole seconds as `7s`, tenths
/// below a minute as `2.5s`.
fn human_ms(ms: u64) -> String {
    let tenths = ms.saturating_add(50) / 100;
    if tenths.is_multiple_of(10) || tenths >= 600 {
        format!("{}s", tenths.saturating_add(5) / 10)
    } else {
        format!("{}.{}s", tenths / 10, tenths % 10)
    }
}

export!(HttpClassifier);
