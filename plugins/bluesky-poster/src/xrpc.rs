//! Bluesky's posting API, without the transport: the uploadBlob call that
//! stores an attachment, the createRecord call a job becomes (its images
//! embedded), the getRecord call that finds an earlier attempt's post, and
//! what their answers mean.

use crate::api::{payload, payload_text, refused, setting};
use crate::http::{Response, bounded, failure};
use crate::orchestrator::plugin::types::{JobContext, PostFailure, Receipt};

const COLLECTION: &str = "app.bsky.feed.post";
/// Platform text kept in a failure: enough to read, not enough to flood.
const MESSAGE_BYTES: usize = 500;
const CODE_BYTES: usize = 100;

/// One createRecord call.
pub struct Attempt {
    pub url: String,
    pub body: Vec<u8>,
    /// The repo posted into: the account's `identifier`.
    pub repo: String,
    pub rkey: String,
}

/// What createRecord's answer means.
pub enum Outcome {
    Posted(Receipt),
    /// The record key is taken: an earlier attempt of this job may have
    /// posted. Carries the failure to return if it did not.
    AlreadyExists(PostFailure),
    Failed(PostFailure),
}

#[derive(serde::Deserialize)]
struct Payload {
    text: Option<String>,
    langs: Option<Vec<String>>,
    language: Option<String>,
}

/// The alphabet of AT Protocol TIDs ("base32-sortable").
const TID_ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// The record key for a job: the same for every attempt, so a retry of a
/// post that landed is refused as a duplicate instead of posted twice.
///
/// It is a hash of the idempotency key written as a TID (13 characters of
/// the base32-sortable alphabet, top bit clear), the key shape Bluesky
/// expects for posts; any TID is also a valid record key. The hash is
/// FNV-1a, spelled out here because the key must not change between
/// builds, which rules out std's hasher.
pub fn record_key(idempotency_key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in idempotency_key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut n = hash >> 1;
    let mut key = [0u8; 13];
    for slot in key.iter_mut().rev() {
        *slot = TID_ALPHABET[(n & 31) as usize];
        n >>= 5;
    }
    key.iter().map(|&b| char::from(b)).collect()
}

fn base(job: &JobContext) -> &str {
    job.account.base_url.trim_end_matches('/')
}

/// An uploaded image, as a post embeds it.
pub struct Image {
    /// Its alt text; Bluesky wants one, if empty.
    pub alt: String,
    /// The blob uploadBlob answered with, as it answered.
    pub blob: serde_json::Value,
}

/// The uploadBlob call's URL: the body is the file, its Content-Type the
/// file's media type.
pub fn upload_url(job: &JobContext) -> String {
    format!("{}/xrpc/com.atproto.repo.uploadBlob", base(job))
}

/// The blob uploadBlob answered with, or why not.
pub fn uploaded(
    response: &Response,
    what: &str,
    now_ms: u64,
) -> Result<serde_json::Value, PostFailure> {
    #[derive(serde::Deserialize)]
    struct Uploaded {
        blob: serde_json::Value,
    }
    if !(200..300).contains(&response.status) {
        return Err(refusal(response, what, now_ms));
    }
    match serde_json::from_slice::<Uploaded>(&response.body) {
        Ok(Uploaded { blob }) if blob.is_object() => Ok(blob),
        Ok(_) => Err(PostFailure {
            http_status: Some(response.status),
            ..failure(format!(
                "the platform answered {} to uploading {what} but its blob is no object",
                response.status
            ))
        }),
        Err(e) => Err(PostFailure {
            http_status: Some(response.status),
            ..failure(format!(
                "the platform answered {} to uploading {what} but not with a blob: {e}",
                response.status
            ))
        }),
    }
}

