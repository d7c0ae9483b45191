//! How a flag is defined once: its value checked while clap parses
//! ([`Bounded`] and the other parsers, refusing in the original tool's
//! words with a [`BadValue`]), and marked when only the command line may
//! give it ([`CommandLineOnly`]).

use clap::Arg;
use clap::builder::TypedValueParser;

/// Marks, on a flag's definition, that only the command line gives it:
/// actions and one-off requests (`--run`, `--force-reseed`, `--take-over`,
/// …) make no sense as lasting settings, so `orchestrator.toml` refuses
/// them. Written `#[arg(..., command_line_only = true)]`.
pub trait CommandLineOnly {
    fn command_line_only(self, yes: bool) -> Self;
}

/// How the mark is kept: clap keeps no data of ours on an [`Arg`] (its
/// `ArgExt` is unstable), so a marked flag joins a group of its own,
/// `command-line-only:ID`. A group of one changes neither parsing nor
/// help. One group for all of them would not do: in each subcommand, clap
/// rebuilds it from the global flags as a group of which only one member
/// may be given.
const COMMAND_LINE_ONLY: &str = "command-line-only:";

impl CommandLineOnly for Arg {
    fn command_line_only(self, yes: bool) -> Self {
        if !yes {
            return self;
        }
        // clap takes only `'static` ids (its `string` feature is off): a
        // few bytes per marked flag, each time the command is built.
        let group: &'static str =
            Box::leak(format!("{COMMAND_LINE_ONLY}{}", self.get_id()).into_boxed_str());
        self.group(group)
    }
}

/// Whether `arg` of the built `command` is marked [`CommandLineOnly`].
pub fn is_command_line_only(command: &clap::Command, arg: &Arg) -> bool {
    let group = format!("{COMMAND_LINE_ONLY}{}", arg.get_id());
    command.get_groups().any(|g| g.get_id() == group.as_str())
}

/// A flag's value that its parser refused, in the original tool's words
/// (`--max-passes must be at least 1`): `main` prints it alone, as the
/// original did, and `config.rs` puts the file's key and line in front.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{flag} {why}")]
pub struct BadValue {
    /// `--max-passes`
    pub flag: String,
    /// `must be at least 1`
    pub why: String,
}

/// The flag's name as messages give it.
fn flag_of(arg: Option<&Arg>) -> String {
    match arg.and_then(Arg::get_long) {
        Some(long) => format!("--{long}"),
        None => arg.map(|a| a.get_id().to_string()).unwrap_or_default(),
    }
}

/// Runs `check` as clap's value parser, so that its error is clap's
/// "invalid value" error with the reason as its source: a number that is
/// no number reads as clap says it, one out of range as [`BadValue`].
fn parse_with<T: Clone + Send + Sync + 'static>(
    command: &clap::Command,
    arg: Option<&Arg>,
    value: &std::ffi::OsStr,
    check: impl Fn(&str) -> Result<T, Box<dyn std::error::Error + Send + Sync>>
    + Clone
    + Send
    + Sync
    + 'static,
) -> Result<T, clap::Error> {
    check.parse_ref(command, arg, value)
}

/// The unsigned types a [`Bounded`] flag is parsed into.
pub trait Whole: TryFrom<i64> + Clone + Send + Sync + 'static {
    /// The largest value, as the message for a larger one gives it.
    const MAX: i64;
}

impl Whole for u32 {
    const MAX: i64 = u32::MAX as i64;
}

impl Whole for u64 {
    const MAX: i64 = i64::MAX;
}

