//! Plugins that misbehave hurt only their own attempt: the run completes,
//! the other jobs come out as they would without them, and the bad
//! attempt's record names the fault.

use orchestrator_contract::HostFault;
use orchestrator_store::{AttemptRecord, JobState};

use crate::support::Fixture;
use crate::support::artifacts;

/// Good jobs beside one misbehaving job, run with `flags` in one pass.
/// Asserts that the run completes and the good jobs come out exactly as
/// they would without the bad one; returns the bad job's only attempt.
fn misbehave(name: &str, fields: &str, flags: &[&str]) -> (Fixture, AttemptRecord) {
    let scenario = format!(
        "[[account]]\nname = \"good\"\ntoken = \"good-token\"\n\n\
         [[account]]\nname = \"{name}\"\ntoken = \"{name}-token\"\n"
    );
    let mut jobs = String::new();
    for i in 1..=4 {
        jobs.push_str(&format!(
            "{{\"id\": \"good-{i}\", \"account\": \"good\", \"payload\": {{\"status\": \"fine {i}\"}}}}\n"
        ));
    }
    jobs.push_str(&format!(
        "{{\"id\": \"{name}-1\", \"account\": \"{name}\", \"payload\": {{\"status\": \"x\", {fields}}}}}\n"
    ));
    let f = Fixture::new(&scenario, 0)
        .with_jobs(&jobs)
        .with_plugins(&[artifacts::MISBEHAVING_POSTER, artifacts::HTTP_CLASSIFIER]);
    let mut args = vec!["--max-passes", "1", "--workers", "4"];
    args.extend_from_slice(flags);
    let out = f.run(&args);
    assert_eq!(
        out.code, 1,
        "the run completes with one failure: {}",
        out.stderr
    );

    let outcomes = f.outcomes();
    for i in 1..=4 {
        assert_eq!(outcomes[&format!("good-{i}")], (JobState::Succeeded, 1));
    }
    assert_eq!(outcomes[&format!("{name}-1")].0, JobState::Failed);
    let counters = f.sandbox.counters();
    assert_eq!(counters.statuses_created, 4);
    assert_eq!(counters.created_by_account["good"], 4);
    let attempt = only_attempt(&f, &format!("{name}-1"));
    (f, attempt)
}

fn only_attempt(f: &Fixture, job: &str) -> AttemptRecord {
    let mut attempts = f.state().attempts(job).unwrap();
    assert_eq!(attempts.len(), 1, "{job}: {attempts:?}");
    attempts.remove(0)
}

