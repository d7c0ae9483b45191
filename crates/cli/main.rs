//! `orchestrator`: publish batches of posts across many accounts, with
//! classified multi-pass retries and sandboxed plugins.
//!
//! This is the edge of the program: [`Cli`] holds the clap definitions, each
//! command lives in its own module under `commands/`, and this file turns a
//! command's error into one line on stderr and a documented exit code
//! ([`exit`]). It is the only place that prints.

mod commands;
mod config;
mod dashboard;
mod exit;
mod flags;
mod output;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Each attempt allocates and frees many small buffers across threads (a
/// store, an instance's tables, HTTP headers and bodies); mimalloc's
/// per-thread free lists make that a fraction of what glibc's malloc costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXAMPLES: &str = "\
Examples:
  Run a batch with 3 jobs in flight:
    orchestrator --plugin mastodon_poster.wasm --plugin http_classifier.wasm \\
      --jobs jobs.jsonl --accounts-file accounts.toml --workers 3 --run

  Custom retry settings:
    orchestrator --plugin mastodon_poster.wasm --accounts-file accounts.toml \\
      --workers 3 --max-passes 5 --retry-delay 60 --run

  Strict mode: give up on failures nobody recognised:
    orchestrator --plugin mastodon_poster.wasm --accounts-file accounts.toml --no-retry-unknown --run

  Check status (also while a run is in progress, from another terminal):
    orchestrator --status

  Stop every run on this state file:
    orchestrator --stop-all

  Take one job out of the batch, or retry one that failed:
    orchestrator cancel launch-7
    orchestrator retry launch-3

  Import jobs without running them:
    orchestrator --jobs jobs.jsonl --seed-only

Exit codes: 0 every job succeeded; 1 the run finished with jobs failed or
unfinished (or an unexpected error); 2 usage or configuration error (flags,
input files, state file, plugins); 3 stopped before finishing.";

/// Publish batches of posts across many accounts, with classified multi-pass
/// retries and sandboxed plugins.
///
/// Posting and failure classification are plugins: WebAssembly components
/// that implement the `orchestrator:plugin` contract. See `orchestrator
/// plugins list` for the plugins this host can find.
#[derive(Debug, Parser)]
#[command(
    name = "orchestrator",
    version,
    args_override_self = true,
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    log: LogArgs,

    /// Configuration file (default: orchestrator.toml in the working
    /// directory, if there is one); flags override it
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<std::path::PathBuf>,

    #[command(flatten)]
    batch: commands::batch::BatchArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Find, list and inspect plugins.
    #[command(subcommand)]
    Plugins(commands::plugins::PluginsCommand),
    /// Why did a job fail? Its whole attempt history and what happens next.
    Explain(commands::explain::ExplainArgs),
    /// Every attempt of the batch as CSV or JSON.
    Report(commands::report::ReportArgs),
    /// Cancel jobs: never attempted again (one in flight finishes first).
    Cancel(commands::cancel::CancelArgs),
    /// Make failed, cancelled or held jobs eligible again, whatever their
    /// category.
    Retry(commands::retry::RetryArgs),
    /// Bring a store's schema up to date now (it also happens on first use).
    Migrate(commands::migrate::MigrateArgs),
    /// A web UI over the store, live beside a run: the batch, accounts,
    /// failures, each job's history, and stop/retry/cancel.
    Dashboard(commands::dashboard::DashboardArgs),
    /// Shell completions (bash, zsh, fish, elvish, powershell).
    Completions(commands::completions::CompletionsArgs),
    /// The man page, in roff.
    Man,
    /// The effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print every option's value and where it came from (command line,
    /// configuration file and line, or default).
    Show,
}

