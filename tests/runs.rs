//! Runs: every `--run` is a series of passes with its own budgets. It
//! retries what is still open, resumes the run a crash cut short without
//! granting a job more attempts, and leaves no job stuck whatever accounts
//! the runs before it were given; `cancel` and `retry` change single jobs,
//! during a run too.

use orchestrator_store::JobState::{Cancelled, Failed, Pending, Succeeded};

use crate::support::{Fixture, assert_exactly_once, expect};
use crate::support::{run, wait_until};

fn assert_says(out: &crate::support::Output, lines: &[&str]) {
    for line in lines {
        assert!(
            out.stderr.contains(line) || out.stdout.contains(line),
            "missing {line:?} in:\n{}\n{}",
            out.stderr,
            out.stdout
        );
    }
}

#[test]
pub(crate) fn runs_of_some_accounts_leave_no_job_stuck() {
    // x's and y's jobs post on their third attempt, the last pass of a
    // run; z's only on its fifth, more than one run has.
    let f = Fixture::new(
        r#"
[[account]]
name = "x"
token = "x"
script = [{ respond = "server-error", status = 503, times = 2 }]

[[account]]
name = "y"
token = "y"
script = [{ respond = "server-error", status = 503, times = 2 }]

[[account]]
name = "z"
token = "z"
script = [{ respond = "server-error", status = 503, times = 4 }]
"#,
        1,
    );
    let y = f.run(&["--accounts", "y"]);
    assert_eq!(y.code, 0, "{}", y.stderr);
    assert_says(
        &y,
        &[
            "Run 1: a new run for accounts y",
            "Starting pass 3/3 of run 1",
        ],
    );
    expect(
        &f,
        &[
            ("x-1", Pending, 0),
            ("y-1", Succeeded, 3),
            ("z-1", Pending, 0),
        ],
    );
    // A run for x starts at pass 1 with x's own three passes.
    let x = f.run(&["--accounts", "x"]);
    assert_eq!(x.code, 0, "{}", x.stderr);
    assert_says(
        &x,
        &[
            "Run 2: a new run for accounts x",
            "Starting pass 1/3 of run 2 (1 job)",
            "Starting pass 3/3 of run 2",
        ],
    );
    // A full run takes what is left: z runs out of passes, and every count
    // of it agrees.
    let all = f.run(&[]);
    assert_eq!(all.code, 1, "{}", all.stderr);
    assert_says(
        &all,
        &[
            "Run 3: a new run for every account",
            "Pass 3 ended: max passes reached with 1 job failed and 0 unfinished",
            "Run 3 finished with 1 job failed, 0 unfinished and 0 held for review",
            "  by state:    succeeded 2, failed 1\n",
            "  last run:    #3 finished, pass 3/3, started",
        ],
    );
    // The next run retries it: it posts.
    let next = f.run(&[]);
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert_says(
        &next,
        &[
            "Run 4: a new run for every account, retrying 1 job that failed in earlier runs",
            "All jobs succeeded.",
        ],
    );
    expect(
        &f,
        &[
            ("x-1", Succeeded, 3),
            ("y-1", Succeeded, 3),
            ("z-1", Succeeded, 5),
        ],
    );
    assert_exactly_once(&f);
    let status = run(&mut f.command(&["--status"]));
    assert_says(
        &status,
        &["Runs:\n", "  4    finished  2/3     2         all\n"],
    );
}

