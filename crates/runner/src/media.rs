//! Media attachments: the files a job's payload names in `media`, checked
//! when the jobs file is imported ([`Importer`]) and again before every
//! attempt ([`check`]).
//!
//! A payload names at most [`MAX_ATTACHMENTS`] files:
//! `"media": [{"path": "img/launch.png", "description": "alt text"}]`. A
//! path is relative to the media root — `--media-root`, or else the jobs
//! file's folder — and must stay inside it once every symlink is followed:
//! an absolute path, or one that leads out of the root (`..`, a symlink to
//! elsewhere), is refused. The file must be a regular file of at most
//! [`MediaOptions::max_bytes`] whose content (not its name) is a PNG, JPEG,
//! GIF or WebP image. The import writes what it found into the entry —
//! `type`, `size`, `sha256`, and the file's full path as `resolved` — so the
//! store needs no column of its own; plugins never see `resolved`
//! ([`guest_payload`]).
//!
//! Before an attempt the host reads each file again and compares it with
//! what was imported: a file changed or gone fails the attempt as
//! non-retryable, naming the file, and the poster is not called. The bytes
//! it checked are the bytes the poster reads, through the plugin host's
//! `media` interface. They are held in memory for the attempt, within a
//! budget of [`MEMORY_BUDGET`] bytes for all attempts at once: an attempt
//! whose files do not fit waits for others to finish.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use orchestrator_contract::{Category, PostFailure, RetryScope};
use orchestrator_plugin_host::{Attachment, Attachments, Attempt};
use orchestrator_store::Decided;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::Post;

/// The most files one job may attach: Mastodon's limit, and Bluesky's.
pub const MAX_ATTACHMENTS: usize = 4;
/// The longest alt text, in characters: Mastodon's limit.
pub const MAX_DESCRIPTION_CHARS: usize = 1500;
/// The largest file by default: Mastodon's limit for images.
pub const DEFAULT_MAX_BYTES: u64 = 16 << 20;
/// Bytes of attachments all attempts in flight may hold at once.
pub const MEMORY_BUDGET: u64 = 256 << 20;

/// The budget, counted in KiB so that it fits a semaphore's `u32`.
static MEMORY: Semaphore = Semaphore::const_new((MEMORY_BUDGET >> 10) as usize);

/// Where media paths resolve and how large a file may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOptions {
    /// The folder paths are relative to; `None`: the jobs file's.
    pub root: Option<PathBuf>,
    /// The largest file, in bytes.
    pub max_bytes: u64,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            root: None,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// What the import learned of one file.
#[derive(Debug, Clone)]
struct Facts {
    resolved: String,
    media_type: &'static str,
    size: u64,
    sha256: String,
}

/// Checks the `media` of every job of one jobs file. A file several jobs
/// attach is read once.
pub(crate) struct Importer<'a> {
    options: &'a MediaOptions,
    jobs_dir: &'a Path,
    /// The media root, with its symlinks followed: found at the first job
    /// with media, so a batch without any needs no root.
    root: Option<PathBuf>,
    seen: HashMap<PathBuf, Facts>,
}

impl<'a> Importer<'a> {
    pub(crate) fn new(options: &'a MediaOptions, jobs_file: &'a Path) -> Self {
        let jobs_dir = match jobs_file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Importer {
            options,
            jobs_dir,
            root: None,
            seen: HashMap::new(),
        }
    }

