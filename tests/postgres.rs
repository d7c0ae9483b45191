//! Many processes, one batch: the PostgreSQL store, against a real server.
//!
//! Each test starts a throwaway cluster from the system's PostgreSQL
//! binaries (see `orchestrator-pg-cluster`); without them the tests say
//! loudly that they were skipped, and in CI they fail instead.

use std::collections::BTreeSet;
use std::process::Child;
use std::time::Duration;

use orchestrator_pg_cluster::{Cluster, Setup};
use orchestrator_store::{JobState, Store};

use crate::budgets;
use crate::run_batch;
use crate::runs;
use crate::support::Fixture;
use crate::support::{run, wait_until};

/// A scenario of `accounts` accounts whose every post takes `delay_ms`.
fn many_accounts(accounts: usize, delay_ms: u64) -> String {
    (0..accounts)
        .map(|i| {
            format!("[[account]]\nname = \"a{i}\"\ntoken = \"t{i}\"\ndelay_ms = {delay_ms}\n\n")
        })
        .collect()
}

/// A batch of `jobs_per_account` jobs for each of `accounts` accounts
/// (posts taking `delay_ms`), imported into a new database of `cluster`.
fn seeded(cluster: &Cluster, accounts: usize, delay_ms: u64, jobs_per_account: usize) -> Fixture {
    let f = Fixture::new(&many_accounts(accounts, delay_ms), jobs_per_account).on_postgres(cluster);
    let seeded = crate::support::run(&mut f.command(&["--seed-only"]));
    assert_eq!(seeded.code, 0, "{}", seeded.stderr);
    f
}

/// Waits for `child`; returns its exit code and standard error.
fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().expect("the child runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Attempts recorded so far, of any outcome.
fn attempts_recorded(state: &dyn Store) -> usize {
    state.report().unwrap().len()
}

/// Every job posted, and every idempotency key created exactly once.
fn assert_all_posted_once(f: &Fixture, jobs: u64) {
    let counters = f.sandbox.counters();
    assert_eq!(counters.statuses_created, jobs, "{counters:?}");
    assert!(
        counters
            .created_by_idempotency_key
            .values()
            .all(|&n| n == 1),
        "a key was created twice"
    );
    let summaries = f.state().job_summaries().unwrap();
    assert_eq!(summaries.len() as u64, jobs);
    assert!(
        summaries.iter().all(|j| j.state == JobState::Succeeded),
        "not every job succeeded"
    );
}

#[test]
fn three_processes_share_five_thousand_jobs_and_post_each_once() {
    let Some(cluster) = Cluster::for_test("three_processes_share_five_thousand_jobs") else {
        return;
    };
    three_processes_share_five_thousand_jobs(&seeded(&cluster, 50, 0, 100));
}

/// `url` (a database of `cluster`, which speaks TLS) checked as
/// `verify-full` against the cluster's authority.
fn verify_full(cluster: &Cluster, url: &str) -> String {
    format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        cluster.ca_file().display()
    )
}

