//! Media attachments: a job's payload names image files (`media`), the
//! import checks each one and records its size, type and SHA-256, the
//! host checks it again before every attempt, and the posters upload what
//! the host checked — Mastodon's `/api/v2/media`, Bluesky's `uploadBlob` —
//! each once, with its alt text.

use orchestrator_sandbox::Attachment;
use orchestrator_store::JobState::{Failed, Succeeded};
use sha2::{Digest, Sha256};

use crate::support::{Fixture, Output, artifacts, run};

/// A Mastodon account whose uploads are processed for two polls, a
/// Bluesky one, and a Discord webhook (a 0.3.0 poster, no media).
const PLATFORMS: &str = r#"
media_processing_polls = 2

[[account]]
name = "masto"
token = "masto-token"

[[account]]
name = "sky"
handle = "sky.bsky.test"
password = "sky-app-password"

[[account]]
name = "disco"
webhook = "4242/disco-webhook-token"
"#;

fn accounts(url: &str) -> String {
    format!(
        r#"
[accounts.masto]
base_url = "{url}"
poster = "mastodon-poster"
secret = "masto-token"

[accounts.sky]
base_url = "{url}"
poster = "bluesky-poster"
auth = "session"
secret = "sky-app-password"
settings = {{ identifier = "sky.bsky.test" }}

[accounts.disco]
base_url = "{url}"
poster = "webhook-poster"
auth = "url-secret"
secret = "4242/disco-webhook-token"
"#
    )
}

/// A fixture on [`PLATFORMS`] with the three posters, and `jobs`.
fn platforms(jobs: &str) -> Fixture {
    let mut f = Fixture::new(PLATFORMS, 0).with_jobs(jobs);
    std::fs::write(f.path("accounts.toml"), accounts(f.sandbox.url())).unwrap();
    f.plugins = vec![
        artifacts::MASTODON_POSTER,
        artifacts::BLUESKY_POSTER,
        artifacts::WEBHOOK_POSTER,
        artifacts::XRPC_CLASSIFIER,
        artifacts::HTTP_CLASSIFIER,
    ];
    f
}

/// An image of `kind` (its magic bytes, then `len` bytes of `seed`):
/// enough for the host, which judges a file by its first bytes.
fn image(kind: &str, seed: u8, len: usize) -> Vec<u8> {
    let mut bytes = match kind {
        "png" => b"\x89PNG\r\n\x1a\n".to_vec(),
        "jpeg" => vec![0xFF, 0xD8, 0xFF, 0xE0],
        "gif" => b"GIF89a".to_vec(),
        "webp" => b"RIFF\0\0\0\0WEBPVP8 ".to_vec(),
        _ => unreachable!(),
    };
    bytes.extend((0..len).map(|i| seed.wrapping_add(i as u8)));
    bytes
}