    /// Checks the `media` of one job's `payload` (an object), and writes
    /// what it found into each entry. The error is the job line's reason.
    pub(crate) fn import(&mut self, payload: &mut Value) -> Result<(), String> {
        let Some(media) = payload.get_mut("media") else {
            return Ok(());
        };
        let shape = || {
            format!(
                "`media` must be a list of at most {MAX_ATTACHMENTS} objects \
                 {{\"path\": \"...\", \"description\": \"...\"}}"
            )
        };
        let Value::Array(entries) = media else {
            return Err(shape());
        };
        if entries.len() > MAX_ATTACHMENTS {
            return Err(format!(
                "`media` lists {} files; a job attaches at most {MAX_ATTACHMENTS}",
                entries.len()
            ));
        }
        for (i, entry) in entries.iter_mut().enumerate() {
            let Value::Object(fields) = entry else {
                return Err(format!("media[{i}]: {}", shape()));
            };
            if let Some(key) = fields
                .keys()
                .find(|k| !matches!(k.as_str(), "path" | "description"))
            {
                return Err(format!(
                    "media[{i}]: unknown key `{key}`; an attachment has a `path` and a `description`"
                ));
            }
            let path = match fields.get("path") {
                Some(Value::String(p)) if !p.trim().is_empty() => p.clone(),
                Some(_) => return Err(format!("media[{i}]: `path` must be a non-empty string")),
                None => return Err(format!("media[{i}]: `path` is missing")),
            };
            match fields.get("description") {
                None | Some(Value::String(_)) => {}
                Some(_) => {
                    return Err(format!("media[{i}] {path}: `description` must be a string"));
                }
            }
            if let Some(Value::String(d)) = fields.get("description") {
                let chars = d.chars().count();
                if chars > MAX_DESCRIPTION_CHARS {
                    return Err(format!(
                        "media[{i}] {path}: the description is {chars} characters; at most {MAX_DESCRIPTION_CHARS}"
                    ));
                }
            }
            let facts = self
                .facts(&path)
                .map_err(|why| format!("media[{i}] {path}: {why}"))?;
            fields.insert("type".into(), facts.media_type.into());
            fields.insert("size".into(), facts.size.into());
            fields.insert("sha256".into(), facts.sha256.into());
            fields.insert("resolved".into(), facts.resolved.into());
        }
        Ok(())
    }

    /// The media root, its symlinks followed.
    fn root(&mut self) -> Result<&Path, String> {
        if self.root.is_none() {
            let root = self.options.root.as_deref().unwrap_or(self.jobs_dir);
            let canonical = std::fs::canonicalize(root).map_err(|e| {
                format!(
                    "the media root {} cannot be used: {}",
                    root.display(),
                    io_reason(&e)
                )
            })?;
            if !canonical.is_dir() {
                return Err(format!("the media root {} is not a folder", root.display()));
            }
            self.root = Some(canonical);
        }
        Ok(self.root.as_deref().expect("set above"))
    }

    /// What the file at `path` (as the job gives it) is.
    fn facts(&mut self, path: &str) -> Result<Facts, String> {
        let given = Path::new(path);
        if given.has_root() || given.is_absolute() {
            return Err(
                "an absolute path; give it relative to the media root (the jobs file's folder, or --media-root)"
                    .into(),
            );
        }
        if given
            .components()
            .any(|c| matches!(c, Component::Prefix(_)))
        {
            return Err("a path with a drive; give it relative to the media root".into());
        }
        let root = self.root()?.to_owned();
        let resolved = std::fs::canonicalize(root.join(given)).map_err(|e| io_reason(&e))?;
        if !resolved.starts_with(&root) {
            return Err(format!(
                "leads out of the media root {}; a job attaches only files inside it",
                root.display()
            ));
        }
        if let Some(facts) = self.seen.get(&resolved) {
            return Ok(facts.clone());
        }
        let facts = inspect(&resolved, self.options.max_bytes)?;
        self.seen.insert(resolved, facts.clone());
        Ok(facts)
    }
}

/// Opens the file at `resolved` — a canonical path, with no symlink in
/// it when it was resolved — following no symlink put anywhere in it
/// since (`openat2` with `RESOLVE_NO_SYMLINKS`; on a kernel without it, at
/// least not in its last part), and refusing a pipe or device without
/// waiting on it (a FIFO would block the open for good).
fn open_regular(resolved: &Path) -> Result<(std::fs::File, std::fs::Metadata), String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use rustix::io::Errno;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let opened = match rustix::fs::openat2(
        rustix::fs::CWD,
        resolved,
        flags,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    ) {
        Err(Errno::NOSYS | Errno::PERM) => {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
                .open(resolved)
        }
        other => other.map(std::fs::File::from).map_err(std::io::Error::from),
    };
    let file = opened.map_err(|e| match e.raw_os_error() {
        Some(code) if code == Errno::LOOP.raw_os_error() => {
            "a symlink was put in its path after the path was resolved".to_owned()
        }
        _ => io_reason(&e),
    })?;
    // What was opened, not what the path names now.
    let meta = file.metadata().map_err(|e| io_reason(&e))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    Ok((file, meta))
}

