//! Exit codes, documented in the README's "Exit codes" table.
//!
//! Commands return `Ok(code)` for outcomes that are not errors, and an
//! error that may carry an [`Exit`] code; anything else is [`FAILURE`].

use std::process::ExitCode;

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

/// Prints `error` as one line (its cause chain joined by `: `) and returns
/// its exit code.
pub fn report(error: &anyhow::Error) -> ExitCode {
    let code = error.downcast_ref::<Exit>().map_or(FAILURE, |e| e.code);
    eprintln!("error: {error:#}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_distinct() {
        let codes = [super::SUCCESS, super::FAILURE, super::USAGE, super::STOPPED];
        let unique: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), codes.len());
    }
}
