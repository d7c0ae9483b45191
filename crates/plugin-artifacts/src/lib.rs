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
