//! The sandbox, spoken to over real HTTP: each scripted behaviour, the
//! idempotency replay, the rate-limit headers and the counters.

use std::time::{Duration, Instant};

use orchestrator_sandbox::{Counters, Sandbox, Scenario};
use reqwest::StatusCode;

const SCENARIO: &str = r#"
[[account]]
name = "alice"
token = "alice-token"

[[account]]
name = "revoked"
token = "revoked-token"
then = { respond = "invalid-token" }

[[account]]
name = "suspended"
token = "suspended-token"
then = { respond = "suspended" }

[[account]]
name = "wordy"
token = "wordy-token"
then = { respond = "validation-error", message = "Validation failed: Text is too long" }

[[account]]
name = "busy"
token = "busy-token"
script = [{ respond = "rate-limited", reset_secs = 7, times = 2 }]

[[account]]
name = "flaky"
token = "flaky-token"
script = [{ respond = "server-error", status = 500, times = 2 }]

[[account]]
name = "dropper"
token = "dropper-token"
script = [{ respond = "drop-connection" }]

[[account]]
name = "slow"
token = "slow-token"
script = [{ respond = "slow", delay_ms = 300 }]
"#;

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

async fn post_json(
    sandbox: &Sandbox,
    token: &str,
    key: Option<&str>,
    text: &str,
) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}/api/v1/statuses", sandbox.url()))
        .bearer_auth(token)
        .json(&serde_json::json!({ "status": text }));
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_status_is_created_with_the_mastodon_shape() {
    let sandbox = start(SCENARIO).await;
    let response = post_json(&sandbox, "alice-token", None, "hello <world>").await;
    assert_eq!(response.status(), StatusCode::OK);
    for header in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(response.headers().contains_key(header), "missing {header}");
    }
    assert_eq!(response.headers()["x-ratelimit-limit"], "300");
    assert_eq!(response.headers()["x-ratelimit-remaining"], "299");
    let status: serde_json::Value = response.json().await.unwrap();
    assert!(status["id"].is_string());
    assert_eq!(status["content"], "<p>hello &lt;world&gt;</p>");
    assert_eq!(status["visibility"], "public");
    assert_eq!(status["account"]["acct"], "alice");
    let url = format!(
        "{}/@alice/{}",
        sandbox.url(),
        status["id"].as_str().unwrap()
    );
    assert_eq!(status["url"], url.as_str());
}

