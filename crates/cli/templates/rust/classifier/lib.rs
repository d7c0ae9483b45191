//! {{name}}: a classifier for the orchestrator. It is asked about every
//! failed attempt (after the classifiers given before it) and either
//! decides its category or has no opinion, so the next one decides.
//!
//! Build: cargo build --release --target wasm32-wasip2
//! Check: orchestrator plugins inspect target/wasm32-wasip2/release/{{crate}}.wasm

wit_bindgen::generate!({ world: "classifier", path: "wit" });

use exports::orchestrator::plugin::{classify, metadata};
use orchestrator::plugin::types::{
    Category, Classification, FailureReport, PluginInfo, RetryScope, Verdict,
};

struct Plugin;

impl metadata::Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Classifies failures of … (say what it knows)".into(),
        }
    }
}

impl classify::Guest for Plugin {
    fn classify(report: FailureReport) -> Verdict {
        let Some(failure) = report.failure else {
            // No answer from the platform: the host's own rules know
            // timeouts and connection errors.
            return Verdict::NoOpinion;
        };
        match (failure.http_status, failure.error_code.as_deref()) {
            // An example rule: replace it with what your platform says.
            (Some(429), _) => Verdict::Decided(Classification {
                category: Category::Retryable,
                reason: "the account is rate limited".into(),
                retry_after_ms: failure.retry_after_ms,
                scope: RetryScope::Account,
            }),
            _ => Verdict::NoOpinion,
        }
    }
}

export!(Plugin);
