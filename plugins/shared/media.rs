//! A job's attachments as the host serves them (contract 0.4.0's `media`
//! interface): what there is, and each file streamed into a request body
//! a piece at a time, so a poster never holds a whole file. Shared by the
//! posters that upload media, which include this file by path next to
//! `http.rs`.

use crate::http::{Write, failure};
use crate::orchestrator::plugin::media;
pub use crate::orchestrator::plugin::media::Attachment;
use crate::orchestrator::plugin::types::PostFailure;

/// Bytes asked for per `read`: the most the host serves per call.
const PIECE: u32 = 1 << 20;

/// The job's attachments, in the payload's order.
pub fn attachments() -> Vec<Attachment> {
    media::attachments()
}

/// How an attachment is named in messages: `media[0] launch.png`.
pub fn named(a: &Attachment) -> String {
    format!("media[{}] {}", a.index, a.name)
}

/// Writes all of `a` through `write`.
pub fn stream(a: &Attachment, write: &mut Write<'_>) -> Result<(), PostFailure> {
    let mut offset = 0u64;
    while offset < a.size {
        let piece = media::read(a.index, offset, PIECE)
            .map_err(|e| failure(format!("the host did not serve {}: {e:?}", named(a))))?;
        if piece.is_empty() {
            return Err(failure(format!(
                "the host served {} only up to byte {offset} of {}",
                named(a),
                a.size
            )));
        }
        offset += piece.len() as u64;
        write(&piece)?;
    }
    Ok(())
}

/// Waits `ms` milliseconds on the host's monotonic clock, blocked rather
/// than spinning (a platform still processing an upload).
#[allow(dead_code, reason = "only the Mastodon poster polls")]
pub fn sleep_ms(ms: u64) {
    crate::wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
}
