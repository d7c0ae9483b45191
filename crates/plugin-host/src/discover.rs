//! Finding plugins on the search path.
//!
//! [`SearchPath`] is the ordered list of folders `plugins list` looks in:
//! `--plugin-dir` folders first, then `ORCHESTRATOR_PLUGIN_PATH`, then
//! `./plugins` and the user's data folder. [`SearchPath::candidates`] lists
//! every `.wasm` file and every shared library (`.so`, `.dylib`, `.dll`) in
//! them; each is then examined and listed with its verdict, so broken files
//! are shown, never skipped.

use std::path::{Path, PathBuf};

/// The folders searched for plugins, in order, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchPath {
    dirs: Vec<PathBuf>,
}

impl SearchPath {
    pub fn new() -> Self {
        SearchPath::default()
    }

    /// Adds `dir` unless it is already on the path.
    pub fn push(&mut self, dir: impl Into<PathBuf>) {
        let dir = dir.into();
        if !self.dirs.contains(&dir) {
            self.dirs.push(dir);
        }
    }

    /// Adds each folder of a `:`-separated list (like `PATH`).
    pub fn push_env_list(&mut self, list: &std::ffi::OsStr) {
        for dir in std::env::split_paths(list) {
            if !dir.as_os_str().is_empty() {
                self.push(dir);
            }
        }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Every `.wasm` file directly inside the folders, in search order and
    /// sorted by name within a folder. Folders that do not exist are skipped:
    /// the defaults need not exist.
    pub fn candidates(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for dir in &self.dirs {
            found.extend(plugin_files(dir));
        }
        found
    }
}

fn plugin_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|ext| ["wasm", "so", "dylib", "dll"].iter().any(|e| ext == *e))
        })
        .collect();
    files.sort();
    files
}
