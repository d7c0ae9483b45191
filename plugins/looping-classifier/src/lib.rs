//! A classifier that spins forever: the host's deadline must stop it, and
//! the run must go on with the next classifier.

wit_bindgen::generate!({
    world: "classifier",
    path: "../../wit/0.2.0",
});

use exports::orchestrator::plugin::{classify, metadata};
use orchestrator::plugin::types::{FailureReport, PluginInfo, Verdict};

struct LoopingClassifier;

impl metadata::Guest for LoopingClassifier {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "looping-classifier".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test plugin: never returns from classify".into(),
        }
    }
}

impl classify::Guest for LoopingClassifier {
    fn classify(_report: FailureReport) -> Verdict {
        let mut n = 0u64;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export!(LoopingClassifier);
