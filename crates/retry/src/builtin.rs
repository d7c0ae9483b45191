//! The host's own classification rules, consulted after every plugin.

use orchestrator_contract::{Category, Classification, FailureReport, HostFault, RetryScope};

/// Classifies a failure that no classifier plugin decided.
///
/// Host faults are facts the host saw, so they decide first: a denied
/// request is a configuration problem (`non-retryable`); a trap, deadline,
/// memory limit or connection error is `infrastructure`. Then HTTP statuses:
/// 408, 425, 429 and 5xx are `retryable`; other 4xx are `non-retryable`.
/// Anything else is `unknown`.
///
/// A platform's wait applies to the account when it is a rate limit (429, or
/// a rate-limit reset was sent: the budget is the account's), to the whole
/// instance when a 5xx asked for it (the server is down for everyone), and
/// otherwise to the job alone.
pub fn builtin_classification(report: &FailureReport) -> Classification {
    let retry_after_ms = report.failure.as_ref().and_then(|f| f.retry_after_ms);
    let scope = builtin_scope(report);
    let decided = |category, reason: String| Classification {
        category,
        reason,
        retry_after_ms,
        scope,
    };
    if let Some(fault) = &report.fault {
        return match fault {
            HostFault::DeniedRequest(host) => decided(
                Category::NonRetryable,
                format!(
                    "the plugin asked for {host}, which it was not granted; to allow it, pass --allow-host {host} or add allow_hosts = [\"{host}\"] under [accounts.{}]",
                    report.job.account.name
                ),
            ),
            other => decided(Category::Infrastructure, other.to_string()),
        };
    }
    let Some(failure) = &report.failure else {
        return decided(
            Category::Unknown,
            "the attempt failed without a report".into(),
        );
    };
    if let Some(transport) = &failure.transport_error {
        return decided(
            Category::Infrastructure,
            format!("no response from the platform ({transport})"),
        );
    }
    match failure.http_status {
        Some(408 | 425 | 429 | 500..=599) => decided(Category::Retryable, failure.to_string()),
        Some(400..=499) => decided(Category::NonRetryable, failure.to_string()),
        _ => decided(Category::Unknown, failure.to_string()),
    }
}

/// Who waits out the platform's retry-after, by the rules above.
fn builtin_scope(report: &FailureReport) -> RetryScope {
    let Some(failure) = &report.failure else {
        return RetryScope::Job;
    };
    match failure.http_status {
        _ if report.fault.is_some() => RetryScope::Job,
        Some(429) => RetryScope::Account,
        _ if failure.rate_limit_reset.is_some() => RetryScope::Account,
        Some(500..=599) => RetryScope::Platform,
        _ => RetryScope::Job,
    }
}
