//! How much of a plugin's text the host keeps, and how it is shown.
//!
//! Everything a plugin (or, through it, a platform) says is hostile until
//! checked: [`bounded`] cuts it to a documented size before the host stores,
//! prints or logs it, and [`printable`] escapes what a terminal would act on
//! (control characters, escape sequences, line breaks, bidirectional
//! overrides) before it reaches one. JSON output keeps the bounded text
//! exact.

use std::borrow::Cow;

/// Reasons, failure messages, fault details, transport errors and log
/// lines.
pub const MESSAGE_BYTES: usize = 4096;
/// Plugin names and versions, error codes, rate-limit resets.
pub const NAME_BYTES: usize = 128;
/// Receipt ids.
pub const ID_BYTES: usize = 512;
/// Receipt URLs and plugin descriptions.
pub const URL_BYTES: usize = 2048;

/// `text` cut to at most `limit` bytes (at a character boundary), with a
/// marker saying how much was cut.
pub fn bounded(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("…[{cut} more bytes cut]"));
    text
}

/// `text` as a terminal may show it: control characters (C0, DEL, C1, so
/// escape sequences and line breaks too) and bidirectional overrides are
/// written as escapes (`\n`, `\u{1b}`), so text from outside can neither
/// forge a line nor drive the terminal.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `n` and `word`, in the singular for one: `1 job`, `2 jobs`. Every count
/// the program writes goes through here.
pub fn count(n: u64, word: &str) -> String {
    match n {
        1 => format!("1 {word}"),
        n => format!("{n} {word}s"),
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_with_a_marker() {
        assert_eq!(bounded("short".into(), 10), "short");
        assert_eq!(bounded("abcdef".into(), 4), "abcd…[2 more bytes cut]");
        // "é" is two bytes: the cut falls before it, not inside it.
        assert_eq!(bounded("aébc".into(), 2), "a…[4 more bytes cut]");
    }

    #[test]
    fn what_a_terminal_would_act_on_is_escaped() {
        assert_eq!(printable("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(
            printable("line\nthen: retry\r\u{1b}[31mred\u{7}"),
            "line\\nthen: retry\\r\\u{1b}[31mred\\u{7}"
        );
        assert_eq!(printable("\u{9b}2J \u{202e}txt"), "\\u{9b}2J \\u{202e}txt");
    }
}
