//! Plugins written in Python (`plugins/python-classifier`, built with
//! componentize-py) and JavaScript (`plugins/js-classifier`, built with
//! componentize-js) load and classify through the same host, unchanged.

use std::path::Path;

use orchestrator_contract::{
    Category, FailureReport, HostFault, PluginKind, PostFailure, RetryScope, Verdict,
};

use crate::support;

/// Builds the Python classifier, or says loudly why it cannot (outside CI;
/// in CI, `.ci/run` installs componentize-py and a missing tool fails).
fn build_python_classifier(out: &Path) -> bool {
    let status = orchestrator_plugin_artifacts::python_classifier_command(out).status();
    match status {
        Ok(s) if s.success() => true,
        Ok(s) => panic!("componentize-py failed ({s}) building plugins/python-classifier"),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "\n*** SKIPPED: the Python plugin test needs componentize-py ({e}); \
                 install it with `pip install componentize-py` ***\n"
            );
            false
        }
        Err(e) => panic!("componentize-py is missing in CI ({e}); .ci/run installs it"),
    }
}

fn report(error: &str) -> FailureReport {
    FailureReport {
        job: support::job("alice", "https://example.social"),
        failure: Some(PostFailure {
            http_status: Some(403),
            error_code: Some(error.into()),
            ..PostFailure::new("refused")
        }),
        fault: None,
    }
}

/// The Python classifier, built once per test run (building it takes
/// seconds); `None` when componentize-py is missing outside CI.
fn python_classifier() -> Option<&'static str> {
    static BUILT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let wasm = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-classifier.wasm");
            build_python_classifier(&wasm).then(|| wasm.display().to_string())
        })
        .as_deref()
}

#[test]
fn a_python_classifier_decides_in_a_real_run() {
    let Some(wasm) = python_classifier() else {
        return;
    };
    let f = crate::support::Fixture::new(
        "[[account]]\nname = \"dave\"\ntoken = \"d\"\nthen = { respond = \"suspended\" }\n\
         [[account]]\nname = \"ok\"\ntoken = \"o\"\n",
        1,
    )
    .with_plugins(&[crate::support::artifacts::MASTODON_POSTER, wasm]);
    let out = f.run(&[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let attempts = f.state().attempts("dave-1").unwrap();
    assert_eq!(attempts.len(), 1, "non-retryable: tried once");
    assert_eq!(attempts[0].decided_by.as_deref(), Some("python-classifier"));
    assert!(
        attempts[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("login is disabled")
    );
    assert_eq!(
        f.outcomes()["ok-1"].0,
        orchestrator_store::JobState::Succeeded
    );
}

#[test]
fn a_python_classifier_loads_and_decides() {
    let Some(wasm) = python_classifier() else {
        return;
    };
    support::runtime().block_on(async {
        let plugin = support::classifier(wasm).await;
        assert_eq!(plugin.meta().kind, PluginKind::Classifier);
        assert_eq!(plugin.info().name, "python-classifier");

        let verdict = plugin
            .classify(&report("Your login is currently disabled"))
            .await
            .unwrap();
        let Verdict::Decided(c) = verdict else {
            panic!("expected a decision, got {verdict:?}");
        };
        assert_eq!(c.category, Category::NonRetryable);
        assert!(c.reason.contains("login is disabled"), "{}", c.reason);

        let verdict = plugin.classify(&report("Too many requests")).await.unwrap();
        let Verdict::Decided(c) = verdict else {
            panic!("expected a decision, got {verdict:?}");
        };
        assert_eq!(c.category, Category::Retryable);
        assert_eq!(c.scope, RetryScope::Account);

        let verdict = plugin.classify(&report("Something else")).await.unwrap();
        assert_eq!(verdict, Verdict::NoOpinion);
    });
}

/// Builds the JavaScript classifier, or says loudly why it cannot (outside
/// CI; in CI, `.ci/run` installs componentize-js and a missing tool fails).
fn build_js_classifier(out: &Path) -> bool {
    let started = std::time::Instant::now();
    let status = orchestrator_plugin_artifacts::js_classifier_command(out).status();
    match status {
        Ok(s) if s.success() => {
            eprintln!("built plugins/js-classifier in {:.1?}", started.elapsed());
            true
        }
        Ok(s) => panic!("componentize-js failed ({s}) building plugins/js-classifier"),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "\n*** SKIPPED: the JavaScript plugin test needs componentize-js ({e}); \
                 install it with `npm install -g @bytecodealliance/componentize-js@0.23.0` \
                 or `npm install` in plugins/js-classifier, or name it in \
                 ORCHESTRATOR_COMPONENTIZE_JS ***\n"
            );
            false
        }
        Err(e) => panic!("componentize-js is missing in CI ({e}); .ci/run installs it"),
    }
}

/// The JavaScript classifier, built once per test run (building it takes
/// seconds); `None` when componentize-js is missing outside CI.
fn js_classifier() -> Option<&'static str> {
    static BUILT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let wasm = Path::new(env!("CARGO_TARGET_TMPDIR")).join("js-classifier.wasm");
            build_js_classifier(&wasm).then(|| wasm.display().to_string())
        })
        .as_deref()
}

fn failed(failure: PostFailure) -> FailureReport {
    FailureReport {
        job: support::job("alice", "https://example.social"),
        failure: Some(failure),
        fault: None,
    }
}

#[test]
fn a_javascript_classifier_loads_and_decides() {
    let Some(wasm) = js_classifier() else {
        return;
    };
    support::runtime().block_on(async {
        let plugin = support::classifier(wasm).await;
        assert_eq!(plugin.meta().kind, PluginKind::Classifier);
        assert_eq!(plugin.meta().contract.to_string(), "0.3.0");
        assert_eq!(plugin.info().name, "js-classifier");

        let legal = PostFailure {
            http_status: Some(451),
            ..PostFailure::new("unavailable")
        };
        let verdict = plugin.classify(&failed(legal)).await.unwrap();
        let Verdict::Decided(c) = verdict else {
            panic!("expected a decision, got {verdict:?}");
        };
        assert_eq!(c.category, Category::NonRetryable);
        assert!(c.reason.contains("legal reasons"), "{}", c.reason);
        assert_eq!(c.retry_after_ms, None);

        // The poster's wasi:http error code, and the host's own words.
        let dns = PostFailure {
            transport_error: Some("dns-error".into()),
            ..PostFailure::new("the request got no response: dns-error")
        };
        let unresolved = FailureReport {
            job: support::job("alice", "https://example.social"),
            failure: None,
            fault: Some(HostFault::ConnectionError(
                "no-such-host.invalid: failed to lookup address information".into(),
            )),
        };
        for report in [failed(dns), unresolved] {
            let verdict = plugin.classify(&report).await.unwrap();
            let Verdict::Decided(c) = verdict else {
                panic!("expected a decision, got {verdict:?}");
            };
            assert_eq!(c.category, Category::Infrastructure);
            assert_eq!(c.scope, RetryScope::Platform);
            assert_eq!(c.retry_after_ms, Some(60_000));
            assert!(c.reason.contains("https://example.social"), "{}", c.reason);
        }

        let verdict = plugin.classify(&report("Forbidden")).await.unwrap();
        assert_eq!(verdict, Verdict::NoOpinion);
    });
}