/// How a [`Bounded`] flag words a value below its minimum.
#[derive(Debug, Clone, Copy)]
enum Below {
    /// `must be at least 1`, with a unit after the number if any.
    AtLeast(&'static str),
    /// `cannot be negative`
    NotNegative,
    /// `must be from 1 to 31622400 (a year)`, above the maximum too.
    FromTo(&'static str),
}

/// The value parser of a whole-number flag: parsed as a signed number, so
/// `-1` reaches the check (with `allow_negative_numbers`), checked against
/// its range, and given as `T`.
#[derive(Debug)]
pub struct Bounded<T> {
    min: i64,
    /// The maximum and the words after it in the message.
    max: Option<(i64, &'static str)>,
    below: Below,
    into: std::marker::PhantomData<fn() -> T>,
}

// Derived, these would ask `T: Clone`.
impl<T> Clone for Bounded<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Bounded<T> {}

/// `min` or more: "must be at least {min}".
pub const fn at_least<T>(min: i64) -> Bounded<T> {
    Bounded {
        min,
        max: None,
        below: Below::AtLeast(""),
        into: std::marker::PhantomData,
    }
}

/// 0 or more: "cannot be negative".
pub const fn not_negative<T>() -> Bounded<T> {
    Bounded {
        below: Below::NotNegative,
        ..at_least(0)
    }
}

/// From `min` to `max`, both said in one message: "must be from {min} to
/// {max}{note}".
pub const fn from_to<T>(min: i64, max: i64, note: &'static str) -> Bounded<T> {
    Bounded {
        min,
        max: Some((max, note)),
        below: Below::FromTo(note),
        into: std::marker::PhantomData,
    }
}

impl<T> Bounded<T> {
    /// The unit after the minimum: "must be at least 1 second".
    pub const fn unit(self, unit: &'static str) -> Self {
        Bounded {
            below: Below::AtLeast(unit),
            ..self
        }
    }

    /// At most `max` as well: "must be at most {max}{note}".
    pub const fn at_most(self, max: i64, note: &'static str) -> Self {
        Bounded {
            max: Some((max, note)),
            ..self
        }
    }
}

impl<T: Whole> Bounded<T> {
    /// `n` as a `T`, or the words for what is wrong with it.
    fn check(self, n: i64) -> Result<T, String> {
        let (min, max) = (self.min, self.max);
        if let Below::FromTo(note) = self.below
            && let Some((max, _)) = max
            && !(min..=max).contains(&n)
        {
            return Err(format!("must be from {min} to {max}{note}"));
        }
        if n < min {
            return Err(match self.below {
                Below::NotNegative => "cannot be negative".to_string(),
                Below::AtLeast(unit) | Below::FromTo(unit) => {
                    format!("must be at least {min}{unit}")
                }
            });
        }
        let (max, note) = max.unwrap_or((T::MAX, ""));
        match T::try_from(n) {
            Ok(value) if n <= max => Ok(value),
            _ => Err(format!("must be at most {max}{note}")),
        }
    }
}

impl<T: Whole> TypedValueParser for Bounded<T> {
    type Value = T;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let (bounds, flag) = (*self, flag_of(arg));
        parse_with(command, arg, value, move |text| {
            let n: i64 = text.parse()?;
            bounds.check(n).map_err(|why| {
                BadValue {
                    flag: flag.clone(),
                    why,
                }
                .into()
            })
        })
    }
}

/// The value parser of a percentage: a number from 0 to 100.
#[derive(Debug, Clone, Copy)]
pub struct Percentage;

impl TypedValueParser for Percentage {
    type Value = f64;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<f64, clap::Error> {
        let flag = flag_of(arg);
        parse_with(command, arg, value, move |text| {
            let pct: f64 = text.parse()?;
            if !(0.0..=100.0).contains(&pct) {
                return Err(BadValue {
                    flag: flag.clone(),
                    why: "must be a percentage from 0 to 100".into(),
                }
                .into());
            }
            Ok(pct)
        })
    }
}

/// The value parser of a name in a list (`--accounts a,b`): not blank.
#[derive(Debug, Clone, Copy)]
pub struct Name;

impl TypedValueParser for Name {
    type Value = String;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let flag = flag_of(arg);
        parse_with(command, arg, value, move |text| {
            if text.trim().is_empty() {
                return Err(BadValue {
                    flag: flag.clone(),
                    why: "has an empty name".into(),
                }
                .into());
            }
            Ok(text.to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::batch::{MAX_MIB, MAX_SECONDS};

    #[test]
    fn each_range_says_what_is_wrong_in_the_original_words() {
        let why = |r: Result<u64, String>| r.unwrap_err();
        assert_eq!(
            at_least::<u32>(1).check(0).unwrap_err(),
            "must be at least 1"
        );
        assert_eq!(
            at_least::<u32>(1)
                .check(i64::from(u32::MAX) + 1)
                .unwrap_err(),
            "must be at most 4294967295"
        );
        assert_eq!(
            why(at_least(1).unit(" second").check(0)),
            "must be at least 1 second"
        );
        assert_eq!(why(not_negative().check(-1)), "cannot be negative");
        assert_eq!(not_negative::<u64>().check(0), Ok(0));
        let mib = at_least::<u64>(1).at_most(MAX_MIB, " (MiB)");
        assert_eq!(why(mib.check(0)), "must be at least 1");
        assert_eq!(why(mib.check(4097)), "must be at most 4096 (MiB)");
        assert_eq!(mib.check(4096), Ok(4096));
        let year = from_to::<u64>(1, MAX_SECONDS, " (a year)");
        for wrong in [-1, 0, MAX_SECONDS + 1] {
            assert_eq!(
                why(year.check(wrong)),
                "must be from 1 to 31622400 (a year)"
            );
        }
        assert_eq!(year.check(1), Ok(1));
    }
}
