//! [`Fixture`]: a sandbox and a folder with jobs, accounts and the state
//! file, and the `orchestrator` command run in it; the batches the tests
//! share ([`MIXED`]); and [`on_postgres`], which runs the same tests with
//! their batch in a PostgreSQL database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use orchestrator_sandbox::{Sandbox, Scenario};
use orchestrator_store::{JobState, SqliteStore, Store};

use crate::support::{self, Output, artifacts, orchestrator, run};

/// One job per account; each account shows one kind of trouble.
pub const MIXED: &str = r#"
[[account]]
name = "ok1"
token = "ok1-token"

[[account]]
name = "ok2"
token = "ok2-token"

[[account]]
name = "flaky"
token = "flaky-token"
script = [{ respond = "server-error", status = 503 }]

[[account]]
name = "limited"
token = "limited-token"
script = [{ respond = "rate-limited", reset_secs = 1 }]

[[account]]
name = "broken"
token = "broken-token"
script = [{ respond = "drop-connection", times = 2 }]

[[account]]
name = "suspended"
token = "suspended-token"
then = { respond = "suspended" }

[[account]]
name = "teapot"
token = "teapot-token"
then = { respond = "server-error", status = 418 }
"#;

thread_local! {
    /// Set while scenarios run again with their batch on PostgreSQL: a
    /// fixture made on this thread gets a new database of this cluster.
    static ON_POSTGRES: std::cell::RefCell<Option<std::sync::Arc<orchestrator_pg_cluster::Cluster>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `scenarios` (tests of this module) with every fixture they make
/// keeping its batch in a new database of `cluster`.
pub fn on_postgres(
    cluster: &std::sync::Arc<orchestrator_pg_cluster::Cluster>,
    scenarios: impl FnOnce(),
) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ON_POSTGRES.with_borrow_mut(|c| *c = None);
        }
    }
    ON_POSTGRES.with_borrow_mut(|c| *c = Some(cluster.clone()));
    let _reset = Reset;
    scenarios();
}

/// A sandbox and a folder with jobs, accounts and the state file.
pub struct Fixture {
    pub sandbox: Sandbox,
    pub dir: tempfile::TempDir,
    /// The `--plugin` arguments, in order.
    pub plugins: Vec<&'static str>,
    /// A PostgreSQL store instead of the state file, when set.
    pub store_url: Option<String>,
    /// Serves the sandbox while the binary under test runs.
    pub runtime: tokio::runtime::Runtime,
}

impl Fixture {
    pub fn new(scenario: &str, jobs_per_account: usize) -> Fixture {
        let runtime = support::runtime();
        let scenario = Scenario::parse(scenario).unwrap();
        let sandbox = runtime.block_on(Sandbox::start_local(scenario)).unwrap();
        Fixture::around(runtime, sandbox, jobs_per_account)
    }

    /// Like [`Fixture::new`], with the sandbox speaking HTTPS under a fresh
    /// self-signed certificate, written to `ca.pem`.
    pub fn new_tls(scenario: &str, jobs_per_account: usize) -> Fixture {
        let runtime = support::runtime();
        let scenario = Scenario::parse(scenario).unwrap();
        let (sandbox, ca) = runtime
            .block_on(Sandbox::start_local_tls(scenario))
            .unwrap();
        let fixture = Fixture::around(runtime, sandbox, jobs_per_account);
        std::fs::write(fixture.path("ca.pem"), ca).unwrap();
        fixture
    }

    fn around(
        runtime: tokio::runtime::Runtime,
        sandbox: Sandbox,
        jobs_per_account: usize,
    ) -> Fixture {
        let names: Vec<(String, String)> = sandbox
            .scenario()
            .accounts
            .iter()
            .map(|a| (a.name.clone(), a.token.clone()))
            .collect();
        let dir = support::temp_dir();
        let mut accounts = String::new();
        let mut jobs = String::new();
        for (name, token) in &names {
            accounts.push_str(&format!(
                "[accounts.{name}]\nbase_url = \"{}\"\ntoken = \"{token}\"\n\n",
                sandbox.url()
            ));
            for i in 1..=jobs_per_account {
                jobs.push_str(&format!(
                    "{{\"id\": \"{name}-{i}\", \"account\": \"{name}\", \"payload\": {{\"status\": \"post {i} of {name}\"}}}}\n"
                ));
            }
        }
        std::fs::write(dir.path().join("accounts.toml"), accounts).unwrap();
        std::fs::write(dir.path().join("jobs.jsonl"), jobs).unwrap();
        Fixture {
            sandbox,
            dir,
            plugins: vec![artifacts::MASTODON_POSTER, artifacts::HTTP_CLASSIFIER],
            store_url: ON_POSTGRES.with_borrow(|c| c.as_ref().map(|c| c.create_database())),
            runtime,
        }
    }

