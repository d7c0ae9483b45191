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
    let line = |account: &str| {
        out.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(account))
            .unwrap_or_else(|| panic!("no line for {account}: {}", out.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
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
