//! Mastodon's media API: `POST /api/v2/media` uploads an image (multipart,
//! a `file` part and an optional `description`, the alt text), `GET
//! /api/v1/media/:id` polls it while it is processed, and `POST
//! /api/v1/statuses` attaches it with `media_ids`.
//!
//! The key type is [`Library`]: one per account, holding its uploads until
//! a status takes them. As on Mastodon, an upload answers 200 with its URL
//! when it is ready at once and 202 with `url: null` when it is not; a poll
//! answers 206 until processing is done and 200 after. Processing takes a
//! number of polls, not time (the scenario's `media_processing_polls`, or
//! an upload script's `processing`), so tests need not sleep. Media of
//! another account, media already attached and media still processing
//! cannot be attached (422), and only unattached media can be polled.
//! A file over the scenario's `media_size_limit` is refused 422 with
//! Rails' validation message; a body past that and the form's slack is
//! refused 413 unparsed, as the proxy in front of an instance refuses it.
//! Files are not kept, only their size and SHA-256, and their URLs are
//! not served.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::{self, Reply, UploadTurn};
use crate::{AccountState, Attachment, Shared, multipart};

/// The image types an upload may be.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];
/// Mastodon's `MAX_DESCRIPTION_LENGTH`, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1500;
/// Mastodon's `MEDIA_ATTACHMENTS_LIMIT`: media per status.
const MAX_ATTACHMENTS: usize = 4;
/// Room in an upload's body for the multipart framing and the description
/// beside a file of the largest size allowed.
const FORM_SLACK: u64 = 64 * 1024;

/// One upload of an account.
#[derive(Debug)]
struct Media {
    attachment: Attachment,
    /// Polls until processing is done; 0 once it is.
    polls_left: u32,
    /// The status it is attached to.
    status: Option<u64>,
}

/// An account's uploads, by media id.
#[derive(Debug, Default)]
pub struct Library {
    media: HashMap<u64, Media>,
}

/// `POST /api/v2/media`: scripted like a posting request, from the
/// account's upload script, and limited by its upload window.
pub(crate) async fn upload(shared: &Shared, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let bound = shared.scenario.media_size_limit.saturating_add(FORM_SLACK);
    let Some(body) = api::read_upload(&parts.headers, body, bound).await else {
        return Ok(api::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
        ));
    };
    let Some((account, script)) = api::authenticate(shared, &parts.headers) else {
        return Ok(api::error(
            StatusCode::UNAUTHORIZED,
            "The access token is invalid",
        ));
    };
    let scripted = api::upload_turn(shared, &account, script).await?;
    let mut response = match scripted.turn {
        UploadTurn::Store { polls } => store(
            shared,
            &scripted.state,
            &account,
            &parts.headers,
            &body,
            polls,
        ),
        UploadTurn::TooLarge => invalid(&[too_large(shared)]),
        UploadTurn::UnsupportedType => invalid(&[UNSUPPORTED_TYPE.to_owned()]),
        UploadTurn::RateLimited { wait_ms } => api::rate_limited(shared, api::ceil_secs(wait_ms)),
        UploadTurn::Fail(behaviour) => api::failure(behaviour),
    };
    let headers = response.headers_mut();
    headers.insert(
        "x-ratelimit-limit",
        shared.scenario.upload_rate_limit.into(),
    );
    headers
        .entry("x-ratelimit-remaining")
        .or_insert_with(|| scripted.remaining(shared).into());
    if !headers.contains_key("x-ratelimit-reset") {
        headers.insert("x-ratelimit-reset", api::timestamp(scripted.reset));
    }
    Ok(response)
}

const UNSUPPORTED_TYPE: &str = "File content type is invalid";

fn too_large(shared: &Shared) -> String {
    format!(
        "File file size must be less than {}",
        human_size(shared.scenario.media_size_limit)
    )
}

/// Rails' 422 for failed validations, their messages joined.
fn invalid(messages: &[String]) -> Response<Full<Bytes>> {
    let message = format!("Validation failed: {}", messages.join(", "));
    api::error(StatusCode::UNPROCESSABLE_ENTITY, &message)
}

