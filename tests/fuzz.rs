//! Fuzzing under `cargo test`: what files, plugins and platforms send is
//! thrown at the readers in random shapes, and none may panic. Each target
//! runs for a short budget (`ORCHESTRATOR_FUZZ_MS` per target, 1000 by
//! default; CI runs the default); a failure prints the seed that
//! reproduces it (`arbtest` reruns a seed with `.seed(…)`), and every crash
//! found is kept below as a regression test.

use arbtest::arbitrary::{Result, Unstructured};
use orchestrator_contract::text::{self, bounded, printable};

// The Mastodon poster's request and response handling, as the native
// example includes it: the same code the sandboxed poster runs.
use orchestrator_contract::{JobContext, PostFailure, Receipt};
#[path = "../plugins/mastodon-poster/src/mastodon.rs"]
mod mastodon;
#[path = "../plugins/mastodon-poster/src/response.rs"]
mod response;
#[path = "../plugins/mastodon-poster/src/time.rs"]
mod time;

use crate::support::artifacts;

/// How long each target runs, in ms.
fn budget() -> u64 {
    std::env::var("ORCHESTRATOR_FUZZ_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Text made of `pieces` and random bytes, so random input also reaches
/// past the first syntax check.
fn text_of(u: &mut Unstructured<'_>, pieces: &[&str]) -> Result<String> {
    let mut out = String::new();
    for _ in 0..u.int_in_range(0..=40)? {
        if u.ratio(3, 4)? {
            out.push_str(u.choose(pieces)?);
        } else {
            let n = u.int_in_range(0..=8)?;
            out.push_str(&String::from_utf8_lossy(u.bytes(n)?));
        }
    }
    Ok(out)
}

#[test]
fn the_jobs_file_reader_never_panics_and_errs_in_one_line() {
    let dir = crate::support::temp_dir();
    let path = dir.path().join("jobs.jsonl");
    let pieces = [
        "{",
        "}",
        "\"id\"",
        "\"account\"",
        "\"payload\"",
        ":",
        ",",
        "\n",
        "\"x\"",
        "[]",
        "null",
        "1e400",
        "\"\\u0000\"",
        "\"\\ud800\"",
        " ",
        "{\"status\": \"hi\"}",
    ];
    arbtest::arbtest(|u| {
        let bytes: Vec<u8> = if u.ratio(1, 4)? {
            u.arbitrary()?
        } else {
            text_of(u, &pieces)?.into_bytes()
        };
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = orchestrator_runner::input::read_jobs(&path) {
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }
        Ok(())
    })
    .budget_ms(budget());
}

#[test]
fn the_accounts_file_reader_never_panics_nor_quotes_a_token() {
    let dir = crate::support::temp_dir();
    let path = dir.path().join("accounts.toml");
    let pieces = [
        "[accounts.a]\n",
        "[accounts.\"b c\"]\n",
        "base_url = \"http://x\"\n",
        "base_url = 1\n",
        "token_env = \"V\"\n",
        "token_file = \"f\"\n",
        "settings = { a = \"b\" }\n",
        "allow_hosts = [\"h\"]\n",
        "=",
        "\"",
        "'",
        "[",
        "]",
        "\n",
        "tokn = ",
        "token = ",
    ];
    arbtest::arbtest(|u| {
        let secret = format!("S3CRET{}", u.int_in_range(100_000..=999_999u32)?);
        let mut text = text_of(u, &pieces)?;
        // The secret in one of the shapes a user writes it, well or badly.
        let line = match u.int_in_range(0..=3)? {
            0 => format!("token = \"{secret}\"\n"),
            1 => format!("token = {secret}\n"),
            2 => format!("tokn = \"{secret}\"\n"),
            _ => format!("token = '{secret}\n"),
        };
        let at = u.int_in_range(0..=text.len())?;
        let at = (0..=at)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.insert_str(at, &line);
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = orchestrator_runner::input::read_accounts(&path) {
            let e = e.to_string();
            assert_eq!(e.lines().count(), 1, "{e}");
            assert!(!e.contains(&secret), "{e}\nfrom:\n{text}");
        }
        Ok(())
    })
    .budget_ms(budget());
}

#[test]
fn what_the_host_keeps_of_plugin_text_is_bounded_and_printable() {
    arbtest::arbtest(|u| {
        let s: String = u.arbitrary()?;
        let limit = u.int_in_range(0..=64)?;
        let kept = bounded(s.clone(), limit);
        assert!(kept.len() <= limit.max(s.len().min(limit)) + 40, "{kept:?}");
        assert!(s.starts_with(kept.split('…').next().unwrap_or_default()));
        let shown = printable(&s);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown.lines().count(), usize::from(!shown.is_empty()));
        let failure = PostFailure {
            message: s.repeat(u.int_in_range(0..=3000)?),
            error_code: Some(s.clone()),
            transport_error: Some(s),
            ..PostFailure::default()
        }
        .bounded();
        assert!(failure.message.len() <= text::MESSAGE_BYTES + 40);
        Ok(())
    })
    .budget_ms(budget());
}

#[test]
fn the_mastodon_posters_response_reading_never_panics() {
    let pieces = [
        "0",
        "1",
        "9223372036854775807",
        "18446744073709551615",
        "-1",
        " ",
        "2026-11-28T20:30:00.000Z",
        "99999999999-01-01T00:00:00Z",
        "2026-01-01T00:00:00.éZ",
        "T",
        ":",
        ".",
        "Z",
        "+00:00",
        "{\"error\":\"x\"}",
        "{\"id\":1}",
        "{\"id\":\"7\",\"url\":\"u\"}",
        "{",
        "\"",
    ];
    arbtest::arbtest(|u| {
        let header =
            |u: &mut Unstructured<'_>| -> Result<Vec<u8>> { Ok(text_of(u, &pieces)?.into_bytes()) };
        let mut headers = Vec::new();
        for name in ["retry-after", "x-ratelimit-remaining", "x-ratelimit-reset"] {
            if u.ratio(2, 3)? {
                headers.push((name.to_owned(), header(u)?));
            }
        }
        let response = response::Response {
            status: *u.choose(&[200, 201, 401, 403, 418, 422, 429, 500, 503, u16::MAX])?,
            headers,
            body: header(u)?,
        };
        let _ = mastodon::outcome(&response);
        let job = JobContext {
            job_id: "j".into(),
            account: orchestrator_contract::Account {
                name: "a".into(),
                base_url: text_of(u, &pieces)?,
                settings: vec![],
            },
            payload: text_of(u, &pieces)?,
            attempt: 1,
            pass: 1,
            idempotency_key: "k".into(),
        };
        let with_media = u.arbitrary()?;
        if let Ok(status) = mastodon::status(&job, with_media) {
            let _ = status.request(&job, &["1".to_owned()]);
        }
        Ok(())
    })
    .budget_ms(budget());
}

#[test]
fn a_damaged_component_is_refused_not_a_crash() {
    let original = std::fs::read(artifacts::HTTP_CLASSIFIER).unwrap();
    let dir = crate::support::temp_dir();
    let path = dir.path().join("damaged.wasm");
    let runtime = crate::support::runtime();
    let host = orchestrator_plugin_host::PluginHost::new().unwrap();
    arbtest::arbtest(|u| {
        let mut bytes = original.clone();
        match u.int_in_range(0..=2)? {
            0 => bytes.truncate(u.int_in_range(0..=bytes.len())?),
            1 => {
                for _ in 0..u.int_in_range(1..=8)? {
                    let at = u.int_in_range(0..=bytes.len() - 1)?;
                    bytes[at] = u.arbitrary()?;
                }
            }
            _ => bytes = u.arbitrary()?,
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = runtime.block_on(host.load(&path)) {
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }
        Ok(())
    })
    .budget_ms(budget());
}

/// Crashes the fuzzing found, kept.
mod found {
    use super::*;

    /// A Retry-After past u64::MAX / 1000 seconds overflowed the poster's
    /// arithmetic.
    #[test]
    fn a_retry_after_beyond_any_clock_is_read() {
        let response = response::Response {
            status: 503,
            headers: vec![("retry-after".into(), b"18446744073709551615".to_vec())],
            body: vec![],
        };
        let failure = mastodon::outcome(&response).unwrap_err();
        assert_eq!(failure.retry_after_ms, Some(u64::MAX));
    }

    /// A reset of a far year overflowed, and a fraction with a multi-byte
    /// character was cut inside it.
    #[test]
    fn a_rate_limit_reset_of_any_shape_is_read() {
        assert_eq!(
            time::parse_rfc3339_ms("99999999999999-01-01T00:00:00Z"),
            None
        );
        assert_eq!(time::parse_rfc3339_ms("2026-01-01T00:00:00.éZ"), None);
        assert_eq!(time::parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
    }
}
