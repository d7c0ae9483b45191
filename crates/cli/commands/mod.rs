//! One module per command; each has a `run` function or method. The batch
//! actions (`--run`, `--run --dry-run`, `--status`, `--stop-all`, `--seed-only`) share the
//! flags in [`batch::BatchArgs`].

pub mod batch;
pub mod cancel;
pub mod completions;
pub mod dashboard;
pub mod dry_run;
pub mod explain;
pub mod limits;
pub mod migrate;
pub mod new_plugin;
pub mod plugins;
pub mod progress;
pub mod report;
pub mod retry;
pub mod run;
pub mod seed;
pub mod status;
pub mod stop;
pub mod takeover;