/// The createRecord call for `job`, dated `created_at` (RFC 3339, UTC),
/// embedding `images` (none: a post of text alone).
pub fn attempt(
    job: &JobContext,
    created_at: &str,
    images: &[Image],
) -> Result<Attempt, PostFailure> {
    let payload: Payload = payload(job)?;
    let text = payload_text(payload.text)?;
    let repo = setting(job, "identifier")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            failure(format!(
                "account {} has no `identifier` setting: Bluesky posts into the repo it names \
                 (the account's handle or DID)",
                job.account.name
            ))
        })?
        .to_owned();
    let langs = payload.langs.or(payload.language.map(|l| vec![l]));
    let mut record = serde_json::json!({
        "$type": COLLECTION,
        "text": text,
        "createdAt": created_at,
    });
    if let Some(langs) = langs {
        record["langs"] = serde_json::json!(langs);
    }
    if !images.is_empty() {
        let images: Vec<serde_json::Value> = images
            .iter()
            .map(|i| serde_json::json!({ "alt": i.alt, "image": i.blob }))
            .collect();
        record["embed"] = serde_json::json!({
            "$type": "app.bsky.embed.images",
            "images": images,
        });
    }
    let rkey = record_key(&job.idempotency_key);
    let body = serde_json::json!({
        "repo": repo,
        "collection": COLLECTION,
        "rkey": rkey,
        "record": record,
    });
    Ok(Attempt {
        url: format!("{}/xrpc/com.atproto.repo.createRecord", base(job)),
        body: body.to_string().into_bytes(),
        repo,
        rkey,
    })
}

/// The getRecord call that looks for the record `attempt` would create.
pub fn lookup_url(job: &JobContext, attempt: &Attempt) -> String {
    format!(
        "{}/xrpc/com.atproto.repo.getRecord?repo={}&collection={COLLECTION}&rkey={}",
        base(job),
        query_escape(&attempt.repo),
        query_escape(&attempt.rkey),
    )
}

/// Percent-encodes everything but the characters handles, DIDs and record
/// keys are made of.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(serde::Deserialize)]
struct Record {
    uri: Option<String>,
}

#[derive(serde::Deserialize)]
struct XrpcError {
    error: Option<String>,
    message: Option<String>,
}

/// What createRecord answered.
pub fn outcome(response: &Response, attempt: &Attempt, now_ms: u64) -> Outcome {
    if (200..300).contains(&response.status) {
        return match serde_json::from_slice::<Record>(&response.body) {
            Ok(record) => Outcome::Posted(receipt(record.uri, attempt)),
            Err(e) => Outcome::Failed(PostFailure {
                http_status: Some(response.status),
                ..failure(format!(
                    "the platform answered {} but not with a record: {e}",
                    response.status
                ))
            }),
        };
    }
    let refusal = refusal(response, "the post", now_ms);
    let exists = response.status == 400
        && refusal.error_code.as_deref() == Some("InvalidRequest")
        && refusal.message.contains("Record already exists");
    if exists {
        Outcome::AlreadyExists(refusal)
    } else {
        Outcome::Failed(refusal)
    }
}

/// The receipt for the record getRecord found, if it found it: an earlier
/// attempt of this job posted it.
pub fn found(response: &Response, attempt: &Attempt) -> Option<Receipt> {
    if response.status != 200 {
        return None;
    }
    let record: Record = serde_json::from_slice(&response.body).ok()?;
    Some(receipt(record.uri, attempt))
}

/// A receipt naming the record by its `at://` URI, the address AT Protocol
/// gives it; the web link uses the URI's record key, which is the one sent
/// unless the platform chose another.
fn receipt(uri: Option<String>, attempt: &Attempt) -> Receipt {
    let uri = uri
        .filter(|u| u.starts_with("at://"))
        .map(|u| bounded(&u, 1024))
        .unwrap_or_else(|| format!("at://{}/{COLLECTION}/{}", attempt.repo, attempt.rkey));
    let rkey = uri
        .rsplit('/')
        .next()
        .filter(|k| !k.is_empty())
        .unwrap_or(&attempt.rkey)
        .to_owned();
    Receipt {
        url: Some(format!(
            "https://bsky.app/profile/{}/post/{rkey}",
            attempt.repo
        )),
        remote_id: uri,
    }
}

