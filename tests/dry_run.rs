//! `--run --dry-run`: every problem a run would meet, listed at once, and
//! per account what a run would do — with no request to any platform and
//! the stored state exactly as it was.

use crate::support::{Fixture, run};

const TWO: &str = "[[account]]\nname = \"alice\"\ntoken = \"alice-token\"\n\n\
                   [[account]]\nname = \"bob\"\ntoken = \"bob-token\"\n";

const STATE: &str = "orchestrator-state.sqlite";

#[test]
fn a_good_batch_passes_and_nothing_is_sent_or_stored() {
    let f = Fixture::new(TWO, 3);
    // Part of the batch already ran: alice's first job posted.
    let seeded = run(&mut f.command(&["--seed-only"]));
    assert_eq!(seeded.code, 0, "{}", seeded.stderr);
    let done = run(f.command(&["--accounts", "alice"]).arg("--run"));
    assert_eq!(done.code, 0, "{}", done.stderr);
    let requests = f.sandbox.counters().requests;
    let before = std::fs::read(f.path(STATE)).unwrap();
    let accounts = std::fs::read_to_string(f.path("accounts.toml")).unwrap();
    std::fs::write(
        f.path("accounts.toml"),
        accounts.replacen(
            "token = \"bob-token\"\n",
            "token = \"bob-token\"\nrate = \"2/1m\"\n",
            1,
        ),
    )
    .unwrap();

    let out = run(f.command(&["--run", "--dry-run"]));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("No problems found"), "{}", out.stdout);
    let line = |account: &str| account_line(&out.stdout, account);
    assert!(
        line("alice").starts_with("alice mastodon-poster 0 3 already posted"),
        "{}",
        out.stdout
    );
    // bob's three at two a minute (and the margin): the last a minute on.
    assert!(
        line("bob").starts_with("bob mastodon-poster 3 - in 1m 3s (rate 2/1m)"),
        "{}",
        out.stdout
    );
    assert_eq!(
        f.sandbox.counters().requests,
        requests,
        "no request was sent"
    );
    assert_eq!(
        std::fs::read(f.path(STATE)).unwrap(),
        before,
        "the state changed"
    );
}

#[test]
fn every_problem_is_listed_at_once() {
    let f = Fixture::new(TWO, 2);
    // A missing image, an unset token variable, a refused plugin.
    let jobs = std::fs::read_to_string(f.path("jobs.jsonl")).unwrap();
    std::fs::write(
        f.path("jobs.jsonl"),
        jobs.replacen(
            "\"payload\": {",
            "\"payload\": {\"media\": [{\"path\": \"img/missing.png\", \"description\": \"a cat\"}], ",
            1,
        ),
    )
    .unwrap();
    let accounts = std::fs::read_to_string(f.path("accounts.toml")).unwrap();
    std::fs::write(
        f.path("accounts.toml"),
        accounts.replacen(
            "token = \"bob-token\"",
            "token_env = \"ORCHESTRATOR_TEST_DRY_RUN_UNSET\"",
            1,
        ),
    )
    .unwrap();
    std::fs::write(f.path("broken.wasm"), b"not a component").unwrap();

    let out = run(f
        .command(&["--run", "--dry-run", "--plugin", "broken.wasm"])
        .env_remove("ORCHESTRATOR_TEST_DRY_RUN_UNSET"));
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Problems (3):"), "{}", out.stdout);
    for expected in [
        "jobs.jsonl:1: ",
        "img/missing.png",
        "ORCHESTRATOR_TEST_DRY_RUN_UNSET",
        "plugin broken.wasm: ",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected:?} in {}",
            out.stdout
        );
    }
    assert_eq!(f.sandbox.counters().requests, 0);
    assert!(!f.path(STATE).exists(), "a dry run creates no state file");
}

