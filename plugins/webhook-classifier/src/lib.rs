//! A classifier for webhook platforms and the X API: Discord's JSON errors
//! (by their numeric `code`), Slack's plain-text error names, and X's
//! problem JSON, as `webhook-poster` and `x-poster` put them in
//! `error-code`. Everything else, faults included, gets "no opinion" for
//! the next classifier in the chain.

wit_bindgen::generate!({
    world: "classifier",
    path: "../../wit",
});

#[path = "../../shared/verdict.rs"]
mod verdict;

use exports::orchestrator::plugin::{classify, metadata};
use orchestrator::plugin::types::{FailureReport, PluginInfo, RetryScope, Verdict};
use verdict::{QUOTE_BYTES, bounded, refused, retry, waits};

struct WebhookClassifier;

impl metadata::Guest for WebhookClassifier {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "webhook-classifier".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Classifies Discord and Slack webhook and X API failures".into(),
        }
    }
}

impl classify::Guest for WebhookClassifier {
    fn classify(report: FailureReport) -> Verdict {
        verdict::logged(&report, classify_report(&report))
    }
}

fn classify_report(report: &FailureReport) -> Verdict {
    let Some(failure) = verdict::platform_answer(report) else {
        return Verdict::NoOpinion;
    };
    let account = &report.job.account.name;
    let said = bounded(&failure.message, QUOTE_BYTES);
    let wait = failure.retry_after_ms;
    match (failure.error_code.as_deref(), failure.http_status) {
        // Discord: 10015 Unknown Webhook, 50027 Invalid Webhook Token.
        // Slack: invalid_token (wrong secret), no_service (webhook removed).
        (Some("10015" | "50027" | "invalid_token" | "no_service"), _) => refused(format!(
            "the webhook was deleted or its URL is wrong: {said}; give account {account} a working webhook"
        )),
        // Discord 50006: the message has no content.
        (Some("50006"), _) => refused(format!(
            "the platform refuses an empty message: {said}; give the job's payload a text"
        )),
        (Some("invalid_payload"), _) => refused(format!(
            "the platform could not read the message: {said}; check the job's payload"
        )),
        // X refuses a text the account already posted. The earlier post may
        // be this job's own (an answer lost on the way back), but nothing
        // says which, and posting again cannot succeed.
        (Some("DuplicateContent"), _) => refused(format!(
            "account {account} already posted this text and X refuses duplicates: {said}"
        )),
        // X's expired or revoked access token: the host refreshes it before
        // the next attempt (a 401 always means that to the host).
        (Some("Unauthorized"), Some(401)) => retry(
            format!(
                "the access token of account {account} expired or was revoked; it is refreshed before the next attempt"
            ),
            None,
            RetryScope::Job,
        ),
        // Discord's global limit is on everything this client sends there.
        (Some("global_rate_limited"), _) => retry(
            format!(
                "the platform's global rate limit was reached{}",
                waits("every account on it", wait)
            ),
            wait,
            RetryScope::Platform,
        ),
        (Some("rate_limited"), _) | (_, Some(429)) => retry(
            format!(
                "account {account} is rate limited{}",
                waits("the account", wait)
            ),
            wait,
            RetryScope::Account,
        ),
        _ => Verdict::NoOpinion,
    }
}

export!(WebhookClassifier);

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator::plugin::types::{Category, HostFault};
    use verdict::tests::classification;

    fn report(status: Option<u16>, code: Option<&str>, wait: Option<u64>) -> FailureReport {
        verdict::tests::report("hook", "refused: Unknown Webhook", status, code, wait)
    }

    #[test]
    fn a_dead_webhook_is_not_retried() {
        for (status, code) in [
            (404, "10015"),
            (401, "50027"),
            (403, "invalid_token"),
            (404, "no_service"),
        ] {
            let c = classification(classify_report(&report(Some(status), Some(code), None)));
            assert_eq!(c.category, Category::NonRetryable, "{code}");
            assert!(
                c.reason.starts_with(
                    "the webhook was deleted or its URL is wrong: refused: Unknown Webhook"
                ),
                "{}",
                c.reason
            );
        }
    }

    #[test]
    fn bad_messages_are_not_retried() {
        for (status, code, hint) in [
            (400, "50006", "empty"),
            (400, "invalid_payload", "could not read"),
            (403, "DuplicateContent", "already posted"),
        ] {
            let c = classification(classify_report(&report(Some(status), Some(code), None)));
            assert_eq!(c.category, Category::NonRetryable, "{code}");
            assert!(c.reason.contains(hint), "{code}: {}", c.reason);
        }
    }

    #[test]
    fn rate_limits_hold_the_account_or_the_platform() {
        for code in [Some("rate_limited"), Some("Too Many Requests"), None] {
            let c = classification(classify_report(&report(Some(429), code, Some(1250))));
            assert_eq!(c.category, Category::Retryable);
            assert_eq!(c.scope, RetryScope::Account);
            assert_eq!(c.retry_after_ms, Some(1250));
            assert!(c.reason.contains("1.3s"), "{}", c.reason);
        }
        let c = classification(classify_report(&report(
            Some(429),
            Some("global_rate_limited"),
            Some(500),
        )));
        assert_eq!(c.scope, RetryScope::Platform);
        assert_eq!(c.retry_after_ms, Some(500));
    }

    #[test]
    fn an_x_401_waits_for_a_refreshed_token() {
        let c = classification(classify_report(&report(
            Some(401),
            Some("Unauthorized"),
            None,
        )));
        assert_eq!(c.category, Category::Retryable);
        assert!(c.reason.contains("refreshed"));
    }

    #[test]
    fn anything_else_is_for_the_next_classifier() {
        for r in [
            report(Some(500), None, None),
            report(Some(401), Some("The access token is invalid"), None),
            report(Some(403), Some("Forbidden"), None),
            report(None, None, None),
        ] {
            assert!(matches!(classify_report(&r), Verdict::NoOpinion));
        }
        let mut fault = report(Some(404), Some("10015"), None);
        fault.fault = Some(HostFault::DeniedRequest("elsewhere".into()));
        assert!(matches!(classify_report(&fault), Verdict::NoOpinion));
        let mut transport = report(None, Some("rate_limited"), None);
        transport.failure.as_mut().unwrap().transport_error = Some("connection-reset".into());
        assert!(matches!(classify_report(&transport), Verdict::NoOpinion));
    }
}
