//! Media, spoken to over real HTTP: Mastodon's uploads, polls and
//! `media_ids`, Bluesky's blobs and image embeds, their scripted and
//! enforced refusals, and what the listings and counters show of them.

use std::time::Duration;

use orchestrator_sandbox::{Attachment, Counters, Platform, Post, Sandbox, Scenario};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SCENARIO: &str = r#"
media_size_limit = 1000

[[account]]
name = "alice"
token = "alice-token"

[[account]]
name = "bob"
token = "bob-token"

[[account]]
name = "slowpoke"
token = "slowpoke-token"
upload_script = [{ respond = "processing", polls = 3 }]

[[account]]
name = "picky"
token = "picky-token"
upload_script = [
  { respond = "too-large" },
  { respond = "unsupported-type" },
  { respond = "rate-limited", reset_secs = 9 },
  { respond = "server-error", status = 503, retry_after_secs = 2 },
  { respond = "drop-connection" },
]

[[account]]
name = "sky"
handle = "sky.bsky.test"
password = "sky-pw"

[[account]]
name = "other-sky"
handle = "other.bsky.test"
password = "other-pw"

[[account]]
name = "sky-picky"
handle = "picky.bsky.test"
password = "picky-pw"
upload_script = [
  { respond = "rate-limited", reset_secs = 4 },
  { respond = "too-large" },
  { respond = "unsupported-type" },
  { respond = "server-error", status = 502 },
]
"#;

/// The eight bytes every PNG opens with, and a little more.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR not really an image";

async fn start(scenario: &str) -> Sandbox {
    Sandbox::start_local(Scenario::parse(scenario).unwrap())
        .await
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A form part: its name, its file name and type if it is a file, its
/// bytes.
type FormPart<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [u8]);