#[test]
fn stored_jobs_of_an_account_gone_from_the_file_are_a_problem_and_no_command_runs_beside_it() {
    let f = Fixture::new(TWO, 2);
    let seeded = run(&mut f.command(&["--seed-only"]));
    assert_eq!(seeded.code, 0, "{}", seeded.stderr);
    // bob leaves the accounts file and the jobs file; his stored jobs stay.
    let accounts = std::fs::read_to_string(f.path("accounts.toml")).unwrap();
    let alice_only = &accounts[..accounts.find("[accounts.bob]").unwrap()];
    std::fs::write(f.path("accounts.toml"), alice_only).unwrap();
    let jobs = std::fs::read_to_string(f.path("jobs.jsonl")).unwrap();
    let alice_jobs: String = jobs
        .lines()
        .filter(|l| l.contains("\"alice\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(f.path("jobs.jsonl"), alice_jobs).unwrap();
    let before = std::fs::read(f.path(STATE)).unwrap();

    let out = run(f.command(&["--run", "--dry-run"]));
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "stored jobs a run would attempt belong to accounts missing from the accounts file: bob"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read(f.path(STATE)).unwrap(),
        before,
        "the state changed"
    );
    // As the run itself says.
    let real = run(f.command(&["--run"]));
    assert_eq!(real.code, 2, "{}", real.stderr);
    assert!(real.stderr.contains("bob"), "{}", real.stderr);

    // A command beside --dry-run would change the store: refused.
    let before = std::fs::read(f.path(STATE)).unwrap();
    let out = run(f.command(&["--run", "--dry-run", "cancel", "bob-1"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("--dry-run checks a --run"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(f.path(STATE)).unwrap(),
        before,
        "the state changed"
    );
}

/// The dry run's line for `account`, its columns joined by one space.
fn account_line(stdout: &str, account: &str) -> String {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(account))
        .unwrap_or_else(|| panic!("no line for {account}: {stdout}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_dry_run_says_what_joining_would_make_of_a_run_cut_short() {
    let f = Fixture::new(
        "[[account]]\nname = \"slow\"\ntoken = \"t\"\ndelay_ms = 300\n",
        10,
    );
    let mut child = f.spawn(&["--workers", "1"]);
    crate::crash::wait_for_process(&f, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while f.sandbox.counters().requests == 0 {
        assert!(std::time::Instant::now() < deadline, "no attempt began");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // While the run works (ten posts of 0.3 s), a run would be refused:
    // what it has in flight is its own, not a crash's.
    let out = run(f.command(&["--run", "--dry-run"]));
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "another run (pid {}) is working on {STATE}",
            child.id()
        )),
        "{}",
        out.stdout
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run was still working"
    );
    // Killed with an attempt in flight: its job is stored as running.
    child.kill().unwrap();
    child.wait().unwrap();
    // The file and its write-ahead log, which the killed run left behind.
    let stored = || {
        [STATE, &format!("{STATE}-wal")].map(|name| std::fs::read(f.path(name)).unwrap_or_default())
    };
    let before = stored();
    assert!(!before[1].is_empty(), "the killed run left its log");

    // A run would resume run 1 and take the job back with its key: it and
    // the ones not begun are attempted.
    let out = run(f.command(&["--run", "--dry-run"]));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("  Resuming run 1 for every account, cut short in pass 1/3"),
        "{}",
        out.stdout
    );
    // As the store has it: posted, and cut off in flight (almost always
    // one; none when the kill fell between two attempts). The platform
    // may have taken the post the kill cut off.
    let (posted, cut_off) = {
        use orchestrator_store::{JobState, ReadStore};
        let store = orchestrator_store::SqliteStore::open_read_only(&f.path(STATE)).unwrap();
        let jobs = store.job_summaries().unwrap();
        let count = |state| jobs.iter().filter(|j| j.state == state).count() as u64;
        (count(JobState::Succeeded), count(JobState::Running))
    };
    assert!(
        account_line(&out.stdout, "slow").starts_with(&format!(
            "slow mastodon-poster {} {}",
            10 - posted,
            skip_column(posted, 0)
        )),
        "{}",
        out.stdout
    );
    // With a key window shorter than the attempt's age it would be held
    // for review instead (the same run resumed), and --release-held, which
    // a run applies before it joins, would not let it go.
    for extra in [&[][..], &["--release-held"][..]] {
        let out = run(f
            .command(&["--run", "--dry-run", "--key-window", "0"])
            .args(extra));
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("  Resuming run 1 for every account"),
            "{}",
            out.stdout
        );
        assert!(
            account_line(&out.stdout, "slow").starts_with(&format!(
                "slow mastodon-poster {} {}",
                10 - posted - cut_off,
                skip_column(posted, cut_off)
            )),
            "{extra:?}: {}",
            out.stdout
        );
    }
    assert!(stored() == before, "the state changed");

    // The real run does what the first dry run said.
    let resumed = f.run(&[]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains("Resuming run 1 for every account"),
        "{}",
        resumed.stderr
    );
    assert_eq!(f.sandbox.counters().statuses_created, 10);
}

/// The SKIP column for `posted` jobs already posted and `held` held for
/// review by joining.
fn skip_column(posted: u64, held: u64) -> String {
    let mut parts = Vec::new();
    if posted > 0 {
        parts.push(format!("{posted} already posted"));
    }
    if held > 0 {
        parts.push(format!(
            "{held} held for review: in flight when a run died, longer ago than the platform remembers idempotency keys"
        ));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

#[test]
fn a_new_run_reopens_what_failed_and_the_dry_run_counts_it() {
    let f = Fixture::new(
        "[[account]]\nname = \"flaky\"\ntoken = \"t\"\n\
         script = [{ respond = \"server-error\", status = 503, times = 1 }]\n",
        2,
    );
    // One pass: the 503 fails its job for good in run 1.
    let first = f.run(&["--max-passes", "1"]);
    assert_eq!(first.code, 1, "{}", first.stderr);
    let out = run(f.command(&["--run", "--dry-run"]));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "  Run 2: a new run for every account, retrying 1 job that failed in earlier runs"
        ),
        "{}",
        out.stdout
    );
    assert!(
        account_line(&out.stdout, "flaky").starts_with("flaky mastodon-poster 1 1 already posted"),
        "{}",
        out.stdout
    );
    // The run does what the dry run said.
    let second = f.run(&[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stderr.contains(
            "Run 2: a new run for every account, retrying 1 job that failed in earlier runs"
        ),
        "{}",
        second.stderr
    );
    assert_eq!(f.sandbox.counters().statuses_created, 2);
}
