//! Mastodon's media API: each of the job's attachments uploaded with
//! `POST /api/v2/media` (multipart: the file, streamed from the host, and
//! its alt text as `description`), then waited for while the platform
//! processes it — an upload answered 202 is polled with
//! `GET /api/v1/media/:id`, which answers 206 until it is ready — so that
//! the status can carry their ids (`media_ids`).
//!
//! A retried attempt uploads its files again: Mastodon keys no upload by
//! the job, and an upload that no status takes is the platform's to clean
//! up. The status itself is sent with the job's idempotency key, so it is
//! never posted twice.

use crate::attachments::{self, Attachment};
use crate::http::{self, Method, Request, Response};
use crate::mastodon::{base, failure_without_response, refusal};
use crate::orchestrator::plugin::types::{JobContext, PostFailure};

/// Upload and poll answers are a media object: a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Polls of an upload still processing before the attempt gives up.
const MAX_POLLS: u32 = 20;
/// A retry after processing took too long waits at least this.
const PROCESSING_RETRY_MS: u64 = 30_000;

const USER_AGENT: &str = concat!("orchestrator-mastodon-poster/", env!("CARGO_PKG_VERSION"));

/// Uploads the job's attachments and waits until the platform has
/// processed them; their media ids, in the payload's order (none for a job
/// without attachments).
pub fn upload_all(job: &JobContext, files: &[Attachment]) -> Result<Vec<String>, PostFailure> {
    let mut uploads = Vec::with_capacity(files.len());
    for file in files {
        uploads.push((file, upload(job, file)?));
    }
    // Every upload goes out before any is waited for: the platform
    // processes them side by side.
    for polls in 0..=MAX_POLLS {
        if uploads.iter().all(|(_, u)| u.ready) {
            return Ok(uploads.into_iter().map(|(_, u)| u.id).collect());
        }
        if polls == MAX_POLLS {
            break;
        }
        attachments::sleep_ms(wait_before_poll(polls));
        for (file, upload) in uploads.iter_mut().filter(|(_, u)| !u.ready) {
            upload.ready = poll(job, file, &upload.id)?;
        }
    }
    let (file, _) = uploads
        .iter()
        .find(|(_, u)| !u.ready)
        .expect("one is not ready");
    Err(PostFailure {
        retry_after_ms: Some(PROCESSING_RETRY_MS),
        ..failure_without_response(format!(
            "the platform was still processing {} after {MAX_POLLS} polls",
            attachments::named(file)
        ))
    })
}

/// Milliseconds before poll `n` (from 0): 100, 200, 400, 800, then a
/// second each.
fn wait_before_poll(n: u32) -> u64 {
    (100u64 << n.min(4)).min(1000)
}

struct Upload {
    id: String,
    /// Processed: the platform answered 200, not 202.
    ready: bool,
}

/// `POST /api/v2/media` with `file` as a multipart form.
fn upload(job: &JobContext, file: &Attachment) -> Result<Upload, PostFailure> {
    let form = Form::new(file, &boundary(&job.idempotency_key, file.index));
    let content_type = format!("multipart/form-data; boundary={}", form.boundary);
    let length = (form.head.len() as u64 + file.size + form.tail.len() as u64).to_string();
    let url = format!("{}/api/v2/media", base(job));
    let response = http::send_with(
        &Request {
            method: Method::Post,
            url: &url,
            headers: &[
                ("content-type", &content_type),
                ("content-length", &length),
                ("accept", "application/json"),
                ("user-agent", USER_AGENT),
            ],
            body: &[],
        },
        MAX_RESPONSE_BYTES,
        &mut |write| {
            write(&form.head)?;
            attachments::stream(file, write)?;
            write(&form.tail)
        },
    )
    .map_err(|f| uploading(file, f))?;
    match response.status {
        200 | 202 => Ok(Upload {
            id: media_id(&response).map_err(|f| uploading(file, f))?,
            ready: response.status == 200,
        }),
        _ => Err(refusal(&response, &attachments::named(file))),
    }
}

