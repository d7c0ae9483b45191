//! The throughput chart: attempts per bucket as an inline SVG of stacked
//! bars (succeeded under failed), drawn on the server — no script, no CDN.

use maud::{Markup, html};
use orchestrator_store::Throughput;

const WIDTH: u64 = 720;
const HEIGHT: u64 = 120;

/// `buckets` (oldest first, empty ones left out) over the `count` buckets
/// of `bucket_ms` that end at `end_ms`.
pub fn throughput(buckets: &[Throughput], end_ms: u64, bucket_ms: u64, count: u64) -> Markup {
    let start_ms = end_ms.saturating_sub(bucket_ms * count);
    let highest = buckets
        .iter()
        .map(|b| b.succeeded + b.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let bar = WIDTH / count.max(1);
    let scale = |n: u64| n * (HEIGHT - 14) / highest;
    html! {
        svg.chart width=(WIDTH) height=(HEIGHT) viewBox=(format!("0 0 {WIDTH} {HEIGHT}"))
            role="img" aria-label="attempts per minute" {
            @for b in buckets.iter().filter(|b| b.start_ms >= start_ms) {
                @let x = (b.start_ms - start_ms) / bucket_ms.max(1) * bar;
                @let (s, f) = (scale(b.succeeded), scale(b.failed));
                rect.s x=(x) y=(HEIGHT - s) width=(bar.saturating_sub(1).max(1)) height=(s) {
                    title { (b.succeeded) " succeeded" }
                }
                rect.f x=(x) y=(HEIGHT - s - f) width=(bar.saturating_sub(1).max(1)) height=(f) {
                    title { (b.failed) " failed" }
                }
            }
            text x="2" y="10" { (highest) " per minute" }
        }
    }
}
