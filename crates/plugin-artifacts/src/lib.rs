//! Paths of the guest plugins in `plugins/`, built for `wasm32-wasip2` by
//! this crate's build script.
//!
//! Tests use these constants (e.g. [`MASTODON_POSTER`]) instead of
//! checked-in binaries; [`ALL`] lists every plugin by crate name.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The command that builds `plugins/python-classifier` (a componentize-py
/// component) into `out`. It is not built with the others: componentize-py
/// is a Python tool a machine may lack, so each user decides what a
/// missing one means.
pub fn python_classifier_command(out: &std::path::Path) -> std::process::Command {
    let plugin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/python-classifier");
    let mut command = std::process::Command::new("componentize-py");
    command
        .current_dir(plugin)
        .args([
            "-d",
            "../../wit",
            "-w",
            "classifier",
            "componentize",
            "app",
            "-o",
        ])
        .arg(out);
    command
}

/// The command that builds `plugins/js-classifier` (a componentize-js
/// component) into `out`; like the Python one, it is not built with the
/// others. The tool is, in order: the path in `ORCHESTRATOR_COMPONENTIZE_JS`;
/// the one `npm install` put in `plugins/js-classifier/node_modules`; or
/// `componentize-js` on `PATH` (`npm install -g`). Not `npx --no-install`:
/// without the tool it exits with an error like any failed build, while a
/// missing tool here fails to start, which callers can tell apart.
pub fn js_classifier_command(out: &std::path::Path) -> std::process::Command {
    let plugin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/js-classifier");
    let local = plugin.join("node_modules/.bin/componentize-js");
    let tool = match std::env::var_os("ORCHESTRATOR_COMPONENTIZE_JS") {
        Some(tool) => std::path::PathBuf::from(tool),
        None if local.is_file() => local,
        None => "componentize-js".into(),
    };
    let mut command = std::process::Command::new(tool);
    command
        .current_dir(plugin)
        .args([
            "classifier.js",
            "--wit",
            // Contract 0.3.0, as its import of `log@0.3.0` says: the tests
            // keep a 0.3.0 plugin in another language in use.
            "../../wit/0.3.0",
            "--world-name",
            "classifier",
            // A classifier gets no network: without these the engine's
            // `fetch` imports wasi:http, and the host refuses the plugin.
            "--disable",
            "http",
            "fetch-event",
            "--out",
        ])
        .arg(out);
    command
}
