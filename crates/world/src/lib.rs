//! Host-side bindings for the `orchestrator:plugin` WIT package in `wit/`.
//!
//! This crate holds only generated code: [`poster::Poster`] and
//! [`classifier::Classifier`] are the two worlds, with the shared data types
//! in [`types`] and the host logging interface in [`log`]. Everything else in
//! the host imports from here, so the WIT files are parsed in one place.

/// The `poster` world: exports `metadata` and `post`, imports `log` and
/// `wasi:http/outgoing-handler`.
pub mod poster {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "orchestrator:plugin/poster",
        imports: { default: async },
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// The `classifier` world: exports `metadata` and `classify`, imports `log`.
pub mod classifier {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "orchestrator:plugin/classifier",
        imports: { default: async },
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "orchestrator:plugin/types": crate::types,
            "orchestrator:plugin/log": crate::log,
        },
    });
}

pub use poster::orchestrator::plugin::{log, types};

/// The contract version these bindings were generated from.
pub const CONTRACT_VERSION: &str = "0.2.0";
/// The WIT package name, without a version.
pub const CONTRACT_PACKAGE: &str = "orchestrator:plugin";