/// How much the program logs, and how.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Logging")]
struct LogArgs {
    /// More log detail (-v info, -vv debug, -vvv trace); RUST_LOG or
    /// ORCHESTRATOR_LOG give full control
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log lines as text or JSON objects
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let (cli, effective) = match parse(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(error) => return fail(&error),
    };
    init_logging(&cli.log);
    let batch = &cli.batch;
    let result = match cli.command {
        // A dry run changes nothing, whatever else is asked: a command
        // beside it (`retry`, `cancel`, …) would.
        Some(_) if batch.dry_run => Err(exit::Exit::new(
            exit::USAGE,
            "--dry-run checks a --run and goes with no command (such as `retry` or `cancel`); leave one of them out",
        )
        .into()),
        Some(Command::Config(ConfigCommand::Show)) => show_config(&effective),
        Some(Command::Plugins(cmd)) => run_async(cmd.run(batch)),
        Some(Command::Explain(cmd)) => cmd.run(batch),
        Some(Command::Report(cmd)) => cmd.run(batch),
        Some(Command::Cancel(cmd)) => cmd.run(batch),
        Some(Command::Retry(cmd)) => cmd.run(batch),
        Some(Command::Migrate(cmd)) => cmd.run(batch),
        Some(Command::Dashboard(cmd)) => run_async(cmd.run(batch)),
        Some(Command::Completions(cmd)) => cmd.run(),
        Some(Command::Man) => commands::completions::man(),
        None if batch.dry_run => run_async(commands::dry_run::run(batch)),
        // The original tool's order: --seed-only wins over --run.
        None if batch.seed_only => commands::seed::run(batch),
        None if batch.run => run_async(commands::run::run(batch)),
        None if batch.status => commands::status::run(batch),
        None if batch.stop_all => commands::stop::run(batch),
        // No action: show what there is to do rather than doing nothing.
        None => Err(exit::Exit::new(
            exit::USAGE,
            "no action given; use one of --run, --status, --stop-all, --seed-only, or a command such as `plugins list` (see --help)",
        )
        .into()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => fail(&error),
    }
}

/// Parses `argv`: the command line, and beneath it the configuration file
/// for the batch actions and every command that reads the store or
/// plugins (all but `completions` and `man`); and what `config show` says
/// of each option.
fn parse(argv: Vec<OsString>) -> anyhow::Result<(Cli, config::Effective)> {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    let given = command.try_get_matches_from_mut(argv.iter().cloned())?;
    let cli = Cli::from_arg_matches(&given)?;
    if matches!(cli.command, Some(Command::Completions(_) | Command::Man)) {
        return Ok((cli, config::Effective::default()));
    }
    let file = config::ConfigFile::read(cli.config.as_deref())?;
    let matches = command.try_get_matches_from_mut(file.beneath(&given, &argv))?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let effective = file.effective(&given, &matches);
    cli.batch.platforms = file.platforms;
    let url_on_command_line =
        given.value_source("state_file") == Some(clap::parser::ValueSource::CommandLine);
    commands::batch::connect_with(&cli.batch, url_on_command_line);
    Ok((cli, effective))
}

/// Says what went wrong in one line on stderr (but help and version,
/// which clap gives as errors, go to stdout whole) and ends with the exit
/// code [`exit::code_of`] picks for it.
fn fail(error: &anyhow::Error) -> ExitCode {
    match error.downcast_ref::<clap::Error>() {
        Some(e) => print_clap_error(e),
        None => eprintln!("error: {}", exit::message_of(error)),
    }
    ExitCode::from(exit::code_of(error))
}

fn show_config(effective: &config::Effective) -> anyhow::Result<u8> {
    let mut table = output::Table::new(vec!["OPTION", "VALUE", "FROM"]);
    for (key, value, source) in &effective.values {
        table.row(vec![key.to_string(), value.clone(), source.clone()]);
    }
    let file = match &effective.file {
        Some(path) => format!("Configuration file: {}\n\n", path.display()),
        None => format!(
            "No configuration file ({} not found)\n\n",
            config::DEFAULT_CONFIG
        ),
    };
    output::print(&format!("{file}{}", table.render()))?;
    Ok(exit::SUCCESS)
}

/// Help and version go to stdout; a value a flag's parser refused is said
/// in the flag's own words (`--max-passes must be at least 1`, as the
/// original tool says it); any other parse error is clap's, on one line.
/// The retry options' heading gets its description here, as clap has no
/// place for one.
fn print_clap_error(e: &clap::Error) {
    use clap::error::ErrorKind;
    use commands::batch::{BadValue, RETRY_DESCRIPTION, RETRY_HEADING};
    use std::error::Error as _;
    match e.kind() {
        ErrorKind::DisplayHelp => {
            let help = e.render().to_string().replacen(
                &format!("{RETRY_HEADING}:\n"),
                &format!("{RETRY_HEADING}:\n  {RETRY_DESCRIPTION}\n\n"),
                1,
            );
            let _ = output::print(&help);
        }
        ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
        }
        _ => match e.source().and_then(|s| s.downcast_ref::<BadValue>()) {
            Some(bad) => eprintln!("error: {bad}"),
            None => eprintln!("{}", one_line(&e.render().to_string())),
        },
    }
}

