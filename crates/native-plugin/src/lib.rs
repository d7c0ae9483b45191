//! Write a trusted native plugin in Rust.
//!
//! A native plugin is a shared library (`cdylib`) that exports the C ABI of
//! `orchestrator_contract::native`: JSON strings in and out, owned by the
//! plugin and freed through its `orchestrator_free`. Implement [`Poster`] or
//! [`Classifier`] with ordinary Rust and let [`export_poster!`] or
//! [`export_classifier!`] write the `extern "C"` functions:
//!
//! ```
//! use orchestrator_native_plugin::contract::{JobContext, PluginInfo, PostFailure, Receipt};
//!
//! struct Mine;
//!
//! impl orchestrator_native_plugin::Poster for Mine {
//!     fn describe() -> PluginInfo {
//!         PluginInfo {
//!             name: "mine".into(),
//!             version: "1.0.0".into(),
//!             description: "posts nowhere".into(),
//!         }
//!     }
//!
//!     fn post(job: JobContext, _token: Option<String>) -> Result<Receipt, PostFailure> {
//!         Ok(Receipt { remote_id: job.idempotency_key, url: None })
//!     }
//! }
//!
//! orchestrator_native_plugin::export_poster!(Mine);
//! ```
//!
//! A panic never crosses the boundary: it is caught and reported to the host
//! as a trap, which fails the attempt, not the run. Native plugins run
//! unsandboxed in the host's process, with the account's token in hand.

#![allow(unsafe_code)] // A C ABI is raw pointers by nature; each use says why it is sound.

use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

pub use orchestrator_contract as contract;
use orchestrator_contract::native::{ClassifyResponse, Description, PostRequest, PostResponse};
use orchestrator_contract::{
    FailureReport, JobContext, PluginInfo, PluginKind, PostFailure, Receipt, Verdict,
};

/// A poster: one attempt of one job.
pub trait Poster {
    fn describe() -> PluginInfo;
    /// Posts `job`. `token` is the account's bearer token for its own
    /// host (`job.account.base_url`), when it has one.
    fn post(job: JobContext, token: Option<String>) -> Result<Receipt, PostFailure>;
}

/// A classifier: a failure in, a verdict out.
pub trait Classifier {
    fn describe() -> PluginInfo;
    fn classify(report: FailureReport) -> Verdict;
}

/// The contract version this crate was built against, NUL-terminated.
/// The native ABI has not changed since 0.2.0: 0.3.0 added only the wasm
/// posters' `auth` export, and a native poster's accounts use `bearer` or
/// `url-secret` (it is handed the credential); 0.4.0 added only the wasm
/// posters' `media` import, and a native poster is given no job with
/// attachments.
pub const ABI_VERSION: &CStr = c"0.2.0";