    /// Replaces the jobs file.
    pub fn with_jobs(self, jobs: &str) -> Fixture {
        std::fs::write(self.path("jobs.jsonl"), jobs).unwrap();
        self
    }

    pub fn with_plugins(mut self, plugins: &[&'static str]) -> Fixture {
        self.plugins = plugins.to_vec();
        self
    }

    /// Keeps the batch in a new database of `cluster` instead of a file.
    pub fn on_postgres(mut self, cluster: &orchestrator_pg_cluster::Cluster) -> Fixture {
        self.store_url = Some(cluster.create_database());
        self
    }

    /// The store the runs use.
    pub fn state(&self) -> Box<dyn Store> {
        match &self.store_url {
            Some(url) => Box::new(
                orchestrator_store::PostgresStore::open(url, orchestrator_store::DEFAULT_LEASE)
                    .unwrap(),
            ),
            None => Box::new(open_state(&self.path("orchestrator-state.sqlite"))),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `orchestrator` in the fixture's folder with the example plugins,
    /// the files, a zero retry delay and `extra` flags.
    pub fn command(&self, extra: &[&str]) -> std::process::Command {
        let mut cmd = orchestrator();
        cmd.current_dir(self.dir.path());
        for plugin in &self.plugins {
            cmd.arg("--plugin").arg(plugin);
        }
        cmd.args(["--jobs", "jobs.jsonl", "--accounts-file", "accounts.toml"])
            .args(["--retry-delay", "0"]);
        if let Some(url) = &self.store_url {
            cmd.args(["--state-file", url]);
        }
        cmd.args(extra);
        cmd
    }

    /// `--run` as a child process, its standard error piped.
    pub fn spawn(&self, extra: &[&str]) -> std::process::Child {
        self.command(extra)
            .arg("--run")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the orchestrator binary starts")
    }

    pub fn run(&self, extra: &[&str]) -> Output {
        run(self.command(extra).arg("--run"))
    }

    /// A command that takes only the store (`cancel`, `retry`, `explain`,
    /// …), in the fixture's folder, on its store.
    pub fn tool(&self, args: &[&str]) -> Output {
        let mut cmd = orchestrator();
        cmd.current_dir(self.dir.path()).args(args);
        if let Some(url) = &self.store_url {
            cmd.args(["--state-file", url]);
        }
        run(&mut cmd)
    }

    /// The store's name in messages.
    pub fn store_name(&self) -> String {
        match &self.store_url {
            Some(url) => orchestrator_store::without_password(url),
            None => "orchestrator-state.sqlite".into(),
        }
    }

    /// Every job's final state and attempt count, by id.
    pub fn outcomes(&self) -> BTreeMap<String, (JobState, u32)> {
        self.state()
            .job_summaries()
            .unwrap()
            .into_iter()
            .map(|j| (j.id, (j.state, j.attempts)))
            .collect()
    }

    /// Passes of the newest run that ended.
    pub fn passes(&self) -> u32 {
        let state = self.state();
        let Some(run) = state.status().unwrap().last_run else {
            return 0;
        };
        match state.latest_pass(run.run).unwrap() {
            Some(mark) if mark.ended => mark.pass,
            Some(mark) => mark.pass - 1,
            None => 0,
        }
    }
}

fn open_state(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap()
}

pub fn expect(fixture: &Fixture, expected: &[(&str, JobState, u32)]) {
    let outcomes = fixture.outcomes();
    let expected: BTreeMap<String, (JobState, u32)> = expected
        .iter()
        .map(|(id, state, attempts)| (id.to_string(), (*state, *attempts)))
        .collect();
    assert_eq!(outcomes, expected);
}

/// Every status created once per job, never twice.
pub fn assert_exactly_once(fixture: &Fixture) {
    let counters = fixture.sandbox.counters();
    for (key, n) in &counters.created_by_idempotency_key {
        assert_eq!(*n, 1, "{key} created {n} statuses");
    }
    let succeeded = fixture
        .outcomes()
        .values()
        .filter(|(s, _)| *s == JobState::Succeeded)
        .count() as u64;
    assert_eq!(counters.statuses_created, succeeded);
}
