//! `--run` end to end: the real binary, real plugins, real HTTP against the
//! sandbox, and the state file read back through the store.

use orchestrator_contract::RetryScope;
use orchestrator_store::JobState;

use crate::support::{
    self, Fixture, MIXED, artifacts, assert_exactly_once, expect, orchestrator, run,
};
use JobState::{Failed, Pending, Succeeded};

#[test]
pub(crate) fn a_mixed_batch_with_default_flags() {
    let f = Fixture::new(MIXED, 1);
    let out = f.run(&[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    expect(
        &f,
        &[
            ("ok1-1", Succeeded, 1),
            ("ok2-1", Succeeded, 1),
            ("flaky-1", Succeeded, 2),
            ("limited-1", Succeeded, 2),
            ("broken-1", Succeeded, 3),
            ("suspended-1", Failed, 1),
            ("teapot-1", Failed, 3),
        ],
    );
    assert_eq!(f.passes(), 3);
    assert_exactly_once(&f);
    // The log tells the story, each line with its time (stderr is a pipe).
    let first = out
        .stderr
        .lines()
        .find(|l| l.contains("Retry Configuration:"))
        .unwrap();
    assert!(
        humantime::parse_rfc3339(first.split(' ').next().unwrap()).is_ok(),
        "{first}"
    );
    for line in [
        "Retry Configuration:\n  Max passes: 3\n  Retry delay: 0s\n  Infra retry limit: 3\n  Retry unknown errors: true\n",
        "Starting pass 1/3",
        "Starting pass 2/3",
        "Starting pass 3/3",
        "Waiting 0s before next pass...",
    ] {
        assert!(
            out.stderr.contains(line),
            "missing {line:?} in:\n{}",
            out.stderr
        );
    }
    // The summary says why the failed jobs failed.
    assert!(
        out.stdout.contains("Failed (2), by reason:"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("account suspended may not post"),
        "{}",
        out.stdout
    );
}

#[test]
pub(crate) fn one_pass_retries_nothing() {
    let f = Fixture::new(MIXED, 1);
    let out = f.run(&["--max-passes", "1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    expect(
        &f,
        &[
            ("ok1-1", Succeeded, 1),
            ("ok2-1", Succeeded, 1),
            ("flaky-1", Failed, 1),
            ("limited-1", Failed, 1),
            ("broken-1", Failed, 1),
            ("suspended-1", Failed, 1),
            ("teapot-1", Failed, 1),
        ],
    );
    assert_eq!(f.passes(), 1);
    assert!(!out.stderr.contains("Waiting"), "{}", out.stderr);
}

#[test]
pub(crate) fn strict_mode_gives_up_on_unknown_failures() {
    let f = Fixture::new(MIXED, 1);
    let out = f.run(&["--no-retry-unknown"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("Retry unknown errors: false"),
        "{}",
        out.stderr
    );
    let outcomes = f.outcomes();
    assert_eq!(outcomes["teapot-1"], (Failed, 1));
    assert_eq!(outcomes["broken-1"], (Succeeded, 3));
    assert_eq!(f.passes(), 3);
}

#[test]
pub(crate) fn non_retryable_failures_can_be_retried_on_request() {
    let f = Fixture::new(MIXED, 1);
    let out = f.run(&["--retry-include-non-retryable"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let outcomes = f.outcomes();
    assert_eq!(outcomes["suspended-1"], (Failed, 3));
    assert_eq!(outcomes["flaky-1"], (Succeeded, 2));
}

#[test]
pub(crate) fn an_infrastructure_limit_of_one_allows_one_retry() {
    let f = Fixture::new(MIXED, 1);
    let out = f.run(&["--infra-retry-limit", "1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let outcomes = f.outcomes();
    assert_eq!(outcomes["broken-1"], (Failed, 2));
    let status = run(&mut f.command(&["--status"]));
    assert!(
        status
            .stdout
            .contains("infrastructure failures used up --infra-retry-limit 1"),
        "{}",
        status.stdout
    );
}

#[test]
pub(crate) fn only_the_named_accounts_run() {
    let f = Fixture::new(MIXED, 2);
    let out = f.run(&["--accounts", "ok1,flaky"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let outcomes = f.outcomes();
    for (id, (state, _)) in &outcomes {
        let expected = if id.starts_with("ok1-") || id.starts_with("flaky-") {
            Succeeded
        } else {
            Pending
        };
        assert_eq!(*state, expected, "{id}");
    }
    let counters = f.sandbox.counters();
    assert_eq!(counters.statuses_created, 4);
    assert!(!counters.requests_by_account.contains_key("teapot"));
}

#[test]
pub(crate) fn rerunning_a_finished_batch_retries_only_what_failed() {
    let f = Fixture::new(MIXED, 1);
    assert_eq!(f.run(&[]).code, 1);
    let before = f.sandbox.counters();
    let again = f.run(&[]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("Imported 0 jobs"), "{}", again.stderr);
    // Run 2 retries teapot (unknown) in its three passes; suspended
    // (non-retryable) is skipped, and what posted is never posted again.
    for line in [
        "Run 2: a new run for every account, retrying 1 job that failed in earlier runs",
        "Skipping 1 job that failed as non-retryable (e.g. suspended-1): --retry-include-non-retryable retries them",
        "Starting pass 1/3 of run 2 (1 job)",
    ] {
        assert!(
            again.stderr.contains(line),
            "missing {line:?} in:\n{}",
            again.stderr
        );
    }
    let after = f.sandbox.counters();
    assert_eq!(after.requests, before.requests + 3);
    assert_eq!(after.requests_by_account["teapot"], 6);
    assert_eq!(
        after.requests_by_account["suspended"],
        before.requests_by_account["suspended"]
    );
    assert_eq!(after.statuses_created, before.statuses_created);
    assert_eq!(f.outcomes()["teapot-1"], (Failed, 6));
}

#[test]
fn an_unknown_account_in_the_jobs_is_a_usage_error() {
    let f = Fixture::new(MIXED, 1);
    let mut jobs = std::fs::read_to_string(f.path("jobs.jsonl")).unwrap();
    jobs.push_str("{\"id\": \"x\", \"account\": \"nobody\", \"payload\": {\"status\": \"x\"}}\n");
    std::fs::write(f.path("jobs.jsonl"), jobs).unwrap();
    let out = f.run(&[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("missing from the accounts file: nobody"),
        "{}",
        out.stderr
    );
    assert_eq!(f.sandbox.counters().requests, 0);
    // Refused before anything was imported.
    assert!(f.outcomes().is_empty());
}

#[test]
pub(crate) fn a_retry_after_longer_than_the_delay_is_waited_out() {
    let f = Fixture::new(
        r#"
[[account]]
name = "limited"
token = "limited-token"
script = [{ respond = "rate-limited", reset_secs = 2 }]
"#,
        1,
    );
    let started = std::time::Instant::now();
    let out = f.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The retry delay is 0, but the platform asked for 2 s.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert_eq!(f.outcomes()["limited-1"], (Succeeded, 2));
}

#[test]
fn explain_and_report_tell_each_jobs_story() {
    let f = Fixture::new(MIXED, 1);
    assert_eq!(f.run(&[]).code, 1);
    let explain = |job: &str| {
        let out = run(orchestrator()
            .current_dir(f.dir.path())
            .args(["explain", job]));
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
    };
    let broken = explain("broken-1");
    assert!(
        broken.starts_with("Job broken-1 (account broken): succeeded\n"),
        "{broken}"
    );
    assert_eq!(
        broken.matches("host fault:  connection-error").count(),
        2,
        "{broken}"
    );
    assert!(
        broken.contains("Attempt 3 (run 1, pass 3): succeeded"),
        "{broken}"
    );
    assert!(broken.ends_with("\nDone: posted.\n"), "{broken}");
    let suspended = explain("suspended-1");
    assert!(
        suspended.contains("decided:     non-retryable by http-classifier"),
        "{suspended}"
    );
    assert!(
        suspended.ends_with("\nFailed in run 1: the next --run skips it (non-retryable) unless given --retry-include-non-retryable; `orchestrator retry suspended-1` makes it eligible regardless.\n"),
        "{suspended}"
    );
    let limited = explain("limited-1");
    assert!(
        limited.contains(" ms (account limited waits)\n"),
        "{limited}"
    );
    let missing = run(orchestrator()
        .current_dir(f.dir.path())
        .args(["explain", "nope"]));
    assert_eq!(missing.code, 2);

    let attempts: u32 = f.outcomes().values().map(|(_, n)| n).sum();
    let csv = run(orchestrator()
        .current_dir(f.dir.path())
        .args(["report", "--format", "csv"]));
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    let mut lines = csv.stdout.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("job,account,pass,attempt,")
    );
    assert_eq!(lines.count() as u32, attempts);
    let json = run(orchestrator()
        .current_dir(f.dir.path())
        .args(["report", "--format", "json"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows.len() as u32, attempts);
    assert!(
        rows.iter()
            .any(|r| r["fault"]["kind"] == "connection-error")
    );
    // Times in RFC 3339 beside the milliseconds.
    let started = rows[0]["started_at"].as_str().unwrap();
    assert!(
        started.starts_with("20") && started.ends_with('Z'),
        "{started}"
    );
    assert!(rows.iter().any(|r| r["retry_scope"] == "account"));
}

#[test]
fn logs_can_be_json_and_verbosity_is_a_flag() {
    let f = Fixture::new(MIXED, 1);
    let out = f.run(&["-vv", "--log-format", "json", "--max-passes", "1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let json_lines: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("each log line is a JSON object"))
        .collect();
    assert!(
        json_lines
            .iter()
            .any(|l| l["level"] == "DEBUG" && l["fields"]["job"] == "ok1-1"),
        "{}",
        out.stderr
    );
    let quiet = Fixture::new(MIXED, 1);
    let out = quiet.run(&["-q", "--max-passes", "1"]);
    assert!(
        !out.stderr.contains("DEBUG") && !out.stderr.contains("WARN"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_batch_that_is_clearly_going_wrong_halts() {
    // Every token revoked: after 10 attempts all failed, the run stops
    // instead of burning through all 30 jobs.
    let mut scenario = String::new();
    for i in 0..30 {
        scenario.push_str(&format!(
            "[[account]]\nname = \"r{i:02}\"\ntoken = \"t{i:02}\"\nthen = {{ respond = \"invalid-token\" }}\n"
        ));
    }
    let f = Fixture::new(&scenario, 1);
    let out = f.run(&["--workers", "2", "--halt-on-failure-rate", "50"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("attempts failed, more than --halt-on-failure-rate 50%"),
        "{}",
        out.stderr
    );
    let requests = f.sandbox.counters().requests;
    assert!((10..=12).contains(&requests), "{requests} requests");
}

#[test]
fn backoff_shows_in_the_configuration_and_the_waits() {
    let f = Fixture::new(MIXED, 1);
    let out = f.run(&[
        "--retry-delay",
        "1",
        "--retry-backoff",
        "--retry-backoff-cap",
        "1",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("  Backoff: exponential with jitter, capped at 1s"),
        "{}",
        out.stderr
    );
    // Waits are jittered within the upper half: 0.5 to 1 s.
    let waits: Vec<f64> = support::log_lines(&out.stderr)
        .into_iter()
        .filter_map(|l| l.strip_prefix("Waiting "))
        .map(|l| l.split('s').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(waits.len(), 2, "{}", out.stderr);
    assert!(waits.iter().all(|w| (0.5..=1.0).contains(w)), "{waits:?}");
}

#[test]
fn progress_lines_report_the_pass_in_progress() {
    // Not a terminal here: plain lines every --progress-interval.
    let f = Fixture::new(
        "[[account]]\nname = \"slow\"\ntoken = \"t\"\ndelay_ms = 250\n\
         [[account]]\nname = \"down\"\ntoken = \"d\"\nthen = { respond = \"suspended\" }\n",
        8,
    );
    let out = f.run(&[
        "--workers",
        "2",
        "--progress-interval",
        "1",
        "--max-passes",
        "1",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines: Vec<&str> = support::log_lines(&out.stderr)
        .into_iter()
        .filter(|l| l.starts_with("Pass 1/1: "))
        .filter(|l| l.contains(" done, "))
        .collect();
    assert!(!lines.is_empty(), "{}", out.stderr);
    let last = lines.last().unwrap();
    assert!(last.contains("/16 done"), "{last}");
    // The failing account's jobs are quick, so by the last line some (on a
    // loaded machine perhaps not all) have failed.
    assert!(last.contains("(failed: non-retryable "), "{last}");
    assert!(last.contains("/s, ETA "), "{last}");
}

#[test]
fn the_end_of_run_summary_and_the_status_are_pinned() {
    let f = Fixture::new(MIXED, 1);
    let out = f.run(&[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r"started \S+Z, ended \S+Z", "started [TIME], ended [TIME]");
    settings.add_filter(r"process: .*", "process: [PROCESS]");
    // limited's wait may outlast its retry by a moment (the platform's reset
    // is a whole second): whether it still shows depends on the machine.
    settings.add_filter(r"\nWaiting now [^\n]*\n(?:  [^\n]*\n)*", "");
    settings.bind(|| insta::assert_snapshot!("run_summary", out.stdout));
    // --status, given other settings: the run's own as recorded, and apart
    // from them the ones given.
    let status = run(&mut f.command(&["--max-passes", "5", "--retry-delay", "60", "--status"]));
    assert_eq!(status.code, 0, "{}", status.stderr);
    settings.bind(|| insta::assert_snapshot!("status", status.stdout));
}

#[test]
pub(crate) fn a_rate_limit_pauses_only_its_account() {
    let f = Fixture::new(
        "[[account]]\nname = \"limited\"\ntoken = \"l\"\nscript = [{ respond = \"rate-limited\", reset_secs = 2 }]\n\
         [[account]]\nname = \"free\"\ntoken = \"f\"\ndelay_ms = 100\n",
        3,
    );
    let out = f.run(&["--workers", "2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let state = f.state();
    let first = |job: &str| state.attempts(job).unwrap().remove(0);
    let limited_1 = first("limited-1");
    let limited_2 = first("limited-2");
    assert_eq!(limited_1.failure.unwrap().http_status, Some(429));
    // limited's next job waited for the reset (about 2 s)...
    let paused = limited_2.started_ms - limited_1.ended_ms.unwrap();
    assert!(
        paused >= 1_500,
        "limited-2 started {paused} ms after the 429"
    );
    // ...while free posted all of its jobs in the meantime.
    for job in ["free-1", "free-2", "free-3"] {
        let attempt = first(job);
        assert_eq!(attempt.outcome, "succeeded");
        assert!(
            attempt.ended_ms.unwrap() < limited_2.started_ms,
            "{job} waited too"
        );
    }
}

#[test]
fn a_server_outage_pauses_every_account_on_that_instance_only() {
    let f = Fixture::new(
        "[[account]]\nname = \"down\"\ntoken = \"d\"\n\
         script = [{ respond = \"server-error\", status = 503, retry_after_secs = 2 }]\n\
         [[account]]\nname = \"same\"\ntoken = \"s\"\n\
         [[account]]\nname = \"other\"\ntoken = \"o\"\n",
        3,
    );
    // `other` reaches the same sandbox under another name: another instance.
    let accounts = std::fs::read_to_string(f.path("accounts.toml")).unwrap();
    let other_url = f.sandbox.url().replace("127.0.0.1", "localhost");
    let accounts = accounts.replace(
        &format!("[accounts.other]\nbase_url = \"{}\"", f.sandbox.url()),
        &format!("[accounts.other]\nbase_url = \"{other_url}\""),
    );
    std::fs::write(f.path("accounts.toml"), accounts).unwrap();

    // One worker: every attempt after the 503 begins after its pause was
    // recorded, so what follows holds however the attempts interleave.
    let out = f.run(&["--workers", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("Pausing every account on down's platform"),
        "{}",
        out.stderr
    );
    let state = f.state();
    let outage = state.attempts("down-1").unwrap().remove(0);
    assert_eq!(outage.failure.unwrap().http_status, Some(503));
    assert_eq!(outage.retry_scope, Some(RetryScope::Platform));
    let outage_end = outage.ended_ms.unwrap();
    let started_after = |account: &str| -> Vec<u64> {
        (1..=3)
            .flat_map(|i| state.attempts(&format!("{account}-{i}")).unwrap())
            .map(|a| a.started_ms)
            .filter(|t| *t >= outage_end)
            .collect()
    };
    // Nothing on the instance started during the 2 s the server asked for...
    let same = started_after("same");
    assert!(!same.is_empty(), "same finished before the outage");
    for t in same.iter().chain(&started_after("down")) {
        assert!(
            *t - outage_end >= 1_500,
            "started {} ms after the 503",
            t - outage_end
        );
    }
    // ...while the account on another instance kept posting.
    let other = started_after("other");
    assert!(
        other.iter().any(|t| *t - outage_end < 1_500),
        "other waited too: {other:?}"
    );
}

#[test]
pub(crate) fn a_jobs_own_wait_does_not_hold_back_its_account() {
    let f = Fixture::new(
        "[[account]]\nname = \"solo\"\ntoken = \"s\"\n\
         script = [{ respond = \"server-error\", status = 408, retry_after_secs = 2 }]\n",
        3,
    );
    let out = f.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let state = f.state();
    let first = state.attempts("solo-1").unwrap();
    assert_eq!(first[0].retry_scope, Some(RetryScope::Job));
    let failed_at = first[0].ended_ms.unwrap();
    // The other jobs posted at once, in pass 1...
    for job in ["solo-2", "solo-3"] {
        let attempt = state.attempts(job).unwrap().remove(0);
        assert_eq!((attempt.pass, attempt.outcome.as_str()), (1, "succeeded"));
        assert!(attempt.started_ms - failed_at < 1_500, "{job} waited");
    }
    // ...and the job itself waited what the platform asked.
    assert_eq!(first[1].outcome, "succeeded");
    assert!(first[1].started_ms - failed_at >= 1_500);
}

#[test]
fn platform_settings_from_the_configuration_reach_every_account_on_it() {
    let f = Fixture::new(
        "[[account]]\nname = \"anna\"\ntoken = \"a\"\n[[account]]\nname = \"ben\"\ntoken = \"b\"\n",
        1,
    );
    std::fs::write(
        f.path("accounts.toml"),
        format!(
            "[accounts.anna]\nbase_url = \"{url}\"\ntoken = \"a\"\n\n\
             [accounts.ben]\nbase_url = \"{url}\"\ntoken = \"b\"\nsettings = {{ language = \"fr\" }}\n",
            url = f.sandbox.url()
        ),
    )
    .unwrap();
    std::fs::write(
        f.path("orchestrator.toml"),
        "[platform.\"127.0.0.1\"]\nsettings = { language = \"de\", visibility = \"unlisted\" }\n",
    )
    .unwrap();
    let out = f.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let statuses = f.sandbox.statuses();
    let of = |account: &str| statuses.iter().find(|s| s.account == account).unwrap();
    // The platform's settings apply; an account's own setting wins.
    assert_eq!(of("anna").language.as_deref(), Some("de"));
    assert_eq!(of("ben").language.as_deref(), Some("fr"));
    assert_eq!(of("ben").visibility.as_deref(), Some("unlisted"));
    let show = run(orchestrator()
        .current_dir(f.dir.path())
        .args(["config", "show"]));
    assert!(show.stdout.contains("platform"), "{}", show.stdout);
    assert!(
        show.stdout.contains("orchestrator.toml:1"),
        "{}",
        show.stdout
    );
}

#[test]
fn a_run_without_what_it_needs_says_what_to_add() {
    let f = Fixture::new(MIXED, 1);
    let refused = |cmd: &mut std::process::Command, expected: &str| {
        let out = run(cmd);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr.starts_with("error: ") && out.stderr.contains(expected),
            "{}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    };
    let bare = || {
        let mut cmd = orchestrator();
        cmd.current_dir(f.dir.path());
        cmd
    };
    refused(
        bare().args(["--accounts-file", "accounts.toml", "--run"]),
        "--run needs a poster plugin: add --plugin POSTER.wasm",
    );
    refused(
        bare().args(["--plugin", artifacts::MASTODON_POSTER, "--run"]),
        "--run needs --accounts-file FILE",
    );
    refused(
        bare()
            .args([
                "--plugin",
                artifacts::HTTP_CLASSIFIER,
                "--accounts-file",
                "accounts.toml",
            ])
            .arg("--run"),
        "every --plugin given is a classifier",
    );
    refused(
        bare()
            .args([
                "--plugin",
                artifacts::MASTODON_POSTER,
                "--plugin",
                artifacts::MISBEHAVING_POSTER,
            ])
            .args(["--accounts-file", "accounts.toml", "--run"]),
        "names no poster, and --plugin gives 2 (mastodon-poster and misbehaving-poster); add poster = \"NAME\" to its entry in the accounts file",
    );
    refused(
        bare()
            .args([
                "--plugin",
                artifacts::MASTODON_POSTER,
                "--accounts-file",
                "accounts.toml",
            ])
            .arg("--run"),
        "no batch in orchestrator-state.sqlite yet; give --jobs FILE",
    );
    refused(
        &mut f.command(&["--accounts", "ok1,zed", "--run"]),
        "--accounts names zed",
    );
    assert_eq!(f.sandbox.counters().requests, 0);
}

#[test]
fn the_run_log_is_pinned() {
    let f = Fixture::new(MIXED, 1);
    // One worker: the lines come in one order.
    let out = f.run(&[
        "--workers",
        "1",
        "--retry-delay",
        "1",
        "--progress-interval",
        "0",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let log = support::log_lines(&out.stderr).join("\n");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r"127\.0\.0\.1:\d+", "[SANDBOX]");
    settings.bind(|| insta::assert_snapshot!("run_log", log));
}

#[test]
fn each_account_is_posted_by_the_poster_it_names() {
    let mut f = Fixture::new(
        "[[account]]\nname = \"web\"\ntoken = \"w\"\n[[account]]\nname = \"quiet\"\ntoken = \"q\"\n",
        3,
    );
    f.plugins = vec![
        artifacts::MASTODON_POSTER,
        artifacts::NOOP_POSTER,
        artifacts::HTTP_CLASSIFIER,
    ];
    // quiet's jobs go to the poster that reaches no platform.
    let accounts = std::fs::read_to_string(f.path("accounts.toml")).unwrap();
    let accounts = accounts
        .replace(
            "[accounts.quiet]\n",
            "[accounts.quiet]\nposter = \"noop-poster\"\n",
        )
        .replace(
            "[accounts.web]\n",
            "[accounts.web]\nposter = \"mastodon-poster\"\n",
        );
    std::fs::write(f.path("accounts.toml"), accounts).unwrap();

    let out = f.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let counters = f.sandbox.counters();
    assert_eq!(counters.requests_by_account.get("web"), Some(&3));
    assert_eq!(counters.requests_by_account.get("quiet"), None);
    assert_eq!(counters.statuses_created, 3);
    expect(
        &f,
        &[
            ("quiet-1", Succeeded, 1),
            ("quiet-2", Succeeded, 1),
            ("quiet-3", Succeeded, 1),
            ("web-1", Succeeded, 1),
            ("web-2", Succeeded, 1),
            ("web-3", Succeeded, 1),
        ],
    );
}
