//! Rate budgets against the sandbox, enforcing its own limit: a batch kept
//! to a budget the platform allows never meets its 429, and a resumed run
//! takes the budget up where the last one left it.

use std::time::{Duration, Instant};

use crate::support::Fixture;
use crate::support::{run, signal};

/// One account; the platform answers 429 past 10 posts in its 5-second
/// windows.
const LIMITED: &str = "enforce_rate_limit = true\nrate_limit = 10\nrate_limit_window_secs = 5\n\n\
                       [[account]]\nname = \"alice\"\ntoken = \"alice-token\"\n";

/// The fixture's accounts file, with `rate` for its (one) account.
fn with_rate(f: &Fixture, rate: &str) {
    let path = f.path("accounts.toml");
    let accounts = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{accounts}rate = \"{rate}\"\n")).unwrap();
}

#[test]
pub(crate) fn a_batch_kept_to_its_budget_never_meets_the_platforms_limit() {
    let f = Fixture::new(LIMITED, 25);
    with_rate(&f, "10/5s");
    let out = f.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let counters = f.sandbox.counters();
    assert_eq!(counters.statuses_created, 25);
    assert_eq!(counters.rate_limited, 0, "the platform never said 429");
    assert!(
        out.stderr
            .contains("(25 jobs); the rate budgets spread it over at least 11s"),
        "{}",
        out.stderr
    );

    // --status shows what the budget has spent, and when it refills.
    let status = run(f.command(&["--status"]));
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("Rate budgets") && status.stdout.contains("account alice"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("10/5s"), "{}", status.stdout);
}

#[test]
pub(crate) fn a_resumed_run_keeps_to_the_budget_the_last_one_spent() {
    let f = Fixture::new(LIMITED, 20);
    with_rate(&f, "10/5s");
    let started = Instant::now();
    let mut first = f.spawn(&[]);
    // The first ten post at once; the run then waits for the window.
    let deadline = Instant::now() + Duration::from_secs(60);
    while f.sandbox.counters().statuses_created < 10 {
        assert!(Instant::now() < deadline, "the first run posts");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&first, "TERM");
    let status = first.wait().unwrap();
    let stderr = std::io::read_to_string(first.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");

    // At once: the store says ten started moments ago.
    let second = f.run(&[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let counters = f.sandbox.counters();
    assert_eq!(counters.statuses_created, 20);
    assert_eq!(counters.rate_limited, 0, "the platform never said 429");
    // The first ten started after `started`, so the other ten could not
    // start until five seconds after it, however quick the restart: a
    // second run that forgot them would be done well before.
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the second run started the other ten inside the first ten's window: {}",
        second.stderr
    );
}