/// `GET /api/v1/media/:id`: whether the platform has processed it.
fn poll(job: &JobContext, file: &Attachment, id: &str) -> Result<bool, PostFailure> {
    let url = format!("{}/api/v1/media/{}", base(job), path_escape(id));
    let response = http::send(
        &Request {
            method: Method::Get,
            url: &url,
            headers: &[("accept", "application/json"), ("user-agent", USER_AGENT)],
            body: &[],
        },
        MAX_RESPONSE_BYTES,
    )
    .map_err(|f| uploading(file, f))?;
    match response.status {
        200 => Ok(true),
        206 => Ok(false),
        _ => Err(refusal(
            &response,
            &format!("a look at {}", attachments::named(file)),
        )),
    }
}

/// A failure on the way to uploading `file`, saying so.
fn uploading(file: &Attachment, f: PostFailure) -> PostFailure {
    PostFailure {
        message: format!("uploading {}: {}", attachments::named(file), f.message),
        ..f
    }
}

/// The media id an upload's answer gives.
fn media_id(response: &Response) -> Result<String, PostFailure> {
    #[derive(serde::Deserialize)]
    struct Uploaded {
        id: serde_json::Value,
    }
    let bad = |why: String| PostFailure {
        http_status: Some(response.status),
        ..failure_without_response(format!(
            "the platform answered {} but not with a media attachment: {why}",
            response.status
        ))
    };
    let uploaded: Uploaded =
        serde_json::from_slice(&response.body).map_err(|e| bad(e.to_string()))?;
    match uploaded.id {
        serde_json::Value::String(id) if !id.is_empty() => Ok(id),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(bad(format!("its id is {other}"))),
    }
}

/// Percent-encodes all but letters, digits and `-._~`: an id the platform
/// sent goes into a path.
fn path_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A multipart boundary for one upload, the same for every attempt. It
/// is long and odd enough not to occur in an image by chance.
fn boundary(idempotency_key: &str, index: u32) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in idempotency_key.bytes().chain(index.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "orchestrator-media-{hash:016x}-{:08x}",
        hash.rotate_left(17) as u32
    )
}

/// The parts of the upload's multipart form around the file itself.
struct Form {
    boundary: String,
    /// The `description` part (when there is alt text) and the `file`
    /// part's headers.
    head: Vec<u8>,
    /// The end of the `file` part and of the form.
    tail: Vec<u8>,
}

impl Form {
    fn new(file: &Attachment, boundary: &str) -> Self {
        let mut head = String::new();
        if let Some(description) = &file.description {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"description\"\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\n{description}\r\n"
            ));
        }
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
             Content-Type: {}\r\n\r\n",
            quoted(&file.name),
            file.media_type
        ));
        Form {
            boundary: boundary.to_owned(),
            head: head.into_bytes(),
            tail: format!("\r\n--{boundary}--\r\n").into_bytes(),
        }
    }
}

/// A file name fit for a quoted header parameter: no quotes, backslashes
/// or line breaks.
fn quoted(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '"' | '\\' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(description: Option<&str>) -> Attachment {
        Attachment {
            index: 1,
            name: "launch\".png".into(),
            media_type: "image/png".into(),
            size: 4,
            description: description.map(str::to_owned),
        }
    }

    #[test]
    fn the_form_carries_the_alt_text_and_the_file_part_headers() {
        let form = Form::new(&png(Some("A rocket, lifting off")), "B");
        let mut body = form.head.clone();
        body.extend_from_slice(b"DATA");
        body.extend_from_slice(&form.tail);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "--B\r\nContent-Disposition: form-data; name=\"description\"\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nA rocket, lifting off\r\n\
             --B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"launch_.png\"\r\n\
             Content-Type: image/png\r\n\r\nDATA\r\n--B--\r\n"
        );
        let bare = Form::new(&png(None), "B");
        assert!(
            !String::from_utf8(bare.head)
                .unwrap()
                .contains("description")
        );
    }

    #[test]
    fn boundaries_are_stable_and_differ_per_file() {
        assert_eq!(boundary("k", 0), boundary("k", 0));
        assert_ne!(boundary("k", 0), boundary("k", 1));
        assert_ne!(boundary("k", 0), boundary("j", 0));
        assert!(boundary("k", 0).len() > 40);
    }

    #[test]
    fn polls_wait_longer_up_to_a_second() {
        let waits: Vec<u64> = (0..7).map(wait_before_poll).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(path_escape("12/../x"), "12%2F..%2Fx");
    }
}
