//! Trusted native plugins: they load only when allowed, are checked like
//! sandboxed ones before anything of theirs runs, and behave the same in a
//! run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Fixture, MIXED};

use crate::support::{self, artifacts, orchestrator, run};

/// A shared library from C source, as a C author would build one.
fn c_library(dir: &Path, name: &str, source: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).unwrap();
    let library = dir.join(format!("lib{name}.so"));
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&c)
        .status()
        .expect("a C compiler (cc), which Rust needs as its linker anyway");
    assert!(status.success());
    library
}

/// The one-line refusal of `plugins inspect --allow-native FILE`.
fn refusal(path: &Path) -> String {
    let out = run(orchestrator()
        .args(["plugins", "inspect", "--allow-native"])
        .arg(path));
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out.stderr
}

#[test]
fn a_native_plugin_is_refused_without_allow_native() {
    let f = Fixture::new("[[account]]\nname = \"a\"\ntoken = \"t\"\n", 1)
        .with_plugins(&[artifacts::NATIVE_POSTER, artifacts::HTTP_CLASSIFIER]);
    let out = f.run(&[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("pass --allow-native"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_eq!(f.sandbox.counters().requests, 0);
}

#[test]
fn a_native_library_from_another_contract_names_both_versions() {
    let dir = support::temp_dir();
    let old = c_library(
        dir.path(),
        "old",
        r#"const char *orchestrator_abi_version(void) { return "0.1.0"; }"#,
    );
    let line = refusal(&old);
    assert!(
        line.contains("built against contract orchestrator:plugin@0.1.0, but this host accepts orchestrator:plugin@^0.2.0 or ^0.3.0 or ^0.4.0"),
        "{line}"
    );
    let garbled = c_library(
        dir.path(),
        "garbled",
        r#"const char *orchestrator_abi_version(void) { return "new"; }"#,
    );
    assert!(refusal(&garbled).contains("says \"new\", not a semver version"));
}

#[test]
fn a_native_library_missing_a_symbol_is_refused_by_name() {
    let dir = support::temp_dir();
    let nothing = c_library(dir.path(), "nothing", "int unrelated(void) { return 1; }");
    assert!(refusal(&nothing).contains("has no `orchestrator_abi_version`"));
    let half = c_library(
        dir.path(),
        "half",
        r#"const char *orchestrator_abi_version(void) { return "0.2.0"; }"#,
    );
    assert!(refusal(&half).contains("has no `orchestrator_free`"));
}

#[test]
fn a_file_that_is_no_library_is_refused() {
    let dir = support::temp_dir();
    let text = dir.path().join("libtext.so");
    std::fs::write(&text, "not a library").unwrap();
    assert!(refusal(&text).contains("nor a native library"));
    let broken = dir.path().join("libbroken.so");
    std::fs::write(&broken, b"\x7fELF but nothing after").unwrap();
    assert!(refusal(&broken).contains("cannot load the native library"));
}

#[test]
fn a_pinned_hash_admits_only_that_build() {
    let f = Fixture::new("[[account]]\nname = \"a\"\ntoken = \"t\"\n", 1)
        .with_plugins(&[artifacts::NATIVE_POSTER, artifacts::HTTP_CLASSIFIER]);
    let wrong = "0".repeat(64);
    let out = f.run(&["--allow-native", "--native-sha256", &wrong]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("is not pinned"), "{}", out.stderr);
    let right = orchestrator_plugin_host::PluginHost::new()
        .unwrap()
        .file_sha256(Path::new(artifacts::NATIVE_POSTER))
        .unwrap();
    // The refusal names the flag and the hash to pin; so does inspecting it
    // without --allow-native, which needs no loading.
    assert!(
        out.stderr
            .contains(&format!("pass --native-sha256 {right}")),
        "{}",
        out.stderr
    );
    let inspect = crate::support::run(crate::support::orchestrator().args([
        "plugins",
        "inspect",
        artifacts::NATIVE_POSTER,
    ]));
    assert_eq!(inspect.code, 2, "{}", inspect.stderr);
    assert!(
        inspect
            .stderr
            .contains(&format!("--native-sha256 {right} to trust only this build")),
        "{}",
        inspect.stderr
    );
    let out = f.run(&["--allow-native", "--native-sha256", &right]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn a_native_poster_gives_the_same_outcomes_as_the_sandboxed_one() {
    let wasm = Fixture::new(MIXED, 2);
    assert_eq!(wasm.run(&[]).code, 1);
    let native = Fixture::new(MIXED, 2)
        .with_plugins(&[artifacts::NATIVE_POSTER, artifacts::HTTP_CLASSIFIER]);
    let out = native.run(&["--allow-native"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(native.outcomes(), wasm.outcomes());
    // And the same reasons, job by job.
    let reasons = |f: &Fixture| -> Vec<Option<String>> {
        let state = f.state();
        f.outcomes()
            .keys()
            .flat_map(|job| state.attempts(job).unwrap())
            .map(|a| a.category)
            .collect()
    };
    assert_eq!(reasons(&native), reasons(&wasm));
    assert_eq!(native.sandbox.counters().duplicates_prevented, 0);
}

#[test]
fn a_panicking_native_plugin_fails_the_attempt_not_the_run() {
    let f = Fixture::new("[[account]]\nname = \"a\"\ntoken = \"t\"\n", 0)
        .with_jobs(
            "{\"id\": \"boom\", \"account\": \"a\", \"payload\": {\"status\": \"x\", \"panic\": true}}\n\
             {\"id\": \"fine\", \"account\": \"a\", \"payload\": {\"status\": \"panic\"}}\n",
        )
        .with_plugins(&[artifacts::NATIVE_POSTER, artifacts::HTTP_CLASSIFIER]);
    let out = f.run(&["--allow-native", "--max-passes", "1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let boom = f.state().attempts("boom").unwrap().remove(0);
    let fault = boom.fault.expect("a host fault");
    assert_eq!(fault.kind(), "trap");
    assert!(
        fault.to_string().contains("panicked: asked to panic"),
        "{fault}"
    );
    // A status that merely says "panic" posts.
    assert_eq!(
        f.outcomes()["fine"].0,
        orchestrator_store::JobState::Succeeded
    );
}

#[test]
fn plugins_list_shows_the_native_backend_and_says_it_is_unsandboxed() {
    let dir = support::temp_dir();
    support::install(artifacts::NATIVE_POSTER, dir.path(), "libnative_poster.so");
    let list = |extra: &[&str]| {
        let out = run(orchestrator()
            .args(["plugins", "list", "--plugin-dir"])
            .arg(dir.path())
            .args(extra));
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
    };
    let allowed = list(&["--allow-native"]);
    assert!(allowed.contains("native-poster"), "{allowed}");
    assert!(allowed.contains(" native "), "{allowed}");
    assert!(
        allowed.contains("compatible (native: runs unsandboxed)"),
        "{allowed}"
    );
    let refused = list(&[]);
    assert!(refused.contains("pass --allow-native"), "{refused}");
}

#[test]
fn a_native_classifier_in_c_decides_in_a_real_run() {
    let dir = support::temp_dir();
    // Every 5xx is the instance's fault: wait a second for everyone.
    let classifier = c_library(
        dir.path(),
        "c_classifier",
        r#"
#include <stdlib.h>
#include <string.h>
const char *orchestrator_abi_version(void) { return "0.2.0"; }
static char *own(const char *text) { return strdup(text); }
char *orchestrator_describe(void) {
    return own("{\"name\":\"c-classifier\",\"version\":\"1.0.0\","
               "\"description\":\"5xx means wait\",\"kind\":\"classifier\"}");
}
char *orchestrator_classify(const char *report) {
    if (strstr(report, "\"http_status\":503"))
        return own("{\"verdict\":{\"decided\":{\"category\":\"retryable\","
                   "\"reason\":\"the C classifier says the instance is down\","
                   "\"retry_after_ms\":null,\"scope\":\"platform\"}}}");
    return own("{\"verdict\":\"no-opinion\"}");
}
void orchestrator_free(char *text) { free(text); }
"#,
    );
    let classifier: &'static str = Box::leak(classifier.display().to_string().into_boxed_str());
    let f = Fixture::new(MIXED, 1).with_plugins(&[
        artifacts::MASTODON_POSTER,
        classifier,
        artifacts::HTTP_CLASSIFIER,
    ]);
    let out = f.run(&["--allow-native"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let state = f.state();
    let flaky = state.attempts("flaky-1").unwrap().remove(0);
    assert_eq!(flaky.decided_by.as_deref(), Some("c-classifier"));
    assert_eq!(
        flaky.reason.as_deref(),
        Some("the C classifier says the instance is down")
    );
    // It had no opinion on the rest: the next classifier decided.
    let suspended = state.attempts("suspended-1").unwrap().remove(0);
    assert_eq!(suspended.decided_by.as_deref(), Some("http-classifier"));
    drop(dir);
}

#[test]
fn a_native_call_past_the_deadline_fails_that_attempt_as_a_timeout() {
    let dir = support::temp_dir();
    let slow = c_library(
        dir.path(),
        "slow",
        r#"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
const char *orchestrator_abi_version(void) { return "0.2.0"; }
char *orchestrator_describe(void) {
    return strdup("{\"name\":\"slow\",\"version\":\"1.0.0\",\"description\":\"sleeps\",\"kind\":\"poster\"}");
}
char *orchestrator_post(const char *request) {
    sleep(3);
    return strdup("{\"posted\":{\"remote_id\":\"late\",\"url\":null}}");
}
void orchestrator_free(char *text) { free(text); }
"#,
    );
    let slow: &'static str = Box::leak(slow.display().to_string().into_boxed_str());
    let f = Fixture::new("[[account]]\nname = \"a\"\ntoken = \"t\"\n", 1)
        .with_plugins(&[slow, artifacts::HTTP_CLASSIFIER]);
    let out = f.run(&["--allow-native", "--job-timeout", "1", "--max-passes", "1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let attempt = f.state().attempts("a-1").unwrap().remove(0);
    assert_eq!(attempt.fault.map(|fault| fault.kind()), Some("timeout"));
    drop(dir);
}

#[test]
fn a_native_library_changed_under_a_running_process_is_refused_not_run_stale() {
    let dir = support::temp_dir();
    let copy = dir.path().join("libposter.so");
    std::fs::copy(artifacts::NATIVE_POSTER, &copy).unwrap();
    let host = orchestrator_plugin_host::PluginHost::new()
        .unwrap()
        .with_native(orchestrator_plugin_host::NativePolicy {
            allow: true,
            sha256_pins: Vec::new(),
        });
    let runtime = support::runtime();
    let first = runtime.block_on(host.load(&copy)).unwrap();
    // The same build again is the library already loaded.
    runtime.block_on(host.load(&copy)).unwrap();
    // A new build at the same path: the loader would hand back the old
    // code, so it is refused with what to do.
    // (Written beside it and renamed over it, as an install does: the
    // loaded file's pages stay as they were.)
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes.extend_from_slice(b"a new build");
    let new = dir.path().join("libposter.so.new");
    std::fs::write(&new, bytes).unwrap();
    std::fs::rename(&new, &copy).unwrap();
    let err = match runtime.block_on(host.load(&copy)) {
        Ok(_) => panic!("a changed native library loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("changed since this process loaded it")
            && err.ends_with("restart to use the new build"),
        "{err}"
    );
    drop(first);
}

/// A C poster whose describe answers `describe` and whose post answers
/// `post`, both as C string literals.
fn c_poster(dir: &Path, name: &str, describe: &str, post: &str) -> PathBuf {
    c_library(
        dir,
        name,
        &format!(
            r#"
#include <stdlib.h>
#include <string.h>
const char *orchestrator_abi_version(void) {{ return "0.2.0"; }}
char *orchestrator_describe(void) {{ return strdup({describe}); }}
char *orchestrator_post(const char *request) {{ return strdup({post}); }}
void orchestrator_free(char *text) {{ free(text); }}
"#
        ),
    )
}

#[test]
fn a_native_plugin_that_answers_nonsense_is_refused_or_fails_its_attempt() {
    let dir = support::temp_dir();
    let describes = |name: &str| {
        format!(
            r#""{{\"name\":\"{name}\",\"version\":\"1.0.0\",\"description\":\"\",\"kind\":\"poster\"}}""#
        )
    };
    // A describe that is no description, or one without a name: refused.
    let garbled = c_poster(dir.path(), "garbled", r#""not json""#, r#""""#);
    assert!(refusal(&garbled).contains("not a description"));
    let nameless = c_poster(dir.path(), "nameless", &describes(""), r#""""#);
    assert!(refusal(&nameless).contains("it has no name"));
    // A post answer the host cannot read fails that attempt, as a fault.
    let babbling = c_poster(dir.path(), "babbling", &describes("babbler"), r#""{oops""#);
    let babbling: &'static str = Box::leak(babbling.display().to_string().into_boxed_str());
    let f = Fixture::new("[[account]]\nname = \"a\"\ntoken = \"t\"\n", 1)
        .with_plugins(&[babbling, artifacts::HTTP_CLASSIFIER]);
    let out = f.run(&["--allow-native", "--max-passes", "1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let attempt = f.state().attempts("a-1").unwrap().remove(0);
    let fault = attempt.fault.expect("a host fault");
    assert!(
        fault.to_string().contains("answered something unreadable"),
        "{fault}"
    );
    assert_eq!(f.sandbox.counters().requests, 0);
}
