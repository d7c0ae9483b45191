//! Host-side bindings for the `orchestrator:plugin` WIT package in `wit/`.
//!
//! This crate holds only generated code: [`poster::Poster`] and
//! [`classifier::Classifier`] are the two worlds of the current contract,
//! with the shared data types in [`types`], the host logging interface in
//! [`log`] and the posters' attachments in [`media`]; [`v0_3`] and
//! [`v0_2`] hold the same two worlds of contracts 0.3.0 and 0.2.0, which
//! the host still serves. Everything else in the host imports from here, so
//! the WIT files are parsed in one place.

/// The `poster` world: exports `metadata`, `post` and `auth`, imports
/// `log`, `media` and `wasi:http/outgoing-handler`.
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

pub use poster::orchestrator::plugin::{log, media, types};

/// Contract 0.3.0, frozen in `wit/0.3.0`: today's worlds without `media`.
/// As with [`v0_2`], its data types are today's, and only its `log`
/// import (and its `auth` export's types) are its own.
pub mod v0_3 {
    /// The 0.3.0 `poster` world: `metadata`, `post` and `auth`.
    pub mod poster {
        wasmtime::component::bindgen!({
            path: "../../wit/0.3.0",
            world: "orchestrator:plugin/poster",
            imports: { default: async },
            exports: { default: async },
            require_store_data_send: true,
            with: {
                "orchestrator:plugin/types": crate::types,
                "wasi:http": wasmtime_wasi_http::p2::bindings::http,
                "wasi:io": wasmtime_wasi::p2::bindings::io,
                "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            },
        });
    }

    /// The 0.3.0 `classifier` world.
    pub mod classifier {
        wasmtime::component::bindgen!({
            path: "../../wit/0.3.0",
            world: "orchestrator:plugin/classifier",
            imports: { default: async },
            exports: { default: async },
            require_store_data_send: true,
            with: {
                "orchestrator:plugin/types": crate::types,
                "orchestrator:plugin/log": crate::v0_3::log,
            },
        });
    }

    pub use poster::orchestrator::plugin::log;
}

/// Contract 0.2.0, frozen in `wit/0.2.0`. Its data types are the same as
/// today's, field for field, so its worlds reuse [`crate::types`] (a
/// component's types are checked structurally when it is linked); only its
/// `log` import is its own, because an interface is linked under its
/// versioned name.
pub mod v0_2 {
    /// The 0.2.0 `poster` world: `metadata` and `post`, no `auth`.
    pub mod poster {
        wasmtime::component::bindgen!({
            path: "../../wit/0.2.0",
            world: "orchestrator:plugin/poster",
            imports: { default: async },
            exports: { default: async },
            require_store_data_send: true,
            with: {
                "orchestrator:plugin/types": crate::types,
                "wasi:http": wasmtime_wasi_http::p2::bindings::http,
                "wasi:io": wasmtime_wasi::p2::bindings::io,
                "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            },
        });
    }

    /// The 0.2.0 `classifier` world.
    pub mod classifier {
        wasmtime::component::bindgen!({
            path: "../../wit/0.2.0",
            world: "orchestrator:plugin/classifier",
            imports: { default: async },
            exports: { default: async },
            require_store_data_send: true,
            with: {
                "orchestrator:plugin/types": crate::types,
                "orchestrator:plugin/log": crate::v0_2::log,
            },
        });
    }

    pub use poster::orchestrator::plugin::log;
}

/// The contract version these bindings were generated from.
pub const CONTRACT_VERSION: &str = "0.4.0";
/// The WIT package name, without a version.
pub const CONTRACT_PACKAGE: &str = "orchestrator:plugin";
