//! [`Native`]: trusted plugins in shared libraries, through the C ABI of
//! `orchestrator_contract::native`.
//!
//! A native plugin runs in the host's process with the host's rights, so it
//! loads only when the user allowed native plugins ([`NativePolicy`]), and,
//! when the policy pins hashes, only a build whose SHA-256 is pinned. The
//! contract version is read and checked before any other symbol is touched.
//! Libraries are never unloaded: code a call may still run stays mapped.
//! Calls run on blocking threads under the same deadline as sandboxed ones;
//! a call past it is reported as a timeout (the thread cannot be stopped).

#![allow(unsafe_code)] // Loading a library and calling it are unsafe by nature; see each SAFETY note.

use std::ffi::{CStr, CString, c_char};
use std::path::Path;
use std::time::Duration;

use orchestrator_contract::native::{
    CLASSIFY_SYMBOL, ClassifyResponse, DESCRIBE_SYMBOL, Description, FREE_SYMBOL, POST_SYMBOL,
    PostRequest, PostResponse, VERSION_SYMBOL,
};
use orchestrator_contract::{
    FailureReport, HostFault, JobContext, PluginKind, PostFailure, Receipt, Verdict,
};

use crate::{Interfaces, LoadError, OutboundAccess, inspect};

/// Whether native plugins may load, and which builds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativePolicy {
    /// `--allow-native`: without it, a native library is refused unloaded.
    pub allow: bool,
    /// When not empty, only libraries with one of these SHA-256s load.
    pub sha256_pins: Vec<String>,
}

type Call = unsafe extern "C" fn(*const c_char) -> *mut c_char;
type Free = unsafe extern "C" fn(*mut c_char);

/// A loaded native plugin's entry points.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Native {
    call: Call,
    free: Free,
}

/// What a file's first bytes say it is.
pub(crate) fn is_native_library(bytes: &[u8]) -> bool {
    const MAGICS: [&[u8]; 6] = [
        b"\x7fELF",
        b"MZ",
        &[0xfe, 0xed, 0xfa, 0xce],
        &[0xfe, 0xed, 0xfa, 0xcf],
        &[0xce, 0xfa, 0xed, 0xfe],
        &[0xcf, 0xfa, 0xed, 0xfe],
    ];
    MAGICS.iter().any(|magic| bytes.starts_with(magic))
}

/// The libraries this process loaded, by canonical path, with the SHA-256
/// of the build it loaded.
static LOADED: std::sync::Mutex<std::collections::BTreeMap<std::path::PathBuf, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Everything learned while loading a native library.
pub(crate) struct Loaded {
    pub native: Native,
    pub kind: PluginKind,
    pub contract: semver::Version,
    pub info: orchestrator_contract::PluginInfo,
    pub interfaces: Interfaces,
}

/// Checks the policy, loads the library, checks its contract version, and
/// reads what it is.
pub(crate) fn load(
    path: &Path,
    sha256: &str,
    policy: &NativePolicy,
    seen_contract: &mut Option<semver::Version>,
    seen_kind: &mut Option<PluginKind>,
) -> Result<Loaded, LoadError> {
    let path_buf = path.to_owned();
    if !policy.allow {
        return Err(LoadError::NativeNotAllowed {
            path: path_buf,
            sha256: sha256.to_owned(),
        });
    }
    if !policy.sha256_pins.is_empty() && !policy.sha256_pins.iter().any(|p| p == sha256) {
        return Err(LoadError::NativeNotPinned {
            path: path_buf,
            sha256: sha256.to_owned(),
        });
    }
    // The dynamic loader hands back the library already loaded from a
    // path, whatever the file now holds: a changed build would go on
    // running the old code under the new one's hash. Refuse it instead.
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path_buf.clone());
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if loaded.get(&key).is_some_and(|sha| sha != sha256) {
        return Err(LoadError::NativeChanged { path: path_buf });
    }
    // SAFETY: loading runs the library's initialisers with the host's
    // rights; the user vouched for it with --allow-native (and the pin).
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| LoadError::NativeOpen {
        path: path_buf.clone(),
        reason: e.to_string(),
    })?;
    loaded.insert(key, sha256.to_owned());
    drop(loaded);
    // Never unloaded: a timed-out call may still be running its code.
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    let symbol = |name: &'static str| -> Result<*mut std::ffi::c_void, LoadError> {
        // SAFETY: only the address is read here; it is typed at its use.
        unsafe { library.get::<*mut std::ffi::c_void>(name.as_bytes()) }
            .map(|s| *s)
            .map_err(|_| LoadError::NativeSymbol {
                path: path_buf.clone(),
                symbol: name,
            })
    };

    let version_fn = symbol(VERSION_SYMBOL)?;
    // SAFETY: the ABI declares `const char *orchestrator_abi_version(void)`
    // returning a static NUL-terminated string.
    let version_text = unsafe {
        let f: unsafe extern "C" fn() -> *const c_char = std::mem::transmute(version_fn);
        let text = f();
        if text.is_null() {
            String::new()
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        }
    };
    let version =
        semver::Version::parse(version_text.trim()).map_err(|_| LoadError::NativeVersion {
            path: path_buf.clone(),
            found: version_text.clone(),
        })?;
    *seen_contract = Some(version.clone());
    let contract = inspect::check_version(path, Some(&version))?;

    // SAFETY: the ABI declares these signatures; the version check above
    // says the library implements this ABI.
    let free: Free = unsafe { std::mem::transmute(symbol(FREE_SYMBOL)?) };
    let describe: unsafe extern "C" fn() -> *mut c_char =
        unsafe { std::mem::transmute(symbol(DESCRIBE_SYMBOL)?) };
    // SAFETY: `describe` returns a string of the library's, freed by its `free`.
    let described = unsafe { take(describe(), free) };
    let description: Description =
        serde_json::from_str(&described).map_err(|_| LoadError::Describe {
            path: path_buf.clone(),
            reason: format!("it answered {described:?}, not a description"),
        })?;
    *seen_kind = Some(description.kind);
    let entry = match description.kind {
        PluginKind::Poster => POST_SYMBOL,
        PluginKind::Classifier => CLASSIFY_SYMBOL,
    };
    // SAFETY: as above.
    let call: Call = unsafe { std::mem::transmute(symbol(entry)?) };
    Ok(Loaded {
        native: Native { call, free },
        kind: description.kind,
        contract,
        info: description.info,
        interfaces: Interfaces {
            imports: vec![],
            exports: [VERSION_SYMBOL, DESCRIBE_SYMBOL, entry, FREE_SYMBOL]
                .map(String::from)
                .to_vec(),
        },
    })
}