#[test]
pub(crate) fn a_failed_job_is_retried_by_the_next_run_a_non_retryable_one_on_request() {
    let f = Fixture::new(crate::support::MIXED, 1);
    assert_eq!(f.run(&[]).code, 1);
    let requests = |account: &str| f.sandbox.counters().requests_by_account[account];
    assert_eq!((requests("suspended"), requests("teapot")), (1, 3));
    // The next run retries teapot (unknown); suspended is non-retryable.
    assert_eq!(f.run(&[]).code, 1);
    assert_eq!((requests("suspended"), requests("teapot")), (1, 6));
    // Asked to, a run retries non-retryable failures too: in every pass.
    let asked = f.run(&["--retry-include-non-retryable"]);
    assert_eq!(asked.code, 1, "{}", asked.stderr);
    assert_says(
        &asked,
        &["Run 3: a new run for every account, retrying 2 jobs that failed in earlier runs"],
    );
    assert_eq!((requests("suspended"), requests("teapot")), (4, 9));
    // `retry` makes one eligible whatever its category; a default run
    // attempts it once more, and skips nothing else.
    let retried = f.tool(&["retry", "suspended-1"]);
    assert_eq!(retried.code, 0, "{}", retried.stderr);
    assert_eq!(
        retried.stdout,
        "suspended-1: will be retried (was failed); a run going on takes it, otherwise the next --run\n"
    );
    assert_eq!(f.run(&["--max-passes", "1"]).code, 1);
    assert_eq!((requests("suspended"), requests("teapot")), (5, 10));
    assert_eq!(f.sandbox.counters().statuses_created, 5);
}

#[test]
pub(crate) fn a_crash_mid_run_is_resumed_and_grants_no_job_more_passes() {
    // Every post fails (retryable): each job is tried in all three passes.
    let f = Fixture::new(
        "[[account]]\nname = \"down\"\ntoken = \"d\"\ndelay_ms = 100\nthen = { respond = \"server-error\", status = 503 }\n",
        4,
    );
    let flags = ["--workers", "1", "--retry-delay", "1", "--lease", "2"];
    let mut child = f.spawn(&flags);
    let state = f.state();
    wait_until("an attempt of pass 2", || {
        state
            .report()
            .is_ok_and(|rows| rows.iter().any(|r| r.attempt.pass == 2))
    });
    child.kill().unwrap();
    child.wait().unwrap();

    let resumed = f.run(&flags);
    assert_eq!(resumed.code, 1, "{}", resumed.stderr);
    assert!(
        !resumed.stderr.contains("a new run"),
        "the run cut short goes on:\n{}",
        resumed.stderr
    );
    assert!(
        resumed
            .stderr
            .contains("Resuming run 1 for every account, cut short in pass 2/3")
            || resumed.stderr.contains("Joining run 1"),
        "{}",
        resumed.stderr
    );
    for i in 1..=4 {
        let attempts = state.attempts(&format!("down-{i}")).unwrap();
        assert!(attempts.iter().all(|a| a.run == Some(1)), "{attempts:?}");
        let counted: Vec<u32> = attempts
            .iter()
            .filter(|a| a.outcome != "uncertain")
            .map(|a| a.pass)
            .collect();
        assert_eq!(counted, [1, 2, 3], "down-{i}: {attempts:?}");
    }
    assert_eq!(f.passes(), 3);
    // A new run, with new budgets, only when asked for by the next --run.
    let next = f.run(&["--retry-delay", "0"]);
    assert_eq!(next.code, 1, "{}", next.stderr);
    assert_says(
        &next,
        &["Run 2: a new run for every account, retrying 4 jobs that failed in earlier runs"],
    );
    let attempts = state.attempts("down-1").unwrap();
    let run_2: Vec<u32> = attempts
        .iter()
        .filter(|a| a.run == Some(2))
        .map(|a| a.pass)
        .collect();
    assert_eq!(run_2, [1, 2, 3]);
}