#[tokio::test]
async fn a_form_body_works_like_json() {
    let sandbox = start(SCENARIO).await;
    let response = client()
        .post(format!("{}/api/v1/statuses", sandbox.url()))
        .bearer_auth("alice-token")
        .form(&[("status", "from a form"), ("visibility", "private")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let status: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status["visibility"], "private");
    assert_eq!(sandbox.statuses()[0].text, "from a form");
}

#[tokio::test]
async fn missing_or_unknown_tokens_are_refused() {
    let sandbox = start(SCENARIO).await;
    let (status, error) = error_of(post_json(&sandbox, "who-knows", None, "x").await).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::UNAUTHORIZED, "The access token is invalid")
    );
    let response = client()
        .post(format!("{}/api/v1/statuses", sandbox.url()))
        .json(&serde_json::json!({ "status": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn blank_text_is_a_validation_error() {
    let sandbox = start(SCENARIO).await;
    let (status, error) = error_of(post_json(&sandbox, "alice-token", None, "  ").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error, "Validation failed: Text can't be blank");
}

#[tokio::test]
async fn permanent_failures_answer_every_request() {
    let sandbox = start(SCENARIO).await;
    for _ in 0..2 {
        let (s, e) = error_of(post_json(&sandbox, "revoked-token", None, "x").await).await;
        assert_eq!(
            (s, e.as_str()),
            (StatusCode::UNAUTHORIZED, "The access token is invalid")
        );
        let (s, e) = error_of(post_json(&sandbox, "suspended-token", None, "x").await).await;
        assert_eq!(
            (s, e.as_str()),
            (StatusCode::FORBIDDEN, "Your login is currently disabled")
        );
        let (s, e) = error_of(post_json(&sandbox, "wordy-token", None, "x").await).await;
        assert_eq!(
            (s, e.as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Validation failed: Text is too long"
            )
        );
    }
    assert_eq!(sandbox.counters().statuses_created, 0);
}

#[tokio::test]
async fn a_rate_limit_says_when_to_come_back() {
    let sandbox = start(SCENARIO).await;
    for _ in 0..2 {
        let response = post_json(&sandbox, "busy-token", None, "x").await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "7");
        assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
        let reset = response.headers()["x-ratelimit-reset"]
            .to_str()
            .unwrap()
            .to_owned();
        let reset = humantime::parse_rfc3339(&reset).unwrap();
        let wait = reset.duration_since(std::time::SystemTime::now()).unwrap();
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(7),
            "{wait:?}"
        );
    }
    assert_eq!(
        post_json(&sandbox, "busy-token", None, "x").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn server_errors_for_the_first_requests_then_success() {
    let sandbox = start(SCENARIO).await;
    for _ in 0..2 {
        let (status, _) = error_of(post_json(&sandbox, "flaky-token", Some("k"), "x").await).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(
        post_json(&sandbox, "flaky-token", Some("k"), "x")
            .await
            .status(),
        StatusCode::OK
    );
    // Failed attempts are not remembered under the key.
    assert_eq!(sandbox.counters().created_by_idempotency_key["flaky/k"], 1);
}

#[tokio::test]
async fn a_dropped_connection_gets_no_response() {
    let sandbox = start(SCENARIO).await;
    let err = client()
        .post(format!("{}/api/v1/statuses", sandbox.url()))
        .bearer_auth("dropper-token")
        .json(&serde_json::json!({ "status": "x" }))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "{err}");
    assert_eq!(
        post_json(&sandbox, "dropper-token", None, "x")
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_slow_response_arrives_late_but_arrives() {
    let sandbox = start(SCENARIO).await;
    let started = Instant::now();
    assert_eq!(
        post_json(&sandbox, "slow-token", None, "x").await.status(),
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_repeated_idempotency_key_replays_the_first_status() {
    let sandbox = start(SCENARIO).await;
    let first = post_json(&sandbox, "alice-token", Some("job-1"), "once")
        .await
        .text()
        .await
        .unwrap();
    let again = post_json(&sandbox, "alice-token", Some("job-1"), "once")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(first, again);
    // Keys are per account: another account's "job-1" is another status.
    let other = post_json(&sandbox, "slow-token", Some("job-1"), "once")
        .await
        .text()
        .await
        .unwrap();
    assert_ne!(first, other);

    let counters = sandbox.counters();
    assert_eq!(counters.statuses_created, 2);
    assert_eq!(counters.duplicates_prevented, 1);
    assert_eq!(counters.created_by_idempotency_key["alice/job-1"], 1);
    assert_eq!(counters.created_by_idempotency_key["slow/job-1"], 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_status() {
    let sandbox = start("").await;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let url = sandbox.url().to_owned();
        tasks.push(tokio::spawn(async move {
            client()
                .post(format!("{url}/api/v1/statuses"))
                .bearer_auth("anyone")
                .header("Idempotency-Key", "same")
                .json(&serde_json::json!({ "status": "x" }))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        bodies.push(t.await.unwrap());
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    let counters = sandbox.counters();
    assert_eq!(counters.statuses_created, 1);
    assert_eq!(counters.duplicates_prevented, 31);
}

#[tokio::test]
async fn an_open_sandbox_names_accounts_after_their_tokens() {
    let sandbox = start("").await;
    let response = client()
        .get(format!(
            "{}/api/v1/accounts/verify_credentials",
            sandbox.url()
        ))
        .bearer_auth("carol")
        .send()
        .await
        .unwrap();
    let account: serde_json::Value = response.json().await.unwrap();
    assert_eq!(account["acct"], "carol");
}

#[tokio::test]
async fn an_enforced_rate_limit_refuses_past_the_limit() {
    let sandbox = start("enforce_rate_limit = true\nrate_limit = 2").await;
    for _ in 0..2 {
        assert_eq!(
            post_json(&sandbox, "a", None, "x").await.status(),
            StatusCode::OK
        );
    }
    let response = post_json(&sandbox, "a", None, "x").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    // Another account has its own window.
    assert_eq!(
        post_json(&sandbox, "b", None, "x").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn counters_are_served_over_http_too() {
    let sandbox = start(SCENARIO).await;
    post_json(&sandbox, "alice-token", Some("k1"), "x").await;
    post_json(&sandbox, "alice-token", Some("k1"), "x").await;
    post_json(&sandbox, "revoked-token", None, "x").await;
    let served: Counters = client()
        .get(format!("{}/_sandbox/counters", sandbox.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served.statuses_created, 1);
    assert_eq!(served.duplicates_prevented, 1);
    assert_eq!(served.requests_by_account["alice"], 2);
    assert_eq!(served.requests_by_account["revoked"], 1);
    assert_eq!(served.created_by_account["alice"], 1);
    // The counters request itself is counted.
    assert_eq!(served.requests, 4);
}

#[test]
fn the_binary_prints_its_url_and_serves() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrator-sandbox"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_owned();
    let result = std::panic::catch_unwind(|| {
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let response = client()
                .get(format!("{url}/_sandbox/counters"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        });
    });
    child.kill().unwrap();
    child.wait().unwrap();
    result.unwrap();
}

#[test]
fn a_bad_scenario_file_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, "[[account]]\nname = 'a'\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrator-sandbox"))
        .arg("--scenario")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("missing field `token`"), "{stderr}");
}