/// Reads the file at `resolved` (no symlinks left in it) through once:
/// its size, type and SHA-256, without holding it in memory.
fn inspect(resolved: &Path, max_bytes: u64) -> Result<Facts, String> {
    let (file, meta) = open_regular(resolved)?;
    let too_large = |size: u64| {
        format!(
            "it is {size} bytes, over the {} limit (--max-media-size)",
            mib(max_bytes)
        )
    };
    if meta.len() > max_bytes {
        return Err(too_large(meta.len()));
    }
    // No further than the limit, should it grow meanwhile.
    let mut file = file.take(max_bytes.saturating_add(1));
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(16);
    let mut size = 0u64;
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_reason(&e)),
        };
        let chunk = &buffer[..n];
        if head.len() < 16 {
            let take = (16 - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(chunk);
        size += n as u64;
    }
    if size > max_bytes {
        return Err(too_large(size));
    }
    let media_type = sniff(&head).ok_or(
        "not an image of a type the host takes: PNG, JPEG, GIF or WebP (judged by its content)",
    )?;
    Ok(Facts {
        resolved: resolved.display().to_string(),
        media_type,
        size,
        sha256: hex(&hasher.finalize()),
    })
}

/// The media type of a file from its first bytes, if it is one the host
/// takes.
fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An I/O error as the end of a one-line reason, without the path (the
/// reason names the file as the job gave it).
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let text = e.to_string();
            // std appends " (os error N)".
            match text.split_once(" (os error") {
                Some((words, _)) => words.to_lowercase(),
                None => text,
            }
        }
    }
}

/// Whether a stored payload may have attachments: a look at its text
/// before any parsing, so a job without any costs nothing more. A `media`
/// key is always this text (the import writes keys unescaped); the text
/// in a value only costs a parse.
fn may_have_media(payload: &str) -> bool {
    payload.contains("\"media\"")
}

/// One `media` entry as the import wrote it.
#[derive(serde::Deserialize)]
struct Stored {
    path: String,
    description: Option<String>,
    #[serde(rename = "type")]
    media_type: String,
    size: u64,
    sha256: String,
    resolved: PathBuf,
}

/// The stored payload's attachments; none for a payload without `media`.
fn stored(payload: &str) -> Result<Vec<Stored>, String> {
    if !may_have_media(payload) {
        return Ok(Vec::new());
    }
    #[derive(serde::Deserialize)]
    struct WithMedia {
        media: Option<Value>,
    }
    let Ok(WithMedia { media: Some(media) }) = serde_json::from_str::<WithMedia>(payload) else {
        return Ok(Vec::new());
    };
    serde_json::from_value(media).map_err(|e| {
        format!(
            "the job's `media` was not checked on import ({e}); import the batch again with --force-reseed"
        )
    })
}

/// The payload as plugins see it: each `media` entry without the host's
/// path to the file (`resolved`). A payload without `media` is unchanged.
pub(crate) fn guest_payload(payload: &str) -> String {
    if !may_have_media(payload) {
        return payload.to_owned();
    }
    let Ok(mut value) = serde_json::from_str::<Value>(payload) else {
        return payload.to_owned();
    };
    let Some(Value::Array(entries)) = value.get_mut("media") else {
        return payload.to_owned();
    };
    for entry in entries {
        if let Value::Object(fields) = entry {
            fields.remove("resolved");
        }
    }
    value.to_string()
}

