use orchestrator_contract::{
    Account, Category, FailureReport, HostFault, JobContext, PostFailure, RetryScope,
};

use super::*;

fn config() -> RetryConfig {
    RetryConfig::default()
}

fn history(passes_attempted: u32, infrastructure_failures: u32) -> JobHistory {
    JobHistory {
        passes_attempted,
        infrastructure_failures,
    }
}

#[test]
fn the_defaults_are_the_documented_ones() {
    let c = config();
    assert_eq!(
        (
            c.max_passes,
            c.retry_delay_seconds,
            c.infrastructure_retry_limit
        ),
        (3, 30, 3)
    );
    assert!(c.retry_unknown_errors);
    assert!(!c.retry_non_retryable);
}

#[test]
fn validation_names_the_flag_and_the_rule() {
    let ok = RetryConfig::from_flags(1, 0, 1, true, false).unwrap();
    assert_eq!(
        (
            ok.max_passes,
            ok.retry_delay_seconds,
            ok.infrastructure_retry_limit
        ),
        (1, 0, 1)
    );
    let err = |m, d, i| {
        RetryConfig::from_flags(m, d, i, true, false)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err(0, 30, 3), "--max-passes must be at least 1");
    assert_eq!(err(-5, 30, 3), "--max-passes must be at least 1");
    assert_eq!(err(3, -1, 3), "--retry-delay cannot be negative");
    assert_eq!(err(3, 30, 0), "--infra-retry-limit must be at least 1");
}

#[test]
fn the_log_block_shows_every_setting() {
    let c = RetryConfig::from_flags(5, 60, 3, true, false).unwrap();
    assert_eq!(
        c.to_string(),
        "Retry Configuration:\n  Max passes: 5\n  Retry delay: 60s\n  Infra retry limit: 3\n  Retry unknown errors: true"
    );
}

#[test]
fn retryable_failures_are_retried_until_passes_run_out() {
    let c = config();
    assert_eq!(
        decide(&c, Category::Retryable, history(1, 0)),
        Decision::Retry
    );
    assert_eq!(
        decide(&c, Category::Retryable, history(2, 0)),
        Decision::Retry
    );
    assert_eq!(
        decide(&c, Category::Retryable, history(3, 0)),
        Decision::GiveUp(GiveUpReason::MaxPassesReached { max: 3 })
    );
}

#[test]
fn one_pass_means_no_retry() {
    let c = RetryConfig::from_flags(1, 30, 3, true, false).unwrap();
    for category in Category::ALL {
        assert!(matches!(
            decide(&c, category, history(1, 0)),
            Decision::GiveUp(_)
        ));
    }
}

#[test]
fn non_retryable_failures_give_up_unless_included() {
    let mut c = config();
    assert_eq!(
        decide(&c, Category::NonRetryable, history(1, 0)),
        Decision::GiveUp(GiveUpReason::NonRetryable)
    );
    c.retry_non_retryable = true;
    assert_eq!(
        decide(&c, Category::NonRetryable, history(1, 0)),
        Decision::Retry
    );
    assert_eq!(
        decide(&c, Category::NonRetryable, history(3, 0)),
        Decision::GiveUp(GiveUpReason::MaxPassesReached { max: 3 })
    );
}

#[test]
fn unknown_failures_are_retried_unless_told_not_to() {
    let mut c = config();
    assert_eq!(
        decide(&c, Category::Unknown, history(1, 0)),
        Decision::Retry
    );
    c.retry_unknown_errors = false;
    assert_eq!(
        decide(&c, Category::Unknown, history(1, 0)),
        Decision::GiveUp(GiveUpReason::UnknownNotRetried)
    );
}

#[test]
fn infrastructure_failures_are_retried_at_most_the_limit() {
    let c = RetryConfig::from_flags(10, 0, 1, true, false).unwrap();
    // The first infrastructure failure is retried once...
    assert_eq!(
        decide(&c, Category::Infrastructure, history(1, 1)),
        Decision::Retry
    );
    // ...and the second uses up a limit of 1.
    assert_eq!(
        decide(&c, Category::Infrastructure, history(2, 2)),
        Decision::GiveUp(GiveUpReason::InfraLimitReached { limit: 1 })
    );
    let c = config();
    assert_eq!(
        decide(&c, Category::Infrastructure, history(2, 3)),
        Decision::Retry
    );
}

