//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

mod fixture;
pub use fixture::{Fixture, MIXED, assert_exactly_once, expect, on_postgres};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use orchestrator_plugin_host::{Classifier, Plugin, PluginHost, Poster};

/// The built example and test plugins.
pub use orchestrator_plugin_artifacts as artifacts;

/// The `orchestrator` binary under test, with a clean environment for the
/// variables it reads.
pub fn orchestrator() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    cmd.env_remove("ORCHESTRATOR_PLUGIN_PATH")
        .env_remove("ORCHESTRATOR_LOG")
        .env_remove("RUST_LOG")
        // libpq's settings would change how a test's database is reached.
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        // Keep the user's data folder out of `plugins list`.
        .env("XDG_DATA_HOME", "/nonexistent-orchestrator-test-data")
        .env("HOME", "/nonexistent-orchestrator-test-home")
        // One compiled-plugin cache for the whole suite, never the user's.
        .env("ORCHESTRATOR_CACHE_DIR", test_cache_dir());
    cmd
}

/// The compiled-plugin cache the suite's commands share.
pub fn test_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("compiled-plugins")
}

/// Output of a finished command, decoded.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (given as it is built, or by reference) to its end.
pub fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
    let out = cmd
        .borrow_mut()
        .output()
        .expect("the orchestrator binary runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh temporary folder for one test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("orchestrator-test-")
        .tempdir()
        .expect("a temporary folder")
}

/// Copies a built plugin into `dir` as `name`.
pub fn install(artifact: &str, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(artifact, &to).expect("copy the plugin");
    to
}

/// Writes the WebAssembly text `wat` as a binary file.
pub fn write_wat(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).expect("valid WAT")).unwrap();
    path
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The plugin at `path`, compiled once per test binary: compiling is the
/// slow part, and each call still gets a fresh instance.
pub async fn load(path: &str) -> &'static Plugin {
    static LOADED: OnceLock<Mutex<HashMap<String, &'static Plugin>>> = OnceLock::new();
    let loaded = LOADED.get_or_init(Default::default);
    if let Some(plugin) = loaded.lock().unwrap().get(path) {
        return plugin;
    }
    let plugin = PluginHost::new()
        .unwrap()
        .load(Path::new(path))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let plugin: &'static Plugin = Box::leak(Box::new(plugin));
    *loaded
        .lock()
        .unwrap()
        .entry(path.to_owned())
        .or_insert(plugin)
}

/// A job for `account` on `base_url`, with a fixed id and key.
pub fn job(account: &str, base_url: &str) -> orchestrator_contract::JobContext {
    orchestrator_contract::JobContext {
        job_id: "j1".into(),
        account: orchestrator_contract::Account {
            name: account.into(),
            base_url: base_url.into(),
            settings: vec![],
        },
        payload: "{}".into(),
        attempt: 1,
        pass: 1,
        idempotency_key: "k".into(),
    }
}

/// Waits until `ready` holds, for at most a minute.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "gave up waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The run's log lines in `stderr` without their timestamps (a log written
/// to a file or pipe stamps every line with its time).
pub fn log_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .map(|line| match line.split_once(' ') {
            Some((stamp, rest))
                if stamp.len() == 24 && stamp.ends_with('Z') && stamp.contains('T') =>
            {
                rest
            }
            _ => line,
        })
        .collect()
}

/// The poster at `path`, loaded as [`load`] does.
pub async fn poster(path: &str) -> &'static Poster {
    load(path).await.as_poster().expect("a poster plugin")
}

/// The classifier at `path`, loaded as [`load`] does.
pub async fn classifier(path: &str) -> &'static Classifier {
    load(path)
        .await
        .as_classifier()
        .expect("a classifier plugin")
}

/// Sends `signal` (`TERM`, `INT`, …) to `child`, as an operator's `kill`.
pub fn signal(child: &std::process::Child, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {}", child.id());
}
