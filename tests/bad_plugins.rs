//! Every way a plugin file can be wrong gives one line that says what is
//! wrong, and a non-zero exit — never a panic or a backtrace.

use crate::support::{self, artifacts, orchestrator, run};

/// Runs `plugins inspect FILE` and returns its one error line.
fn refusal(file: &std::path::Path) -> String {
    let out = run(orchestrator().args(["plugins", "inspect"]).arg(file));
    assert_eq!(
        out.code,
        2,
        "exit code for {}: {}",
        file.display(),
        out.stderr
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{}", out.stderr);
    assert!(lines[0].starts_with("error: plugin "), "{}", lines[0]);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    lines[0].to_owned()
}

#[test]
fn a_missing_file_is_named() {
    let dir = support::temp_dir();
    let line = refusal(&dir.path().join("absent.wasm"));
    assert!(line.contains("absent.wasm: file not found"), "{line}");
}

#[test]
fn a_text_file_is_not_wasm() {
    let dir = support::temp_dir();
    let path = dir.path().join("notes.wasm");
    std::fs::write(&path, "just some text\n").unwrap();
    let line = refusal(&path);
    assert!(line.contains("not a WebAssembly file"), "{line}");
}

#[test]
fn a_core_module_is_told_to_become_a_component() {
    let dir = support::temp_dir();
    let path = support::write_wat(dir.path(), "core.wasm", "(module (func (export \"post\")))");
    let line = refusal(&path);
    assert!(
        line.contains("a core WebAssembly module, not a component"),
        "{line}"
    );
    assert!(line.contains("wasm32-wasip2"), "{line}");
}

#[test]
fn a_truncated_component_cannot_be_compiled() {
    let dir = support::temp_dir();
    let bytes = std::fs::read(artifacts::HTTP_CLASSIFIER).unwrap();
    let path = dir.path().join("truncated.wasm");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let line = refusal(&path);
    assert!(
        line.contains("the component is invalid and cannot be compiled"),
        "{line}"
    );
}

#[test]
fn a_component_of_neither_world_is_refused() {
    let dir = support::temp_dir();
    let path = support::write_wat(dir.path(), "empty.wasm", "(component)");
    let line = refusal(&path);
    assert!(
        line.contains("implements neither the poster nor the classifier world"),
        "{line}"
    );
}

#[test]
fn a_plugin_built_against_another_contract_names_both_versions() {
    let line = refusal(std::path::Path::new(artifacts::FUTURE_CLASSIFIER));
    assert!(
        line.contains("built against contract orchestrator:plugin@0.5.0"),
        "{line}"
    );
    assert!(
        line.contains("this host accepts orchestrator:plugin@^0.2.0 or ^0.3.0 or ^0.4.0"),
        "{line}"
    );
}

#[test]
fn a_plugin_built_against_an_older_contract_is_refused_too() {
    // 0.1.0 classifications had no retry scope: the shapes differ.
    let dir = support::temp_dir();
    let path = support::write_wat(dir.path(), "old.wasm", &misshapen_poster("0.1.0"));
    let line = refusal(&path);
    assert!(
        line.contains("built against contract orchestrator:plugin@0.1.0"),
        "{line}"
    );
    assert!(line.contains("rebuild the plugin"), "{line}");
}

/// A component exporting a `post` that takes nothing, and no `metadata`.
fn misshapen_poster(version: &str) -> String {
    format!(
        r#"(component
            (core module $m (func (export "post")))
            (core instance $i (instantiate $m))
            (func $post (canon lift (core func $i "post")))
            (instance $api (export "post" (func $post)))
            (export "orchestrator:plugin/post@{version}" (instance $api)))"#
    )
}

#[test]
fn a_poster_with_the_wrong_shape_fails_the_type_check() {
    // Exports the `post` interface, but `post` takes nothing and
    // `metadata` is missing: only instantiate_pre can tell.
    let dir = support::temp_dir();
    let version = orchestrator_contract::CONTRACT_VERSION.to_string();
    let path = support::write_wat(dir.path(), "misshapen.wasm", &misshapen_poster(&version));
    let line = refusal(&path);
    assert!(line.contains("does not fit the poster world"), "{line}");
}

#[test]
fn the_host_library_refuses_with_the_same_errors() {
    use orchestrator_plugin_host::{LoadError, PluginHost};
    let rt = support::runtime();
    let host = PluginHost::new().unwrap();
    let err = rt
        .block_on(host.load(std::path::Path::new(artifacts::FUTURE_CLASSIFIER)))
        .unwrap_err();
    assert!(
        matches!(err, LoadError::IncompatibleContract { .. }),
        "{err}"
    );
}

#[test]
fn a_device_is_refused_before_a_byte_is_read() {
    // Read whole, /dev/zero would never end.
    let line = refusal(std::path::Path::new("/dev/zero"));
    assert!(line.contains("/dev/zero: not a regular file"), "{line}");
}

#[test]
fn a_file_past_the_size_limit_is_refused() {
    let dir = support::temp_dir();
    let path = dir.path().join("big.wasm");
    std::fs::write(&path, vec![0u8; 2 << 20]).unwrap();
    let out = run(orchestrator()
        .args(["plugins", "inspect", "--max-plugin-size", "1"])
        .arg(&path));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("big.wasm: larger than --max-plugin-size 1 MiB"),
        "{}",
        out.stderr
    );
    // Under the default limit it is read, and refused for what it is.
    assert!(refusal(&path).contains("not a WebAssembly file"));
}

#[test]
fn a_classifier_that_imports_http_is_told_it_is_given_no_network() {
    // What componentize-js builds unless told --disable http fetch-event.
    let dir = support::temp_dir();
    let version = orchestrator_contract::CONTRACT_VERSION.to_string();
    let wat = format!(
        r#"(component
            (import "wasi:http/types@0.2.10" (instance))
            (core module $m (func (export "classify")))
            (core instance $i (instantiate $m))
            (func $classify (canon lift (core func $i "classify")))
            (instance $api (export "classify" (func $classify)))
            (export "orchestrator:plugin/classify@{version}" (instance $api)))"#
    );
    let path = support::write_wat(dir.path(), "networked.wasm", &wat);
    let line = refusal(&path);
    assert!(
        line.contains("a classifier is given no network, but it imports wasi:http/types@0.2.10; build it without HTTP (componentize-js: --disable http fetch-event)"),
        "{line}"
    );
}