/// A job's attachments, read and checked for one attempt, holding their
/// share of [`MEMORY_BUDGET`] until the attempt is over.
pub(crate) struct Checked {
    pub(crate) attachments: Attachments,
    _held: SemaphorePermit<'static>,
}

/// Why the host fails an attempt before its poster runs: a reason that
/// names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

impl Refused {
    /// The failed attempt: the reason, as the host's, and no answer of
    /// the platform's.
    pub(crate) fn attempt(&self) -> Attempt {
        Attempt::Failed {
            failure: Some(PostFailure::new(self.0.clone()).bounded()),
            fault: None,
        }
    }

    /// The attempt's classification: the host's, non-retryable, and no
    /// classifier is asked, so none can call it retryable.
    pub(crate) fn decided(&self) -> Decided {
        Decided {
            category: Category::NonRetryable,
            // Its text quotes stored paths: bounded as a platform's is.
            reason: orchestrator_contract::text::bounded(
                self.0.clone(),
                orchestrator_contract::text::MESSAGE_BYTES,
            ),
            retry_after_ms: None,
            scope: RetryScope::Job,
            decided_by: "built-in".into(),
            consulted: Vec::new(),
        }
    }
}

/// Refuses a job whose attachments (in its stored `payload`) its poster
/// cannot read: a native one, or one built against a contract before
/// 0.4.0. The reason is the job's.
pub(crate) fn readable_by(payload: &str, poster: &dyn Post) -> Result<(), String> {
    match stored(payload).map_or(0, |entries| entries.len()) {
        0 => Ok(()),
        files => takes(poster, files).map_err(|why| why.0),
    }
}

/// Refuses a poster that cannot read the job's `files` attachments.
fn takes(poster: &dyn Post, files: usize) -> Result<(), Refused> {
    if poster.takes_media() {
        return Ok(());
    }
    let built = match poster.loaded_from() {
        Some(meta) if meta.backend == orchestrator_plugin_host::Backend::Native => {
            "a native poster".to_owned()
        }
        Some(meta) => format!("built against contract {}", meta.contract),
        None => "no reader of attachments".to_owned(),
    };
    Err(Refused(format!(
        "it attaches {} but its poster {} cannot read attachments ({built}); \
         media needs a poster built against contract 0.4.0 or later",
        orchestrator_contract::text::count(files as u64, "file"),
        poster.info().name
    )))
}