#[test]
fn a_poster_that_loops_forever_hits_the_deadline() {
    let (_, attempt) = misbehave("loop", r#""misbehave": "loop""#, &["--job-timeout", "2"]);
    assert_eq!(attempt.fault, Some(HostFault::Timeout(2000)));
    assert_eq!(attempt.category.as_deref(), Some("infrastructure"));
}

#[test]
fn a_poster_that_allocates_without_bound_runs_out_of_memory() {
    let (_, attempt) = misbehave(
        "alloc",
        r#""misbehave": "alloc""#,
        &["--plugin-memory", "32"],
    );
    assert!(
        matches!(&attempt.fault, Some(HostFault::OutOfMemory(m)) if m.contains("past the 32 MiB limit")),
        "{attempt:?}"
    );
    assert_eq!(attempt.category.as_deref(), Some("infrastructure"));
    assert_eq!(attempt.decided_by.as_deref(), Some("built-in"));
}

#[test]
fn a_poster_that_traps_fails_its_attempt_only() {
    let (_, attempt) = misbehave("trap", r#""misbehave": "trap""#, &[]);
    assert!(
        matches!(attempt.fault, Some(HostFault::Trap(_))),
        "{attempt:?}"
    );
    assert_eq!(attempt.category.as_deref(), Some("infrastructure"));
}

#[test]
fn a_poster_sees_no_files_and_no_environment() {
    let (_, attempt) = misbehave("snoop", r#""misbehave": "snoop""#, &[]);
    let said = attempt
        .failure
        .expect("the plugin reported what it saw")
        .message;
    assert!(said.contains("file Err("), "{said}");
    assert!(said.contains("0 environment variables"), "{said}");
}

#[test]
fn a_poster_cannot_reach_a_host_it_was_not_granted() {
    let (_, attempt) = misbehave(
        "stray",
        r#""misbehave": "stray", "url": "http://127.0.0.1:9/api/v1/statuses""#,
        &[],
    );
    assert_eq!(
        attempt.fault,
        Some(HostFault::DeniedRequest("127.0.0.1:9".into()))
    );
    assert_eq!(attempt.category.as_deref(), Some("non-retryable"));
    let reason = attempt.reason.unwrap();
    assert!(reason.contains("--allow-host 127.0.0.1:9"), "{reason}");
    assert!(
        reason.contains("allow_hosts = [\"127.0.0.1:9\"] under [accounts.stray]"),
        "{reason}"
    );
}

#[test]
fn a_poster_cannot_set_its_own_authorization() {
    let (f, attempt) = misbehave("forge", r#""misbehave": "forge""#, &[]);
    let said = attempt
        .failure
        .expect("the plugin reported the refusal")
        .message;
    assert!(said.contains("refused a request header"), "{said}");
    assert!(
        !f.sandbox
            .counters()
            .requests_by_account
            .contains_key("forge")
    );
}

#[test]
fn a_poster_cannot_download_more_than_the_response_limit() {
    let (_, attempt) = misbehave(
        "glutton",
        r#""misbehave": "glutton", "bytes": 8388608"#,
        &["--response-limit", "1"],
    );
    assert!(
        matches!(&attempt.fault, Some(HostFault::ConnectionError(m)) if m.contains("larger than the 1048576-byte limit")),
        "{attempt:?}"
    );
}

/// The stray poster's account and job, pointed at `url`.
fn stray_fixture(url: &str) -> Fixture {
    let scenario = "[[account]]\nname = \"stray\"\ntoken = \"stray-token\"\n";
    let jobs = format!(
        "{{\"id\": \"stray-1\", \"account\": \"stray\", \"payload\": {{\"status\": \"x\", \"misbehave\": \"stray\", \"url\": \"{url}\"}}}}\n"
    );
    Fixture::new(scenario, 0)
        .with_jobs(&jobs)
        .with_plugins(&[artifacts::MISBEHAVING_POSTER, artifacts::HTTP_CLASSIFIER])
}

#[test]
fn a_granted_host_is_reachable() {
    // The sandbox under a second name: denied until granted.
    let f = stray_fixture("http://localhost:9/");
    let host = format!("localhost:{}", f.sandbox.addr().port());
    let f = f.with_jobs(&format!(
        "{{\"id\": \"stray-1\", \"account\": \"stray\", \"payload\": {{\"status\": \"x\", \"misbehave\": \"stray\", \"url\": \"http://{host}/api/v1/statuses\"}}}}\n"
    ));
    let denied = f.run(&["--max-passes", "1"]);
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    assert_eq!(
        only_attempt(&f, "stray-1").fault,
        Some(HostFault::DeniedRequest(host.clone()))
    );

    std::fs::remove_file(f.path("orchestrator-state.sqlite")).unwrap();
    let granted = f.run(&["--max-passes", "1", "--allow-host", &host]);
    // Granted, but the token is only added for the account's own host, so
    // the platform refuses it: a grant does not carry credentials along.
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
    // The classifier that timed out is part of the attempt's record.
    let asked = "looping-classifier: timeout (attempt exceeded its 1000 ms deadline); http-classifier: non-retryable";
    let explain = f.tool(&["explain", "suspended-1"]);
    assert!(
        explain
            .stdout
            .contains(&format!("  asked:       {asked}\n")),
        "{}",
        explain.stdout
    );
    let csv = f.tool(&["report", "--format", "csv"]);
    assert!(
        csv.stdout
            .lines()
            .next()
            .unwrap()
            .ends_with(",run,process,classifiers,started_at,ended_at")
    );
    assert!(csv.stdout.contains(asked), "{}", csv.stdout);
    let json = f.tool(&["report", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        rows[0]["consulted"][0]["answer"]["fault"]["kind"],
        "timeout"
    );
}

#[test]
fn a_plugin_fixed_between_passes_serves_the_next_pass() {
    use std::io::BufRead;
    let f = Fixture::new("[[account]]\nname = \"ok\"\ntoken = \"ok-token\"\n", 0).with_jobs(
        "{\"id\": \"j1\", \"account\": \"ok\", \"payload\": {\"status\": \"hi\", \"misbehave\": \"trap\"}}\n",
    );
    // The buggy poster traps on this job; the fixed one posts it.
    let poster = f.path("poster.wasm");
    std::fs::copy(artifacts::MISBEHAVING_POSTER, &poster).unwrap();
    let poster: &'static str = Box::leak(poster.display().to_string().into_boxed_str());
    let f = f.with_plugins(&[poster, artifacts::HTTP_CLASSIFIER]);
    let mut child = f
        .command(&["--retry-delay", "2", "--run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no wait in:\n{log}"
        );
        log.push_str(&line);
        if line.contains(" Waiting ") {
            break;
        }
    }
    std::fs::copy(artifacts::MASTODON_POSTER, poster).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    log.push_str(&rest);
    assert_eq!(child.wait().unwrap().code(), Some(0), "{log}");
    assert!(
        log.contains("poster.wasm changed: loaded mastodon-poster 0.1.0 (sha256 "),
        "{log}"
    );
    assert_eq!(f.outcomes()["j1"], (JobState::Succeeded, 2));
    let attempts = f.state().attempts("j1").unwrap();
    assert!(matches!(attempts[0].fault, Some(HostFault::Trap(_))));
    assert_eq!(attempts[1].outcome, "succeeded");
}

#[test]
fn a_wait_of_a_billion_years_is_clamped_and_the_state_stays_readable() {
    let (f, attempt) = misbehave(
        "wait",
        r#""misbehave": "wait""#,
        &["--max-retry-after", "1"],
    );
    // u64::MAX ms asked for, 1 s waited; the record says both.
    assert_eq!(attempt.retry_after_ms, Some(1000));
    let reason = attempt.reason.unwrap();
    assert!(
        reason.ends_with("; clamped to --max-retry-after 1s)"),
        "{reason}"
    );
    for args in [&["--status"][..], &["--status", "--json"]] {
        let out = crate::support::run(&mut f.command(args));
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let explain = f.tool(&["explain", "wait-1"]);
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(
        explain.stdout.contains("retry after: 1000 ms"),
        "{}",
        explain.stdout
    );
}

#[test]
fn a_huge_message_full_of_escapes_is_kept_bounded_and_shown_escaped() {
    let (f, attempt) = misbehave("shout", r#""misbehave": "shout", "bytes": 8000000"#, &[]);
    // 8 MB sent; what the host keeps is cut to its limit, with a marker.
    let message = attempt.failure.unwrap().message;
    let limit = orchestrator_contract::text::MESSAGE_BYTES;
    assert!(message.len() < limit + 64, "{} bytes kept", message.len());
    assert!(
        message.ends_with(" more bytes cut]"),
        "{}",
        &message[limit - 10..]
    );
    // JSON keeps it exact (bounded); human output shows it escaped, so it
    // forges no line and sends no escape to the terminal.
    let explain = f.tool(&["explain", "shout-1"]);
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(!explain.stdout.contains('\u{1b}'), "{}", explain.stdout);
    assert!(!explain.stdout.contains('\r'), "{}", explain.stdout);
    assert!(
        explain
            .stdout
            .contains("failure:     \\u{1b}[31mred\\n  then:        retry\\rxxx"),
        "{}",
        &explain.stdout[..400.min(explain.stdout.len())]
    );
    assert!(
        !explain.stdout.lines().any(|l| l == "  then:        retry"),
        "a forged line"
    );
    for args in [&["--status"][..], &["--status", "--json"]] {
        let status = crate::support::run(&mut f.command(args));
        assert_eq!(status.code, 0, "{}", status.stderr);
        assert!(!status.stdout.contains('\u{1b}'));
        assert!(
            status.stdout.len() < 64 << 10,
            "{} bytes",
            status.stdout.len()
        );
    }
    // Its log line too: one line of the host's log, bounded and escaped.
    let again = f.run(&["--max-passes", "1"]);
    assert!(
        again
            .stderr
            .contains("\\u{1b}[31mred\\nERROR forged: a line of the host's\\rxxx"),
        "{}",
        &again.stderr[..again.stderr.len().min(2000)]
    );
    assert!(!again.stderr.contains('\u{1b}'));
    assert!(!again.stderr.lines().any(|l| l.starts_with("ERROR forged")));
    assert!(
        again.stderr.len() < 64 << 10,
        "{} bytes of log",
        again.stderr.len()
    );
}

#[test]
fn a_classifier_that_answers_like_an_attacker_changes_nothing_it_should_not() {
    let f = Fixture::new(
        "[[account]]\nname = \"down\"\ntoken = \"d\"\n\
         script = [{ respond = \"server-error\", status = 500 }]\n",
        1,
    )
    .with_plugins(&[artifacts::MASTODON_POSTER, artifacts::HOSTILE_CLASSIFIER]);
    let out = f.run(&["--max-retry-after", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains('\u{1b}'), "the log carries an escape");
    let failed = f.state().attempts("down-1").unwrap().remove(0);
    // Its name, reason and wait, as the host keeps them.
    let name = failed.decided_by.unwrap();
    assert!(
        name.starts_with("hostile\u{1b}[2J") && name.len() < 200,
        "{name:?}"
    );
    let reason = failed.reason.unwrap();
    assert!(reason.len() < 5 << 10, "{} bytes", reason.len());
    assert_eq!(failed.retry_after_ms, Some(1000));
    // The state stays small, and every reader works and shows it escaped.
    let size = std::fs::metadata(f.path("orchestrator-state.sqlite"))
        .unwrap()
        .len()
        + std::fs::metadata(f.path("orchestrator-state.sqlite-wal")).map_or(0, |m| m.len());
    assert!(size < 1 << 20, "{size} bytes of state");
    let explain = f.tool(&["explain", "down-1"]);
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(!explain.stdout.contains('\u{1b}'), "{}", explain.stdout);
    assert!(
        !explain
            .stdout
            .lines()
            .any(|l| l == "  then:        give up")
    );
    let status = crate::support::run(&mut f.command(&["--status"]));
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(!status.stdout.contains('\u{1b}'));
    // Listed and inspected: bounded, escaped, one line per field.
    let dir = crate::support::temp_dir();
    crate::support::install(artifacts::HOSTILE_CLASSIFIER, dir.path(), "hostile.wasm");
    let list = crate::support::run(
        crate::support::orchestrator()
            .args(["plugins", "list", "--plugin-dir"])
            .arg(dir.path()),
    );
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(
        !list.stdout.contains('\u{1b}') && list.stdout.len() < 4 << 10,
        "{}",
        list.stdout
    );
    let inspect = crate::support::run(
        crate::support::orchestrator()
            .args(["plugins", "inspect"])
            .arg(dir.path().join("hostile.wasm")),
    );
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert!(!inspect.stdout.contains('\u{1b}'), "{}", inspect.stdout);
    assert!(
        inspect
            .stdout
            .starts_with("name         hostile\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\n  then:")
    );
}

#[test]
fn a_describe_that_never_returns_ends_at_the_job_timeout() {
    let started = std::time::Instant::now();
    let out = crate::support::run(crate::support::orchestrator().args([
        "plugins",
        "inspect",
        "--job-timeout",
        "1",
        artifacts::MUTE_CLASSIFIER,
    ]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("`describe` failed"), "{}", out.stderr);
    // Not the default 60 s: the flag was honoured.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn nothing_of_one_attempt_is_left_in_the_next() {
    // More attempts than the pool has memory slots (its decommit queues
    // included), so slots are reset and used again; each attempt fails if
    // an earlier one left its job in the instance's memory.
    let scenario = "[[account]]\nname = \"mind\"\ntoken = \"mind-token\"\n";
    let jobs: String = (1..=200)
        .map(|i| {
            format!(
                "{{\"id\": \"mind-{i}\", \"account\": \"mind\", \"payload\": {{\"status\": \"thought {i}\", \"misbehave\": \"remember\"}}}}\n"
            )
        })
        .collect();
    let f = Fixture::new(scenario, 0)
        .with_jobs(&jobs)
        .with_plugins(&[artifacts::MISBEHAVING_POSTER, artifacts::HTTP_CLASSIFIER]);
    let out = f.run(&["--max-passes", "1", "--workers", "4"]);
    let left_behind: Vec<_> = f
        .state()
        .report()
        .unwrap()
        .into_iter()
        .filter_map(|r| r.attempt.failure)
        .collect();
    assert!(left_behind.is_empty(), "{left_behind:?}");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(f.sandbox.counters().statuses_created, 200);
}