#[test]
pub(crate) fn cancel_and_retry_change_jobs_while_a_run_goes_on() {
    // slow's first post takes 3 s: meanwhile down-1 has failed (once, as
    // non-retryable) and nothing of slow's after its first has started.
    let f = Fixture::new(
        r#"
[[account]]
name = "down"
token = "d"
script = [{ respond = "suspended" }]

[[account]]
name = "slow"
token = "s"
script = [{ respond = "slow", delay_ms = 3000 }]
"#,
        4,
    );
    let child = f.spawn(&["--workers", "2"]);
    let state = f.state();
    wait_until("down-1 to fail and slow-1 to be in flight", || {
        let job = |id: &str| state.job(id).ok().flatten().map(|j| j.state);
        job("down-1") == Some(Failed)
            && job("slow-1") == Some(orchestrator_store::JobState::Running)
    });
    let unknown = f.tool(&["cancel", "slow-3", "nope"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert_eq!(
        unknown.stderr,
        format!(
            "error: no job \"nope\" in the batch in {}; nothing was changed\n",
            f.store_name()
        )
    );
    let cancel = f.tool(&["cancel", "slow-3", "slow-4"]);
    assert_eq!(cancel.code, 0, "{}", cancel.stderr);
    assert_eq!(
        cancel.stdout,
        "slow-3: cancelled (was pending)\nslow-4: cancelled (was pending)\n"
    );
    let retry = f.tool(&["retry", "down-1"]);
    assert_eq!(retry.code, 0, "{}", retry.stderr);

    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("All jobs succeeded, but 2 that were cancelled."),
        "{stderr}"
    );
    expect(
        &f,
        &[
            ("down-1", Succeeded, 2),
            ("down-2", Succeeded, 1),
            ("down-3", Succeeded, 1),
            ("down-4", Succeeded, 1),
            ("slow-1", Succeeded, 1),
            ("slow-2", Succeeded, 1),
            ("slow-3", Cancelled, 0),
            ("slow-4", Cancelled, 0),
        ],
    );
    assert_exactly_once(&f);
    assert_eq!(f.sandbox.counters().requests_by_account["slow"], 2);
    // A posted job is never attempted again.
    let posted = f.tool(&["retry", "slow-1", "slow-3"]);
    assert_eq!(posted.code, 1, "{}", posted.stderr);
    assert_eq!(
        posted.stdout,
        "slow-1: succeeded; a posted job is never attempted again\n\
         slow-3: will be retried (was cancelled); a run going on takes it, otherwise the next --run\n"
    );
    let explain = f.tool(&["explain", "slow-4"]);
    assert!(
        explain.stdout.ends_with("Cancelled: it will not be attempted again; `orchestrator retry slow-4` makes it eligible.\n"),
        "{}",
        explain.stdout
    );
}

#[test]
pub(crate) fn a_run_cut_short_under_other_settings_is_closed_for_a_new_one() {
    let f = Fixture::new(
        "[[account]]\nname = \"slow\"\ntoken = \"s\"\ndelay_ms = 300\n",
        10,
    );
    let child = f.spawn(&["--workers", "1"]);
    let state = f.state();
    wait_until("a first post", || {
        state.tally(None).is_ok_and(|t| t.succeeded >= 1)
    });
    let stop = run(&mut f.command(&["--stop-all"]));
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(stopped.status.code(), Some(3));
    let other = f.run(&["--max-passes", "5"]);
    assert_eq!(other.code, 0, "{}", other.stderr);
    assert_says(
        &other,
        &[
            "Run 1 was cut short under other settings (--max-passes 3 (here 5)): closed, and a new run begins",
            "Run 2: a new run for every account",
            "Starting pass 1/5 of run 2",
        ],
    );
    let status = run(&mut f.command(&["--status"]));
    assert_says(&status, &["  1    closed", "  2    finished  1/5"]);
    assert_exactly_once(&f);
}

#[test]
fn cancel_and_retry_need_a_batch_and_job_ids() {
    let dir = crate::support::temp_dir();
    let tool = |args: &[&str]| {
        run(crate::support::orchestrator()
            .current_dir(dir.path())
            .args(args))
    };
    let nothing = tool(&["cancel", "x"]);
    assert_eq!(nothing.code, 2);
    assert_eq!(
        nothing.stderr,
        "error: no state file at orchestrator-state.sqlite; give --state-file PATH\n"
    );
    let no_ids = tool(&["retry"]);
    assert_eq!(no_ids.code, 2, "{}", no_ids.stderr);
    assert!(no_ids.stderr.contains("<JOB_ID>..."), "{}", no_ids.stderr);
    // Nothing was created.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