#[test]
fn three_processes_share_five_thousand_jobs_over_tls_verify_full() {
    let Some(cluster) = Cluster::for_test_with("three_processes_over_tls", &Setup::tls_required())
    else {
        return;
    };
    let mut f = Fixture::new(&many_accounts(50, 0), 100).on_postgres(&cluster);
    f.store_url = f.store_url.map(|url| verify_full(&cluster, &url));
    let seeded = crate::support::run(&mut f.command(&["--seed-only"]));
    assert_eq!(seeded.code, 0, "{}", seeded.stderr);
    three_processes_share_five_thousand_jobs(&f);
    let status = crate::support::run(&mut f.command(&["--status"]));
    assert!(
        status.stdout.contains(&format!(
            "  store:       {}, TLSv1.3 (verify-full)\n",
            f.store_name()
        )),
        "{}",
        status.stdout
    );
    let json = crate::support::run(&mut f.command(&["--status", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["connection"]["encrypted"], true, "{json}");
    assert_eq!(json["connection"]["sslmode"], "verify-full", "{json}");
    // Each process of the run says how it reached the database.
    let processes = json["batch"]["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 3, "{json}");
    for process in processes {
        assert_eq!(process["connection"], "TLSv1.3 (verify-full)", "{json}");
    }
    assert!(
        status.stdout.contains(", store TLSv1.3 (verify-full)"),
        "{}",
        status.stdout
    );
}

fn three_processes_share_five_thousand_jobs(f: &Fixture) {
    let children: Vec<Child> = (0..3)
        .map(|_| f.spawn(&["--workers", "8", "--lease", "10"]))
        .collect();
    for child in children {
        let (code, stderr) = finish(child);
        assert_eq!(code, 0, "{stderr}");
    }
    assert_all_posted_once(f, 5_000);
    // One request per job: no process posted what another held.
    assert_eq!(f.sandbox.counters().requests, 5_000);
    let (runs, processes): (BTreeSet<_>, BTreeSet<_>) = f
        .state()
        .report()
        .unwrap()
        .into_iter()
        .map(|row| (row.attempt.run, row.attempt.process))
        .unzip();
    assert_eq!(runs.len(), 1, "one run, shared: {runs:?}");
    assert_eq!(
        processes.len(),
        3,
        "every process took a share: {processes:?}"
    );
}

#[test]
fn the_password_comes_from_a_passfile_pgpassword_or_a_file_and_is_never_shown() {
    use std::os::unix::fs::PermissionsExt;
    const PASSWORD: &str = "Pa55-w0rd:with\\odd";
    let setup = Setup {
        password_users: vec![("worker".into(), PASSWORD.into())],
        ..Setup::tls_required()
    };
    let Some(cluster) = Cluster::for_test_with("the_password_from_a_passfile", &setup) else {
        return;
    };
    let url = verify_full(&cluster, &cluster.create_database_for("worker"));
    let mut f = Fixture::new(
        "[[account]]\nname = \"alice\"\ntoken = \"alice-token\"\n",
        2,
    );
    f.store_url = Some(url.clone());
    let private = |name: &str, text: &str, mode: u32| {
        let path = f.path(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let never_shown = |out: &crate::support::Output| {
        assert!(
            !out.stdout.contains("Pa55") && !out.stderr.contains("Pa55"),
            "{}{}",
            out.stdout,
            out.stderr
        );
    };
    let status = |cmd: &mut std::process::Command| {
        let out = crate::support::run(cmd.args(["--status", "--json"]));
        never_shown(&out);
        out
    };
    // The passfile's line escapes its colon and backslash.
    let escaped = PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
    let passfile = private(
        "pgpass",
        &format!("# host:port:database:user:password\n127.0.0.1:*:*:worker:{escaped}\n"),
        0o600,
    );

    let out = status(f.command(&[]).env("PGPASSFILE", &passfile));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, "");

    // Others may read it: it is not read, and the refusal says why.
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = status(f.command(&[]).env("PGPASSFILE", &passfile));
    assert_eq!(out.code, 2, "{}", out.stderr);
    let error = out.stderr.lines().last().unwrap();
    assert!(
        error.starts_with("error: ")
            && error.contains("the server asks for a password and none was given")
            && error.contains("the passfile was not read")
            && error.contains("may be read by its group or others (mode 0644)")
            && error.contains("chmod 600"),
        "{}",
        out.stderr
    );

    let out = status(f.command(&[]).env("PGPASSWORD", PASSWORD));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let file = private("password", &format!("{PASSWORD}\n"), 0o600);
    let out = status(&mut f.command(&["--password-file", file.to_str().unwrap()]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = status(&mut f.command(&["--password-file", file.to_str().unwrap()]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--password-file: "), "{}", out.stderr);

    // In the URL on the command line it still works, with a warning that
    // names the alternatives; the URL is shown without it.
    let encoded = PASSWORD.replace(':', "%3A").replace('\\', "%5C");
    f.store_url = Some(url.replacen("worker@", &format!("worker:{encoded}@"), 1));
    let out = crate::support::run(&mut f.command(&["--run"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    never_shown(&out);
    assert!(!out.stdout.contains(&encoded) && !out.stderr.contains(&encoded));
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("the PostgreSQL password is on the command line"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains("use PGPASSWORD, ~/.pgpass or --password-file instead"),
        "{}",
        warnings[0]
    );
    assert_eq!(f.sandbox.counters().statuses_created, 2);
}

#[test]
fn tls_and_the_pool_set_in_orchestrator_toml_and_a_wrong_host_name_refused_in_one_line() {
    // The certificate is for localhost alone.
    let setup = Setup {
        tls_names: vec!["localhost".into()],
        tls_required: true,
        ..Setup::default()
    };
    let Some(cluster) = Cluster::for_test_with("tls_set_in_orchestrator_toml", &setup) else {
        return;
    };
    let mut f = Fixture::new(
        "[[account]]\nname = \"alice\"\ntoken = \"alice-token\"\n",
        1,
    )
    .on_postgres(&cluster);
    std::fs::write(
        f.path("orchestrator.toml"),
        format!(
            "sslmode = \"verify-full\"\nsslrootcert = \"{}\"\ndb-pool = 2\n",
            cluster.ca_file().display()
        ),
    )
    .unwrap();
    let one_line_error = |out: &crate::support::Output, says: &[&str]| {
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        for words in says {
            assert!(out.stderr.contains(words), "{words:?} in {}", out.stderr);
        }
    };
    // The URL says 127.0.0.1.
    one_line_error(
        &crate::support::run(&mut f.command(&["--run"])),
        &[
            r#"certificate not valid for name "127.0.0.1""#,
            "connect by a name the certificate lists, or use sslmode=verify-ca",
        ],
    );
    assert_eq!(f.sandbox.counters().requests, 0);

    f.store_url = f
        .store_url
        .map(|url| url.replacen("@127.0.0.1:", "@localhost:", 1));
    let out = crate::support::run(&mut f.command(&["--run"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let status = crate::support::run(&mut f.command(&["--status"]));
    assert!(
        status.stdout.contains("TLSv1.3 (verify-full)"),
        "{}",
        status.stdout
    );
    let shown = crate::support::run(&mut f.command(&["config", "show"]));
    assert!(
        shown
            .stdout
            .lines()
            .any(|l| l.starts_with("db-pool ") && l.contains(" 2 ")),
        "{}",
        shown.stdout
    );
    // The command line wins over the file: a server that requires TLS
    // refuses sslmode=disable, in one line that says what to use.
    one_line_error(
        &crate::support::run(&mut f.command(&["--status", "--sslmode", "disable"])),
        &[
            "no encryption",
            "use sslmode=require, verify-ca or verify-full",
        ],
    );
}

#[test]
fn a_killed_process_loses_its_jobs_to_the_others_when_its_lease_expires() {
    let Some(cluster) = Cluster::for_test("a_killed_process_loses_its_jobs") else {
        return;
    };
    // Posts of 100 ms: attempts seen in flight are still in flight when
    // the kill lands, rather than between two of the victim's claims.
    let f = seeded(&cluster, 40, 100, 25);
    let args = ["--workers", "8", "--lease", "2"];
    let mut victim = f.spawn(&args);
    let others: Vec<Child> = (0..2).map(|_| f.spawn(&args)).collect();
    let state = f.state();
    // Killed in the middle of its attempts, not between two claims (the
    // processes run in step, and a claim is quick).
    let pid = victim.id();
    wait_until("attempts to be under way, the victim's among them", || {
        let report = state.report().unwrap();
        let Some(process) = state
            .status()
            .unwrap()
            .processes
            .iter()
            .find(|p| p.pid == pid)
            .map(|p| p.id)
        else {
            return false;
        };
        let in_flight = report
            .iter()
            .filter(|r| r.attempt.process == Some(process) && r.attempt.outcome == "in-flight")
            .count();
        report.len() > 200 && in_flight >= 4
    });
    victim.kill().expect("SIGKILL");
    let _ = victim.wait();
    for child in others {
        let (code, stderr) = finish(child);
        assert_eq!(code, 0, "{stderr}");
    }
    assert_all_posted_once(&f, 1_000);
    // What the dead process had in flight was retried with the same key.
    let uncertain = f
        .state()
        .report()
        .unwrap()
        .into_iter()
        .filter(|row| row.attempt.outcome == "uncertain")
        .count();
    assert!(uncertain > 0, "the killed process had attempts in flight");
}

#[test]
fn a_database_outage_pauses_the_processes_and_loses_nothing() {
    let Some(cluster) = Cluster::for_test("a_database_outage_pauses_the_processes") else {
        return;
    };
    let f = seeded(&cluster, 20, 20, 50);
    let children: Vec<Child> = (0..2)
        .map(|_| f.spawn(&["--workers", "8", "--lease", "10"]))
        .collect();
    let state = f.state();
    wait_until("attempts to be under way", || {
        attempts_recorded(&*state) > 100
    });
    cluster.stop_server().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    cluster.start_server().unwrap();
    let mut paused = false;
    for child in children {
        let (code, stderr) = finish(child);
        assert_eq!(code, 0, "{stderr}");
        paused |= stderr.contains("cannot reach the PostgreSQL store");
    }
    assert!(paused, "a process said it paused for the database");
    assert_all_posted_once(&f, 1_000);
}

#[test]
fn the_retry_rules_hold_on_postgres() {
    let Some(cluster) = Cluster::for_test("the_retry_rules_hold_on_postgres") else {
        return;
    };
    let cluster = std::sync::Arc::new(cluster);
    crate::support::on_postgres(&cluster, || {
        run_batch::a_mixed_batch_with_default_flags();
        run_batch::one_pass_retries_nothing();
        run_batch::strict_mode_gives_up_on_unknown_failures();
        run_batch::non_retryable_failures_can_be_retried_on_request();
        run_batch::an_infrastructure_limit_of_one_allows_one_retry();
        run_batch::only_the_named_accounts_run();
        run_batch::rerunning_a_finished_batch_retries_only_what_failed();
        run_batch::a_retry_after_longer_than_the_delay_is_waited_out();
        run_batch::a_rate_limit_pauses_only_its_account();
        run_batch::a_jobs_own_wait_does_not_hold_back_its_account();
    });
}

#[test]
fn runs_resumes_cancel_and_retry_hold_on_postgres() {
    let Some(cluster) = Cluster::for_test("runs_resumes_cancel_and_retry_hold_on_postgres") else {
        return;
    };
    let cluster = std::sync::Arc::new(cluster);
    crate::support::on_postgres(&cluster, || {
        runs::runs_of_some_accounts_leave_no_job_stuck();
        runs::a_failed_job_is_retried_by_the_next_run_a_non_retryable_one_on_request();
        runs::a_crash_mid_run_is_resumed_and_grants_no_job_more_passes();
        runs::cancel_and_retry_change_jobs_while_a_run_goes_on();
        runs::a_run_cut_short_under_other_settings_is_closed_for_a_new_one();
    });
}

#[test]
fn a_worker_role_runs_a_batch_but_may_not_change_the_schema() {
    let Some(cluster) = Cluster::for_test("a_worker_role_runs_a_batch") else {
        return;
    };
    let owner = cluster.create_database();
    cluster.sql(&owner, "CREATE ROLE batch_worker LOGIN");
    let worker = owner.replacen(
        &format!("{}@", orchestrator_pg_cluster::USER),
        "batch_worker@",
        1,
    );
    let f = Fixture::new(
        "[[account]]\nname = \"alice\"\ntoken = \"alice-token\"\n",
        3,
    );
    let as_worker = |extra: &[&str]| {
        let mut cmd = f.command(&["--state-file", &worker]);
        cmd.args(extra);
        run(cmd)
    };
    let refused_migration = |out: &crate::support::Output| {
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(
            out.stderr.contains("this role may not change the schema")
                && out.stderr.contains(
                    "run `orchestrator migrate --state-file URL` as the role that owns it"
                ),
            "{}",
            out.stderr
        );
    };

    // A database nobody migrated: the worker may not, and is told who may.
    refused_migration(&as_worker(&["--run"]));
    assert_eq!(f.sandbox.counters().requests, 0);

    // The owner migrates and grants; the worker's run posts every job, and
    // it may re-seed the batch.
    let migrated = f.tool(&[
        "migrate",
        "--state-file",
        &owner,
        "--grant-to",
        "batch_worker",
    ]);
    assert_eq!(migrated.code, 0, "{}", migrated.stderr);
    assert!(
        migrated.stderr.contains("Granted batch_worker"),
        "{}",
        migrated.stderr
    );
    let done = as_worker(&["--run"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert_eq!(f.sandbox.counters().statuses_created, 3);
    let reseeded = as_worker(&["--seed-only", "--force-reseed"]);
    assert_eq!(reseeded.code, 0, "{}", reseeded.stderr);

    // A schema behind this build: the worker's migration is refused, run
    // or `migrate`, and nothing of the schema changes.
    cluster.sql(
        &owner,
        "UPDATE orchestrator_schema SET version = version - 1",
    );
    refused_migration(&as_worker(&["--run"]));
    refused_migration(&f.tool(&["migrate", "--state-file", &worker]));
    cluster.sql(
        &owner,
        "UPDATE orchestrator_schema SET version = version + 1",
    );
    let status = as_worker(&["--status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);

    // A schema of the worker's own name comes first on the default search
    // path: the batch is still the one found in `public`, and no second,
    // empty store is made in the worker's schema.
    cluster.sql(
        &owner,
        "CREATE SCHEMA batch_worker AUTHORIZATION batch_worker",
    );
    let status = as_worker(&["--status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(
        cluster
            .query(
                &owner,
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'batch_worker'"
            )
            .trim(),
        "0"
    );
}

#[test]
fn rate_budgets_and_the_dry_run_hold_on_postgres() {
    let Some(cluster) = Cluster::for_test("rate_budgets_hold_on_postgres") else {
        return;
    };
    // A dry run on a new database creates no schema (a run would).
    let f = Fixture::new(&many_accounts(2, 0), 3).on_postgres(&cluster);
    let url = f.store_url.clone().unwrap();
    let dry = run(f.command(&["--run", "--dry-run"]));
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains("A run would attempt 6"),
        "{}",
        dry.stdout
    );
    let unchanged = orchestrator_store::PgOptions {
        migrate: false,
        ..orchestrator_store::PgOptions::default()
    };
    match orchestrator_store::PostgresStore::open_with(&url, &unchanged) {
        Err(orchestrator_store::StoreError::NotMigrated { found: 0, .. }) => {}
        other => panic!("the dry run changed the database: {other:?}"),
    }
    assert_eq!(f.sandbox.counters().requests, 0);

    let cluster = std::sync::Arc::new(cluster);
    // The next process takes the budget up where the store says the last
    // one left it.
    crate::support::on_postgres(&cluster, || {
        budgets::a_batch_kept_to_its_budget_never_meets_the_platforms_limit();
        budgets::a_resumed_run_keeps_to_the_budget_the_last_one_spent();
    });
}

#[test]
fn the_dry_run_takes_back_what_a_dead_process_held_once_its_lease_ran_out() {
    let Some(cluster) = Cluster::for_test("the_dry_run_takes_back_a_dead_process") else {
        return;
    };
    let f = seeded(&cluster, 1, 300, 10);
    let args = ["--workers", "1", "--lease", "2"];
    let mut victim = f.spawn(&args);
    let state = f.state();
    wait_until("an attempt in flight", || {
        state
            .report()
            .unwrap()
            .iter()
            .any(|r| r.attempt.outcome == "in-flight")
    });
    victim.kill().expect("SIGKILL");
    let _ = victim.wait();
    // Past its lease the dead process holds nothing: a run would resume
    // run 1 and take its job back with the key, so every job not posted
    // is attempted (the first claim does that; the dry run says so).
    std::thread::sleep(Duration::from_millis(2_500));
    let jobs = state.job_summaries().unwrap();
    let posted = jobs
        .iter()
        .filter(|j| j.state == orchestrator_store::JobState::Succeeded)
        .count();
    let dry = crate::support::run(&mut f.command(&["--run", "--dry-run", "--lease", "2"]));
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains("  Resuming run 1 for every account"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains(&format!("A run would attempt {}", 10 - posted)),
        "{}",
        dry.stdout
    );
    assert!(!dry.stdout.contains("in flight"), "{}", dry.stdout);
    // And nothing changed: the job is still the dead process's in the
    // store, and no process was added.
    let after = state.job_summaries().unwrap();
    assert_eq!(after, jobs);
    assert_eq!(state.status().unwrap().processes.len(), 1);
}

#[test]
fn a_process_that_joins_late_works_in_the_run_under_way() {
    let Some(cluster) = Cluster::for_test("a_process_that_joins_late") else {
        return;
    };
    // Twenty jobs an account keep the first process busy (~6 s) through
    // the commands that look at its run.
    let f = seeded(&cluster, 4, 150, 20);
    let first = f.spawn(&["--workers", "2", "--lease", "10"]);
    let state = f.state();
    wait_until("attempts to be under way", || {
        attempts_recorded(&*state) > 2
    });
    // Other settings: refused, in one line, while the run goes on.
    let other = crate::support::run(&mut f.command(&["--max-passes", "5", "--run"]));
    assert_eq!(other.code, 2, "{}", other.stderr);
    assert!(
        other.stderr.lines().last().unwrap().starts_with(
            "error: run 1 is in progress on other processes with other settings: --max-passes 3 (here 5);"
        ),
        "{}",
        other.stderr
    );
    // The dry run says as much, joining nothing: the same settings would
    // join the run, other settings are a problem.
    let dry = crate::support::run(&mut f.command(&["--run", "--dry-run"]));
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout
            .contains("  Joining run 1 for every account (pass 1/3) beside 1 other processes"),
        "{}",
        dry.stdout
    );
    let dry = crate::support::run(&mut f.command(&["--max-passes", "5", "--run", "--dry-run"]));
    assert_eq!(dry.code, 2, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains(
            "run 1 is in progress on other processes with other settings: --max-passes 3 (here 5)"
        ),
        "{}",
        dry.stdout
    );
    let late = f.spawn(&["--workers", "2", "--lease", "10"]);
    let (code, stderr) = finish(late);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("Joining run 1 for every account (pass 1/3) beside 1 other processes"),
        "{stderr}"
    );
    let (code, stderr) = finish(first);
    assert_eq!(code, 0, "{stderr}");
    assert_all_posted_once(&f, 80);
    let report = f.state().report().unwrap();
    let processes: BTreeSet<_> = report.iter().map(|r| r.attempt.process).collect();
    assert!(report.iter().all(|r| r.attempt.run == Some(1)));
    assert_eq!(processes.len(), 2, "both worked on run 1: {processes:?}");
}

#[test]
fn status_explain_report_and_stop_all_see_every_process() {
    let Some(cluster) = Cluster::for_test("status_explain_report_and_stop_all") else {
        return;
    };
    let f = Fixture::new(&many_accounts(10, 200), 20).on_postgres(&cluster);
    let url = f.store_url.clone().unwrap();
    // The schema can be put in place before any process runs.
    let migrated =
        crate::support::run(crate::support::orchestrator().args(["migrate", "--state-file", &url]));
    assert_eq!(migrated.code, 0, "{}", migrated.stderr);
    assert!(
        migrated.stderr.ends_with(&format!(
            "is at schema version {}\n",
            orchestrator_store::POSTGRES_SCHEMA_VERSION
        )),
        "{}",
        migrated.stderr
    );
    let children: Vec<Child> = (0..2)
        .map(|_| f.spawn(&["--workers", "4", "--lease", "10"]))
        .collect();
    let state = f.state();
    wait_until("attempts to be under way", || {
        attempts_recorded(&*state) > 10
    });
    let status = crate::support::run(crate::support::orchestrator().args([
        "--status",
        "--state-file",
        &url,
    ]));
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(
        status.stdout.matches("  process:").count(),
        2,
        "both processes are listed:\n{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("  last run:    #1 running, pass 1/3"),
        "one run:\n{}",
        status.stdout
    );
    let stop = crate::support::run(crate::support::orchestrator().args([
        "--stop-all",
        "--state-file",
        &url,
    ]));
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(stop.stderr.contains("Asked 2 run(s)"), "{}", stop.stderr);
    for child in children {
        let (code, stderr) = finish(child);
        assert_eq!(code, 3, "stopped: {stderr}");
    }
    let explain = crate::support::run(crate::support::orchestrator().args([
        "explain",
        "a0-1",
        "--state-file",
        &url,
    ]));
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(
        explain
            .stdout
            .starts_with("Job a0-1 (account a0): succeeded"),
        "{}",
        explain.stdout
    );
    let report = crate::support::run(crate::support::orchestrator().args([
        "report",
        "--format",
        "json",
        "--state-file",
        &url,
    ]));
    assert_eq!(report.code, 0, "{}", report.stderr);
    assert!(
        report.stdout.contains("\"job\": \"a0-1\""),
        "{}",
        report.stdout
    );
}