/// Hands `value` to the host as an owned C string.
fn to_host(value: &impl serde::Serialize) -> *mut c_char {
    let json = serde_json::to_string(value)
        .unwrap_or_else(|e| format!(r#"{{"trap":"the plugin's answer did not serialize: {e}"}}"#));
    // JSON escapes NUL, so the string has no interior NUL.
    CString::new(json).unwrap_or_default().into_raw()
}

/// Reads the host's JSON argument.
///
/// # Safety
/// `input` is a NUL-terminated string the host owns for the call.
unsafe fn from_host<T: serde::de::DeserializeOwned>(input: *const c_char) -> Result<T, String> {
    if input.is_null() {
        return Err("the host passed no input".into());
    }
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    let text = unsafe { CStr::from_ptr(input) };
    serde_json::from_slice(text.to_bytes()).map_err(|e| format!("unreadable input: {e}"))
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[doc(hidden)]
pub fn __describe(info: fn() -> PluginInfo, kind: PluginKind) -> *mut c_char {
    match catch_unwind(info) {
        Ok(info) => to_host(&Description { info, kind }),
        // Not a description: the host refuses the plugin, naming the file.
        Err(_) => to_host(&serde_json::json!({ "trap": "describe panicked" })),
    }
}

#[doc(hidden)]
/// # Safety
/// `input` is a NUL-terminated string the host owns for the call.
pub unsafe fn __post<P: Poster>(input: *const c_char) -> *mut c_char {
    // SAFETY: forwarded from this function's contract.
    let request: PostRequest = match unsafe { from_host(input) } {
        Ok(request) => request,
        Err(e) => return to_host(&PostResponse::Trap(e)),
    };
    let answer = catch_unwind(AssertUnwindSafe(|| P::post(request.job, request.token)));
    to_host(&match answer {
        Ok(Ok(receipt)) => PostResponse::Posted(receipt),
        Ok(Err(failure)) => PostResponse::Failed(failure),
        Err(panic) => PostResponse::Trap(format!("panicked: {}", panic_message(&*panic))),
    })
}

#[doc(hidden)]
/// # Safety
/// `input` is a NUL-terminated string the host owns for the call.
pub unsafe fn __classify<C: Classifier>(input: *const c_char) -> *mut c_char {
    // SAFETY: forwarded from this function's contract.
    let report: FailureReport = match unsafe { from_host(input) } {
        Ok(report) => report,
        Err(e) => return to_host(&ClassifyResponse::Trap(e)),
    };
    to_host(
        &match catch_unwind(AssertUnwindSafe(|| C::classify(report))) {
            Ok(verdict) => ClassifyResponse::Verdict(verdict),
            Err(panic) => ClassifyResponse::Trap(format!("panicked: {}", panic_message(&*panic))),
        },
    )
}

#[doc(hidden)]
/// # Safety
/// `text` was returned by this library's `__post`, `__classify` or
/// `__describe` and is freed once.
pub unsafe fn __free(text: *mut c_char) {
    if !text.is_null() {
        // SAFETY: it came from `CString::into_raw` in `to_host`.
        drop(unsafe { CString::from_raw(text) });
    }
}

/// Exports the C ABI shared by both kinds.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_common {
    ($ty:ty, $trait:ident, $kind:expr) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn orchestrator_abi_version() -> *const ::std::ffi::c_char {
            $crate::ABI_VERSION.as_ptr()
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn orchestrator_describe() -> *mut ::std::ffi::c_char {
            $crate::__describe(<$ty as $crate::$trait>::describe, $kind)
        }

        /// # Safety
        /// `text` was returned by this library and is freed once.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn orchestrator_free(text: *mut ::std::ffi::c_char) {
            // SAFETY: forwarded from this function's contract.
            unsafe { $crate::__free(text) }
        }
    };
}

/// Exports `orchestrator_post` (and the common symbols) for a [`Poster`].
#[macro_export]
macro_rules! export_poster {
    ($ty:ty) => {
        $crate::__export_common!($ty, Poster, $crate::contract::PluginKind::Poster);

        /// # Safety
        /// `input` is a NUL-terminated string the host owns for the call.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn orchestrator_post(
            input: *const ::std::ffi::c_char,
        ) -> *mut ::std::ffi::c_char {
            // SAFETY: forwarded from this function's contract.
            unsafe { $crate::__post::<$ty>(input) }
        }
    };
}

/// Exports `orchestrator_classify` (and the common symbols) for a
/// [`Classifier`].
#[macro_export]
macro_rules! export_classifier {
    ($ty:ty) => {
        $crate::__export_common!($ty, Classifier, $crate::contract::PluginKind::Classifier);

        /// # Safety
        /// `input` is a NUL-terminated string the host owns for the call.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn orchestrator_classify(
            input: *const ::std::ffi::c_char,
        ) -> *mut ::std::ffi::c_char {
            // SAFETY: forwarded from this function's contract.
            unsafe { $crate::__classify::<$ty>(input) }
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_abi_version_is_one_the_host_serves() {
        let version = semver::Version::parse(super::ABI_VERSION.to_str().unwrap()).unwrap();
        assert!(orchestrator_contract::accepted_versions().matches(&version));
    }
}
