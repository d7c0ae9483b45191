//! `http-classifier` on each status family and transport fault.

use orchestrator_contract::{Category, FailureReport, HostFault, PluginKind, PostFailure, Verdict};

use crate::support::{self, artifacts};

fn report(failure: Option<PostFailure>, fault: Option<HostFault>) -> FailureReport {
    FailureReport {
        job: support::job("alice", "https://example.social"),
        failure,
        fault,
    }
}

fn http(status: u16) -> PostFailure {
    PostFailure {
        http_status: Some(status),
        retry_after_ms: Some(7_000),
        ..PostFailure::new(format!("HTTP {status}"))
    }
}

/// Classifies every report with one loaded plugin.
fn classify_all(reports: Vec<FailureReport>) -> Vec<Verdict> {
    support::runtime().block_on(async {
        let plugin = support::classifier(artifacts::HTTP_CLASSIFIER).await;
        assert_eq!(plugin.meta().kind, PluginKind::Classifier);
        let mut verdicts = Vec::new();
        for r in &reports {
            verdicts.push(plugin.classify(r).await.expect("the classifier runs"));
        }
        verdicts
    })
}

fn decided(v: &Verdict) -> &orchestrator_contract::Classification {
    match v {
        Verdict::Decided(c) => c,
        Verdict::NoOpinion => panic!("expected a decision"),
    }
}

#[test]
fn client_errors_that_will_not_pass_are_non_retryable() {
    let statuses = [401, 403, 404, 410, 422];
    let verdicts = classify_all(
        statuses
            .iter()
            .map(|s| report(Some(http(*s)), None))
            .collect(),
    );
    for (status, v) in statuses.iter().zip(&verdicts) {
        let c = decided(v);
        assert_eq!(c.category, Category::NonRetryable, "{status}: {}", c.reason);
        assert!(
            c.reason.starts_with(&format!("HTTP {status}")),
            "{}",
            c.reason
        );
        assert_eq!(c.retry_after_ms, None);
    }
    assert!(
        decided(&verdicts[0])
            .reason
            .contains("access token of account alice")
    );
}

/// The statuses worth waiting for, and the classifier's verdicts on them.
const WAIT_STATUSES: [u16; 7] = [408, 425, 429, 500, 502, 503, 504];

fn wait_verdicts() -> Vec<Verdict> {
    classify_all(
        WAIT_STATUSES
            .iter()
            .map(|s| report(Some(http(*s)), None))
            .collect(),
    )
}

#[test]
fn rate_limits_and_server_errors_are_retryable_with_the_hint() {
    for (status, v) in WAIT_STATUSES.iter().zip(&wait_verdicts()) {
        let c = decided(v);
        assert_eq!(c.category, Category::Retryable, "{status}: {}", c.reason);
        assert_eq!(c.retry_after_ms, Some(7_000), "{status}");
        assert!(c.reason.contains("waits 7s"), "{}", c.reason);
    }
}

#[test]
fn a_rate_limit_holds_back_the_account_and_an_outage_the_instance() {
    let scopes: Vec<_> = wait_verdicts().iter().map(|v| decided(v).scope).collect();
    use orchestrator_contract::RetryScope::{Account, Job, Platform};
    assert_eq!(
        scopes,
        [Job, Job, Account, Platform, Platform, Platform, Platform]
    );
}

#[test]
fn other_statuses_are_unknown() {
    let verdicts = classify_all(vec![
        report(Some(http(418)), None),
        report(Some(http(301)), None),
    ]);
    for v in &verdicts {
        assert_eq!(decided(v).category, Category::Unknown);
    }
}

#[test]
fn connection_and_timeout_faults_are_infrastructure() {
    let transport = PostFailure {
        transport_error: Some("connection-refused".into()),
        ..PostFailure::new("the request got no response")
    };
    let verdicts = classify_all(vec![
        report(None, Some(HostFault::ConnectionError("refused".into()))),
        report(None, Some(HostFault::Timeout(60_000))),
        report(Some(transport), None),
    ]);
    for v in &verdicts {
        assert_eq!(decided(v).category, Category::Infrastructure, "{v:?}");
    }
    assert!(decided(&verdicts[1]).reason.contains("60000 ms"));
}

#[test]
fn faults_that_are_not_about_http_are_left_to_the_host() {
    let verdicts = classify_all(vec![
        report(None, Some(HostFault::Trap("unreachable".into()))),
        report(
            None,
            Some(HostFault::DeniedRequest("evil.example:443".into())),
        ),
    ]);
    assert!(
        verdicts.iter().all(|v| *v == Verdict::NoOpinion),
        "{verdicts:?}"
    );
}
