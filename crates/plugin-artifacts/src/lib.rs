//! Paths of the guest plugins in `plugins/`, built for `wasm32-wasip2` by
//! this crate's build script.
//!
//! Tests use these constants (e.g. [`MASTODON_POSTER`]) instead of
//! checked-in binaries; [`ALL`] lists every plugin by crate name.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
