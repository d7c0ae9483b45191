//! `orchestrator plugins new NAME --kind poster|classifier --lang
//! rust|python|js`: a buildable starting point for a plugin against the
//! contract this host was built from, in a new folder — the WIT files, the
//! source, the build manifest and a README with the build command. The
//! files are [`TEMPLATES`], compiled into the binary, so what it writes
//! always matches the host that wrote it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use orchestrator_contract::CONTRACT_VERSION;

use crate::exit;
use crate::output::{print, shown};

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name, as `plugins list` will show it: lower-case
    /// letters, digits and dashes, starting with a letter (e.g.
    /// `pixelfed-poster`). Also the folder it is written to.
    #[arg(value_parser = plugin_name)]
    name: String,
    /// A poster makes attempts; a classifier says what a failure was.
    #[arg(long, value_enum)]
    kind: Kind,
    /// The language of the source it starts from.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// The folder to create (default: ./NAME). It must not exist, or be
    /// empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Poster,
    Classifier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Lang {
    Rust,
    Python,
    Js,
}

/// One file of a template: where it goes, and its text with `{{name}}`,
/// `{{crate}}`, `{{kind}}` and `{{contract}}` still in it.
struct File {
    path: &'static str,
    text: &'static str,
}

macro_rules! file {
    ($path:literal, $source:literal) => {
        File {
            path: $path,
            text: include_str!($source),
        }
    };
}

/// The contract, as every template carries it.
const WIT: &[File] = &[
    file!("wit/plugin.wit", "../../../wit/plugin.wit"),
    file!("wit/deps/cli.wit", "../../../wit/deps/cli.wit"),
    file!("wit/deps/clocks.wit", "../../../wit/deps/clocks.wit"),
    file!(
        "wit/deps/filesystem.wit",
        "../../../wit/deps/filesystem.wit"
    ),
    file!("wit/deps/http.wit", "../../../wit/deps/http.wit"),
    file!("wit/deps/io.wit", "../../../wit/deps/io.wit"),
    file!("wit/deps/random.wit", "../../../wit/deps/random.wit"),
    file!("wit/deps/sockets.wit", "../../../wit/deps/sockets.wit"),
];

/// Every template's own files, by language and kind.
const TEMPLATES: &[(Lang, Kind, &[File])] = &[
    (
        Lang::Rust,
        Kind::Classifier,
        &[
            file!("Cargo.toml", "../templates/rust/Cargo.toml"),
            file!(".gitignore", "../templates/rust/gitignore"),
            file!("README.md", "../templates/rust/README.md"),
            file!("src/lib.rs", "../templates/rust/classifier/lib.rs"),
        ],
    ),
    (
        Lang::Rust,
        Kind::Poster,
        &[
            file!("Cargo.toml", "../templates/rust/Cargo.toml"),
            file!(".gitignore", "../templates/rust/gitignore"),
            file!("README.md", "../templates/rust/README.md"),
            file!("src/lib.rs", "../templates/rust/poster/lib.rs"),
            file!("src/http.rs", "../../../plugins/shared/http.rs"),
        ],
    ),
    (
        Lang::Python,
        Kind::Classifier,
        &[
            file!("README.md", "../templates/python/README.md"),
            file!("app.py", "../templates/python/classifier/app.py"),
        ],
    ),
    (
        Lang::Python,
        Kind::Poster,
        &[
            file!("README.md", "../templates/python/README.md"),
            file!("app.py", "../templates/python/poster/app.py"),
        ],
    ),
    (
        Lang::Js,
        Kind::Classifier,
        &[
            file!("README.md", "../templates/js/README.md"),
            file!(".gitignore", "../templates/js/gitignore"),
            file!("package.json", "../templates/js/classifier/package.json"),
            file!("classifier.js", "../templates/js/classifier/classifier.js"),
        ],
    ),
    (
        Lang::Js,
        Kind::Poster,
        &[
            file!("README.md", "../templates/js/README.md"),
            file!(".gitignore", "../templates/js/gitignore"),
            file!("package.json", "../templates/js/poster/package.json"),
            file!("poster.js", "../templates/js/poster/poster.js"),
        ],
    ),
];

impl NewArgs {
    pub fn run(self) -> Result<u8> {
        let Some((_, _, files)) = TEMPLATES
            .iter()
            .find(|(lang, kind, _)| *lang == self.lang && *kind == self.kind)
        else {
            unreachable!("every language has both kinds");
        };
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(&self.name));
        refuse_if_taken(&dir)?;
        let kind = match self.kind {
            Kind::Poster => "poster",
            Kind::Classifier => "classifier",
        };
        let fill = |text: &str| {
            text.replace("{{name}}", &self.name)
                .replace("{{crate}}", &self.name.replace('-', "_"))
                .replace("{{kind}}", kind)
                .replace("{{contract}}", &CONTRACT_VERSION.to_string())
        };
        let mut written = Vec::new();
        for file in WIT.iter().chain(files.iter()) {
            let path = dir.join(file.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            // The contract is copied as it is; only the sources are filled in.
            let text = if file.path.starts_with("wit/") {
                file.text.to_owned()
            } else {
                fill(file.text)
            };
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push(file.path);
        }
        let lang = match self.lang {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        };
        let mut out = format!(
            "Created {} — a {kind} in {lang}, against orchestrator:plugin@{CONTRACT_VERSION}:\n",
            shown(&dir.display().to_string())
        );
        for path in written.iter().filter(|p| !p.starts_with("wit/deps/")) {
            out.push_str(&format!("  {path}\n"));
        }
        out.push_str("  wit/deps/ (the WASI interfaces the contract uses)\n");
        out.push_str(&format!(
            "Next, in {}:\n",
            shown(&dir.display().to_string())
        ));
        for step in next_steps(self.lang, &self.name, kind) {
            out.push_str(&format!("  {step}\n"));
        }
        print(&out)?;
        Ok(exit::SUCCESS)
    }
}

/// The commands that build and check what was written.
fn next_steps(lang: Lang, name: &str, kind: &str) -> Vec<String> {
    match lang {
        Lang::Rust => vec![
            "cargo build --release --target wasm32-wasip2".into(),
            format!(
                "orchestrator plugins inspect target/wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            ),
        ],
        Lang::Python => vec![
            format!("componentize-py -d wit -w {kind} componentize app -o {name}.wasm"),
            format!("orchestrator plugins inspect {name}.wasm"),
        ],
        Lang::Js => vec![
            "npm install".into(),
            "npm run build".into(),
            format!("orchestrator plugins inspect {name}.wasm"),
        ],
    }
}

/// Never writes over anything: the folder must not exist or be empty.
fn refuse_if_taken(dir: &Path) -> Result<()> {
    let taken = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) => dir.exists(),
    };
    if taken {
        return Err(exit::Exit::new(
            exit::USAGE,
            format!(
                "{} already exists and is not empty; choose another name or --dir",
                dir.display()
            ),
        )
        .into());
    }
    Ok(())
}

/// A plugin name: what `plugins list` shows and a folder and crate name
/// can be.
fn plugin_name(text: &str) -> Result<String, String> {
    let ok = text.len() <= 64
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.ends_with('-');
    if ok {
        Ok(text.to_owned())
    } else {
        Err("use lower-case letters, digits and dashes, starting with a letter (e.g. pixelfed-poster)".into())
    }
}
