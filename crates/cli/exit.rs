//! Exit codes, documented in the README's "Exit codes" table, and
//! [`code_of`], the one function that picks the code an error ends the
//! program with.
//!
//! Commands return `Ok(code)` for outcomes that are not errors (a run with
//! failed jobs is 1, a stopped one 3), and otherwise their errors as they
//! come, typed: [`code_of`] reads the type. [`Exit`] is for a refusal that
//! no error type says (`--seed-only needs --jobs FILE`) and carries its
//! code; anything else is [`FAILURE`].

use std::error::Error;

use orchestrator_plugin_host::LoadError;
use orchestrator_runner::{InputError, RunError};
use orchestrator_store::StoreError;

/// Everything asked for was done.
pub const SUCCESS: u8 = 0;
/// An error the program did not classify further (I/O, the engine).
pub const FAILURE: u8 = 1;
/// The command line, an input file, the state file or a plugin is wrong;
/// nothing was done.
pub const USAGE: u8 = 2;
/// The run stopped before finishing.
pub const STOPPED: u8 = 3;

/// An error with the exit code it should end the program with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Exit {
            code,
            message: message.into(),
        }
    }
}

/// The exit code of `error`: that of the first error in its cause chain
/// whose type says what it is, or [`FAILURE`]. By the README's table:
///
/// - 0: clap's help and version, which it returns as errors;
/// - 2 ([`USAGE`]): the command line (clap's errors, a flag's value out
///   of range), `orchestrator.toml`, the jobs or accounts file
///   ([`InputError`], accounts the file lacks), a batch that cannot be
///   assembled ([`orchestrator_runner::AssembleError`]), a refused plugin
///   ([`LoadError`]), and a state file that cannot be used or is held by
///   another run (see [`store_code`]);
/// - 1 ([`FAILURE`]): the rest: the store failing during the work, the
///   engine, I/O;
/// - an [`Exit`]'s own code.
pub fn code_of(error: &anyhow::Error) -> u8 {
    error.chain().find_map(code_of_one).unwrap_or(FAILURE)
}

fn code_of_one(error: &(dyn Error + 'static)) -> Option<u8> {
    if let Some(exit) = error.downcast_ref::<Exit>() {
        return Some(exit.code);
    }
    if let Some(clap) = error.downcast_ref::<clap::Error>() {
        use clap::error::ErrorKind;
        return Some(match clap.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => SUCCESS,
            _ => USAGE,
        });
    }
    if let Some(store) = error.downcast_ref::<StoreError>() {
        return Some(store_code(store));
    }
    if let Some(run) = error.downcast_ref::<RunError>() {
        return match run {
            RunError::Store(store) => Some(store_code(store)),
            other => matches!(other, RunError::UnknownAccounts(_)).then_some(USAGE),
        };
    }
    let usage = error.is::<InputError>()
        || error.is::<orchestrator_runner::AssembleError>()
        || error.is::<LoadError>()
        || error.is::<orchestrator_retry::ConfigError>()
        || error.is::<crate::config::ConfigError>()
        || error.is::<crate::commands::batch::BadValue>();
    usage.then_some(USAGE)
}

/// A store error is the operator's to settle (2) when it is about what
/// they gave or asked: a state file that cannot be opened, is read-only or
/// newer than this program, another run holding it or sharing it under
/// other settings, ids the batch does not have. The rest is the store
/// failing (1).
fn store_code(error: &StoreError) -> u8 {
    match error {
        StoreError::Open { .. }
        | StoreError::NewerSchema { .. }
        | StoreError::NotSchemaOwner { .. }
        | StoreError::NotMigrated { .. }
        | StoreError::ReadOnly { .. }
        | StoreError::Locked { .. }
        | StoreError::RunInProgress { .. }
        | StoreError::UnknownJobs(_) => USAGE,
        _ => FAILURE,
    }
}

/// `error` as one line: its cause chain joined by `: `, leaving out a
/// cause whose words its parent already printed (a typed error's message
/// often quotes its source). What an error quotes may come from a file or
/// a plugin (an account's name, a poster's): control characters are
/// escaped, so no message drives the terminal or breaks into lines.
pub fn message_of(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = orchestrator_contract::text::printable(&cause.to_string()).into_owned();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let codes = [SUCCESS, FAILURE, USAGE, STOPPED];
        let unique: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), codes.len());
    }

    #[test]
    fn the_type_of_an_error_picks_its_code() {
        let code = |e: anyhow::Error| code_of(&e);
        let open = || StoreError::Open {
            path: "s".into(),
            reason: "file is not a database".into(),
        };
        assert_eq!(code(open().into()), USAGE);
        assert_eq!(code(StoreError::Corrupt("x".into()).into()), FAILURE);
        assert_eq!(code(RunError::Store(open()).into()), USAGE);
        assert_eq!(
            code(RunError::Store(StoreError::Commit("x".into())).into()),
            FAILURE
        );
        assert_eq!(code(RunError::UnknownAccounts("a".into()).into()), USAGE);
        assert_eq!(
            code(
                InputError::Accounts {
                    path: "a.toml".into(),
                    reason: "bad".into()
                }
                .into()
            ),
            USAGE
        );
        assert_eq!(
            code(
                LoadError::NotFound {
                    path: "p.wasm".into()
                }
                .into()
            ),
            USAGE
        );
        assert_eq!(code(Exit::new(STOPPED, "x").into()), STOPPED);
        assert_eq!(code(anyhow::anyhow!("engine")), FAILURE);
        // A context put on top does not hide the type beneath.
        assert_eq!(code(anyhow::Error::from(open()).context("while x")), USAGE);
    }

    #[test]
    fn a_cause_its_parent_quotes_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e: anyhow::Error = InputError::Read {
            path: "jobs.jsonl".into(),
            source: io,
        }
        .into();
        assert_eq!(message_of(&e), "cannot read jobs.jsonl: no such file");
        let e = anyhow::anyhow!("no such file").context("--ca-file");
        assert_eq!(message_of(&e), "--ca-file: no such file");
    }

    #[test]
    fn a_message_quoting_hostile_text_stays_one_plain_line() {
        let e = anyhow::anyhow!("account \u{1b}[2Jevil names poster \"x\"\nforged: line")
            .context("cannot run");
        let line = message_of(&e);
        assert_eq!(
            line,
            "cannot run: account \\u{1b}[2Jevil names poster \"x\"\\nforged: line"
        );
        assert!(!line.contains('\u{1b}') && !line.contains('\n'));
    }
}
