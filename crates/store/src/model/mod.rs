//! The values that go in and out of a [`crate::Store`]: jobs ([`job`]),
//! runs, passes and processes ([`run`]), attempts ([`attempt`]) and what
//! `--status` shows ([`status`]).

mod attempt;
mod browse;
mod job;
mod run;
mod status;

pub use attempt::*;
pub use browse::*;
pub use job::*;
pub use run::*;
pub use status::*;

pub(crate) use attempt::{AttemptRow, FailureColumns};
pub(crate) use browse::page_size;
pub(crate) use status::RunRow;

/// A time or a duration (ms) as the stores keep it: a value past what a
/// column holds is kept as the largest it holds, never wrapped negative.
pub(crate) fn stored_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A stored time or duration (ms) as the host uses it: a negative one
/// (written by an older or a hostile writer) reads as 0.
pub(crate) fn read_ms(ms: i64) -> u64 {
    ms.max(0) as u64
}
