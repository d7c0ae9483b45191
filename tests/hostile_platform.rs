//! Platforms that answer absurdly hurt nothing: their numbers are clamped
//! before the host waits on them or stores them, and the state stays
//! readable.

use crate::support::Fixture;
use crate::support::run;

#[test]
fn a_retry_after_of_three_hundred_million_years_is_clamped() {
    // The project's own poster and classifier pass a platform's
    // Retry-After on; a 503 asking for 2^63 ms pauses the whole platform.
    let f = Fixture::new(
        "[[account]]\nname = \"down\"\ntoken = \"d\"\n\
         script = [{ respond = \"server-error\", status = 503, retry_after_secs = 9223372036854775 }]\n",
        2,
    );
    let out = f.run(&["--max-retry-after", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("was asked for; waiting --max-retry-after 1s instead"),
        "{}",
        out.stderr
    );
    let first = f.state().attempts("down-1").unwrap().remove(0);
    assert_eq!(first.retry_after_ms, Some(1000));
    for args in [&["--status"][..], &["--status", "--json"]] {
        let status = run(&mut f.command(args));
        assert_eq!(status.code, 0, "{}", status.stderr);
    }
    let explain = f.tool(&["explain", "down-1"]);
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(
        explain.stdout.contains("clamped to --max-retry-after 1s"),
        "{}",
        explain.stdout
    );
}

#[test]
fn max_retry_after_is_checked_before_any_work() {
    let f = Fixture::new("[[account]]\nname = \"a\"\ntoken = \"t\"\n", 1);
    for value in ["0", "-1", "31708801"] {
        let out = f.run(&["--max-retry-after", value]);
        assert_eq!(out.code, 2, "{value}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            "error: --max-retry-after must be from 1 to 31622400 (a year)\n"
        );
    }
    assert_eq!(f.sandbox.counters().requests, 0);
}

#[test]
pub(crate) fn a_platform_down_for_six_seconds_costs_the_jobs_nothing() {
    let scenario: String = (0..20)
        .map(|i| format!("[[account]]\nname = \"a{i:02}\"\ntoken = \"t{i:02}\"\ndelay_ms = 50\n"))
        .collect();
    let mut f = Fixture::new(&scenario, 5);
    // The default settings, but for the wait between passes.
    let child = f.spawn(&["--workers", "8", "--retry-delay", "1"]);
    crate::support::wait_until("the first posts", || {
        f.sandbox.counters().statuses_created >= 10
    });
    f.runtime.block_on(f.sandbox.go_down());
    // While it is down, --status shows the platform's wait.
    let down = std::time::Instant::now();
    let mut seen = None;
    while down.elapsed() < std::time::Duration::from_secs(6) {
        let status = run(&mut f.command(&["--status"]));
        if seen.is_none() && status.stdout.contains("'s platform until ") {
            seen = Some(status.stdout);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    f.runtime.block_on(f.sandbox.come_back()).unwrap();
    let seen = seen.expect("--status showed no wait while the platform was down");
    assert!(
        seen.contains("Waiting now (the platform asked, or is down):\n  every account on a"),
        "{seen}"
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("gives no answer, across accounts"),
        "{stderr}"
    );
    assert!(stderr.contains("answers again, after"), "{stderr}");
    // Every job posted, once; the outage used up no job's passes.
    crate::support::assert_exactly_once(&f);
    let state = f.state();
    let jobs = state.job_summaries().unwrap();
    assert_eq!(jobs.len(), 100);
    assert!(
        jobs.iter()
            .all(|j| j.state == orchestrator_store::JobState::Succeeded)
    );
    let deferred = state
        .report()
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.attempt
                .decision
                .as_deref()
                .is_some_and(|d| d.contains("not counted"))
        })
        .count();
    assert!(deferred > 0, "no attempt was deferred");
    assert!(f.passes() <= 2, "{} passes", f.passes());
}
