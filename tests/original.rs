//! The original tool's test plan (`parallel_orchestrator.py`, task 53),
//! command by command, as its users will type it. Where that plan calls
//! `python parallel_orchestrator.py`, these call `orchestrator`; the
//! plugins, jobs and accounts come from `orchestrator.toml`, as the
//! original's came from its own configuration.

use crate::support::Fixture;
use crate::support::{Output, orchestrator, run};

/// A batch whose one job fails once (a 503), then posts: two passes.
fn configured() -> Fixture {
    let f = Fixture::new(
        "[[account]]\nname = \"flaky\"\ntoken = \"f\"\n\
         script = [{ respond = \"server-error\", status = 503 }]\n",
        1,
    );
    std::fs::write(
        f.path("orchestrator.toml"),
        format!(
            "plugins = [{:?}, {:?}]\njobs = \"jobs.jsonl\"\naccounts-file = \"accounts.toml\"\n",
            crate::support::artifacts::MASTODON_POSTER,
            crate::support::artifacts::HTTP_CLASSIFIER
        ),
    )
    .unwrap();
    f
}

/// `orchestrator ARGS` in the fixture's folder, nothing added.
fn as_written(f: &Fixture, args: &str) -> Output {
    run(orchestrator()
        .current_dir(f.dir.path())
        .args(args.split_whitespace()))
}

#[test]
fn two_the_help_names_the_four_flags() {
    let f = configured();
    let help = as_written(&f, "--help");
    // `--help | grep -E "max-passes|retry-delay|infra-retry-limit|no-retry-unknown"`
    for flag in [
        "max-passes",
        "retry-delay",
        "infra-retry-limit",
        "no-retry-unknown",
    ] {
        assert!(help.stdout.contains(flag), "{flag}");
    }
    // `--help | grep -A 10 "Retry Configuration"`, and the epilog's example.
    let group = help.stdout.split("Retry Configuration:").nth(1).unwrap();
    assert!(group.starts_with("\n  Options for controlling multi-pass retry behavior\n"));
    assert!(help.stdout.contains("--max-passes 5 --retry-delay 60"));
}

#[test]
fn three_and_four_defaults_and_custom_values() {
    let f = configured();
    let config = |args: &str| -> serde_json::Value {
        let out = as_written(&f, args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["retry_configuration"]
            .clone()
    };
    let defaults = config("--status --json");
    assert_eq!(defaults["max_passes"], 3);
    assert_eq!(defaults["retry_delay_seconds"], 30);
    assert_eq!(defaults["infrastructure_retry_limit"], 3);
    assert_eq!(defaults["retry_unknown_errors"], true);
    let custom = config(
        "--max-passes 5 --retry-delay 60 --infra-retry-limit 2 --no-retry-unknown --status --json",
    );
    assert_eq!(custom["max_passes"], 5);
    assert_eq!(custom["retry_delay_seconds"], 60);
    assert_eq!(custom["infrastructure_retry_limit"], 2);
    assert_eq!(custom["retry_unknown_errors"], false);
}

#[test]
fn six_the_validation_errors() {
    let f = configured();
    // `--max-passes 0 --run 2>&1 | grep -i "at least 1"`
    let out = as_written(&f, "--max-passes 0 --run");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.to_lowercase().contains("at least 1"),
        "{}",
        out.stderr
    );
    // `--retry-delay -1 --run 2>&1 | grep -i "negative"`
    let out = as_written(&f, "--retry-delay -1 --run");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.to_lowercase().contains("negative"),
        "{}",
        out.stderr
    );
    let out = as_written(&f, "--infra-retry-limit 0 --run");
    assert_eq!(
        out.stderr,
        "error: --infra-retry-limit must be at least 1\n"
    );
}

#[test]
fn eight_status_shows_the_configuration_given() {
    let f = configured();
    // `--max-passes 5 --retry-delay 60 --status`: "should show configuration
    // without errors".
    let out = as_written(&f, "--max-passes 5 --retry-delay 60 --status");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("  Max passes: 5\n  Retry delay: 60s\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn nine_a_run_with_custom_retry_settings() {
    let f = configured();
    // `--workers 1 --max-passes 2 --retry-delay 10 --run`: the log shows the
    // "Retry Configuration:" block, "Starting pass 1/2" and "Waiting 10s
    // before next pass".
    let out = as_written(&f, "--workers 1 --max-passes 2 --retry-delay 10 --run");
    assert_eq!(out.code, 0, "{}", out.stderr);
    for line in [
        "Retry Configuration:\n  Max passes: 2\n  Retry delay: 10s\n",
        "Starting pass 1/2",
        "Waiting 10s before next pass",
    ] {
        assert!(
            out.stderr.contains(line),
            "missing {line:?} in:\n{}",
            out.stderr
        );
    }
}

#[test]
fn ten_seed_only_with_run_works_without_errors() {
    let f = configured();
    // `--workers 1 --run --seed-only`: "should work without errors, using
    // default retry config".
    let out = as_written(&f, "--workers 1 --run --seed-only");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("Imported 1 job from jobs.jsonl"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--seed-only wins over --run"),
        "{}",
        out.stderr
    );
    assert_eq!(f.sandbox.counters().requests, 0, "nothing ran");
}

#[test]
fn a_whole_second_delay_always_reads_as_given() {
    for _ in 0..5 {
        let f = configured();
        let out = as_written(&f, "--retry-delay 1 --run");
        assert_eq!(out.code, 0, "{}", out.stderr);
        let waits: Vec<&str> = crate::support::log_lines(&out.stderr)
            .into_iter()
            .filter(|l| l.starts_with("Waiting"))
            .collect();
        assert_eq!(waits, ["Waiting 1s before next pass..."]);
    }
}

#[test]
fn scripts_that_pass_force_kill_ports_still_run() {
    let f = configured();
    let help = as_written(&f, "--help");
    assert!(
        help.stdout.contains("--force-kill-ports"),
        "{}",
        help.stdout
    );
    // Every existing script passes it; with no run to stop, it changes
    // nothing and says nothing.
    let out = as_written(
        &f,
        "--workers 1 --max-passes 2 --retry-delay 1 --run --force-kill-ports",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("Asking"), "{}", out.stderr);
    assert!(out.stderr.contains("All jobs succeeded."), "{}", out.stderr);
}
