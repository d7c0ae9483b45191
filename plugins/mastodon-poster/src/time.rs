//! Time for rate-limit hints: the plugin's clock, and the reset times
//! Mastodon sends, read by humantime.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The UTC timestamps Mastodon sends in `X-RateLimit-Reset`
/// (`2026-11-28T20:30:00.000Z`), in milliseconds since the epoch; anything
/// else (another zone, a year past 9999, a 25th hour) is no timestamp.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339(text.trim()).ok()?;
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}
