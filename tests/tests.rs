//! End-to-end tests: the plugin host, the example plugins against the
//! sandbox, and the `orchestrator` command line. One binary, one module per
//! area, so wasmtime is linked once.

mod support;

mod bad_input;
mod bad_plugins;
mod browser;
mod budgets;
mod classifier;
mod cli_batch;
mod crash;
mod dashboard;
mod dry_run;
mod fuzz;
mod hostile_platform;
mod hostile_plugins;
mod media;
mod metrics;
mod native;
mod original;
mod other_language;
mod platforms;
mod plugins_cli;
mod poster;
mod postgres;
mod run_batch;
mod runs;
mod secrets;
mod stop_and_status;
mod templates;
mod terminal;