/// A refusal of `what` (`the post`, an upload), with XRPC's `error` name
/// as the error code.
fn refusal(response: &Response, what: &str, now_ms: u64) -> PostFailure {
    let said = serde_json::from_slice::<XrpcError>(&response.body).ok();
    let error_code = said
        .as_ref()
        .and_then(|e| e.error.as_deref())
        .map(|e| bounded(e, CODE_BYTES));
    let detail = said
        .as_ref()
        .and_then(|e| e.message.as_deref())
        .map(|m| bounded(m, MESSAGE_BYTES));
    let mut message = format!("the platform refused {what} ({}", response.status);
    for part in [&error_code, &detail].into_iter().flatten() {
        message.push_str(": ");
        message.push_str(part);
    }
    message.push(')');
    refused(
        response,
        message,
        error_code,
        "ratelimit-remaining",
        "ratelimit-reset",
        now_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tests::response;

    fn job(payload: &str, settings: &[(&str, &str)]) -> JobContext {
        crate::api::tests::job(
            "sky",
            "http://127.0.0.1:9/",
            "job-j1-key",
            payload,
            settings,
        )
    }

    fn alice() -> Attempt {
        attempt(
            &job(r#"{"text":"hi"}"#, &[("identifier", "alice.test")]),
            "2026-01-01T00:00:00.000Z",
            &[],
        )
        .unwrap()
    }

    #[test]
    fn record_keys_are_stable_tids() {
        let key = record_key("job-j1-key");
        assert_eq!(key, record_key("job-j1-key"));
        assert_ne!(key, record_key("job-j2-key"));
        assert_eq!(key.len(), 13);
        assert!(key.bytes().all(|b| TID_ALPHABET.contains(&b)));
        // A TID's top bit is clear: its first character is one of the first 16.
        assert!(b"234567abcdefghij".contains(&key.as_bytes()[0]));
        assert_eq!(record_key("").len(), 13);
    }

    #[test]
    fn a_job_becomes_a_create_record_call() {
        let job = job(
            r#"{"text":"hello","language":"en"}"#,
            &[("identifier", "alice.test")],
        );
        let a = attempt(&job, "2026-01-01T00:00:00.000Z", &[]).unwrap();
        assert_eq!(
            a.url,
            "http://127.0.0.1:9/xrpc/com.atproto.repo.createRecord"
        );
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["repo"], "alice.test");
        assert_eq!(body["collection"], "app.bsky.feed.post");
        assert_eq!(body["rkey"], record_key("job-j1-key"));
        assert_eq!(body["record"]["$type"], "app.bsky.feed.post");
        assert_eq!(body["record"]["text"], "hello");
        assert_eq!(body["record"]["createdAt"], "2026-01-01T00:00:00.000Z");
        assert_eq!(body["record"]["langs"], serde_json::json!(["en"]));
    }

    #[test]
    fn langs_win_over_language_and_are_optional() {
        let settings = [("identifier", "alice.test")];
        let both = job(
            r#"{"text":"x","langs":["de","fr"],"language":"en"}"#,
            &settings,
        );
        let body: serde_json::Value =
            serde_json::from_slice(&attempt(&both, "t", &[]).unwrap().body).unwrap();
        assert_eq!(body["record"]["langs"], serde_json::json!(["de", "fr"]));
        let none = job(r#"{"text":"x"}"#, &settings);
        let body: serde_json::Value =
            serde_json::from_slice(&attempt(&none, "t", &[]).unwrap().body).unwrap();
        assert!(body["record"].get("langs").is_none());
    }

    #[test]
    fn a_job_without_repo_or_text_is_refused() {
        let no_repo = attempt(&job(r#"{"text":"x"}"#, &[]), "t", &[])
            .err()
            .unwrap();
        assert!(
            no_repo.message.contains("`identifier`"),
            "{}",
            no_repo.message
        );
        let no_text = attempt(&job(r#"{"status":"x"}"#, &[("identifier", "a")]), "t", &[])
            .err()
            .unwrap();
        assert!(no_text.message.contains("`text`"));
        assert!(attempt(&job("[", &[("identifier", "a")]), "t", &[]).is_err());
        assert!(
            attempt(
                &job(r#"{"text":"x","langs":"en"}"#, &[("identifier", "a")]),
                "t",
                &[]
            )
            .is_err()
        );
    }

    #[test]
    fn images_are_embedded_with_their_alt_text() {
        let job = job(r#"{"text":"look"}"#, &[("identifier", "alice.test")]);
        let blob = serde_json::json!({
            "$type": "blob", "ref": {"$link": "bafkrei"}, "mimeType": "image/png", "size": 4
        });
        let images = [
            Image {
                alt: "a rocket".into(),
                blob: blob.clone(),
            },
            Image {
                alt: String::new(),
                blob: blob.clone(),
            },
        ];
        let body: serde_json::Value =
            serde_json::from_slice(&attempt(&job, "t", &images).unwrap().body).unwrap();
        let embed = &body["record"]["embed"];
        assert_eq!(embed["$type"], "app.bsky.embed.images");
        assert_eq!(embed["images"][0]["alt"], "a rocket");
        assert_eq!(embed["images"][0]["image"], blob);
        assert_eq!(embed["images"][1]["alt"], "");
        let plain: serde_json::Value =
            serde_json::from_slice(&attempt(&job, "t", &[]).unwrap().body).unwrap();
        assert!(plain["record"].get("embed").is_none());
    }

    #[test]
    fn an_upload_answers_a_blob_or_a_refusal() {
        let ok = response(
            200,
            &[],
            r#"{"blob":{"$type":"blob","ref":{"$link":"b"},"mimeType":"image/png","size":4}}"#,
        );
        assert_eq!(uploaded(&ok, "media[0] a.png", 0).unwrap()["size"], 4);
        let big = response(
            400,
            &[],
            r#"{"error":"BlobTooLarge","message":"This file is too large"}"#,
        );
        let f = uploaded(&big, "media[0] a.png", 0).unwrap_err();
        assert_eq!(f.http_status, Some(400));
        assert_eq!(f.error_code.as_deref(), Some("BlobTooLarge"));
        assert!(
            f.message
                .starts_with("the platform refused media[0] a.png (400: BlobTooLarge"),
            "{}",
            f.message
        );
        assert!(uploaded(&response(200, &[], "{}"), "x", 0).is_err());
        assert!(uploaded(&response(200, &[], r#"{"blob":"x"}"#), "x", 0).is_err());
    }

    #[test]
    fn lookup_escapes_the_repo() {
        let job = job(r#"{"text":"x"}"#, &[("identifier", "did:plc:a b&c")]);
        let a = attempt(&job, "t", &[]).unwrap();
        assert_eq!(
            lookup_url(&job, &a),
            format!(
                "http://127.0.0.1:9/xrpc/com.atproto.repo.getRecord?repo=did:plc:a%20b%26c&collection=app.bsky.feed.post&rkey={}",
                a.rkey
            )
        );
    }

    #[test]
    fn a_created_record_is_a_receipt() {
        let a = alice();
        let body = format!(
            r#"{{"uri":"at://did:plc:alice/app.bsky.feed.post/{}","cid":"bafy"}}"#,
            a.rkey
        );
        let Outcome::Posted(r) = outcome(&response(200, &[], &body), &a, 0) else {
            panic!("not posted");
        };
        assert_eq!(
            r.remote_id,
            format!("at://did:plc:alice/app.bsky.feed.post/{}", a.rkey)
        );
        assert_eq!(
            r.url.unwrap(),
            format!("https://bsky.app/profile/alice.test/post/{}", a.rkey)
        );
        // No uri: the record is named by what was sent.
        let Outcome::Posted(r) = outcome(&response(200, &[], "{}"), &a, 0) else {
            panic!("not posted");
        };
        assert_eq!(
            r.remote_id,
            format!("at://alice.test/app.bsky.feed.post/{}", a.rkey)
        );
        assert!(matches!(
            outcome(&response(200, &[], "<html>"), &a, 0),
            Outcome::Failed(f) if f.http_status == Some(200)
        ));
    }

    #[test]
    fn a_taken_record_key_is_looked_up() {
        let a = alice();
        let taken = response(
            400,
            &[],
            r#"{"error":"InvalidRequest","message":"Record already exists"}"#,
        );
        assert!(matches!(outcome(&taken, &a, 0), Outcome::AlreadyExists(_)));
        let invalid = response(
            400,
            &[],
            r#"{"error":"InvalidRequest","message":"no text"}"#,
        );
        assert!(matches!(outcome(&invalid, &a, 0), Outcome::Failed(_)));
        let record = format!(
            r#"{{"uri":"at://did:plc:alice/app.bsky.feed.post/{}","cid":"c","value":{{}}}}"#,
            a.rkey
        );
        assert!(found(&response(200, &[], &record), &a).is_some());
        assert!(found(&response(400, &[], r#"{"error":"RecordNotFound"}"#), &a).is_none());
        assert!(found(&response(200, &[], "nonsense"), &a).is_none());
    }

    #[test]
    fn refusals_carry_the_xrpc_error_and_the_wait() {
        let a = alice();
        let limited = response(
            429,
            &[
                ("RateLimit-Remaining", "0"),
                ("RateLimit-Reset", "1000"),
                ("Retry-After", "30"),
            ],
            r#"{"error":"RateLimitExceeded","message":"Rate Limit Exceeded"}"#,
        );
        let Outcome::Failed(f) = outcome(&limited, &a, 900_000) else {
            panic!("not a failure");
        };
        assert_eq!(f.http_status, Some(429));
        assert_eq!(f.error_code.as_deref(), Some("RateLimitExceeded"));
        assert_eq!(f.retry_after_ms, Some(100_000));
        assert_eq!(f.rate_limit_reset.as_deref(), Some("1000"));
        assert!(f.message.contains("Rate Limit Exceeded"));

        // The window is on every answer; it is no wait while not used up.
        let expired = response(
            400,
            &[("ratelimit-remaining", "99"), ("ratelimit-reset", "5000")],
            r#"{"error":"ExpiredToken","message":"Token has expired"}"#,
        );
        let Outcome::Failed(f) = outcome(&expired, &a, 0) else {
            panic!("not a failure");
        };
        assert_eq!(f.error_code.as_deref(), Some("ExpiredToken"));
        assert_eq!(f.retry_after_ms, None);
        assert_eq!(f.rate_limit_reset, None);
    }

    #[test]
    fn hostile_answers_are_bounded() {
        let a = alice();
        let long = "é".repeat(10_000);
        let body = format!(r#"{{"error":"{long}","message":"{long}"}}"#);
        let Outcome::Failed(f) = outcome(&response(500, &[], &body), &a, 0) else {
            panic!("not a failure");
        };
        assert!(f.error_code.unwrap().len() <= CODE_BYTES);
        assert!(f.message.len() < CODE_BYTES + MESSAGE_BYTES + 100);
        let absurd = response(
            429,
            &[
                ("ratelimit-reset", "1e300"),
                ("retry-after", "18446744073709551615"),
            ],
            "",
        );
        let Outcome::Failed(f) = outcome(&absurd, &a, 0) else {
            panic!("not a failure");
        };
        assert_eq!(f.retry_after_ms, Some(u64::MAX));
        assert_eq!(f.error_code, None);
        let nan = response(429, &[("ratelimit-reset", "NaN")], "null");
        let Outcome::Failed(f) = outcome(&nan, &a, 0) else {
            panic!("not a failure");
        };
        assert_eq!(f.retry_after_ms, None);
    }
}
