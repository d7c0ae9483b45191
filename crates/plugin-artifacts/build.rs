//! Builds every guest plugin in `plugins/` for `wasm32-wasip2` and writes
//! constants with their paths, so tests use freshly built artifacts instead of
//! checked-in binaries.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().parent().unwrap();
    let plugins = root.join("plugins");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let target_dir = out_dir.join("plugins-target");

    // The native example builds on the contract and the helper crate.
    for watched in ["plugins", "wit", "crates/contract", "crates/native-plugin"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = cargo_build(&cargo, &plugins, TARGET, &target_dir);
    let output = cmd
        .output()
        .expect("could not run cargo to build the plugins");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            panic!(
                "the {TARGET} target is missing; add it with `rustup target add {TARGET}`\n{stderr}"
            );
        }
        panic!(
            "building the plugins in {} failed:\n{stderr}",
            plugins.display()
        );
    }

    let native = build_native(&cargo, &plugins.join("native-poster"), &out_dir);

    let release = target_dir.join(TARGET).join("release");
    let mut consts = String::new();
    let mut names = Vec::new();
    for member in members(&plugins) {
        let artifact = release.join(format!("{}.wasm", member.replace('-', "_")));
        assert!(
            artifact.exists(),
            "expected {} after the build",
            artifact.display()
        );
        let ident = member.to_uppercase().replace('-', "_");
        writeln!(
            consts,
            "/// The built `{member}` plugin.\npub const {ident}: &str = {:?};",
            artifact.display().to_string()
        )
        .unwrap();
        names.push((member, ident));
    }
    writeln!(
        consts,
        "/// The built `native-poster` example: a shared library for this host.\npub const NATIVE_POSTER: &str = {:?};",
        native.display().to_string()
    )
    .unwrap();
    writeln!(consts, "/// Every built plugin, by crate name.").unwrap();
    writeln!(consts, "pub const ALL: &[(&str, &str)] = &[").unwrap();
    for (member, ident) in &names {
        writeln!(consts, "    ({member:?}, {ident}),").unwrap();
    }
    writeln!(consts, "];").unwrap();
    std::fs::write(out_dir.join("artifacts.rs"), consts).unwrap();
}

/// The plugin crates: every folder of `plugins/` with a manifest.
fn members(plugins: &Path) -> Vec<String> {
    let mut members: Vec<String> = std::fs::read_dir(plugins)
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        // Native plugins are built for the host, below.
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with("native-"))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    members.sort();
    members
}

/// Builds the native example plugin for the host; returns the library.
fn build_native(cargo: &std::ffi::OsStr, crate_dir: &Path, out_dir: &Path) -> PathBuf {
    let host = env::var("HOST").unwrap();
    let target_dir = out_dir.join("native-target");
    let mut cmd = cargo_build(cargo, crate_dir, &host, &target_dir);
    let output = cmd
        .output()
        .expect("could not run cargo to build the native plugin");
    if !output.status.success() {
        panic!(
            "building {} failed:\n{}",
            crate_dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let file = format!(
        "{}native_poster{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let library = target_dir.join(&host).join("release").join(file);
    assert!(
        library.exists(),
        "expected {} after the build",
        library.display()
    );
    library
}

/// `cargo build --release --locked` of the crate or workspace in `dir` for
/// `target`, without the host build's settings, which are not the plugins'
/// business.
fn cargo_build(cargo: &std::ffi::OsStr, dir: &Path, target: &str, target_dir: &Path) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(["build", "--release", "--locked", "--target", target])
        .arg("--target-dir")
        .arg(target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    cmd
}
