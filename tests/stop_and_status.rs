//! `--status` while a run is going on and after it; `--stop-all` mid-run,
//! then `--run` finishing the batch with every job posted exactly once.

use std::time::{Duration, Instant};

use orchestrator_store::JobState;

use crate::run_batch::Fixture;
use crate::support::run;

/// Two slow accounts: every post takes 150 ms.
const SLOW: &str = r#"
[[account]]
name = "north"
token = "north-token"
delay_ms = 150

[[account]]
name = "south"
token = "south-token"
delay_ms = 150
"#;

fn status_json(f: &Fixture) -> serde_json::Value {
    let out = run(&mut f.command(&["--status", "--json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn succeeded(status: &serde_json::Value) -> u64 {
    let Some(by_state) = status["batch"]["by_state"].as_array() else {
        return 0;
    };
    by_state
        .iter()
        .find(|pair| pair[0] == "succeeded")
        .map_or(0, |pair| pair[1].as_u64().unwrap())
}

/// Polls `--status` until `ready` holds (bounded).
fn wait_for(f: &Fixture, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status_json(f);
        if ready(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "status never got there: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stop_all_mid_run_then_run_again_posts_every_job_once() {
    let f = Fixture::new(SLOW, 15);
    let child = f
        .command(&["--workers", "2", "--run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // While it runs, --status sees the run and its progress.
    let during = wait_for(&f, |s| succeeded(s) >= 2);
    assert_eq!(during["batch"]["last_run"]["state"], "running");
    let text = run(&mut f.command(&["--status"]));
    assert!(text.stdout.contains("running"), "{}", text.stdout);

    let stop = run(&mut f.command(&["--stop-all"]));
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(stop.stderr.contains("Asked 1 run(s)"), "{}", stop.stderr);
    let stopped = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("Stopping: no new attempts"), "{stderr}");

    let after_stop = status_json(&f);
    assert_eq!(after_stop["batch"]["last_run"]["state"], "stopped");
    let done_before = succeeded(&after_stop);
    assert!(done_before < 30, "the stop came too late to test anything");
    assert_eq!(f.sandbox.counters().statuses_created, done_before);

    let resumed = f.run(&["--workers", "2"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let outcomes = f.outcomes();
    assert!(
        outcomes.values().all(|(s, _)| *s == JobState::Succeeded),
        "{outcomes:?}"
    );
    let counters = f.sandbox.counters();
    assert_eq!(counters.statuses_created, 30);
    assert_eq!(counters.created_by_idempotency_key.len(), 30);
    assert!(
        counters
            .created_by_idempotency_key
            .values()
            .all(|n| *n == 1)
    );

    let after = status_json(&f);
    assert_eq!(after["batch"]["last_run"]["state"], "finished");
    assert_eq!(succeeded(&after), 30);
}

#[test]
fn one_attempt_per_account_at_a_time() {
    // Workers to spare, but one account: the sandbox never sees two of its
    // requests at once, so 6 posts of 150 ms take at least 900 ms.
    let f = Fixture::new(
        "[[account]]\nname = \"solo\"\ntoken = \"solo-token\"\ndelay_ms = 150\n",
        6,
    );
    let started = Instant::now();
    let out = f.run(&["--workers", "6"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(f.sandbox.counters().statuses_created, 6);
}
