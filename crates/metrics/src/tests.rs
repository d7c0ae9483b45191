//! [`encode`] against a real SQLite store, its text read back by a strict
//! parser of the Prometheus text format.

use std::time::Duration;

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use orchestrator_contract::{Category, PostFailure, Receipt, RetryScope};
use orchestrator_retry::{Decision, RetryConfig};
use orchestrator_store::prelude::*;
use orchestrator_store::{AttemptOutcome, Decided, NewJob, NewProcess, RunPass, SqliteStore};

use super::*;

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

/// A name that tries to close its label, end its line and forge a series.
const HOSTILE: &str = "evil\"} 1\n# TYPE forged counter\nforged_total 1\r\n\\\u{1b}[2J";

/// A store whose first run has posted `a-1`, and failed `b-1` with a
/// minute's wait for its account; `a-2` is pending.
fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.sqlite")).unwrap();
    let job = |id: &str, account: &str| NewJob {
        id: id.into(),
        account: account.into(),
        payload: "{}".into(),
    };
    store
        .import(&[job("a-1", "a"), job("a-2", "a"), job("b-1", "b")], "test")
        .unwrap();
    store
        .join_run(&NewProcess {
            pid: 1,
            config: RetryConfig::default(),
            workers: 2,
            accounts: None,
            key_window_ms: 3_600_000,
            plugins: Vec::new(),
        })
        .unwrap();
    let at = RunPass { run: 1, pass: 1 };
    store.begin_pass(at, 0).unwrap();
    let jobs = store.eligible_jobs(1, None).unwrap();
    let posted = AttemptOutcome::Succeeded(Receipt {
        remote_id: "1".into(),
        url: None,
    });
    let limited = AttemptOutcome::Failed {
        failure: Some(PostFailure::new("HTTP 429")),
        fault: None,
        classification: Decided {
            category: Category::Retryable,
            reason: "rate limited".into(),
            retry_after_ms: Some(60_000),
            scope: RetryScope::Account,
            decided_by: "built-in".into(),
            consulted: Vec::new(),
        },
        decision: Decision::Retry,
        not_before_ms: None,
    };
    for job in &jobs {
        let outcome = match job.id.as_str() {
            "a-1" => &posted,
            "b-1" => &limited,
            _ => continue,
        };
        let attempt = store.begin_attempt(job, at).unwrap();
        store.finish_attempt(attempt, outcome).unwrap();
    }
    (dir, store)
}

fn parsed(text: &str) -> Exposition {
    parse_prometheus(text).unwrap_or_else(|e| panic!("{e:?} in\n{text}"))
}