/// clap's error as one line: its `error:` line, with any tip on the same
/// line; the usage block and the pointer to `--help` are left out (every
/// error of this program is one line).
fn one_line(rendered: &str) -> String {
    // The first paragraph is the error (a list of missing arguments goes on
    // indented below it); tips stand in paragraphs of their own.
    let mut paragraphs = rendered.split("\n\n");
    let first = paragraphs.next().unwrap_or_default();
    let mut line = first
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        line = "error: invalid command line".into();
    }
    let tips = paragraphs
        .flat_map(str::lines)
        .map(str::trim)
        .filter(|l| l.starts_with("tip:"));
    for tip in tips {
        line.push_str(&format!(" ({tip})"));
    }
    line.push_str("; see --help");
    line
}

fn run_async<F: std::future::Future<Output = anyhow::Result<u8>>>(fut: F) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(fut)
}

/// Logs go to stderr so stdout stays for results. `ORCHESTRATOR_LOG` (or
/// `RUST_LOG`) takes `tracing` filter directives (e.g. `debug`,
/// `plugin=trace`); otherwise `-v`/`-q` pick the level. Colour only on a
/// terminal, and never with `NO_COLOR` set.
fn init_logging(args: &LogArgs) {
    use std::io::IsTerminal;
    let level = match (args.quiet, args.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORCHESTRATOR_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| {
            // wasi-http warns about every refused connection; the attempt's
            // record already says it.
            tracing_subscriber::EnvFilter::new(format!("{level},wasmtime_wasi_http=error"))
        });
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_for_the_command_line_only_go_together_after_a_command() {
        // Each is marked by a group of its own, which must not make them
        // exclusive where the global flags are copied into a subcommand.
        let args = [
            "orchestrator",
            "plugins",
            "list",
            "--json",
            "--force-reseed",
            "--take-over",
            "--release-held",
        ];
        Cli::command().try_get_matches_from(args).unwrap();
    }

    #[test]
    fn a_usage_error_is_one_line() {
        let error = |args: &[&str]| {
            let e = Cli::command()
                .try_get_matches_from(std::iter::once("orchestrator").chain(args.iter().copied()))
                .unwrap_err();
            one_line(&e.render().to_string())
        };
        assert_eq!(
            error(&["--run", "--status"]),
            "error: the argument '--run' cannot be used with '--status'; see --help"
        );
        assert_eq!(
            error(&["--retry-delay", "1e12"]),
            "error: invalid value '1e12' for '--retry-delay <SECONDS>': invalid digit found in string; see --help"
        );
        assert_eq!(
            error(&["retry"]),
            "error: the following required arguments were not provided: <JOB_ID>...; see --help"
        );
        let tip = error(&["--statu"]);
        assert!(
            tip.starts_with("error: unexpected argument '--statu' found (tip: a similar argument exists: '--status')"),
            "{tip}"
        );
    }
}
