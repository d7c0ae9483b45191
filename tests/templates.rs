//! `orchestrator plugins new`: every template builds with its language's
//! own tool, loads into the host as a compatible plugin of its kind, and
//! its poster posts through the host to the sandbox, with its classifier
//! asked about failures.

use std::path::{Path, PathBuf};
use std::process::Command;

use orchestrator_store::JobState::Succeeded;

use crate::support::{Fixture, orchestrator, run};

/// A folder of new plugins, and a target folder kept across test runs so
/// the Rust templates' dependencies compile once.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("templates-target");
    (crate::support::temp_dir(), target)
}

fn new_plugin(dir: &Path, name: &str, kind: &str, lang: &str) -> PathBuf {
    let out = run(orchestrator()
        .current_dir(dir)
        .args(["plugins", "new", name, "--kind", kind, "--lang", lang]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("a {kind} in")),
        "{}",
        out.stdout
    );
    dir.join(name)
}

/// `cargo build --release --target wasm32-wasip2` in a new Rust plugin, as
/// its README says; offline, from the crates the example plugins fetched.
fn build_rust(project: &Path, target: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(project)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--offline",
            "--quiet",
        ])
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = project
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .replace('-', "_");
    target.join(format!("wasm32-wasip2/release/{name}.wasm"))
}

/// componentize-py in a new Python plugin, as its README says; `None` when
/// it is missing outside CI (said loudly).
fn build_python(project: &Path, kind: &str) -> Option<PathBuf> {
    let name = project.file_name().unwrap().to_str().unwrap();
    let wasm = project.join(format!("{name}.wasm"));
    let status = Command::new("componentize-py")
        .current_dir(project)
        .args(["-d", "wit", "-w", kind, "componentize", "app", "-o"])
        .arg(&wasm)
        .status();
    match status {
        Ok(s) if s.success() => Some(wasm),
        Ok(s) => panic!("componentize-py failed ({s}) on the {kind} template"),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("\n*** SKIPPED: the Python templates need componentize-py ({e}) ***\n");
            None
        }
        Err(e) => panic!("componentize-py is missing in CI ({e}); .ci/run installs it"),
    }
}

/// `npm run build` in a new JavaScript plugin: the build script of its
/// package.json, run with componentize-js (`ORCHESTRATOR_COMPONENTIZE_JS`,
/// or on PATH) rather than through npm, which would fetch it first.
/// `None` when it is missing outside CI (said loudly).
fn build_js(project: &Path) -> Option<PathBuf> {
    let package: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("package.json")).unwrap())
            .unwrap();
    let script = package["scripts"]["build"].as_str().unwrap().to_owned();
    let mut words = script.split_whitespace();
    assert_eq!(words.next(), Some("componentize-js"), "{script}");
    let tool = std::env::var_os("ORCHESTRATOR_COMPONENTIZE_JS")
        .unwrap_or_else(|| "componentize-js".into());
    let status = Command::new(tool).current_dir(project).args(words).status();
    let name = project.file_name().unwrap().to_str().unwrap();
    match status {
        Ok(s) if s.success() => Some(project.join(format!("{name}.wasm"))),
        Ok(s) => panic!("componentize-js failed ({s}) on {}", project.display()),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "\n*** SKIPPED: the JavaScript templates need componentize-js ({e}); \
                 npm install -g @bytecodealliance/componentize-js ***\n"
            );
            None
        }
        Err(e) => panic!("componentize-js is missing in CI ({e}); .ci/run installs it"),
    }
}

