//! One module per command; each has a clap `Args`/`Subcommand` type with a
//! `run` method.

pub mod plugins;
