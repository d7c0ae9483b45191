//! The verdicts of the platform classifiers (`xrpc-classifier`,
//! `webhook-classifier`): which failures are the platform's own answer, the
//! two verdicts they give, and how a reason quotes the poster's message and
//! a wait. Each classifier includes this file by path and generates its own
//! bindings, so the types below are each crate's own.

use crate::orchestrator::plugin::log::{Level, log};
use crate::orchestrator::plugin::types::{
    Category, Classification, FailureReport, PostFailure, RetryScope, Verdict,
};

/// The poster's message quoted in a reason, at most.
pub const QUOTE_BYTES: usize = 300;

/// The failure the platform answered with, if `report` is one: only the
/// platform's word is classified here, and the next classifier in the chain
/// has the rest.
pub fn platform_answer(report: &FailureReport) -> Option<&PostFailure> {
    // A failure the host saw (a trap, a timeout) is not the platform's word.
    if report.fault.is_some() {
        return None;
    }
    report
        .failure
        .as_ref()
        .filter(|failure| failure.transport_error.is_none())
}

/// `verdict` on `report`, logged when it decides: the reason is what an
/// operator reads to see why a job was or was not retried.
pub fn logged(report: &FailureReport, verdict: Verdict) -> Verdict {
    if let Verdict::Decided(c) = &verdict {
        log(
            Level::Debug,
            &format!("job {}: {:?}: {}", report.job.job_id, c.category, c.reason),
        );
    }
    verdict
}

/// Not to be retried: retrying cannot change the platform's answer.
pub fn refused(reason: String) -> Verdict {
    Verdict::Decided(Classification {
        category: Category::NonRetryable,
        reason,
        retry_after_ms: None,
        scope: RetryScope::Job,
    })
}

/// To be retried, after `retry_after_ms` if the platform asked for a wait,
/// holding back whatever `scope` names meanwhile.
pub fn retry(reason: String, retry_after_ms: Option<u64>, scope: RetryScope) -> Verdict {
    Verdict::Decided(Classification {
        category: Category::Retryable,
        reason,
        retry_after_ms,
        scope,
    })
}

/// At most `max` bytes of `text`, cut at a character boundary: a poster's
/// message is not to be trusted to be short.
pub fn bounded(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The end of a reason naming a wait, `; {whom} waits 2.5s`; nothing
/// without one.
pub fn waits(whom: &str, wait: Option<u64>) -> String {
    wait.map(|ms| format!("; {whom} waits {}", human_ms(ms)))
        .unwrap_or_default()
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

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::orchestrator::plugin::types::{Account, JobContext};

    /// A report of a failure the poster of account `account` returned with
    /// `message`.
    pub fn report(
        account: &str,
        message: &str,
        status: Option<u16>,
        code: Option<&str>,
        wait: Option<u64>,
    ) -> FailureReport {
        FailureReport {
            job: JobContext {
                job_id: "j1".into(),
                account: Account {
                    name: account.into(),
                    base_url: "http://127.0.0.1:9".into(),
                    settings: Vec::new(),
                },
                payload: "{}".into(),
                attempt: 1,
                pass: 1,
                idempotency_key: "k".into(),
            },
            failure: Some(PostFailure {
                message: message.into(),
                http_status: status,
                error_code: code.map(str::to_owned),
                retry_after_ms: wait,
                rate_limit_reset: None,
                transport_error: None,
            }),
            fault: None,
        }
    }

    pub fn classification(verdict: Verdict) -> Classification {
        match verdict {
            Verdict::Decided(c) => c,
            Verdict::NoOpinion => panic!("no opinion"),
        }
    }

    #[test]
    fn waits_are_written_as_the_host_writes_them() {
        assert_eq!(waits("it", Some(2500)), "; it waits 2.5s");
        assert_eq!(waits("the account", Some(7000)), "; the account waits 7s");
        assert_eq!(waits("it", Some(61_234)), "; it waits 61s");
        assert_eq!(waits("it", None), "");
    }

    #[test]
    fn quotes_are_cut_at_a_character_boundary() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("aé", 2), "a");
        assert_eq!(bounded("ééé", 4), "éé");
    }
}
