//! Plugins that misbehave hurt only their own attempt: the run completes,
//! the other jobs come out as they would without them, and the bad
//! attempt's record names the fault.

use orchestrator_contract::HostFault;
use orchestrator_store::{AttemptRecord, JobState, Store};

use crate::run_batch::Fixture;
use crate::support::artifacts;

/// Each misbehaviour on its own account, so they run side by side with
/// the good jobs.
const MISBEHAVIOURS: &[(&str, &str)] = &[
    ("loop", r#""misbehave": "loop""#),
    ("alloc", r#""misbehave": "alloc""#),
    ("trap", r#""misbehave": "trap""#),
    ("snoop", r#""misbehave": "snoop""#),
    (
        "stray",
        r#""misbehave": "stray", "url": "http://127.0.0.1:9/api/v1/statuses""#,
    ),
    ("forge", r#""misbehave": "forge""#),
    ("glutton", r#""misbehave": "glutton", "bytes": 8388608"#),
];

fn fixture() -> Fixture {
    let mut scenario = String::from("[[account]]\nname = \"good\"\ntoken = \"good-token\"\n");
    let mut jobs = String::new();
    for i in 1..=4 {
        jobs.push_str(&format!(
            "{{\"id\": \"good-{i}\", \"account\": \"good\", \"payload\": {{\"status\": \"fine {i}\"}}}}\n"
        ));
    }
    for (name, fields) in MISBEHAVIOURS {
        scenario.push_str(&format!(
            "[[account]]\nname = \"{name}\"\ntoken = \"{name}-token\"\n"
        ));
        jobs.push_str(&format!(
            "{{\"id\": \"{name}-1\", \"account\": \"{name}\", \"payload\": {{\"status\": \"x\", {fields}}}}}\n"
        ));
    }
    Fixture::new(&scenario, 0)
        .with_jobs(&jobs)
        .with_plugins(&[artifacts::MISBEHAVING_POSTER, artifacts::HTTP_CLASSIFIER])
}

fn only_attempt(f: &Fixture, job: &str) -> AttemptRecord {
    let mut attempts = f.state().attempts(job).unwrap();
    assert_eq!(attempts.len(), 1, "{job}: {attempts:?}");
    attempts.remove(0)
}

#[test]
fn misbehaving_posters_fail_only_their_own_attempts() {
    let f = fixture();
    let out = f.run(&[
        "--max-passes",
        "1",
        "--workers",
        "8",
        "--job-timeout",
        "3",
        "--response-limit",
        "1",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);

    // The good jobs come out exactly as without the bad ones.
    let outcomes = f.outcomes();
    for i in 1..=4 {
        assert_eq!(outcomes[&format!("good-{i}")], (JobState::Succeeded, 1));
    }
    let counters = f.sandbox.counters();
    assert_eq!(counters.statuses_created, 4);
    assert_eq!(counters.created_by_account["good"], 4);
    for (name, _) in MISBEHAVIOURS {
        assert_eq!(outcomes[&format!("{name}-1")].0, JobState::Failed, "{name}");
    }

    let loop_ = only_attempt(&f, "loop-1");
    assert_eq!(loop_.fault, Some(HostFault::Timeout(3000)));
    assert_eq!(loop_.category.as_deref(), Some("infrastructure"));

    let alloc = only_attempt(&f, "alloc-1");
    assert!(
        matches!(&alloc.fault, Some(HostFault::OutOfMemory(m)) if m.contains("past the 64 MiB limit")),
        "{alloc:?}"
    );
    assert_eq!(alloc.category.as_deref(), Some("infrastructure"));
    assert_eq!(alloc.decided_by.as_deref(), Some("built-in"));

    let trap = only_attempt(&f, "trap-1");
    assert!(matches!(trap.fault, Some(HostFault::Trap(_))), "{trap:?}");
    assert_eq!(trap.category.as_deref(), Some("infrastructure"));

    let snoop = only_attempt(&f, "snoop-1");
    let said = snoop
        .failure
        .expect("the plugin reported what it saw")
        .message;
    assert!(said.contains("file Err("), "{said}");
    assert!(said.contains("0 environment variables"), "{said}");

    let stray = only_attempt(&f, "stray-1");
    assert_eq!(
        stray.fault,
        Some(HostFault::DeniedRequest("127.0.0.1:9".into()))
    );
    assert_eq!(stray.category.as_deref(), Some("non-retryable"));
    let reason = stray.reason.unwrap();
    assert!(reason.contains("--allow-host 127.0.0.1:9"), "{reason}");
    assert!(
        reason.contains("allow_hosts = [\"127.0.0.1:9\"] under [accounts.stray]"),
        "{reason}"
    );

    let forge = only_attempt(&f, "forge-1");
    let said = forge
        .failure
        .expect("the plugin reported the refusal")
        .message;
    assert!(said.contains("refused a request header"), "{said}");
    assert!(!counters.requests_by_account.contains_key("forge"));

    let glutton = only_attempt(&f, "glutton-1");
    assert!(
        matches!(&glutton.fault, Some(HostFault::ConnectionError(m)) if m.contains("larger than the 1048576-byte limit")),
        "{glutton:?}"
    );
}

#[test]
fn a_granted_host_is_reachable() {
    // The same stray request, granted: now it reaches the sandbox (as a
    // second host name for it) instead of being denied.
    let f = fixture();
    let sandbox = f.sandbox.url().trim_start_matches("http://").to_owned();
    let port = sandbox.rsplit(':').next().unwrap().to_owned();
    let jobs = format!(
        "{{\"id\": \"stray-1\", \"account\": \"stray\", \"payload\": {{\"status\": \"x\", \"misbehave\": \"stray\", \"url\": \"http://localhost:{port}/api/v1/statuses\"}}}}\n"
    );
    let f = f.with_jobs(&jobs);
    let denied = f.run(&["--max-passes", "1"]);
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    let host = format!("localhost:{port}");
    assert_eq!(
        only_attempt(&f, "stray-1").fault,
        Some(HostFault::DeniedRequest(host.clone()))
    );

    let f = fixture().with_jobs(&jobs);
    let granted = f.run(&["--max-passes", "1", "--allow-host", &host]);
    // Granted, but the token is only added for the account's own host, so
    // the sandbox refuses it: the grant does not carry credentials along.
    let attempt = only_attempt(&f, "stray-1");
    assert_eq!(attempt.fault, None, "{attempt:?}");
    assert_eq!(attempt.failure.unwrap().http_status, Some(401));
    assert_eq!(granted.code, 1);
}

#[test]
fn a_classifier_that_never_returns_is_skipped() {
    let f = Fixture::new(
        "[[account]]\nname = \"suspended\"\ntoken = \"s-token\"\nthen = { respond = \"suspended\" }\n",
        1,
    )
    .with_plugins(&[
        artifacts::MASTODON_POSTER,
        artifacts::LOOPING_CLASSIFIER,
        artifacts::HTTP_CLASSIFIER,
    ]);
    let out = f.run(&["--job-timeout", "1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let attempt = only_attempt(&f, "suspended-1");
    assert_eq!(attempt.decided_by.as_deref(), Some("http-classifier"));
    assert_eq!(attempt.category.as_deref(), Some("non-retryable"));
    assert!(out.stderr.contains("looping-classifier"), "{}", out.stderr);
}
