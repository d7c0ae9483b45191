//! `orchestrator completions SHELL` and `orchestrator man`: generated from
//! the clap definitions, so they never drift from the flags.

use anyhow::Result;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::exit;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    shell: Shell,
}

impl CompletionsArgs {
    pub fn run(self) -> Result<u8> {
        let mut command = crate::Cli::command();
        let mut out = Vec::new();
        clap_complete::generate(self.shell, &mut command, "orchestrator", &mut out);
        crate::output::print(&String::from_utf8_lossy(&out))?;
        Ok(exit::SUCCESS)
    }
}

/// Writes the man page (roff) to stdout.
pub fn man() -> Result<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(crate::Cli::command()).render(&mut out)?;
    crate::output::print(&String::from_utf8_lossy(&out))?;
    Ok(exit::SUCCESS)
}