/// Writes `bytes` at `name` in the fixture's folder; the SHA-256, in hex.
fn put(f: &Fixture, name: &str, bytes: &[u8]) -> String {
    let path = f.path(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    sha256(bytes)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a post carries of an attachment: its hash, alt text and type.
fn carried(media: &[Attachment]) -> Vec<(String, Option<String>, String)> {
    media
        .iter()
        .map(|a| {
            (
                a.sha256.clone(),
                a.description.clone(),
                a.content_type.clone(),
            )
        })
        .collect()
}

fn alt(text: &str) -> Option<String> {
    Some(text.to_owned())
}

#[test]
fn a_batch_with_images_posts_each_image_once_with_its_alt_text() {
    let f = platforms(concat!(
        r#"{"id": "m1", "account": "masto", "payload": {"status": "Liftoff", "media": [{"path": "img/launch.png", "description": "A rocket lifting off"}, {"path": "img/crew.jpg", "description": "The crew, waving"}]}}"#,
        "\n",
        r#"{"id": "m2", "account": "masto", "payload": {"status": "No pictures today"}}"#,
        "\n",
        r#"{"id": "m3", "account": "masto", "payload": {"status": "", "media": [{"path": "img/badge.gif"}]}}"#,
        "\n",
        r#"{"id": "s1", "account": "sky", "payload": {"text": "Liftoff", "media": [{"path": "img/badge.gif", "description": "The mission badge"}, {"path": "img/patch.webp", "description": "A cloth patch"}]}}"#,
        "\n",
        r#"{"id": "s2", "account": "sky", "payload": {"text": "No pictures today"}}"#,
        "\n",
        r#"{"id": "d1", "account": "disco", "payload": {"text": "Liftoff, said on Discord"}}"#,
        "\n",
    ));
    // Larger than the host serves in one read, and than a read piece.
    let launch = put(&f, "img/launch.png", &image("png", 1, (2 << 20) + 12_345));
    let crew = put(&f, "img/crew.jpg", &image("jpeg", 2, 3000));
    let badge = put(&f, "img/badge.gif", &image("gif", 3, 500));
    let patch = put(&f, "img/patch.webp", &image("webp", 4, 700));

    let out = f.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        f.outcomes()
            .values()
            .all(|(s, n)| (*s, *n) == (Succeeded, 1))
    );

    let posts = f.sandbox.posts();
    assert_eq!(posts.len(), 6, "every job posted once: {posts:#?}");
    let on = |account: &str, text: &str| {
        let found: Vec<_> = posts
            .iter()
            .filter(|p| p.account == account && p.text == text)
            .collect();
        assert_eq!(found.len(), 1, "{account}: {text:?} in {posts:#?}");
        found[0].media.clone()
    };
    let png = "image/png".to_owned();
    let m1 = on("masto", "Liftoff");
    assert_eq!(
        carried(&m1),
        [
            (launch, alt("A rocket lifting off"), png),
            (crew, alt("The crew, waving"), "image/jpeg".into()),
        ]
    );
    // Mastodon's upload names the file, not where it was.
    assert_eq!(m1[0].filename.as_deref(), Some("launch.png"));
    assert!(on("masto", "No pictures today").is_empty());
    assert_eq!(
        carried(&on("masto", "")),
        [(badge.clone(), None, "image/gif".into())]
    );
    assert_eq!(
        carried(&on("sky", "Liftoff")),
        [
            (badge, alt("The mission badge"), "image/gif".into()),
            (patch, alt("A cloth patch"), "image/webp".into()),
        ]
    );
    assert!(on("sky", "No pictures today").is_empty());
    assert!(on("disco", "Liftoff, said on Discord").is_empty());

    // Each image went up once: nothing was uploaded twice or left over.
    let counters = f.sandbox.counters();
    assert_eq!(counters.media_uploads, 3);
    assert_eq!(counters.blobs_uploaded, 2);
    for (key, n) in &counters.created_by_idempotency_key {
        assert_eq!(*n, 1, "{key} created {n} statuses");
    }
}

#[test]
fn a_file_changed_after_import_fails_only_its_job_and_for_good() {
    let same = r#"{"id": "same", "account": "masto", "payload": {"status": "Unchanged", "media": [{"path": "a.png", "description": "A"}]}}"#;
    let changed = r#"{"id": "changed", "account": "masto", "payload": {"status": "Changed", "media": [{"path": "img/b.png", "description": "B"}]}}"#;
    let gone = r#"{"id": "gone", "account": "sky", "payload": {"text": "Gone", "media": [{"path": "c.png"}]}}"#;
    let plain = r#"{"id": "plain", "account": "sky", "payload": {"text": "Plain"}}"#;
    let f = platforms(&format!("{same}\n{changed}\n{gone}\n{plain}\n"));
    let a = put(&f, "a.png", &image("png", 1, 100));
    put(&f, "img/b.png", &image("png", 2, 100));
    put(&f, "c.png", &image("png", 3, 100));
    let out = run(&mut f.command(&["--seed-only"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    // After the import: b.png is edited, c.png deleted (and its job left
    // out of the jobs file, which would be refused for it; the stored job
    // stays). The import keeps stored jobs as they were: the new b.png
    // passes its checks, but the job still names the old one.
    let edited = put(&f, "img/b.png", &image("png", 9, 100));
    std::fs::remove_file(f.path("c.png")).unwrap();
    std::fs::write(
        f.path("jobs.jsonl"),
        format!("{same}\n{changed}\n{plain}\n"),
    )
    .unwrap();

    let out = f.run(&[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let outcomes = f.outcomes();
    assert_eq!(outcomes["same"], (Succeeded, 1));
    assert_eq!(outcomes["plain"], (Succeeded, 1));
    // Non-retryable, whatever the classifiers would have said: one attempt.
    assert_eq!(outcomes["changed"], (Failed, 1));
    assert_eq!(outcomes["gone"], (Failed, 1));
    let state = f.state();
    let changed = &state.attempts("changed").unwrap()[0];
    assert_eq!(changed.category.as_deref(), Some("non-retryable"));
    assert_eq!(changed.decided_by.as_deref(), Some("built-in"));
    assert!(changed.consulted.is_empty(), "no classifier was asked");
    let reason = changed.reason.as_deref().unwrap();
    assert!(
        reason.starts_with(&format!(
            "media[0] img/b.png changed after import: its SHA-256 is now {edited}"
        )),
        "{reason}"
    );
    let gone = state.attempts("gone").unwrap()[0].reason.clone().unwrap();
    assert_eq!(
        gone,
        "media[0] c.png changed after import: it cannot be read (no such file)"
    );
    // The poster never ran for them: only the unchanged file went up.
    let posts = f.sandbox.posts();
    assert_eq!(posts.len(), 2, "{posts:#?}");
    let counters = f.sandbox.counters();
    assert_eq!((counters.media_uploads, counters.blobs_uploaded), (1, 0));
    let same = posts.iter().find(|p| p.text == "Unchanged").unwrap();
    assert_eq!(carried(&same.media), [(a, alt("A"), "image/png".into())]);
}

/// A seeded batch on a Mastodon account, and its state file's bytes.
fn seeded() -> (Fixture, Vec<u8>) {
    let f = Fixture::new(
        "[[account]]\nname = \"alice\"\ntoken = \"alice-token\"\n",
        2,
    );
    let out = run(&mut f.command(&["--seed-only"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let state = std::fs::read(f.path("orchestrator-state.sqlite")).unwrap();
    (f, state)
}

/// The refusal of a bad import: exit 2, one `error:` line with `expected`,
/// the state as it was, and not a request made.
fn refused(f: &Fixture, before: &[u8], out: &Output, expected: &str) {
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains(expected),
        "expected {expected:?} in {}",
        out.stderr
    );
    let after = std::fs::read(f.path("orchestrator-state.sqlite")).unwrap();
    assert_eq!(after, before, "nothing was imported");
    assert_eq!(f.sandbox.counters().requests, 0);
}

#[test]
fn an_import_with_a_bad_attachment_is_refused_naming_the_job_line() {
    let job = |media: &str| {
        format!(
            "{{\"id\": \"ok\", \"account\": \"alice\", \"payload\": {{\"status\": \"x\"}}}}\n\
             {{\"id\": \"bad\", \"account\": \"alice\", \"payload\": {{\"status\": \"x\", \"media\": {media}}}}}\n"
        )
    };
    let four = r#"{"path": "img/ok.png"}"#;
    let five = format!("[{four}, {four}, {four}, {four}, {four}]");
    // A real image, beside the fixture's folder rather than in it.
    let elsewhere = crate::support::temp_dir();
    std::fs::write(elsewhere.path().join("secret.png"), image("png", 1, 10)).unwrap();
    let outside = format!(
        r#"[{{"path": "../{}/secret.png"}}]"#,
        elsewhere.path().file_name().unwrap().to_str().unwrap()
    );
    let cases: &[(&str, String, &str)] = &[
        (
            "a missing file",
            job(r#"[{"path": "img/missing.png"}]"#),
            "jobs.jsonl:2: media[0] img/missing.png: no such file",
        ),
        (
            "a file past --max-media-size",
            job(r#"[{"path": "img/ok.png"}, {"path": "img/big.png"}]"#),
            "jobs.jsonl:2: media[1] img/big.png: it is 1048676 bytes, over the 1 MiB limit (--max-media-size)",
        ),
        (
            "a text file named .png",
            job(r#"[{"path": "img/notes.png"}]"#),
            "jobs.jsonl:2: media[0] img/notes.png: not an image of a type the host takes: PNG, JPEG, GIF or WebP (judged by its content)",
        ),
        (
            "media that is not a list",
            job(r#""img/ok.png""#),
            "jobs.jsonl:2: `media` must be a list of at most 4 objects",
        ),
        (
            "an attachment with another key",
            job(r#"[{"path": "img/ok.png", "alt": "x"}]"#),
            "jobs.jsonl:2: media[0]: unknown key `alt`; an attachment has a `path` and a `description`",
        ),
        (
            "five attachments",
            job(&five),
            "jobs.jsonl:2: `media` lists 5 files; a job attaches at most 4",
        ),
        (
            "an absolute path",
            job(r#"[{"path": "/etc/hostname"}]"#),
            "jobs.jsonl:2: media[0] /etc/hostname: an absolute path",
        ),
        (
            "a path out of the media root",
            job(&outside),
            "leads out of the media root",
        ),
    ];
    for (what, jobs, expected) in cases {
        let (f, before) = seeded();
        put(&f, "img/ok.png", &image("png", 1, 10));
        put(&f, "img/big.png", &image("png", 1, (1 << 20) + 92));
        put(&f, "img/notes.png", b"remember the milk");
        std::fs::write(f.path("jobs.jsonl"), jobs).unwrap();
        let out = run(&mut f.command(&["--run", "--max-media-size", "1"]));
        eprintln!("{what}");
        refused(&f, &before, &out, expected);
    }
}

#[test]
fn paths_resolve_in_the_media_root_given_by_flag_or_configuration() {
    let f = platforms(
        "{\"id\": \"m1\", \"account\": \"masto\", \"payload\": {\"status\": \"From the root\", \"media\": [{\"path\": \"launch.png\"}]}}\n",
    );
    let launch = put(&f, "assets/launch.png", &image("png", 5, 64));
    // Not next to the jobs file: found only in the media root.
    let out = run(&mut f.command(&["--seed-only"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("jobs.jsonl:1: media[0] launch.png: no such file"),
        "{}",
        out.stderr
    );
    std::fs::write(f.path("orchestrator.toml"), "media-root = \"assets\"\n").unwrap();
    let shown = f.tool(&["config", "show"]);
    assert!(
        shown
            .stdout
            .lines()
            .any(|l| l.contains("media-root") && l.contains("assets")),
        "{}",
        shown.stdout
    );
    let out = f.run(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let posts = f.sandbox.posts();
    assert_eq!(
        carried(&posts[0].media),
        [(launch, None, "image/png".into())]
    );

    // The flag wins over the file.
    std::fs::create_dir(f.path("elsewhere")).unwrap();
    let out = run(&mut f.command(&["--seed-only", "--force-reseed", "--media-root", "elsewhere"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("launch.png: no such file"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_poster_that_cannot_read_attachments_is_refused_before_the_run() {
    let f = platforms(
        "{\"id\": \"d1\", \"account\": \"disco\", \"payload\": {\"text\": \"x\", \"media\": [{\"path\": \"a.png\"}]}}\n",
    );
    put(&f, "a.png", &image("png", 1, 10));
    let out = f.run(&[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "job d1: it attaches 1 file but its poster webhook-poster cannot read attachments (built against contract 0.3.0); media needs a poster built against contract 0.4.0 or later"
        ),
        "{}",
        out.stderr
    );
    assert!(!f.path("orchestrator-state.sqlite").exists());
    assert_eq!(f.sandbox.counters().requests, 0);
}

#[test]
fn an_upload_the_platform_refuses_is_its_answer_and_a_rate_limit_is_waited_out() {
    let f = Fixture::new(
        r#"
[[account]]
name = "big"
token = "big-token"
upload_then = { respond = "too-large" }

[[account]]
name = "busy"
token = "busy-token"
upload_script = [{ respond = "rate-limited", reset_secs = 1 }]
"#,
        0,
    )
    .with_jobs(concat!(
        r#"{"id": "big-1", "account": "big", "payload": {"status": "Too big", "media": [{"path": "a.png"}]}}"#,
        "\n",
        r#"{"id": "busy-1", "account": "busy", "payload": {"status": "Later", "media": [{"path": "a.png", "description": "A"}]}}"#,
        "\n",
    ));
    let a = put(&f, "a.png", &image("png", 1, 10));
    let out = f.run(&[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let outcomes = f.outcomes();
    assert_eq!(outcomes["busy-1"], (Succeeded, 2));
    assert_eq!(outcomes["big-1"].0, Failed);
    let attempt = &f.state().attempts("big-1").unwrap()[0];
    let failure = attempt.failure.as_ref().unwrap();
    assert_eq!(failure.http_status, Some(422));
    assert!(
        failure
            .message
            .starts_with("the platform refused media[0] a.png (422): "),
        "{}",
        failure.message
    );
    assert_eq!(attempt.category.as_deref(), Some("non-retryable"));
    let posts = f.sandbox.posts();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert_eq!(
        carried(&posts[0].media),
        [(a, alt("A"), "image/png".into())]
    );
}

#[test]
fn a_plugin_reads_only_its_own_job_s_files_in_bounded_pieces() {
    use orchestrator_plugin_host::{Attachment, Attachments, Attempt, OutboundAccess, Secret};
    let f = Fixture::new(
        "[[account]]\nname = \"alice\"\ntoken = \"alice-token\"\n",
        0,
    );
    let bytes = image("png", 7, 3 << 20);
    let media = Attachments::new(vec![Attachment {
        name: "big.png".into(),
        media_type: "image/png".into(),
        description: Some("big".into()),
        bytes: bytes.clone().into(),
    }]);
    let mut job = crate::support::job("alice", f.sandbox.url());
    job.payload = r#"{"status": "In process"}"#.into();
    let attempt = f.runtime.block_on(async {
        let poster = crate::support::poster(artifacts::MASTODON_POSTER).await;
        assert!(poster.takes_media());
        let token = Some(Secret::new("alice-token"));
        let access = OutboundAccess::for_account(f.sandbox.url(), token);
        poster.post_with_media(&job, access, media).await
    });
    assert!(matches!(attempt, Attempt::Posted(_)), "{attempt:?}");
    let posts = f.sandbox.posts();
    assert_eq!(
        carried(&posts[0].media),
        [(sha256(&bytes), alt("big"), "image/png".into())]
    );
}

#[test]
fn a_hostile_poster_reads_its_own_job_s_files_and_nothing_more() {
    let f = Fixture::new("[[account]]\nname = \"alice\"\ntoken = \"alice-token\"\n", 0)
        .with_jobs(
            r#"{"id": "h1", "account": "alice", "payload": {"status": "x", "media": [{"path": "img/a.png", "description": "A"}]}}"#,
        )
        .with_plugins(&[artifacts::HOSTILE_POSTER]);
    put(&f, "img/a.png", &image("png", 1, (1 << 20) + 10));
    let out = f.run(&["--max-passes", "1", "-v"]);
    assert_eq!(out.code, 1, "it fails, as it says: {}", out.stderr);
    let seen = &out.stderr;
    for finding in [
        // Its name, not where it is.
        "media: [0 a.png image/png 1048594 bytes Some(\"A\")]",
        // A mebibyte at most, whatever it asks.
        "media read(0, 0, 4294967295): 1048576 bytes",
        "media read(0, 18446744073709551615, 4294967295): 0 bytes",
        "media read(1, 0, 1): MediaError::NoSuchAttachment(1)",
        "media read(4294967295, 0, 1): MediaError::NoSuchAttachment(4294967295)",
    ] {
        assert!(seen.contains(finding), "{finding:?} not in {seen}");
    }
    // The payload it saw names the file as the job did, and no folder of
    // the host's.
    let folder = std::fs::canonicalize(f.dir.path()).unwrap();
    assert!(seen.contains(r#""path":"img/a.png""#), "{seen}");
    assert!(!seen.contains(folder.to_str().unwrap()), "{seen}");
    assert!(!seen.contains("resolved"), "{seen}");
}