#[test]
fn a_job_whose_category_changes_is_judged_by_the_latest() {
    let c = RetryConfig::from_flags(5, 0, 1, true, false).unwrap();
    // Two infrastructure failures used up the limit, but the latest failure
    // is a rate limit: that is retried.
    assert_eq!(
        decide(&c, Category::Retryable, history(3, 2)),
        Decision::Retry
    );
    // A retryable failure then a non-retryable one: give up.
    assert_eq!(
        decide(&c, Category::NonRetryable, history(2, 0)),
        Decision::GiveUp(GiveUpReason::NonRetryable)
    );
}

#[test]
fn passes_are_counted_up_to_the_maximum() {
    let mut pm = PassManager::new(RetryConfig::from_flags(2, 0, 1, true, false).unwrap(), 0);
    assert_eq!(pm.current(), 0);
    assert_eq!(pm.start_pass(), Some(1));
    assert_eq!(pm.start_pass(), Some(2));
    assert_eq!(pm.start_pass(), None);
    // A resumed run continues from the passes already done.
    let mut resumed = PassManager::new(config(), 2);
    assert_eq!(resumed.start_pass(), Some(3));
    assert_eq!(resumed.start_pass(), None);
}

#[test]
fn a_pass_result_says_what_comes_next() {
    let mut pm = PassManager::new(config(), 0);
    pm.start_pass();
    let tally = |unfinished, failed| PassTally {
        unfinished,
        failed,
        ..PassTally::default()
    };
    assert_eq!(pm.end_pass(tally(0, 0)), PassResult::AllDone);
    assert_eq!(
        pm.end_pass(tally(2, 1)),
        PassResult::RetryableRemain { jobs: 2 }
    );
    assert!(pm.end_pass(tally(2, 1)).continues());
    assert_eq!(
        pm.end_pass(tally(0, 4)),
        PassResult::NothingRetryable { failed: 4 }
    );
    pm.start_pass();
    pm.start_pass();
    // The last pass: what failed and what is still open, in the words the
    // end-of-run line uses.
    let last = pm.end_pass(tally(1, 2));
    assert_eq!(
        last,
        PassResult::MaxPassesReached {
            failed: 2,
            unfinished: 1
        }
    );
    assert!(!last.continues());
    assert_eq!(
        last.to_string(),
        "max passes reached with 2 jobs failed and 1 unfinished"
    );
    assert_eq!(pm.end_pass(tally(0, 0)), PassResult::AllDone);
}

#[test]
fn a_run_is_resumed_only_under_the_same_budgets() {
    let base = config();
    // The delay and the backoff do not change what a job may get.
    let slower = RetryConfig {
        retry_delay_seconds: 600,
        ..base
    }
    .with_backoff(60);
    assert!(base.budget_differences(&slower).is_empty());
    let more = RetryConfig::from_flags(5, 30, 1, false, true).unwrap();
    assert_eq!(
        base.budget_differences(&more),
        [
            "--max-passes 3 (here 5)",
            "--infra-retry-limit 3 (here 1)",
            "--no-retry-unknown not set (here set)",
            "--retry-include-non-retryable not set (here set)",
        ]
    );
}

#[test]
fn a_new_run_retries_the_categories_its_settings_retry() {
    use Category::*;
    assert_eq!(
        config().retried_categories(),
        [Retryable, Infrastructure, Unknown]
    );
    let strict = RetryConfig::from_flags(3, 30, 3, false, false).unwrap();
    assert_eq!(strict.retried_categories(), [Retryable, Infrastructure]);
    assert_eq!(
        strict.not_retried(Unknown),
        Some(GiveUpReason::UnknownNotRetried)
    );
    let everything = RetryConfig::from_flags(3, 30, 3, true, true).unwrap();
    assert_eq!(everything.retried_categories(), Category::ALL);
}

