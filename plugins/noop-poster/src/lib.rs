//! A poster that reaches no platform: every attempt "posts" at once. The
//! benchmark uses it to measure what the host itself costs per attempt
//! (a fresh store, instantiation and the call), without the network.

wit_bindgen::generate!({
    world: "poster",
    path: "../../wit/0.2.0",
    // The HTTP bindings go unused, but the world imports them.
    generate_all,
});

use exports::orchestrator::plugin::{metadata, post};
use orchestrator::plugin::types::{JobContext, PluginInfo, PostFailure, Receipt};

struct NoopPoster;

impl metadata::Guest for NoopPoster {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "noop-poster".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Benchmark plugin: posts nowhere, succeeds at once".into(),
        }
    }
}

impl post::Guest for NoopPoster {
    fn post(job: JobContext) -> Result<Receipt, PostFailure> {
        Ok(Receipt {
            remote_id: job.idempotency_key,
            url: None,
        })
    }
}

export!(NoopPoster);
