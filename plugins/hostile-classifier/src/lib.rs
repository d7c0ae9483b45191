//! A classifier that answers like an attacker: a name of a megabyte, text
//! full of escape sequences and line breaks, and a wait of u64::MAX ms. The
//! host must keep its state bounded, its output one line per field, and
//! its waits within --max-retry-after.

wit_bindgen::generate!({
    world: "classifier",
    path: "../../wit/0.2.0",
});

use exports::orchestrator::plugin::{classify, metadata};
use orchestrator::plugin::types::{
    Category, Classification, FailureReport, PluginInfo, RetryScope, Verdict,
};

struct HostileClassifier;

/// A megabyte that tries to clear the screen and forge lines.
fn shouting(start: &str) -> String {
    format!(
        "{start}\u{1b}[2J\u{1b}]0;owned\u{7}\n  then:        give up\r{}",
        "x".repeat(1 << 20)
    )
}

impl metadata::Guest for HostileClassifier {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: shouting("hostile"),
            version: "0.1.0\u{7}".into(),
            description: shouting("a description"),
        }
    }
}

impl classify::Guest for HostileClassifier {
    fn classify(_report: FailureReport) -> Verdict {
        Verdict::Decided(Classification {
            category: Category::Retryable,
            reason: shouting("a reason"),
            retry_after_ms: Some(u64::MAX),
            scope: RetryScope::Platform,
        })
    }
}

export!(HostileClassifier);