/// Copies a string the library returned, then frees it with its `free`.
///
/// # Safety
/// `text` is null or a NUL-terminated string the library handed over.
unsafe fn take(text: *mut c_char, free: Free) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: per this function's contract.
    let copy = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: the string is the library's and is freed once, here.
    unsafe { free(text) };
    copy
}

impl Native {
    /// One call with `input` as JSON, on a blocking thread, under `deadline`.
    async fn call(self, input: String, deadline: Duration) -> Result<String, HostFault> {
        let input = CString::new(input)
            .map_err(|_| HostFault::Trap("the request held a NUL byte".into()))?;
        let task = tokio::task::spawn_blocking(move || {
            // SAFETY: the entry point takes a NUL-terminated string that
            // lives through the call and returns one of its own.
            unsafe { take((self.call)(input.as_ptr()), self.free) }
        });
        match tokio::time::timeout(deadline, task).await {
            Err(_) => Err(HostFault::Timeout(deadline.as_millis() as u64)),
            Ok(Err(_)) => Err(HostFault::Trap("the native plugin's call panicked".into())),
            Ok(Ok(text)) => Ok(text),
        }
    }

    pub(crate) async fn post(
        self,
        job: &JobContext,
        access: &OutboundAccess,
        deadline: Duration,
    ) -> Result<Result<Receipt, PostFailure>, HostFault> {
        let request = PostRequest {
            job: job.clone(),
            granted: access.granted.clone(),
            token: access
                .credential
                .as_ref()
                // Trusted and in the host's process: handed the credential.
                .map(|(_, credential)| credential.secret.expose().to_owned()),
        };
        let input = serde_json::to_string(&request).unwrap_or_default();
        let answer = self.call(input, deadline).await?;
        match serde_json::from_str::<PostResponse>(&answer) {
            Ok(PostResponse::Posted(receipt)) => Ok(Ok(receipt)),
            Ok(PostResponse::Failed(failure)) => Ok(Err(failure)),
            Ok(PostResponse::Trap(message)) => Err(HostFault::Trap(message)),
            Err(e) => Err(HostFault::Trap(format!(
                "the native plugin answered something unreadable: {e}"
            ))),
        }
    }

    pub(crate) async fn classify(
        self,
        report: &FailureReport,
        deadline: Duration,
    ) -> Result<Verdict, HostFault> {
        let input = serde_json::to_string(report).unwrap_or_default();
        let answer = self.call(input, deadline).await?;
        match serde_json::from_str::<ClassifyResponse>(&answer) {
            Ok(ClassifyResponse::Verdict(verdict)) => Ok(verdict),
            Ok(ClassifyResponse::Trap(message)) => Err(HostFault::Trap(message)),
            Err(e) => Err(HostFault::Trap(format!(
                "the native plugin answered something unreadable: {e}"
            ))),
        }
    }
}
