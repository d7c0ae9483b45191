//! Platforms that answer absurdly hurt nothing: their numbers are clamped
//! before the host waits on them or stores them, and the state stays
//! readable.

use crate::run_batch::Fixture;
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
