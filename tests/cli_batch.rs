//! The batch command line: help, validation, seeding and status.

use crate::support::{self, orchestrator, run};

#[test]
fn help_is_pinned() {
    let out = run(orchestrator().arg("--help"));
    assert_eq!(out.code, 0);
    insta::with_settings!({snapshot_path => "snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("help", out.stdout);
    });
}

#[test]
fn each_retry_setting_is_validated_before_any_work() {
    let dir = support::temp_dir();
    for (flags, message) in [
        (
            &["--max-passes", "0"][..],
            "--max-passes must be at least 1",
        ),
        (
            &["--retry-delay", "-1"][..],
            "--retry-delay cannot be negative",
        ),
        (
            &["--infra-retry-limit", "0"][..],
            "--infra-retry-limit must be at least 1",
        ),
    ] {
        for action in ["--run", "--status", "--seed-only"] {
            let out = run(orchestrator()
                .current_dir(dir.path())
                .args(flags)
                .arg(action));
            assert_eq!(out.code, 2, "{flags:?} {action}");
            assert_eq!(
                out.stderr,
                format!("error: {message}\n"),
                "{flags:?} {action}"
            );
        }
    }
    // Nothing was created.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn status_without_a_batch_says_so_and_shows_the_configuration() {
    let dir = support::temp_dir();
    let out = run(orchestrator().current_dir(dir.path()).args([
        "--max-passes",
        "5",
        "--retry-delay",
        "60",
        "--status",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("No batch in orchestrator-state.sqlite yet"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("  Max passes: 5\n  Retry delay: 60s\n"),
        "{}",
        out.stdout
    );
    let json = run(orchestrator().current_dir(dir.path()).args([
        "--max-passes",
        "5",
        "--status",
        "--json",
    ]));
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(value["batch"].is_null());
    assert_eq!(value["retry_configuration"]["max_passes"], 5);
}

#[test]
fn seeding_is_idempotent_and_refuses_a_bad_file_whole() {
    let dir = support::temp_dir();
    let good = "{\"id\": \"a\", \"account\": \"x\", \"payload\": {\"status\": \"hi\"}}\n\
                {\"id\": \"b\", \"account\": \"x\", \"payload\": {\"status\": \"ho\"}}\n";
    std::fs::write(dir.path().join("jobs.jsonl"), good).unwrap();
    let seed = || {
        run(orchestrator()
            .current_dir(dir.path())
            .args(["--jobs", "jobs.jsonl", "--seed-only"]))
    };
    let out = seed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("Imported 2 jobs"), "{}", out.stderr);
    let out = seed();
    assert!(out.stderr.contains("Imported 0 jobs"), "{}", out.stderr);
    assert!(out.stderr.contains("2 already there"), "{}", out.stderr);

    std::fs::write(
        dir.path().join("bad.jsonl"),
        "{\"id\": \"c\", \"account\": \"x\", \"payload\": {}}\nnot json\n",
    )
    .unwrap();
    let out =
        run(orchestrator()
            .current_dir(dir.path())
            .args(["--jobs", "bad.jsonl", "--seed-only"]));
    assert_eq!(out.code, 2);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: bad.jsonl:2: "),
        "{}",
        out.stderr
    );
    let status = run(orchestrator()
        .current_dir(dir.path())
        .args(["--status", "--json"]));
    let value: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(
        value["batch"]["jobs"], 2,
        "nothing of bad.jsonl was imported"
    );

    let out = run(orchestrator().current_dir(dir.path()).args([
        "--jobs",
        "jobs.jsonl",
        "--seed-only",
        "--force-reseed",
    ]));
    assert!(
        out.stderr.starts_with(
            "--force-reseed: discarded the stored batch (2 jobs, with its runs and attempts)
"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Imported 2 jobs"), "{}", out.stderr);
}

#[test]
fn no_action_is_a_usage_error() {
    let out = run(&mut orchestrator());
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no action given"), "{}", out.stderr);
}

#[test]
fn completions_and_the_man_page_come_from_the_flags() {
    let bash = run(orchestrator().args(["completions", "bash"]));
    assert_eq!(bash.code, 0, "{}", bash.stderr);
    assert!(bash.stdout.contains("--max-passes"), "{}", bash.stdout);
    let fish = run(orchestrator().args(["completions", "fish"]));
    assert!(fish.stdout.contains("retry-delay"), "{}", fish.stdout);
    let man = run(orchestrator().arg("man"));
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(
        man.stdout.starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        &man.stdout[..80]
    );
    assert!(
        man.stdout.contains("infra\\-retry\\-limit"),
        "roff escapes dashes"
    );
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = orchestrator()
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, then hang up, like `| head -c1`.
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    stdout.read_exact(&mut byte).unwrap();
    drop(stdout);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn the_configuration_file_fills_in_what_the_flags_leave_out() {
    let dir = support::temp_dir();
    std::fs::write(
        dir.path().join("orchestrator.toml"),
        "# shared settings\nmax-passes = 5\nretry-delay = 60\nworkers = 8\nallow-hosts = [\"media.example\"]\n",
    )
    .unwrap();
    // Flags win over the file; the file over the defaults.
    let out =
        run(orchestrator()
            .current_dir(dir.path())
            .args(["--workers", "2", "config", "show"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let row = |key: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no {key} in {}", out.stdout))
    };
    assert_eq!(row("max-passes"), "max-passes 5 orchestrator.toml:2");
    assert_eq!(row("retry-delay"), "retry-delay 60s orchestrator.toml:3");
    assert_eq!(row("workers"), "workers 2 command line");
    assert_eq!(row("infra-retry-limit"), "infra-retry-limit 3 default");
    assert_eq!(
        row("allow-hosts"),
        "allow-hosts media.example orchestrator.toml:5"
    );
    // And the batch actions use it.
    let status = run(orchestrator().current_dir(dir.path()).arg("--status"));
    assert!(
        status
            .stdout
            .contains("  Max passes: 5\n  Retry delay: 60s\n"),
        "{}",
        status.stdout
    );
}

#[test]
fn an_unknown_configuration_key_names_its_line() {
    let dir = support::temp_dir();
    std::fs::write(
        dir.path().join("custom.toml"),
        "workers = 2\n\ncolour = \"red\"\n",
    )
    .unwrap();
    let out =
        run(orchestrator()
            .current_dir(dir.path())
            .args(["--config", "custom.toml", "--status"]));
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: custom.toml:3: unknown key `colour`; keys are the long flag names, e.g. max-passes\n"
    );
    std::fs::write(dir.path().join("custom.toml"), "workers = \"many\"\n").unwrap();
    let out =
        run(orchestrator()
            .current_dir(dir.path())
            .args(["--config", "custom.toml", "--status"]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: custom.toml:1: workers has the wrong type"),
        "{}",
        out.stderr
    );
}

#[test]
fn every_other_setting_is_validated_before_any_work_too() {
    let dir = support::temp_dir();
    for (flags, message) in [
        (&["--workers", "0"][..], "--workers must be at least 1"),
        (
            &["--grace-period", "-1"][..],
            "--grace-period cannot be negative",
        ),
        (
            &["--key-window", "-1"][..],
            "--key-window cannot be negative",
        ),
        (&["--lease", "0"][..], "--lease must be at least 1 second"),
        (
            &["--progress-interval", "-1"][..],
            "--progress-interval cannot be negative",
        ),
        (
            &["--job-timeout", "0"][..],
            "--job-timeout must be at least 1",
        ),
        // Every duration is at most a year: no flag's value can overflow the
        // host's time arithmetic.
        (
            &["--job-timeout", "9223372036854775807"][..],
            "--job-timeout must be at most 31622400 (a year)",
        ),
        (
            &["--retry-delay", "31622401"][..],
            "--retry-delay must be at most 31622400 (a year)",
        ),
        (
            &["--grace-period", "9223372036854775807"][..],
            "--grace-period must be at most 31622400 (a year)",
        ),
        (
            &["--plugin-memory", "0"][..],
            "--plugin-memory must be at least 1",
        ),
        (
            &["--plugin-memory", "5000"][..],
            "--plugin-memory must be at most 4096 (MiB)",
        ),
        (
            &["--response-limit", "0"][..],
            "--response-limit must be at least 1",
        ),
        (
            &["--response-limit", "5000"][..],
            "--response-limit must be at most 4096 (MiB)",
        ),
        (
            &["--retry-backoff", "--retry-backoff-cap", "-1"][..],
            "--retry-backoff-cap cannot be negative",
        ),
        (
            &["--halt-on-failure-rate", "101"][..],
            "--halt-on-failure-rate must be a percentage from 0 to 100",
        ),
        (&["--accounts", "a,,b"][..], "--accounts has an empty name"),
    ] {
        let out = run(orchestrator()
            .current_dir(dir.path())
            .args(flags)
            .arg("--run"));
        assert_eq!(out.code, 2, "{flags:?}");
        assert_eq!(out.stderr, format!("error: {message}\n"), "{flags:?}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn migrate_brings_a_state_file_up_to_date_without_a_run() {
    let dir = support::temp_dir();
    let state = dir.path().join("state.sqlite");
    let out = run(orchestrator()
        .arg("migrate")
        .arg("--state-file")
        .arg(&state));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .ends_with("state.sqlite is at schema version 6\n"),
        "{}",
        out.stderr
    );
    assert!(state.exists());
    // A store that cannot be opened is one line and a usage error.
    std::fs::write(&state, "not a database").unwrap();
    let out = run(orchestrator()
        .arg("migrate")
        .arg("--state-file")
        .arg(&state));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn every_command_takes_the_store_before_or_after_it() {
    let dir = support::temp_dir();
    std::fs::write(
        dir.path().join("jobs.jsonl"),
        "{\"id\": \"a\", \"account\": \"x\", \"payload\": {\"status\": \"hi\"}}\n",
    )
    .unwrap();
    let at = |args: &[&str]| run(orchestrator().current_dir(dir.path()).args(args));
    let seeded = at(&[
        "--jobs",
        "jobs.jsonl",
        "--state-file",
        "custom.sqlite",
        "--seed-only",
    ]);
    assert_eq!(seeded.code, 0, "{}", seeded.stderr);
    for command in [
        &["explain", "a"][..],
        &["report", "--format", "json"],
        &["migrate"],
        &["cancel", "a"],
        &["retry", "a"],
        &["config", "show"],
    ] {
        let before: Vec<&str> = ["--state-file", "custom.sqlite"]
            .into_iter()
            .chain(command.iter().copied())
            .collect();
        let after: Vec<&str> = command
            .iter()
            .copied()
            .chain(["--state-file", "custom.sqlite"])
            .collect();
        for args in [before, after] {
            let out = at(&args);
            assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
            assert!(!out.stderr.contains("no state file"), "{args:?}");
        }
    }
    // From orchestrator.toml too.
    std::fs::write(
        dir.path().join("orchestrator.toml"),
        "state-file = \"custom.sqlite\"\n",
    )
    .unwrap();
    let explain = at(&["explain", "a"]);
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(
        explain.stdout.starts_with("Job a (account x)"),
        "{}",
        explain.stdout
    );
    assert!(!dir.path().join("orchestrator-state.sqlite").exists());
}