fn store(
    shared: &Shared,
    state: &AccountState,
    account: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    polls: u32,
) -> Response<Full<Bytes>> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Anything but a form has no file, as Rails sees it.
    let parts = match multipart::boundary(content_type) {
        Some(boundary) => match multipart::parse(body, &boundary) {
            Ok(parts) => parts,
            Err(why) => {
                let message = format!("Invalid multipart body: {why}");
                return api::error(StatusCode::BAD_REQUEST, &message);
            }
        },
        None => Vec::new(),
    };
    // Rails makes an upload of a part only if it has a file name.
    let Some(file) = parts
        .iter()
        .find(|p| p.name == "file" && p.filename.is_some())
    else {
        return invalid(&["File can't be blank".to_owned()]);
    };
    let description = match parts.iter().find(|p| p.name == "description") {
        None => None,
        Some(part) => match std::str::from_utf8(part.body) {
            Ok(text) => Some(text.to_owned()).filter(|t| !t.is_empty()),
            Err(_) => return api::error(StatusCode::BAD_REQUEST, "Invalid description: not UTF-8"),
        },
    };
    let file_type = file
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let mut problems = Vec::new();
    if !IMAGE_TYPES.contains(&file_type.as_str()) {
        problems.push(UNSUPPORTED_TYPE.to_owned());
    }
    if file.body.len() as u64 > shared.scenario.media_size_limit {
        problems.push(too_large(shared));
    }
    if description
        .as_deref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        problems.push(format!(
            "Description is too long (maximum is {MAX_DESCRIPTION_CHARS} characters)"
        ));
    }
    if !problems.is_empty() {
        return invalid(&problems);
    }

    let id = shared.next_seq() + shared.started_epoch_ms * 1000;
    let attachment = Attachment {
        id: id.to_string(),
        description,
        content_type: file_type,
        size: file.body.len() as u64,
        sha256: hex(&Sha256::digest(file.body)),
        filename: file.filename.clone(),
    };
    let ready = polls == 0;
    let answer = attachment_json(shared, account, &attachment, ready);
    let media = Media {
        attachment,
        polls_left: polls,
        status: None,
    };
    state.library().media.insert(id, media);
    state.media_uploads.fetch_add(1, Ordering::Relaxed);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    api::json_response(status, answer.to_string())
}

/// `GET /api/v1/media/:id`: 206 while processing, 200 when done; 404 for
/// media of another account or attached already, as on Mastodon.
pub(crate) fn show(shared: &Shared, headers: &http::HeaderMap, id: &str) -> Response<Full<Bytes>> {
    let Some((account, _)) = api::authenticate(shared, headers) else {
        return api::error(StatusCode::UNAUTHORIZED, "The access token is invalid");
    };
    let not_found = || api::error(StatusCode::NOT_FOUND, "Record not found");
    let Ok(id) = id.parse::<u64>() else {
        return not_found();
    };
    let state = shared.account(&account);
    let mut library = state.library();
    let Some(media) = library.media.get_mut(&id).filter(|m| m.status.is_none()) else {
        return not_found();
    };
    media.polls_left = media.polls_left.saturating_sub(1);
    let ready = media.polls_left == 0;
    let answer = attachment_json(shared, &account, &media.attachment, ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::PARTIAL_CONTENT
    };
    api::json_response(status, answer.to_string())
}

/// Attaches the account's media `ids` (in that order, repeats once) to
/// status `status`: all of them, or none with Mastodon's message why.
pub(crate) fn attach(
    state: &AccountState,
    ids: &[String],
    status: u64,
) -> Result<Vec<Attachment>, String> {
    if ids.len() > MAX_ATTACHMENTS {
        return Err(format!("Cannot attach more than {MAX_ATTACHMENTS} files"));
    }
    let mut wanted: Vec<&String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !wanted.contains(&id) {
            wanted.push(id);
        }
    }
    let mut library = state.library();
    let usable = |id: &str| {
        let id = id.trim().parse::<u64>().ok()?;
        library
            .media
            .get(&id)
            .filter(|m| m.status.is_none())
            .map(|m| (id, m.polls_left == 0))
    };
    let mut found = Vec::with_capacity(wanted.len());
    let mut missing = Vec::new();
    for id in &wanted {
        match usable(id) {
            Some(media) => found.push(media),
            None => missing.push(id.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "Media {} not found or already attached to another post",
            missing.join(", ")
        ));
    }
    if found.iter().any(|(_, ready)| !ready) {
        return Err(
            "Cannot attach files that have not finished processing. Try again in a moment!"
                .to_owned(),
        );
    }
    Ok(found
        .into_iter()
        .filter_map(|(id, _)| {
            let media = library.media.get_mut(&id)?;
            media.status = Some(status);
            Some(media.attachment.clone())
        })
        .collect())
}

/// Mastodon's MediaAttachment entity; `url` is null until it is processed.
pub(crate) fn attachment_json(
    shared: &Shared,
    account: &str,
    attachment: &Attachment,
    ready: bool,
) -> serde_json::Value {
    let id = &attachment.id;
    let extension = attachment
        .content_type
        .strip_prefix("image/")
        .unwrap_or("bin");
    let file = |style: &str| {
        ready.then(|| {
            format!(
                "{}/system/media_attachments/files/{account}/{id}/{style}/{id}.{extension}",
                shared.base_url
            )
        })
    };
    json!({
        "id": id,
        "type": "image",
        "url": file("original"),
        "preview_url": file("small"),
        "remote_url": null,
        "meta": {},
        "description": attachment.description,
        "blurhash": null,
    })
}

impl AccountState {
    fn library(&self) -> std::sync::MutexGuard<'_, Library> {
        self.media.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rails' `number_to_human_size`: `16 MB`, `1.46 KB`, `1000 Bytes`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} Bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // Three significant digits, insignificant zeros dropped.
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_rails_writes_them() {
        assert_eq!(human_size(16 << 20), "16 MB");
        assert_eq!(human_size(1000), "1000 Bytes");
        assert_eq!(human_size(1500), "1.46 KB");
        assert_eq!(human_size(2048), "2 KB");
        assert_eq!(human_size(200 * 1024 + 300), "200 KB");
    }
}
