//! `orchestrator plugins list` and `plugins inspect`, pinned by snapshots.

use crate::support::{self, artifacts, orchestrator, run};

/// Replaces what differs between machines and builds.
fn settings(dir: &std::path::Path) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(&regex_escape(&dir.display().to_string()), "[DIR]");
    settings.add_filter(r"[0-9a-f]{64}", "[SHA256]");
    settings.add_filter(r"\d+ bytes", "[SIZE] bytes");
    settings.add_filter(r#""size": \d+"#, r#""size": [SIZE]"#);
    // The suite shares one cache: whether a plugin was in it depends on
    // which test ran first.
    settings.add_filter(r"cached       (yes|now) \([^)]*\)", "cached       [CACHED]");
    settings
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// A plugin folder with both examples, the future-contract plugin and a
/// file that is not wasm at all.
fn plugin_dir() -> tempfile::TempDir {
    let dir = support::temp_dir();
    support::install(
        artifacts::MASTODON_POSTER,
        dir.path(),
        "mastodon-poster.wasm",
    );
    support::install(
        artifacts::HTTP_CLASSIFIER,
        dir.path(),
        "http-classifier.wasm",
    );
    support::install(
        artifacts::FUTURE_CLASSIFIER,
        dir.path(),
        "future-classifier.wasm",
    );
    std::fs::write(dir.path().join("readme.wasm"), "not a plugin").unwrap();
    std::fs::write(dir.path().join("ignored.txt"), "not a .wasm file").unwrap();
    dir
}

#[test]
fn list_shows_every_plugin_with_its_status() {
    let dir = plugin_dir();
    let cache = support::temp_dir();
    // A relative folder keeps the table's column widths machine-independent.
    let out = run(orchestrator()
        .current_dir(dir.path())
        .env("ORCHESTRATOR_CACHE_DIR", cache.path())
        .args(["plugins", "list", "--plugin-dir", "."]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    settings(dir.path()).bind(|| insta::assert_snapshot!("plugins_list", out.stdout));
}

#[test]
fn list_as_json_has_the_same_facts() {
    let dir = plugin_dir();
    let cache = support::temp_dir();
    let out = run(orchestrator()
        .env("ORCHESTRATOR_CACHE_DIR", cache.path())
        .args(["plugins", "list", "--json", "--plugin-dir"])
        .arg(dir.path()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 4);
    let compatible: Vec<&str> = records
        .iter()
        .filter(|r| r["compatible"] == true)
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(compatible, ["http-classifier", "mastodon-poster"]);
    settings(dir.path()).bind(|| insta::assert_snapshot!("plugins_list_json", out.stdout));
}

/// The CACHED column of `plugins list`, by plugin name.
fn cached_column(out: &str) -> Vec<(String, String)> {
    let header = out.lines().next().unwrap();
    let at = header.find("CACHED").unwrap();
    out.lines()
        .skip(1)
        .map(|l| {
            let name = l.split_whitespace().next().unwrap().to_string();
            let cached = l[at..].split_whitespace().next().unwrap().to_string();
            (name, cached)
        })
        .collect()
}

#[test]
fn compiled_plugins_are_cached_and_a_bad_cache_entry_is_compiled_again() {
    let dir = plugin_dir();
    std::fs::remove_file(dir.path().join("future-classifier.wasm")).unwrap();
    std::fs::remove_file(dir.path().join("readme.wasm")).unwrap();
    let cache = support::temp_dir();
    let list = |extra: &[&str]| {
        let out = run(orchestrator()
            .current_dir(dir.path())
            .env("ORCHESTRATOR_CACHE_DIR", cache.path())
            .args(["plugins", "list", "--plugin-dir", "."])
            .args(extra));
        assert_eq!(out.code, 0, "{}", out.stderr);
        cached_column(&out.stdout)
    };
    let both = |state: &str| {
        vec![
            ("http-classifier".to_string(), state.to_string()),
            ("mastodon-poster".to_string(), state.to_string()),
        ]
    };
    assert_eq!(list(&[]), both("now"), "the first load compiles and stores");
    assert_eq!(list(&[]), both("yes"), "the second load uses the cache");
    assert_eq!(list(&["--no-cache"]), both("off"));

    // Damage every entry in a different way: the plugins still load,
    // compiled afresh, and the entries are replaced.
    let mut entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let bytes = std::fs::read(&entries[0]).unwrap();
    std::fs::write(&entries[0], &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(&entries[1], b"not a compiled plugin at all").unwrap();
    assert_eq!(list(&[]), both("now"));
    assert_eq!(list(&[]), both("yes"));
}

#[test]
fn a_run_uses_the_cache_it_filled() {
    let f = crate::support::Fixture::new("[[account]]\nname = \"a\"\ntoken = \"t\"\n", 1);
    let cache = support::temp_dir();
    let out = run(f
        .command(&["-v"])
        .env("ORCHESTRATOR_CACHE_DIR", cache.path())
        .arg("--run"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stored = std::fs::read_dir(cache.path()).unwrap().count();
    assert_eq!(stored, 2, "the poster and the classifier");
    let list = run(orchestrator()
        .env("ORCHESTRATOR_CACHE_DIR", cache.path())
        .args(["plugins", "inspect", artifacts::MASTODON_POSTER]));
    assert!(list.stdout.contains("cached       yes"), "{}", list.stdout);
}

#[test]
fn list_reads_the_plugin_path_variable() {
    let dir = plugin_dir();
    let out = run(orchestrator()
        .args(["plugins", "list"])
        .env("ORCHESTRATOR_PLUGIN_PATH", dir.path()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("mastodon-poster"), "{}", out.stdout);
}

#[test]
fn list_says_where_it_looked_when_it_finds_nothing() {
    let dir = support::temp_dir();
    let out = run(orchestrator()
        .current_dir(dir.path())
        .args(["plugins", "list", "--plugin-dir"])
        .arg(dir.path()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("no plugins found; searched: "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&dir.path().display().to_string()));
}

#[test]
fn inspect_prints_what_the_host_knows() {
    let dir = plugin_dir();
    for name in ["mastodon-poster", "http-classifier"] {
        let out = run(orchestrator()
            .args(["plugins", "inspect"])
            .arg(dir.path().join(format!("{name}.wasm"))));
        assert_eq!(out.code, 0, "{}", out.stderr);
        settings(dir.path())
            .bind(|| insta::assert_snapshot!(format!("inspect_{name}"), out.stdout));
    }
}

#[test]
fn inspect_of_an_incompatible_plugin_shows_it_then_refuses() {
    let dir = plugin_dir();
    let out = run(orchestrator()
        .args(["plugins", "inspect"])
        .arg(dir.path().join("future-classifier.wasm")));
    assert_eq!(out.code, 2);
    assert!(
        out.stdout.contains("orchestrator:plugin/classify@0.5.0"),
        "{}",
        out.stdout
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn inspect_shows_what_a_poster_would_be_granted() {
    let dir = plugin_dir();
    std::fs::write(
        dir.path().join("accounts.toml"),
        "[accounts.alice]\nbase_url = \"https://social.example\"\ntoken = \"t\"\n\
         allow_hosts = [\"media.example:8443\"]\n\n\
         [accounts.bob]\nbase_url = \"http://127.0.0.1:8080\"\n\n\
         [accounts.carol]\nbase_url = \"https://bsky.example\"\nposter = \"bluesky-poster\"\n\n\
         [accounts.dave]\nbase_url = \"https://social.example\"\nposter = \"mastodon-poster\"\n",
    )
    .unwrap();
    let out = run(orchestrator()
        .current_dir(dir.path())
        .args(["plugins", "inspect", "mastodon-poster.wasm"])
        .args([
            "--accounts-file",
            "accounts.toml",
            "--allow-host",
            "cdn.example",
        ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let capabilities = out.stdout.split("capabilities:\n").nth(1).unwrap();
    assert_eq!(
        capabilities,
        "  filesystem   none\n\
         \x20 environment  none (no variables, no arguments, no stdio)\n\
         \x20 sockets      none (no TCP, UDP or name lookups)\n\
         \x20 login        accounts may use bearer, url-secret\n\
         \x20 media        its own job's attachments, read-only, as the host checked them\n\
         \x20 rate         300/5m per account (defaults; an account's own `rate` wins)\n\
         \x20 http         per account:\n\
         \x20   alice: social.example:443, cdn.example:443, media.example:8443 (bearer: token added for social.example:443 only)\n\
         \x20   bob: 127.0.0.1:8080, cdn.example:443 (bearer: no secret given)\n\
         \x20   carol: served by bluesky-poster, not this poster\n\
         \x20   dave: social.example:443, cdn.example:443 (bearer: no secret given)\n\
         \x20 limits       60 s per call, 64 MiB memory, 4 MiB per HTTP response\n"
    );
    // A classifier gets no network, whatever the accounts.
    let out = run(orchestrator().current_dir(dir.path()).args([
        "plugins",
        "inspect",
        "http-classifier.wasm",
        "--accounts-file",
        "accounts.toml",
    ]));
    assert!(
        out.stdout.contains("  http         none\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn cache_entries_unused_for_a_month_are_removed_when_another_is_stored() {
    let dir = plugin_dir();
    let cache = support::temp_dir();
    let stale = cache.path().join("0000-0000.cwasm");
    std::fs::write(&stale, "an old build").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(31 * 24 * 3600);
    std::fs::File::options()
        .append(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let recent = cache.path().join("1111-1111.cwasm");
    std::fs::write(&recent, "a build from last week").unwrap();
    let out = run(orchestrator()
        .env("ORCHESTRATOR_CACHE_DIR", cache.path())
        .args(["plugins", "list", "--plugin-dir"])
        .arg(dir.path()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!stale.exists(), "the month-old entry is gone");
    assert!(recent.exists(), "a recent one stays");
}
