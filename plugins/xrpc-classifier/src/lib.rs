//! A classifier for Bluesky and other AT Protocol (XRPC) platforms.
//!
//! It decides from the XRPC `error` name the poster put in `error-code`
//! (`ExpiredToken`, `RateLimitExceeded`, `InvalidRequest`, ...), which says
//! more than the HTTP status: Bluesky answers an expired token, an invalid
//! record and a taken-down account all with a 400. Everything else, faults
//! included, gets "no opinion" for the next classifier in the chain.

// Contract 0.3.0, frozen in wit/0.3.0: the tests keep a 0.3.0 classifier in use.
wit_bindgen::generate!({
    world: "classifier",
    path: "../../wit/0.3.0",
});

#[path = "../../shared/verdict.rs"]
mod verdict;

use exports::orchestrator::plugin::{classify, metadata};
use orchestrator::plugin::types::{FailureReport, PluginInfo, RetryScope, Verdict};
use verdict::{QUOTE_BYTES, bounded, refused, retry, waits};

struct XrpcClassifier;

impl metadata::Guest for XrpcClassifier {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "xrpc-classifier".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Classifies Bluesky (XRPC) failures by their error names".into(),
        }
    }
}

impl classify::Guest for XrpcClassifier {
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
        // Not the account's fault: the host renews the session (an
        // `expired-codes` entry of bluesky-poster) before the next attempt.
        (Some("ExpiredToken"), _) => retry(
            format!(
                "the access token of account {account} expired; it is renewed before the next attempt"
            ),
            None,
            RetryScope::Job,
        ),
        // The rate limit is the account's: its other jobs would hit it too.
        (Some("RateLimitExceeded"), _) | (_, Some(429)) => retry(
            format!("account {account} is rate limited{}", waits("it", wait)),
            wait,
            RetryScope::Account,
        ),
        (Some("InvalidRequest"), _) => refused(format!(
            "the platform refused the post as invalid; edit the job's payload ({said})"
        )),
        (Some("AccountTakedown"), _) => refused(format!(
            "account {account} was taken down by the platform; it cannot post until the platform restores it ({said})"
        )),
        (Some("AuthenticationRequired"), _) => refused(format!(
            "the platform did not accept the login of account {account}; check its identifier and password ({said})"
        )),
        (Some("InvalidToken"), _) => refused(format!(
            "the platform refused the access token of account {account} as invalid, not expired; check its credentials and log it in again ({said})"
        )),
        // One request failed inside the platform; the next may not.
        (Some("InternalServerError"), _) => retry(
            format!("the platform had a server error ({said})"),
            wait,
            RetryScope::Job,
        ),
        _ => Verdict::NoOpinion,
    }
}

export!(XrpcClassifier);

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator::plugin::types::{Category, HostFault};
    use verdict::tests::classification;

    fn report(status: Option<u16>, code: Option<&str>, wait: Option<u64>) -> FailureReport {
        verdict::tests::report("sky", "the platform refused the post", status, code, wait)
    }

    #[test]
    fn an_expired_token_is_retried() {
        let c = classification(classify_report(&report(
            Some(400),
            Some("ExpiredToken"),
            None,
        )));
        assert_eq!(c.category, Category::Retryable);
        assert!(c.reason.contains("renewed"), "{}", c.reason);
    }

    #[test]
    fn a_rate_limit_holds_the_account() {
        for r in [
            report(Some(429), Some("RateLimitExceeded"), Some(2500)),
            report(Some(429), None, Some(2500)),
        ] {
            let c = classification(classify_report(&r));
            assert_eq!(c.category, Category::Retryable);
            assert_eq!(c.retry_after_ms, Some(2500));
            assert_eq!(c.scope, RetryScope::Account);
            assert!(c.reason.contains("2.5s"), "{}", c.reason);
        }
    }

    #[test]
    fn refusals_that_retrying_cannot_fix() {
        for (status, code, hint) in [
            (400, "InvalidRequest", "payload"),
            (400, "AccountTakedown", "taken down"),
            (401, "AuthenticationRequired", "password"),
            (401, "InvalidToken", "credentials"),
        ] {
            let c = classification(classify_report(&report(Some(status), Some(code), None)));
            assert_eq!(c.category, Category::NonRetryable, "{code}");
            assert!(c.reason.contains(hint), "{code}: {}", c.reason);
            assert!(c.reason.contains("sky") || code == "InvalidRequest");
        }
    }

    #[test]
    fn a_server_error_is_retried() {
        let c = classification(classify_report(&report(
            Some(500),
            Some("InternalServerError"),
            Some(1000),
        )));
        assert_eq!(c.category, Category::Retryable);
        assert_eq!(c.retry_after_ms, Some(1000));
    }

    #[test]
    fn anything_else_is_for_the_next_classifier() {
        assert!(matches!(
            classify_report(&report(Some(503), None, None)),
            Verdict::NoOpinion
        ));
        assert!(matches!(
            classify_report(&report(Some(400), Some("RecordNotFound"), None)),
            Verdict::NoOpinion
        ));
        let mut timeout = report(Some(400), Some("InvalidRequest"), None);
        timeout.fault = Some(HostFault::Timeout(5000));
        assert!(matches!(classify_report(&timeout), Verdict::NoOpinion));
        let mut transport = report(None, Some("ExpiredToken"), None);
        transport.failure.as_mut().unwrap().transport_error = Some("connection-refused".into());
        assert!(matches!(classify_report(&transport), Verdict::NoOpinion));
        let mut none = report(None, None, None);
        none.failure = None;
        assert!(matches!(classify_report(&none), Verdict::NoOpinion));
    }

    #[test]
    fn long_messages_are_cut_in_reasons() {
        let mut r = report(Some(400), Some("InvalidRequest"), None);
        r.failure.as_mut().unwrap().message = "é".repeat(5000);
        let c = classification(classify_report(&r));
        assert!(c.reason.len() < QUOTE_BYTES + 200);
    }
}