/// A `multipart/form-data` body and its content type.
fn form(parts: &[FormPart<'_>]) -> (String, Vec<u8>) {
    let boundary = "sandbox-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some((filename, content_type)) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                     Content-Type: {content_type}\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload_form(
    sandbox: &Sandbox,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    client()
        .post(format!("{}/api/v2/media", sandbox.url()))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Uploads `bytes` as `type` with alt text `description`.
async fn upload(
    sandbox: &Sandbox,
    token: &str,
    bytes: &[u8],
    content_type: &str,
    description: Option<&str>,
) -> reqwest::Response {
    let mut parts = vec![("file", Some(("picture.png", content_type)), bytes)];
    if let Some(description) = description {
        parts.push(("description", None, description.as_bytes()));
    }
    let (content_type, body) = form(&parts);
    upload_form(sandbox, token, &content_type, body).await
}

async fn status_and_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Uploads a PNG and answers its media id; it must be ready at once.
async fn media_id(sandbox: &Sandbox, token: &str, description: &str) -> String {
    let (status, media) =
        status_and_json(upload(sandbox, token, PNG, "image/png", Some(description)).await).await;
    assert_eq!(status, StatusCode::OK, "{media}");
    media["id"].as_str().unwrap().to_owned()
}

async fn poll(sandbox: &Sandbox, token: &str, id: &str) -> reqwest::Response {
    client()
        .get(format!("{}/api/v1/media/{id}", sandbox.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn post_status(
    sandbox: &Sandbox,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}/api/v1/statuses", sandbox.url()))
        .bearer_auth(token)
        .json(&body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

async fn get<T: serde::de::DeserializeOwned>(sandbox: &Sandbox, path: &str) -> T {
    client()
        .get(format!("{}{path}", sandbox.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_image_is_uploaded_attached_and_listed_with_its_alt_text() {
    let sandbox = start(SCENARIO).await;
    let response = upload(
        &sandbox,
        "alice-token",
        PNG,
        "image/png",
        Some("A cat, asleep"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-ratelimit-limit"), "30");
    assert_eq!(header(&response, "x-ratelimit-remaining"), "29");
    let (_, media) = status_and_json(response).await;
    assert_eq!(media["type"], "image");
    assert_eq!(media["description"], "A cat, asleep");
    let id = media["id"].as_str().unwrap().to_owned();
    assert!(
        media["url"].as_str().unwrap().starts_with(sandbox.url()),
        "{media}"
    );
    // Ready: a poll says so.
    assert_eq!(
        poll(&sandbox, "alice-token", &id).await.status(),
        StatusCode::OK
    );

    let (status, posted) = status_and_json(
        post_status(
            &sandbox,
            "alice-token",
            None,
            json!({"status": "look", "media_ids": [id]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{posted}");
    assert_eq!(posted["media_attachments"][0]["id"], id.as_str());
    assert_eq!(
        posted["media_attachments"][0]["description"],
        "A cat, asleep"
    );

    let expected = Attachment {
        id: id.clone(),
        description: Some("A cat, asleep".into()),
        content_type: "image/png".into(),
        size: PNG.len() as u64,
        sha256: sha256(PNG),
        filename: Some("picture.png".into()),
    };
    assert_eq!(sandbox.statuses()[0].media, vec![expected.clone()]);
    let listed: Vec<Value> = get(&sandbox, "/_sandbox/statuses").await;
    assert_eq!(listed[0]["media"][0]["description"], "A cat, asleep");
    assert_eq!(listed[0]["media"][0]["sha256"], sha256(PNG).as_str());
    let posts: Vec<Post> = get(&sandbox, "/_sandbox/posts").await;
    assert_eq!(posts[0].media, vec![expected]);

    // Attached media is the status's now: no longer to be polled, as on
    // Mastodon.
    assert_eq!(
        poll(&sandbox, "alice-token", &id).await.status(),
        StatusCode::NOT_FOUND
    );
    let counters: Counters = get(&sandbox, "/_sandbox/counters").await;
    assert_eq!((counters.media_uploads, counters.upload_requests), (1, 1));
    assert_eq!(counters.accounts["alice"].media_uploads, 1);
    assert_eq!(counters.statuses_created, 1);
}

#[tokio::test]
async fn processing_takes_the_scripted_number_of_polls() {
    let sandbox = start(SCENARIO).await;
    let (status, media) =
        status_and_json(upload(&sandbox, "slowpoke-token", PNG, "image/jpeg", None).await).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        (&media["url"], &media["description"]),
        (&Value::Null, &Value::Null)
    );
    let id = media["id"].as_str().unwrap().to_owned();

    let refused = post_status(&sandbox, "slowpoke-token", None, json!({"media_ids": [id]})).await;
    let (status, error) = status_and_json(refused).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        error["error"],
        "Cannot attach files that have not finished processing. Try again in a moment!"
    );
    for _ in 0..2 {
        let (status, media) = status_and_json(poll(&sandbox, "slowpoke-token", &id).await).await;
        assert_eq!(
            (status, &media["url"]),
            (StatusCode::PARTIAL_CONTENT, &Value::Null)
        );
    }
    let (status, media) = status_and_json(poll(&sandbox, "slowpoke-token", &id).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(media["url"].is_string(), "{media}");
    // Text may be empty when there is media.
    let posted = post_status(&sandbox, "slowpoke-token", None, json!({"media_ids": [id]})).await;
    assert_eq!(posted.status(), StatusCode::OK);
    assert_eq!(sandbox.statuses()[0].text, "");

    // The script is over: the next upload is ready at once.
    let response = upload(&sandbox, "slowpoke-token", PNG, "image/png", None).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_scenario_sets_the_polls_of_every_upload() {
    let sandbox = start("media_processing_polls = 1").await;
    let (status, media) =
        status_and_json(upload(&sandbox, "anyone", PNG, "image/gif", None).await).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = media["id"].as_str().unwrap();
    assert_eq!(poll(&sandbox, "anyone", id).await.status(), StatusCode::OK);
    // Another account's media is not found.
    assert_eq!(
        poll(&sandbox, "someone", id).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_form_attaches_media_ids_too() {
    let sandbox = start(SCENARIO).await;
    let first = media_id(&sandbox, "alice-token", "one").await;
    let second = media_id(&sandbox, "alice-token", "two").await;
    let response = client()
        .post(format!("{}/api/v1/statuses", sandbox.url()))
        .bearer_auth("alice-token")
        .form(&[
            ("status", "two pictures"),
            ("media_ids[]", second.as_str()),
            ("media_ids[]", first.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let media = &sandbox.statuses()[0].media;
    let alts: Vec<_> = media
        .iter()
        .map(|m| m.description.as_deref().unwrap())
        .collect();
    assert_eq!(alts, ["two", "one"]);
    // Without media, text is still needed.
    let (status, error) =
        status_and_json(post_status(&sandbox, "alice-token", None, json!({"status": " "})).await)
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["error"], "Validation failed: Text can't be blank");
}

#[tokio::test]
async fn media_that_is_not_the_accounts_to_attach_is_refused() {
    let sandbox = start(SCENARIO).await;
    let bobs = media_id(&sandbox, "bob-token", "bob's").await;
    let mine = media_id(&sandbox, "alice-token", "mine").await;
    for (ids, expected) in [
        (
            json!([bobs]),
            format!("Media {bobs} not found or already attached to another post"),
        ),
        (
            json!(["12345", mine]),
            "Media 12345 not found or already attached to another post".into(),
        ),
        (
            json!([mine, mine, mine, mine, mine]),
            "Cannot attach more than 4 files".into(),
        ),
    ] {
        let (status, error) = status_and_json(
            post_status(
                &sandbox,
                "alice-token",
                None,
                json!({"status": "x", "media_ids": ids}),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error["error"], expected.as_str());
    }
    // None of that attached anything: it attaches once, by number too, and
    // a repeated id attaches once.
    let numeric: u64 = mine.parse().unwrap();
    let ok = post_status(
        &sandbox,
        "alice-token",
        None,
        json!({"status": "x", "media_ids": [numeric, mine]}),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(sandbox.statuses()[0].media.len(), 1);
    let (status, error) = status_and_json(
        post_status(
            &sandbox,
            "alice-token",
            None,
            json!({"status": "again", "media_ids": [mine]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("already attached"),
        "{error}"
    );
    assert_eq!(sandbox.counters().statuses_created, 1);
}

#[tokio::test]
async fn files_too_large_or_not_images_are_refused() {
    let sandbox = start(SCENARIO).await;
    let big = vec![7u8; 1001];
    let (status, error) =
        status_and_json(upload(&sandbox, "alice-token", &big, "image/png", None).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        error["error"],
        "Validation failed: File file size must be less than 1000 Bytes"
    );
    let (status, error) =
        status_and_json(upload(&sandbox, "alice-token", b"hello", "text/plain", None).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        error["error"],
        "Validation failed: File content type is invalid"
    );
    let (_, error) =
        status_and_json(upload(&sandbox, "alice-token", &big, "image/svg+xml", None).await).await;
    assert_eq!(
        error["error"],
        "Validation failed: File content type is invalid, File file size must be less than 1000 Bytes"
    );
    let long = "x".repeat(1501);
    let (_, error) =
        status_and_json(upload(&sandbox, "alice-token", PNG, "image/webp", Some(&long)).await)
            .await;
    assert_eq!(
        error["error"],
        "Validation failed: Description is too long (maximum is 1500 characters)"
    );
    // No file part, or a part that is no file (no file name), is no file.
    let (content_type, body) = form(&[("file", None, PNG)]);
    let (status, error) =
        status_and_json(upload_form(&sandbox, "alice-token", &content_type, body).await).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("Validation failed: File can't be blank")
        )
    );
    let response = upload_form(
        &sandbox,
        "alice-token",
        "multipart/form-data; boundary=x",
        b"junk".to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // A body far past the limit is refused before it is looked at.
    let huge = vec![0u8; 200 * 1024];
    let (status, error) =
        status_and_json(upload(&sandbox, "alice-token", &huge, "image/png", None).await).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("Request body too large")
        )
    );
    // And without a token nothing is looked at either.
    assert_eq!(
        upload(&sandbox, "nobody", PNG, "image/png", None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        poll(&sandbox, "nobody", "1").await.status(),
        StatusCode::UNAUTHORIZED
    );

    let counters = sandbox.counters();
    assert_eq!(counters.media_uploads, 0);
    // The refusals before the account was known were not its uploads.
    assert_eq!(counters.accounts["alice"].upload_requests, 6);
}

#[tokio::test]
async fn scripted_upload_failures_answer_in_order() {
    let sandbox = start(SCENARIO).await;
    let attempt = || upload(&sandbox, "picky-token", PNG, "image/png", None);
    let (status, error) = status_and_json(attempt().await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        error["error"],
        "Validation failed: File file size must be less than 1000 Bytes"
    );
    let (status, error) = status_and_json(attempt().await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        error["error"],
        "Validation failed: File content type is invalid"
    );
    let limited = attempt().await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "9");
    assert_eq!(header(&limited, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&limited, "x-ratelimit-limit"), "30");
    let (_, error) = status_and_json(limited).await;
    assert_eq!(error["error"], "Too many requests");
    let failed = attempt().await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&failed, "retry-after"), "2");
    let dropped = client()
        .post(format!("{}/api/v2/media", sandbox.url()))
        .bearer_auth("picky-token")
        .send()
        .await
        .unwrap_err();
    assert!(!dropped.is_status(), "{dropped}");
    assert_eq!(attempt().await.status(), StatusCode::OK);

    let counters = sandbox.counters();
    assert_eq!(counters.rate_limited, 1);
    assert_eq!(counters.accounts["picky"].upload_requests, 6);
    assert_eq!(counters.media_uploads, 1);
    // Uploads are not posting requests: the posting script is untouched.
    assert_eq!(counters.requests_by_account.get("picky"), Some(&0));
}

#[tokio::test]
async fn an_enforced_upload_limit_is_apart_from_the_statuses_limit() {
    let sandbox = start("enforce_rate_limit = true\nrate_limit = 1\nupload_rate_limit = 2").await;
    for remaining in ["1", "0"] {
        let response = upload(&sandbox, "a", PNG, "image/png", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-ratelimit-remaining"), remaining);
    }
    let refused = upload(&sandbox, "a", PNG, "image/png", None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "x-ratelimit-limit"), "2");
    let wait: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=1800).contains(&wait), "{wait}");
    // Statuses have their own window, and so does another account.
    assert_eq!(
        post_status(&sandbox, "a", None, json!({"status": "x"}))
            .await
            .status(),
        StatusCode::OK
    );
    let limited = post_status(&sandbox, "a", None, json!({"status": "y"})).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        upload(&sandbox, "b", PNG, "image/png", None).await.status(),
        StatusCode::OK
    );
    // Every 429 is counted, whichever endpoint answered it.
    assert_eq!(sandbox.counters().rate_limited, 2);
}

#[tokio::test]
async fn a_retried_status_with_media_is_posted_once() {
    let sandbox = start(SCENARIO).await;
    let id = media_id(&sandbox, "alice-token", "the picture").await;
    let body = json!({"status": "once", "media_ids": [id]});
    let first = post_status(&sandbox, "alice-token", Some("job-7"), body.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first = first.text().await.unwrap();
    // The retry's media is attached already, to the status it replays.
    let again = post_status(&sandbox, "alice-token", Some("job-7"), body.clone()).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.text().await.unwrap(), first);
    // Without the key it would be another status, which the media refuses.
    let unkeyed = post_status(&sandbox, "alice-token", None, body).await;
    assert_eq!(unkeyed.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let counters = sandbox.counters();
    assert_eq!(counters.statuses_created, 1);
    assert_eq!(counters.duplicates_prevented, 1);
    assert_eq!(counters.created_by_idempotency_key["alice/job-7"], 1);
    let statuses = sandbox.statuses();
    assert_eq!(statuses[0].media.len(), 1);
    assert_eq!(
        statuses[0].media[0].description.as_deref(),
        Some("the picture")
    );
}

#[tokio::test]
async fn concurrent_retries_with_media_make_one_status() {
    let sandbox = start("").await;
    let id = media_id(&sandbox, "anyone", "alt").await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let url = sandbox.url().to_owned();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let response = client()
                .post(format!("{url}/api/v1/statuses"))
                .bearer_auth("anyone")
                .header("Idempotency-Key", "same")
                .json(&json!({"status": "x", "media_ids": [id]}))
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, StatusCode::OK);
    let counters = sandbox.counters();
    assert_eq!(
        (counters.statuses_created, counters.duplicates_prevented),
        (1, 15)
    );
}

// Bluesky

async fn login(sandbox: &Sandbox, identifier: &str, password: &str) -> String {
    let (status, session) = status_and_json(
        client()
            .post(format!(
                "{}/xrpc/com.atproto.server.createSession",
                sandbox.url()
            ))
            .json(&json!({ "identifier": identifier, "password": password }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    session["accessJwt"].as_str().unwrap().to_owned()
}

async fn upload_blob(
    sandbox: &Sandbox,
    access: &str,
    bytes: Vec<u8>,
    mime_type: Option<&str>,
) -> reqwest::Response {
    let mut req = client()
        .post(format!(
            "{}/xrpc/com.atproto.repo.uploadBlob",
            sandbox.url()
        ))
        .bearer_auth(access)
        .body(bytes);
    if let Some(mime_type) = mime_type {
        req = req.header("content-type", mime_type);
    }
    req.send().await.unwrap()
}

/// Uploads a blob and answers its ref, which must be fine.
async fn blob(sandbox: &Sandbox, access: &str, bytes: Vec<u8>, mime_type: &str) -> Value {
    let (status, answer) =
        status_and_json(upload_blob(sandbox, access, bytes, Some(mime_type)).await).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["blob"].clone()
}

async fn post_images(
    sandbox: &Sandbox,
    access: &str,
    repo: &str,
    text: &str,
    images: Value,
) -> reqwest::Response {
    client()
        .post(format!(
            "{}/xrpc/com.atproto.repo.createRecord",
            sandbox.url()
        ))
        .bearer_auth(access)
        .json(&json!({
            "repo": repo,
            "collection": "app.bsky.feed.post",
            "record": {
                "$type": "app.bsky.feed.post",
                "text": text,
                "createdAt": "2025-01-01T00:00:00.000Z",
                "embed": { "$type": "app.bsky.embed.images", "images": images },
            },
        }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_blob_is_uploaded_and_embedded_with_its_alt_text() {
    let sandbox = start(SCENARIO).await;
    let access = login(&sandbox, "sky.bsky.test", "sky-pw").await;
    let response = upload_blob(&sandbox, &access, PNG.to_vec(), Some("image/png")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "ratelimit-limit"), "30");
    assert_eq!(header(&response, "ratelimit-remaining"), "29");
    let (_, answer) = status_and_json(response).await;
    let blob = answer["blob"].clone();
    assert_eq!(blob["$type"], "blob");
    assert_eq!(blob["mimeType"], "image/png");
    assert_eq!(blob["size"], PNG.len());
    let cid = blob["ref"]["$link"].as_str().unwrap().to_owned();
    assert!(cid.starts_with("bafkrei") && cid.len() == 59, "{cid}");

    let images = json!([{ "alt": "A heron", "image": blob }]);
    let (status, created) =
        status_and_json(post_images(&sandbox, &access, "sky.bsky.test", "", images).await).await;
    assert_eq!(status, StatusCode::OK, "{created}");

    let posts: Vec<Post> = get(&sandbox, "/_sandbox/posts").await;
    assert_eq!(posts.len(), 1);
    assert_eq!(
        (posts[0].platform, posts[0].text.as_str()),
        (Platform::Bluesky, "")
    );
    assert_eq!(
        posts[0].media,
        vec![Attachment {
            id: cid,
            description: Some("A heron".into()),
            content_type: "image/png".into(),
            size: PNG.len() as u64,
            sha256: sha256(PNG),
            filename: None,
        }]
    );
    let counters = sandbox.counters();
    assert_eq!(counters.blobs_uploaded, 1);
    assert_eq!(counters.accounts["sky"].blobs_uploaded, 1);
    assert_eq!(counters.records, 1);
}

#[tokio::test]
async fn embeds_of_blobs_a_pds_would_refuse_are_refused() {
    let sandbox = start(&("blob_upload_limit = 1500000\n".to_owned() + SCENARIO)).await;
    let access = login(&sandbox, "sky.bsky.test", "sky-pw").await;
    let other = login(&sandbox, "other.bsky.test", "other-pw").await;
    // Not the bytes of any blob of the account: a CID is of the bytes.
    let theirs = blob(&sandbox, &other, b"their own picture".to_vec(), "image/png").await;
    let big = blob(&sandbox, &access, vec![1u8; 1_000_001], "image/jpeg").await;
    let text = blob(&sandbox, &access, b"plain".to_vec(), "text/plain").await;
    let mut mislabelled = blob(&sandbox, &access, PNG.to_vec(), "image/png").await;
    mislabelled["mimeType"] = "image/webp".into();
    let mut no_alt = json!({ "image": mislabelled.clone() });
    no_alt.as_object_mut().unwrap().remove("alt");
    let theirs_cid = theirs["ref"]["$link"].as_str().unwrap().to_owned();
    for (image, error, message) in [
        (
            json!({"alt": "", "image": theirs}),
            "BlobNotFound",
            format!("Could not find blob: {theirs_cid}"),
        ),
        (
            json!({"alt": "", "image": big}),
            "BlobTooLarge",
            "This file is too large. It is 976.56KB but the maximum size is 976.56KB.".into(),
        ),
        (
            json!({"alt": "", "image": text}),
            "InvalidMimeType",
            "Wrong type of file. It is text/plain but it must match image/*.".into(),
        ),
        (
            json!({"alt": "", "image": mislabelled}),
            "InvalidMimeType",
            "Referenced Mimetype does not match stored blob. Expected: image/png, Got: image/webp"
                .into(),
        ),
        (
            no_alt,
            "InvalidRequest",
            "Record/embed/images/0 must have the property \"alt\"".into(),
        ),
        (
            json!({"alt": "", "image": {"$type": "blob"}}),
            "InvalidRequest",
            "Record/embed/images/0/image should be a blob ref".into(),
        ),
    ] {
        let (status, body) = status_and_json(
            post_images(&sandbox, &access, "sky.bsky.test", "x", json!([image])).await,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body, json!({"error": error, "message": message}));
    }
    let five = Value::Array(vec![json!({"alt": "", "image": theirs_cid}); 5]);
    let (status, body) =
        status_and_json(post_images(&sandbox, &access, "sky.bsky.test", "x", five).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("more than 4"),
        "{body}"
    );

    // Past the upload limit, and without a type, the upload itself is refused.
    let (status, body) = status_and_json(
        upload_blob(&sandbox, &access, vec![0; 1_500_001], Some("image/png")).await,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "PayloadTooLarge");
    let (status, body) =
        status_and_json(upload_blob(&sandbox, &access, PNG.to_vec(), None).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidRequest"))
    );
    let response = upload_blob(&sandbox, "not-a-token", PNG.to_vec(), Some("image/png")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(sandbox.posts().len(), 0);
}

#[tokio::test]
async fn scripted_blob_failures_answer_in_xrpc_shape() {
    let sandbox = start(SCENARIO).await;
    let access = login(&sandbox, "picky.bsky.test", "picky-pw").await;
    let attempt = || upload_blob(&sandbox, &access, PNG.to_vec(), Some("image/png"));
    let limited = attempt().await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "ratelimit-remaining"), "0");
    let reset: u64 = header(&limited, "ratelimit-reset").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(reset > now && reset <= now + 5, "{reset}");
    let (_, body) = status_and_json(limited).await;
    assert_eq!(body["error"], "RateLimitExceeded");
    let (status, body) = status_and_json(attempt().await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("PayloadTooLarge"))
    );
    let (status, body) = status_and_json(attempt().await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidMimeType"))
    );
    assert_eq!(attempt().await.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(attempt().await.status(), StatusCode::OK);
    let counters = sandbox.counters();
    assert_eq!((counters.rate_limited, counters.blobs_uploaded), (1, 1));
    assert_eq!(counters.accounts["sky-picky"].upload_requests, 5);
}
