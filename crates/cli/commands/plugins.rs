//! `orchestrator plugins list` and `orchestrator plugins inspect`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use orchestrator_contract::{CONTRACT_PACKAGE, accepted_versions};
use orchestrator_plugin_host::discover::SearchPath;
use orchestrator_plugin_host::{Examined, PluginHost};
use serde::Serialize;

use crate::exit::{self, Exit};
use crate::output::{Table, print, print_json};

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the plugins on the search path, with why any cannot be used.
    ///
    /// Searched, in order: each --plugin-dir, the folders in
    /// ORCHESTRATOR_PLUGIN_PATH (separated like PATH), ./plugins, and the
    /// user's data folder (e.g. ~/.local/share/orchestrator/plugins).
    List(ListArgs),
    /// Print everything the host knows about one plugin file.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also search this folder (repeatable); searched before the defaults.
    #[arg(long = "plugin-dir", value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,

    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The plugin file (.wasm).
    file: PathBuf,

    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl PluginsCommand {
    pub async fn run(self) -> Result<u8> {
        match self {
            PluginsCommand::List(args) => list(args).await,
            PluginsCommand::Inspect(args) => inspect(args).await,
        }
    }
}

fn search_path(extra: &[PathBuf]) -> SearchPath {
    let mut path = SearchPath::new();
    for dir in extra {
        path.push(dir);
    }
    if let Some(list) = std::env::var_os("ORCHESTRATOR_PLUGIN_PATH") {
        path.push_env_list(&list);
    }
    path.push("plugins");
    if let Some(dirs) = directories::ProjectDirs::from("", "", "orchestrator") {
        path.push(dirs.data_dir().join("plugins"));
    }
    path
}

/// One plugin as `plugins list --json` and `plugins inspect --json` show it.
#[derive(Debug, Serialize)]
struct PluginRecord {
    name: String,
    version: Option<String>,
    description: Option<String>,
    kind: Option<String>,
    contract: Option<String>,
    backend: &'static str,
    compatible: bool,
    /// Why the host refuses it, when it does.
    reason: Option<String>,
    path: PathBuf,
    sha256: Option<String>,
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    imports: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exports: Option<Vec<String>>,
}

impl PluginRecord {
    fn from_examined(e: &Examined, with_interfaces: bool) -> Self {
        let stem = e
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let interfaces = e.interfaces.as_ref().filter(|_| with_interfaces);
        let mut record = PluginRecord {
            name: stem,
            version: None,
            description: None,
            kind: e.kind.map(|k| k.to_string()),
            contract: e.contract.as_ref().map(|v| v.to_string()),
            backend: "wasm",
            compatible: e.outcome.is_ok(),
            reason: e.outcome.as_ref().err().map(|err| err.reason()),
            path: e.path.clone(),
            sha256: e.sha256.clone(),
            size: e.size,
            imports: interfaces.map(|i| i.imports.clone()),
            exports: interfaces.map(|i| i.exports.clone()),
        };
        if let Ok(plugin) = &e.outcome {
            let info = plugin.info();
            record.name = info.name.clone();
            record.version = Some(info.version.clone());
            record.description = Some(info.description.clone());
        }
        record
    }
}

fn dash(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".into())
}

async fn list(args: ListArgs) -> Result<u8> {
    let host = PluginHost::new()?;
    let search = search_path(&args.plugin_dirs);
    let mut records = Vec::new();
    for path in search.candidates() {
        records.push(PluginRecord::from_examined(
            &host.examine(&path).await,
            false,
        ));
    }
    if args.json {
        print_json(&records)?;
        return Ok(exit::SUCCESS);
    }
    if records.is_empty() {
        let dirs: Vec<String> = search
            .dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        print(&format!(
            "no plugins found; searched: {}\nadd a folder with --plugin-dir DIR or ORCHESTRATOR_PLUGIN_PATH\n",
            dirs.join(", ")
        ))?;
        return Ok(exit::SUCCESS);
    }
    let mut table = Table::new(vec![
        "NAME", "VERSION", "KIND", "CONTRACT", "BACKEND", "PATH", "STATUS",
    ]);
    for r in &records {
        table.row(vec![
            r.name.clone(),
            dash(&r.version),
            dash(&r.kind),
            dash(&r.contract),
            r.backend.to_string(),
            r.path.display().to_string(),
            match &r.reason {
                None => "compatible".to_string(),
                Some(reason) => format!("refused: {reason}"),
            },
        ]);
    }
    print(&table.render())?;
    Ok(exit::SUCCESS)
}

async fn inspect(args: InspectArgs) -> Result<u8> {
    let host = PluginHost::new()?;
    let examined = host.examine(&args.file).await;
    let record = PluginRecord::from_examined(&examined, true);
    // A file that is not even a component has nothing to show but the error.
    if examined.interfaces.is_some() {
        if args.json {
            print_json(&record)?;
        } else {
            print(&render_inspect(&record))?;
        }
    }
    match examined.outcome {
        Ok(_) => Ok(exit::SUCCESS),
        Err(e) => Err(Exit::new(exit::USAGE, e.to_string()).into()),
    }
}

fn render_inspect(r: &PluginRecord) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key:<13}{value}\n"));
    line("name", r.name.clone());
    line("version", dash(&r.version));
    line("description", dash(&r.description));
    line("kind", dash(&r.kind));
    line(
        "contract",
        format!(
            "{CONTRACT_PACKAGE}@{} (this host accepts {})",
            dash(&r.contract),
            accepted_versions()
        ),
    );
    line(
        "status",
        match &r.reason {
            None => "compatible".into(),
            Some(reason) => format!("refused: {reason}"),
        },
    );
    line("backend", format!("{} (sandboxed)", r.backend));
    line("path", r.path.display().to_string());
    line(
        "size",
        r.size.map(|s| format!("{s} bytes")).unwrap_or_default(),
    );
    line("sha256", dash(&r.sha256));
    for (title, names) in [("imports", &r.imports), ("exports", &r.exports)] {
        let names = names.as_deref().unwrap_or_default();
        out.push_str(&format!("{title} ({}):\n", names.len()));
        for name in names {
            out.push_str(&format!("  {name}\n"));
        }
    }
    out
}