fn report(failure: Option<PostFailure>, fault: Option<HostFault>) -> FailureReport {
    FailureReport {
        job: JobContext {
            job_id: "j".into(),
            account: Account {
                name: "a".into(),
                base_url: "https://x".into(),
                settings: vec![],
            },
            payload: "{}".into(),
            attempt: 1,
            pass: 1,
            idempotency_key: "k".into(),
        },
        failure,
        fault,
    }
}

fn status(code: u16) -> Option<PostFailure> {
    Some(PostFailure {
        http_status: Some(code),
        retry_after_ms: Some(1500),
        ..PostFailure::new("refused")
    })
}

#[test]
fn builtin_rules_classify_faults_then_statuses() {
    let category = |r: &FailureReport| builtin_classification(r).category;
    for fault in [
        HostFault::Trap("unreachable".into()),
        HostFault::Timeout(60_000),
        HostFault::OutOfMemory("64 MiB".into()),
        HostFault::ConnectionError("refused".into()),
    ] {
        assert_eq!(
            category(&report(None, Some(fault))),
            Category::Infrastructure
        );
    }
    assert_eq!(
        category(&report(
            None,
            Some(HostFault::DeniedRequest("evil:443".into()))
        )),
        Category::NonRetryable
    );
    for code in [408, 425, 429, 500, 503, 599] {
        assert_eq!(
            category(&report(status(code), None)),
            Category::Retryable,
            "{code}"
        );
    }
    for code in [400, 401, 403, 404, 422] {
        assert_eq!(
            category(&report(status(code), None)),
            Category::NonRetryable,
            "{code}"
        );
    }
    assert_eq!(category(&report(status(302), None)), Category::Unknown);
    assert_eq!(category(&report(None, None)), Category::Unknown);
    assert_eq!(
        builtin_classification(&report(status(429), None)).retry_after_ms,
        Some(1500)
    );
}

#[test]
fn a_rate_limit_pauses_the_account_and_a_server_outage_the_platform() {
    let scope = |r: &FailureReport| builtin_classification(r).scope;
    assert_eq!(scope(&report(status(429), None)), RetryScope::Account);
    let reset = Some(PostFailure {
        rate_limit_reset: Some("2026-11-28T12:00:00Z".into()),
        ..status(403).unwrap()
    });
    assert_eq!(scope(&report(reset, None)), RetryScope::Account);
    for code in [500, 503] {
        assert_eq!(scope(&report(status(code), None)), RetryScope::Platform);
    }
    for code in [408, 422] {
        assert_eq!(scope(&report(status(code), None)), RetryScope::Job);
    }
    let fault = Some(HostFault::Timeout(1000));
    assert_eq!(scope(&report(status(503), fault)), RetryScope::Job);
    assert_eq!(scope(&report(None, None)), RetryScope::Job);
}

#[test]
fn without_backoff_every_wait_is_the_retry_delay() {
    let c = RetryConfig::from_flags(5, 60, 3, true, false).unwrap();
    for pass in 2..6 {
        assert_eq!(
            c.delay_before(pass, 0.7),
            std::time::Duration::from_secs(60)
        );
    }
}

#[test]
fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
    let c = RetryConfig::from_flags(10, 10, 3, true, false)
        .unwrap()
        .with_backoff(35);
    let secs = |pass, jitter| c.delay_before(pass, jitter).as_secs_f64();
    // Before pass 2: between 5 and 10 s; pass 3: 10-20; pass 4: capped, 17.5-35.
    assert_eq!((secs(2, 0.0), secs(2, 1.0)), (5.0, 10.0));
    assert_eq!((secs(3, 0.0), secs(3, 1.0)), (10.0, 20.0));
    assert_eq!((secs(4, 0.0), secs(4, 1.0)), (17.5, 35.0));
    assert_eq!(secs(60, 0.5), 26.25);
    // A delay of 0 stays 0.
    let zero = RetryConfig::from_flags(3, 0, 3, true, false)
        .unwrap()
        .with_backoff(60);
    assert_eq!(zero.delay_before(3, 0.9), std::time::Duration::ZERO);
}
