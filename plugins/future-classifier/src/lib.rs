//! A classifier built against `orchestrator:plugin@0.5.0`, which this host
//! does not accept. Tests use it to check the version refusal.

wit_bindgen::generate!({
    world: "classifier",
    path: "wit",
});

use exports::orchestrator::plugin::{classify, metadata};

struct FutureClassifier;

impl metadata::Guest for FutureClassifier {
    fn describe() -> metadata::PluginInfo {
        metadata::PluginInfo {
            name: "future-classifier".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "built against a newer contract".into(),
        }
    }
}

impl classify::Guest for FutureClassifier {
    fn classify(_report_json: String) -> String {
        "unknown".into()
    }
}

export!(FutureClassifier);
