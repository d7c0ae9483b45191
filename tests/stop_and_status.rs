//! `--status` while a run is going on and after it; `--stop-all` mid-run,
//! then `--run` finishing the batch with every job posted exactly once.

use std::time::{Duration, Instant};

use orchestrator_store::JobState;

use crate::support::Fixture;
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

/// `stuck` does not answer its first post for ten minutes; `fine` answers.
const ONE_HANGS: &str = r#"
[[account]]
name = "stuck"
token = "stuck-token"
script = [{ respond = "slow", delay_ms = 600000 }]

[[account]]
name = "fine"
token = "fine-token"
"#;

#[test]
fn take_over_ends_a_hung_run_and_finishes_its_batch() {
    use std::os::unix::process::ExitStatusExt;
    let f = Fixture::new(ONE_HANGS, 2);
    // Nothing would end this run for ten minutes: its attempt waits for
    // the platform, and a stop waits for that attempt.
    let hung = [
        "--workers",
        "2",
        "--job-timeout",
        "900",
        "--grace-period",
        "900",
    ];
    let mut first = f.spawn(&hung);
    let requests = |account: &str| {
        f.sandbox
            .counters()
            .requests_by_account
            .get(account)
            .copied()
            .unwrap_or(0)
    };
    crate::support::wait_until("both of fine's posts and stuck's first", || {
        f.sandbox.counters().statuses_created == 2 && requests("stuck") == 1
    });

    let second = f.run(&[
        "--workers",
        "2",
        "--job-timeout",
        "900",
        "--grace-period",
        "1",
        "--force-kill-ports",
    ]);
    let pid = first.id();
    let ended = first.wait().unwrap();
    assert_eq!(ended.signal(), Some(9), "the hung run is killed: {ended:?}");
    assert_eq!(second.code, 0, "{}", second.stderr);
    let lines = crate::support::log_lines(&second.stderr);
    for said in [
        format!(
            "Asking the run (pid {pid}) on orchestrator-state.sqlite to stop; waiting up to 1s for its attempts in flight"
        ),
        format!("The run (pid {pid}) did not stop; sending it SIGTERM"),
        format!("The run (pid {pid}) is still running after 5s; sending it SIGKILL"),
        format!(
            "Taking over orchestrator-state.sqlite from a run (pid {pid}) that is no longer running"
        ),
    ] {
        assert!(
            lines.contains(&said.as_str()),
            "no {said:?} in\n{}",
            second.stderr
        );
    }
    // The attempt cut off is retried under its key: posted once.
    assert_eq!(f.sandbox.counters().statuses_created, 4);
    let state = f.state();
    for id in ["stuck-1", "stuck-2", "fine-1", "fine-2"] {
        assert_eq!(
            state.job(id).unwrap().unwrap().state,
            JobState::Succeeded,
            "{id}"
        );
    }
}

#[test]
fn take_over_never_signals_a_pid_that_is_not_the_run() {
    let f = Fixture::new(SLOW, 1);
    let state_file = f.path("orchestrator-state.sqlite");
    // The lock is held, by this test, and its file names another process.
    let (_held, _) = orchestrator_store::RunLock::acquire(&state_file).unwrap();
    let mut bystander = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    std::fs::write(
        f.path("orchestrator-state.sqlite.lock"),
        bystander.id().to_string(),
    )
    .unwrap();

    let refused = f.run(&["--grace-period", "0", "--take-over"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    let said = format!(
        "error: pid {}, named in orchestrator-state.sqlite.lock, is not an orchestrator process; nothing was signalled — stop the run holding it yourself",
        bystander.id()
    );
    assert!(
        refused.stderr.lines().any(|l| l == said),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("SIGTERM"), "{}", refused.stderr);
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander lives"
    );
    assert_eq!(f.sandbox.counters().statuses_created, 0);
    bystander.kill().unwrap();
    bystander.wait().unwrap();

    // A lock file that names no pid at all: nothing to check, nothing
    // signalled.
    std::fs::write(f.path("orchestrator-state.sqlite.lock"), "").unwrap();
    let nameless = f.run(&["--grace-period", "0", "--take-over"]);
    assert_eq!(nameless.code, 2, "{}", nameless.stderr);
    assert!(
        nameless.stderr.lines().any(|l| l
            == "error: orchestrator-state.sqlite is locked by a process that names no pid in orchestrator-state.sqlite.lock; nothing was signalled — stop it yourself"),
        "{}",
        nameless.stderr
    );

    // Without the flag, the refusal says what would take over.
    let locked = f.run(&[]);
    assert_eq!(locked.code, 2, "{}", locked.stderr);
    assert!(
        locked
            .stderr
            .contains("give --take-over (alias --force-kill-ports)"),
        "{}",
        locked.stderr
    );
}

#[test]
fn take_over_of_a_run_that_stops_when_asked_sends_no_signal() {
    let f = Fixture::new(SLOW, 10);
    let first = f
        .command(&["--workers", "2", "--run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&f, |s| succeeded(s) >= 2);

    let second = f.run(&["--workers", "2", "--take-over"]);
    let stopped = first.wait_with_output().unwrap();
    assert_eq!(stopped.status.code(), Some(3), "it stopped as asked");
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stderr.contains("Asking the run (pid "),
        "{}",
        second.stderr
    );
    assert!(!second.stderr.contains("SIG"), "{}", second.stderr);
    assert_eq!(f.sandbox.counters().statuses_created, 20);
}
