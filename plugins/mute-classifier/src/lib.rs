//! A classifier whose `describe` never returns: loading it must end at the
//! host's deadline (`--job-timeout`), in `plugins inspect` too.

wit_bindgen::generate!({
    world: "classifier",
    path: "../../wit/0.2.0",
});

use exports::orchestrator::plugin::{classify, metadata};
use orchestrator::plugin::types::{FailureReport, PluginInfo, Verdict};

struct MuteClassifier;

impl metadata::Guest for MuteClassifier {
    fn describe() -> PluginInfo {
        let mut n = 0u64;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

impl classify::Guest for MuteClassifier {
    fn classify(_report: FailureReport) -> Verdict {
        Verdict::NoOpinion
    }
}

export!(MuteClassifier);