/// The attachments of the job whose stored payload is `payload`, read and
/// checked against what the import recorded, for `poster`; `None` for a
/// job without any. A file changed or gone, or a poster that cannot read
/// attachments, refuses the attempt.
pub(crate) async fn check(payload: &str, poster: &dyn Post) -> Result<Option<Checked>, Refused> {
    let entries = stored(payload).map_err(Refused)?;
    if entries.is_empty() {
        return Ok(None);
    }
    takes(poster, entries.len())?;
    // What the store holds is hostile until checked: no import writes
    // more files, or larger ones, than these.
    let largest = MEMORY_BUDGET / MAX_ATTACHMENTS as u64;
    if entries.len() > MAX_ATTACHMENTS || entries.iter().any(|e| e.size > largest) {
        return Err(Refused(format!(
            "the job's stored `media` lists {} files of up to {} bytes, more than an import allows; import the batch again with --force-reseed",
            entries.len(),
            entries.iter().map(|e| e.size).max().unwrap_or(0)
        )));
    }
    let total: u64 = entries.iter().map(|e| e.size).sum();
    let kib = total.div_ceil(1024).clamp(1, MEMORY_BUDGET >> 10) as u32;
    let held = MEMORY
        .acquire_many(kib)
        .await
        .expect("the media budget is never closed");
    let attachments = tokio::task::spawn_blocking(move || {
        entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                reread(&entry).map_err(|why| Refused(format!("media[{i}] {} {why}", entry.path)))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| Refused(format!("reading the job's attachments failed: {e}")))??;
    Ok(Some(Checked {
        attachments: Attachments::new(attachments),
        _held: held,
    }))
}

/// Reads an attachment again, and returns it if it is what was imported.
fn reread(entry: &Stored) -> Result<Attachment, String> {
    let changed = |what: String| format!("changed after import: {what}");
    let (file, _) = open_regular(&entry.resolved)
        .map_err(|why| changed(format!("it cannot be read ({why})")))?;
    let mut bytes = Vec::with_capacity(entry.size as usize);
    file.take(entry.size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| changed(format!("it cannot be read ({})", io_reason(&e))))?;
    if bytes.len() as u64 != entry.size {
        let now = if bytes.len() as u64 > entry.size {
            format!("more than {}", entry.size)
        } else {
            bytes.len().to_string()
        };
        return Err(changed(format!(
            "it is now {now} bytes (it was {} when imported)",
            entry.size
        )));
    }
    let sha256 = hex(&Sha256::digest(&bytes));
    if sha256 != entry.sha256 {
        return Err(changed(format!(
            "its SHA-256 is now {sha256} (it was {} when imported)",
            entry.sha256
        )));
    }
    let name = Path::new(&entry.path)
        .file_name()
        .or_else(|| entry.resolved.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Attachment {
        name,
        media_type: entry.media_type.clone(),
        description: entry.description.clone(),
        bytes: bytes.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn importer_in(dir: &Path) -> (MediaOptions, PathBuf) {
        (MediaOptions::default(), dir.join("jobs.jsonl"))
    }

    fn import(dir: &Path, media: Value) -> Result<Value, String> {
        let (options, jobs) = importer_in(dir);
        let mut payload = serde_json::json!({ "status": "hi", "media": media });
        Importer::new(&options, &jobs).import(&mut payload)?;
        Ok(payload)
    }

    #[test]
    fn types_are_judged_by_content() {
        assert_eq!(sniff(PNG), Some("image/png"));
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0\0\x10JFIF"), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a\x01\0"), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b"<svg xmlns="), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn an_import_records_type_size_hash_and_where_the_file_is() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("img")).unwrap();
        std::fs::write(dir.path().join("img/a.png"), PNG).unwrap();
        let payload = import(
            dir.path(),
            serde_json::json!([{"path": "img/a.png", "description": "a dot"}]),
        )
        .unwrap();
        let entry = &payload["media"][0];
        assert_eq!(entry["path"], "img/a.png");
        assert_eq!(entry["description"], "a dot");
        assert_eq!(entry["type"], "image/png");
        assert_eq!(entry["size"], PNG.len());
        assert_eq!(entry["sha256"], hex(&Sha256::digest(PNG)));
        let resolved = std::fs::canonicalize(dir.path().join("img/a.png")).unwrap();
        assert_eq!(entry["resolved"], resolved.display().to_string());
        // Plugins see all of it but the host's path.
        let guest: Value = serde_json::from_str(&guest_payload(&payload.to_string())).unwrap();
        assert!(guest["media"][0].get("resolved").is_none());
        assert_eq!(guest["media"][0]["sha256"], entry["sha256"]);
        assert_eq!(guest["status"], "hi");
        let plain = r#"{"status":"no media"}"#;
        assert_eq!(guest_payload(plain), plain);
    }

    #[test]
    fn bad_attachments_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), PNG).unwrap();
        std::fs::write(dir.path().join("notes.png"), b"just text").unwrap();
        std::fs::write(outside.path().join("secret.png"), PNG).unwrap();
        std::fs::create_dir(dir.path().join("folder")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            outside.path().join("secret.png"),
            dir.path().join("link.png"),
        )
        .unwrap();
        let five: Vec<Value> = (0..5)
            .map(|_| serde_json::json!({"path": "a.png"}))
            .collect();
        let cases = [
            (serde_json::json!("a.png"), "`media` must be a list"),
            (
                serde_json::json!(five),
                "`media` lists 5 files; a job attaches at most 4",
            ),
            (
                serde_json::json!(["a.png"]),
                "media[0]: `media` must be a list",
            ),
            (serde_json::json!([{}]), "media[0]: `path` is missing"),
            (
                serde_json::json!([{"path": 3}]),
                "media[0]: `path` must be a non-empty string",
            ),
            (
                serde_json::json!([{"path": "a.png", "alt": "x"}]),
                "media[0]: unknown key `alt`",
            ),
            (
                serde_json::json!([{"path": "a.png", "description": 1}]),
                "media[0] a.png: `description` must be a string",
            ),
            (
                serde_json::json!([{"path": "a.png", "description": "é".repeat(1501)}]),
                "the description is 1501 characters; at most 1500",
            ),
            (
                serde_json::json!([{"path": "a.png"}, {"path": "gone.png"}]),
                "media[1] gone.png: no such file",
            ),
            (
                serde_json::json!([{"path": "notes.png"}]),
                "media[0] notes.png: not an image",
            ),
            (
                serde_json::json!([{"path": "folder"}]),
                "media[0] folder: not a regular file",
            ),
            (
                serde_json::json!([{"path": "/etc/hostname"}]),
                "an absolute path",
            ),
            (
                serde_json::json!([{"path": format!("../{}/secret.png", outside.path().file_name().unwrap().to_str().unwrap())}]),
                "leads out of the media root",
            ),
        ];
        for (media, expected) in cases {
            let err = import(dir.path(), media.clone()).unwrap_err();
            assert!(err.contains(expected), "{media}: {err}");
        }
        #[cfg(unix)]
        {
            let err = import(dir.path(), serde_json::json!([{"path": "link.png"}])).unwrap_err();
            assert!(err.contains("leads out of the media root"), "{err}");
        }
    }

    #[test]
    fn a_file_or_folder_swapped_for_a_symlink_or_a_pipe_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), PNG).unwrap();
        std::fs::write(outside.path().join("secret.png"), PNG).unwrap();
        let payload = import(dir.path(), serde_json::json!([{"path": "a.png"}])).unwrap();
        let entry: Stored = serde_json::from_value(payload["media"][0].clone()).unwrap();
        assert!(reread(&entry).is_ok());
        // Swapped, after the import, for a link to a file of the same
        // bytes outside the root: the link is not followed.
        std::fs::remove_file(dir.path().join("a.png")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.png"), dir.path().join("a.png"))
            .unwrap();
        let err = reread(&entry).unwrap_err();
        assert!(err.contains("a symlink was put in its path"), "{err}");
        // So is one put in place of a folder on the way.
        std::fs::create_dir(dir.path().join("img")).unwrap();
        std::fs::write(dir.path().join("img/b.png"), PNG).unwrap();
        std::fs::create_dir(outside.path().join("img")).unwrap();
        std::fs::write(outside.path().join("img/b.png"), PNG).unwrap();
        let payload = import(dir.path(), serde_json::json!([{"path": "img/b.png"}])).unwrap();
        let nested: Stored = serde_json::from_value(payload["media"][0].clone()).unwrap();
        assert!(reread(&nested).is_ok());
        std::fs::remove_dir_all(dir.path().join("img")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("img"), dir.path().join("img")).unwrap();
        let err = reread(&nested).unwrap_err();
        assert!(err.contains("a symlink was put in its path"), "{err}");
        // Swapped for a pipe: refused at once rather than waited on.
        std::fs::remove_file(dir.path().join("a.png")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("a.png"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        let err = reread(&entry).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn the_size_limit_and_the_media_root_are_the_options() {
        let dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let mut big = PNG.to_vec();
        big.resize((1 << 20) + 1, 0);
        std::fs::write(root.path().join("big.png"), &big).unwrap();
        let jobs = dir.path().join("jobs.jsonl");
        let options = MediaOptions {
            root: Some(root.path().to_owned()),
            max_bytes: 1 << 20,
        };
        let mut payload = serde_json::json!({"media": [{"path": "big.png"}]});
        let err = Importer::new(&options, &jobs)
            .import(&mut payload)
            .unwrap_err();
        assert_eq!(
            err,
            "media[0] big.png: it is 1048577 bytes, over the 1 MiB limit (--max-media-size)"
        );
        let roomy = MediaOptions {
            max_bytes: 2 << 20,
            ..options
        };
        Importer::new(&roomy, &jobs).import(&mut payload).unwrap();
        assert_eq!(payload["media"][0]["size"], big.len());
    }

    struct Taker(bool);

    impl Post for Taker {
        fn info(&self) -> &orchestrator_contract::PluginInfo {
            static INFO: std::sync::OnceLock<orchestrator_contract::PluginInfo> =
                std::sync::OnceLock::new();
            INFO.get_or_init(|| orchestrator_contract::PluginInfo {
                name: "taker".into(),
                version: "1".into(),
                description: String::new(),
            })
        }
        fn takes_media(&self) -> bool {
            self.0
        }
        fn post<'a>(
            &'a self,
            _job: &'a orchestrator_contract::JobContext,
            _access: orchestrator_plugin_host::OutboundAccess,
        ) -> crate::plugins::BoxFuture<'a, orchestrator_plugin_host::Attempt> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn an_attempt_gets_exactly_the_imported_bytes_or_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), PNG).unwrap();
        let payload = import(
            dir.path(),
            serde_json::json!([{"path": "a.png", "description": "alt"}]),
        )
        .unwrap()
        .to_string();
        let checked = check(&payload, &Taker(true)).await.unwrap().unwrap();
        let a = checked.attachments.get(0).unwrap();
        assert_eq!(
            (a.name.as_str(), a.media_type.as_str()),
            ("a.png", "image/png")
        );
        assert_eq!((a.description.as_deref(), &a.bytes[..]), (Some("alt"), PNG));
        drop(checked);

        assert!(
            check(r#"{"status":"x"}"#, &Taker(false))
                .await
                .unwrap()
                .is_none()
        );
        let refused = check(&payload, &Taker(false)).await.err().unwrap();
        assert!(
            refused
                .0
                .contains("its poster taker cannot read attachments"),
            "{refused:?}"
        );

        let mut changed = PNG.to_vec();
        *changed.last_mut().unwrap() = b'X';
        std::fs::write(dir.path().join("a.png"), &changed).unwrap();
        let refused = check(&payload, &Taker(true)).await.err().unwrap();
        let now = hex(&Sha256::digest(&changed));
        assert!(
            refused.0.starts_with(&format!(
                "media[0] a.png changed after import: its SHA-256 is now {now}"
            )),
            "{refused:?}"
        );
        let mut grown = PNG.to_vec();
        grown.extend_from_slice(b"more");
        std::fs::write(dir.path().join("a.png"), &grown).unwrap();
        let refused = check(&payload, &Taker(true)).await.err().unwrap();
        assert!(
            refused
                .0
                .contains("it is now more than 16 bytes (it was 16 when imported)"),
            "{refused:?}"
        );
        std::fs::write(dir.path().join("a.png"), &PNG[..4]).unwrap();
        let refused = check(&payload, &Taker(true)).await.err().unwrap();
        assert!(
            refused
                .0
                .contains("it is now 4 bytes (it was 16 when imported)"),
            "{refused:?}"
        );
        std::fs::remove_file(dir.path().join("a.png")).unwrap();
        let refused = check(&payload, &Taker(true)).await.err().unwrap();
        assert_eq!(
            refused.0,
            "media[0] a.png changed after import: it cannot be read (no such file)"
        );
        assert_eq!(refused.decided().category, Category::NonRetryable);

        let unchecked = r#"{"media":[{"path":"a.png"}]}"#;
        let refused = check(unchecked, &Taker(true)).await.err().unwrap();
        assert!(
            refused.0.contains("was not checked on import"),
            "{refused:?}"
        );
        // A stored size no import writes is refused, not allocated.
        let mut tampered: Value = serde_json::from_str(&payload).unwrap();
        tampered["media"][0]["size"] = Value::from(u64::MAX);
        let refused = check(&tampered.to_string(), &Taker(true))
            .await
            .err()
            .unwrap();
        assert!(
            refused.0.contains("more than an import allows"),
            "{refused:?}"
        );
    }
}