fn inspect(wasm: &Path) -> serde_json::Value {
    let out = run(orchestrator()
        .arg("plugins")
        .arg("inspect")
        .arg(wasm)
        .arg("--json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn assert_compatible(wasm: &Path, name: &str, kind: &str) {
    let record = inspect(wasm);
    assert_eq!(record["name"], name);
    assert_eq!(record["kind"], kind);
    assert_eq!(
        record["contract"],
        orchestrator_contract::CONTRACT_VERSION.to_string()
    );
}

/// Each account is posted by one new poster, its first attempt rate
/// limited so that `classifier` (the first given) decides about it.
fn post_with(posters: &[(&str, &str, &Path)], classifier: &Path) {
    let mut scenario = String::new();
    for (account, _, _) in posters {
        scenario.push_str(&format!(
            "[[account]]\nname = \"{account}\"\ntoken = \"{account}-token\"\nscript = [{{ respond = \"rate-limited\", reset_secs = 0 }}]\n"
        ));
    }
    let f = Fixture::new(&scenario, 0);
    let (mut accounts, mut jobs) = (String::new(), String::new());
    let mut cmd = orchestrator();
    cmd.current_dir(f.dir.path());
    for (account, name, wasm) in posters {
        accounts.push_str(&format!(
            "[accounts.{account}]\nbase_url = \"{}\"\ntoken = \"{account}-token\"\nposter = \"{name}\"\n",
            f.sandbox.url()
        ));
        for i in 1..=2 {
            jobs.push_str(&format!(
                "{{\"id\": \"{account}-{i}\", \"account\": \"{account}\", \"payload\": {{\"text\": \"post {i} of {account}\"}}}}\n"
            ));
        }
        cmd.arg("--plugin").arg(wasm);
    }
    cmd.arg("--plugin").arg(classifier);
    std::fs::write(f.path("accounts.toml"), accounts).unwrap();
    std::fs::write(f.path("jobs.jsonl"), jobs).unwrap();
    let out = run(cmd
        .args(["--jobs", "jobs.jsonl", "--accounts-file", "accounts.toml"])
        .args(["--retry-delay", "0", "--run"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        f.sandbox.counters().statuses_created,
        2 * posters.len() as u64
    );
    assert!(f.outcomes().values().all(|(state, _)| *state == Succeeded));
    for (account, _, _) in posters {
        let explain = f.tool(&["explain", &format!("{account}-1")]);
        assert!(
            explain.stdout.contains("the account is rate limited"),
            "the new classifier decided: {}",
            explain.stdout
        );
    }
}

#[test]
fn rust_templates_build_load_and_post() {
    let (dir, target) = workspace();
    let poster = new_plugin(dir.path(), "tmpl-poster", "poster", "rust");
    let classifier = new_plugin(dir.path(), "tmpl-classifier", "classifier", "rust");
    let poster = build_rust(&poster, &target);
    let classifier = build_rust(&classifier, &target);
    assert_compatible(&poster, "tmpl-poster", "poster");
    assert_compatible(&classifier, "tmpl-classifier", "classifier");
    post_with(&[("rusty", "tmpl-poster", &poster)], &classifier);
}

#[test]
fn python_templates_build_load_and_post() {
    let (dir, _) = workspace();
    let poster = new_plugin(dir.path(), "py-poster", "poster", "python");
    let classifier = new_plugin(dir.path(), "py-classifier", "classifier", "python");
    let Some(poster) = build_python(&poster, "poster") else {
        return;
    };
    let Some(classifier) = build_python(&classifier, "classifier") else {
        return;
    };
    assert_compatible(&poster, "py-poster", "poster");
    assert_compatible(&classifier, "py-classifier", "classifier");
    post_with(&[("snake", "py-poster", &poster)], &classifier);
}

#[test]
fn javascript_templates_build_load_and_post() {
    let (dir, _) = workspace();
    let poster = new_plugin(dir.path(), "js-poster", "poster", "js");
    let classifier = new_plugin(dir.path(), "js-classifier", "classifier", "js");
    let Some(poster) = build_js(&poster) else {
        return;
    };
    let Some(classifier) = build_js(&classifier) else {
        return;
    };
    assert_compatible(&poster, "js-poster", "poster");
    assert_compatible(&classifier, "js-classifier", "classifier");
    post_with(&[("script", "js-poster", &poster)], &classifier);
}

#[test]
fn a_new_plugin_never_writes_over_a_folder() {
    let dir = crate::support::temp_dir();
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/keep.txt"), "mine").unwrap();
    let out = run(orchestrator()
        .current_dir(dir.path())
        .args(["plugins", "new", "taken", "--kind", "poster"]));
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr.trim(),
        "error: taken already exists and is not empty; choose another name or --dir"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("taken")).unwrap().count(),
        1
    );
    let out = run(orchestrator()
        .current_dir(dir.path())
        .args(["plugins", "new", "Bad Name", "--kind", "poster"]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("use lower-case letters, digits and dashes"),
        "{}",
        out.stderr
    );
}