/// The value of `family`'s sample whose labels include `labels`.
fn value(exposition: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    let family = exposition
        .families
        .get(family)
        .unwrap_or_else(|| panic!("no family {family}"));
    let sample = family
        .iter_samples()
        .find(|s| {
            let set = s.get_labelset().unwrap();
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no {labels:?} in {}", family.family_name));
    match &sample.value {
        PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
        PrometheusValue::Counter(c) => c.value.as_f64(),
        PrometheusValue::Histogram(h) => h.count.unwrap() as f64,
        PrometheusValue::Summary(_) => panic!("no summaries here"),
    }
}

#[test]
fn the_store_alone_gives_jobs_pauses_and_the_newest_run() {
    let (_dir, store) = store();
    let text = encode(&store, None).unwrap();
    let m = parsed(&text);
    let jobs = |state| value(&m, "orchestrator_jobs", &[("state", state)]);
    assert_eq!(jobs("succeeded"), 1.0);
    assert_eq!(jobs("retry"), 1.0);
    assert_eq!(jobs("pending"), 1.0);
    assert_eq!(jobs("failed"), 0.0, "every state is there, 0 or not");
    let paused = |scope| value(&m, "orchestrator_paused_accounts", &[("scope", scope)]);
    assert_eq!(paused("account"), 1.0);
    assert_eq!(paused("platform"), 0.0);
    assert_eq!(value(&m, "orchestrator_run", &[]), 1.0);
    assert_eq!(value(&m, "orchestrator_pass", &[]), 1.0);
    // What only a running process knows is not made up.
    assert!(!m.families.contains_key("orchestrator_attempts_total"));
    assert!(!m.families.contains_key("orchestrator_attempts_in_flight"));
}

#[test]
fn a_run_adds_its_attempts_latency_and_plugin_times() {
    let (_dir, store) = store();
    let run = RunMetrics::new(Duration::from_secs(3600));
    run.run_started(1, None);
    run.pass_started(2);
    run.plugin_loaded("mastodon-poster", Duration::from_millis(1500));
    for failed in [None, None, Some(Category::Infrastructure)] {
        run.attempt_started();
        run.plugin_called("mastodon-poster", Call::Post, Duration::from_millis(120));
        run.attempt_finished(failed, Duration::from_millis(130));
    }
    run.plugin_called(
        "http-classifier",
        Call::Classify,
        Duration::from_micros(800),
    );
    run.attempt_started();

    let m = parsed(&encode(&store, Some(&run)).unwrap());
    let attempts = |outcome, category| {
        value(
            &m,
            "orchestrator_attempts_total",
            &[("outcome", outcome), ("category", category)],
        )
    };
    assert_eq!(attempts("succeeded", "none"), 2.0);
    assert_eq!(attempts("failed", "infrastructure"), 1.0);
    assert_eq!(attempts("failed", "non-retryable"), 0.0);
    assert_eq!(value(&m, "orchestrator_attempt_duration_seconds", &[]), 3.0);
    assert_eq!(value(&m, "orchestrator_attempts_in_flight", &[]), 1.0);
    assert_eq!(value(&m, "orchestrator_pass", &[]), 2.0);
    let call = |plugin, call| {
        value(
            &m,
            "orchestrator_plugin_call_duration_seconds",
            &[("plugin", plugin), ("call", call)],
        )
    };
    assert_eq!(call("mastodon-poster", "post"), 3.0);
    assert_eq!(call("http-classifier", "classify"), 1.0);
    let load = &m.families["orchestrator_plugin_load_duration_seconds"];
    let PrometheusValue::Histogram(h) = &load.iter_samples().next().unwrap().value else {
        panic!("a histogram");
    };
    assert_eq!(h.sum.unwrap().as_f64(), 1.5);
    // The store's side is there too.
    assert_eq!(
        value(&m, "orchestrator_jobs", &[("state", "succeeded")]),
        1.0
    );
}

#[test]
fn a_hostile_plugin_name_stays_one_bounded_label_value() {
    let (_dir, store) = store();
    let run = RunMetrics::new(DEFAULT_MAX_WAIT);
    let name = format!("{HOSTILE}{}", "x".repeat(500));
    run.plugin_loaded(&name, Duration::from_millis(3));
    run.plugin_called(&name, Call::Post, Duration::from_millis(3));
    let text = encode(&store, Some(&run)).unwrap();
    let m = parsed(&text);

    assert!(!m.families.contains_key("forged"), "{text}");
    assert!(!m.families.contains_key("forged_total"), "{text}");
    assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text}");
    let load = &m.families["orchestrator_plugin_load_duration_seconds"];
    let samples: Vec<_> = load.iter_samples().collect();
    assert_eq!(samples.len(), 1);
    let labels = samples[0].get_labelset().unwrap();
    let plugin = labels.get_label_value("plugin").unwrap();
    // Read back, it is the name made printable and cut: quote and
    // backslash kept as they were, line breaks and escapes spelled out.
    assert!(
        plugin.starts_with("evil\"} 1\\n# TYPE forged counter\\nforged_total 1\\r\\n\\"),
        "{plugin:?}"
    );
    assert!(plugin.len() <= LABEL_BYTES + '…'.len_utf8(), "{plugin:?}");
    assert!(plugin.ends_with('…'));
    assert_eq!(
        value(
            &m,
            "orchestrator_plugin_call_duration_seconds",
            &[("plugin", plugin), ("call", "post")]
        ),
        1.0
    );
}

#[test]
fn the_parser_refuses_what_is_not_the_format() {
    // Passing it means something: a label left open is refused.
    assert!(parse_prometheus("# TYPE x gauge\nx{a=\"b} 1\n").is_err());
    assert!(parse_prometheus("# TYPE x gauge\nx{a=\"b\"} 1\n").is_ok());
}

#[test]
fn a_label_is_cut_at_a_character_boundary() {
    let long = "é".repeat(100);
    let cut = label(&long);
    assert!(cut.len() <= LABEL_BYTES + '…'.len_utf8());
    assert!(cut.starts_with("éé") && cut.ends_with('…'));
    assert_eq!(label("plain-name"), "plain-name");
}
