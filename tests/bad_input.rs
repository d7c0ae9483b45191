//! Bad input never hurts the user's data: one line on stderr, exit code 2,
//! and the stored state exactly as it was. The README's troubleshooting
//! section lists the same cases.

use std::path::Path;

use crate::support::Fixture;
use crate::support::{Output, run};

const STATE: &str = "orchestrator-state.sqlite";

/// A fixture whose batch is already seeded, and a fingerprint of its state.
fn seeded() -> (Fixture, Vec<u8>) {
    let f = Fixture::new(
        "[[account]]\nname = \"alice\"\ntoken = \"alice-token\"\n",
        2,
    );
    let out = run(&mut f.command(&["--seed-only"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let state = fingerprint(&f.path(STATE));
    (f, state)
}

fn fingerprint(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Asserts the refusal: exit 2, one `error:` line containing `expected`.
fn refused(out: &Output, expected: &str) {
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "one line, got:\n{}",
        out.stderr
    );
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    assert!(
        out.stderr.contains(expected),
        "expected {expected:?} in {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// Runs `--run` with a replaced file and checks the refusal and the state.
fn run_with_file(name: &str, contents: &str, expected: &str) {
    let (f, before) = seeded();
    std::fs::write(f.path(name), contents).unwrap();
    refused(&run(&mut f.command(&["--run"])), expected);
    assert_eq!(fingerprint(&f.path(STATE)), before, "the state changed");
    assert_eq!(f.sandbox.counters().requests, 0);
}

#[test]
fn a_jobs_file_that_is_not_json_lines() {
    run_with_file(
        "jobs.jsonl",
        "id,account,payload\n",
        "jobs.jsonl:1: expected value",
    );
}

#[test]
fn a_jobs_file_with_a_missing_field() {
    run_with_file(
        "jobs.jsonl",
        "{\"id\": \"x\", \"payload\": {}}\n",
        "jobs.jsonl:1: missing field `account`",
    );
}

#[test]
fn a_jobs_file_with_a_duplicate_id() {
    let line = "{\"id\": \"x\", \"account\": \"alice\", \"payload\": {\"status\": \"x\"}}\n";
    run_with_file(
        "jobs.jsonl",
        &format!("{line}{line}"),
        "jobs.jsonl:2: job id \"x\" was already used on line 1",
    );
}

#[test]
fn a_job_for_an_account_the_accounts_file_lacks() {
    run_with_file(
        "jobs.jsonl",
        "{\"id\": \"x\", \"account\": \"zed\", \"payload\": {\"status\": \"x\"}}\n",
        "missing from the accounts file: zed",
    );
}

#[test]
fn an_accounts_file_that_is_not_toml() {
    run_with_file(
        "accounts.toml",
        "[accounts.alice\nbase_url = 1\n",
        "accounts.toml: ",
    );
}

#[test]
fn an_accounts_file_naming_an_unset_variable() {
    run_with_file(
        "accounts.toml",
        "[accounts.alice]\nbase_url = \"http://127.0.0.1:9\"\ntoken_env = \"ORCHESTRATOR_TEST_NEVER_SET\"\n",
        "account alice: token_env = \"ORCHESTRATOR_TEST_NEVER_SET\", but that environment variable is not set",
    );
}

#[test]
fn a_secret_is_named_by_the_key_that_gave_it() {
    run_with_file(
        "accounts.toml",
        "[accounts.alice]\nbase_url = \"http://127.0.0.1:9\"\nauth = \"session\"\nsecret_env = \"ORCHESTRATOR_TEST_NEVER_SET\"\n",
        "account alice: secret_env = \"ORCHESTRATOR_TEST_NEVER_SET\", but that environment variable is not set",
    );
    run_with_file(
        "accounts.toml",
        "[accounts.alice]\nbase_url = \"http://127.0.0.1:9\"\nsecret = \"a\"\ntoken_env = \"B\"\n",
        "account alice: give one of secret, secret_env or secret_file (or token, token_env, token_file)",
    );
}

#[test]
fn an_accounts_file_naming_an_unreadable_token_file() {
    run_with_file(
        "accounts.toml",
        "[accounts.alice]\nbase_url = \"http://127.0.0.1:9\"\ntoken_file = \"no-such.token\"\n",
        "account alice: cannot read token_file",
    );
}

#[test]
fn a_state_file_that_is_not_a_database() {
    let (f, _) = seeded();
    let text = "these are my notes, not a database\n".repeat(200);
    std::fs::write(f.path(STATE), &text).unwrap();
    for action in ["--run", "--status", "--seed-only", "--stop-all"] {
        refused(&run(&mut f.command(&[action])), "file is not a database");
        assert_eq!(std::fs::read_to_string(f.path(STATE)).unwrap(), text);
    }
}

#[test]
fn a_state_file_from_a_newer_schema() {
    let (f, _) = seeded();
    bump_schema(&f.path(STATE));
    let before = fingerprint(&f.path(STATE));
    for action in ["--run", "--status", "--seed-only"] {
        refused(
            &run(&mut f.command(&[action])),
            "was written by a newer orchestrator (schema 99",
        );
    }
    assert_eq!(fingerprint(&f.path(STATE)), before);
}

/// Sets SQLite's `user_version` (a big-endian u32 at offset 60 of the
/// header) to 99, as a newer orchestrator's schema would.
fn bump_schema(path: &Path) {
    // The state is in WAL mode; fold the WAL in first by opening the store.
    drop(orchestrator_store::SqliteStore::open(path).unwrap());
    let mut bytes = std::fs::read(path).unwrap();
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(path, bytes).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[test]
fn a_read_only_state_file() {
    let (f, _) = seeded();
    let path = f.path(STATE);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&path, perms).unwrap();
    let before = fingerprint(&path);
    refused(
        &run(&mut f.command(&["--run"])),
        "is read-only; make it writable",
    );
    refused(&run(&mut f.command(&["--seed-only"])), "is read-only");
    assert_eq!(fingerprint(&path), before);
    // Reading it is still fine.
    let status = run(&mut f.command(&["--status"]));
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("2 jobs"), "{}", status.stdout);
}

#[test]
fn a_plugin_path_that_is_a_directory() {
    let (f, before) = seeded();
    std::fs::create_dir(f.path("plugin.wasm")).unwrap();
    let out = run(f.command(&[]).args(["--plugin", "plugin.wasm", "--run"]));
    refused(&out, "plugin plugin.wasm: is a directory");
    assert_eq!(fingerprint(&f.path(STATE)), before);
}

#[test]
fn a_ca_file_that_is_missing_or_holds_no_certificate() {
    let (f, before) = seeded();
    let out = run(&mut f.command(&["--ca-file", "nowhere.pem", "--run"]));
    refused(&out, "--ca-file: cannot read nowhere.pem");
    std::fs::write(f.path("notes.pem"), "not a certificate\n").unwrap();
    let out = run(&mut f.command(&["--ca-file", "notes.pem", "--run"]));
    refused(&out, "--ca-file: notes.pem holds no PEM certificate");
    assert_eq!(fingerprint(&f.path(STATE)), before);
    assert_eq!(f.sandbox.counters().requests, 0);
}

#[test]
fn usage_errors_are_one_line() {
    let (f, state) = seeded();
    refused(
        &run(&mut f.command(&["--run", "--status"])),
        "the argument '--run' cannot be used with '--status'; see --help",
    );
    refused(
        &run(&mut f.command(&["--retry-delay", "1e12", "--run"])),
        "invalid value '1e12' for '--retry-delay <SECONDS>'",
    );
    assert_eq!(fingerprint(&f.path(STATE)), state);
}

#[test]
fn a_broken_accounts_file_names_the_line_and_key_but_never_the_token() {
    let (f, state) = seeded();
    std::fs::write(
        f.path("accounts.toml"),
        format!(
            "[accounts.alice]\nbase_url = \"{}\"\ntokn = \"alice-token\"\n",
            f.sandbox.url()
        ),
    )
    .unwrap();
    let out = run(&mut f.command(&["--run"]));
    refused(&out, "accounts.toml: line 3 (tokn): unknown field `tokn`");
    assert!(!out.stderr.contains("alice-token"), "{}", out.stderr);
    assert_eq!(fingerprint(&f.path(STATE)), state);
}

#[test]
fn a_hostile_account_or_poster_name_is_escaped_in_the_refusal() {
    let (f, before) = seeded();
    // An account (a quoted TOML key may hold anything) naming a poster that
    // is not given, both with escape sequences and a line break.
    std::fs::write(
        f.path("accounts.toml"),
        format!(
            "{}\n[accounts.\"eve\\u001b[2J\\nerror: forged\"]\nbase_url = \"http://127.0.0.1:9\"\n\
             poster = \"mastodon\\u001b]0;owned\\u0007\"\n",
            std::fs::read_to_string(f.path("accounts.toml")).unwrap()
        ),
    )
    .unwrap();
    let out = run(&mut f.command(&["--run"]));
    refused(
        &out,
        "account eve\\u{1b}[2J\\nerror: forged names poster \"mastodon\\u{1b}]0;owned\\u{7}\", which no --plugin gives",
    );
    assert!(!out.stderr.contains('\u{1b}') && !out.stderr.contains('\u{7}'));
    assert_eq!(
        fingerprint(&f.path(STATE)),
        before,
        "the state is untouched"
    );
}
