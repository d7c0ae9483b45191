//! The platform shapes beyond Mastodon, spoken to over real HTTP: Bluesky's
//! XRPC sessions and records, Discord and Slack webhooks, X's OAuth 2
//! rotation and tweets, the echo endpoint, and their counters.
//!
//! Expiry is tested by moving the sandbox's clock forward, so nothing here
//! depends on how fast the machine is.

use std::time::{Duration, SystemTime};

use orchestrator_sandbox::jwt::Claims;
use orchestrator_sandbox::{Counters, Platform, Sandbox, Scenario};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SCENARIO: &str = r#"
[[account]]
name = "mast"
token = "mast-token"

[[account]]
name = "sky"
handle = "sky.bsky.test"
password = "sky-pw"
access_lifetime_secs = 60
session_limit = 3

[[account]]
name = "sky-fails"
handle = "fails.bsky.test"
password = "fails-pw"
session_limit = 100
script = [
  { respond = "rate-limited", reset_secs = 7 },
  { respond = "server-error", status = 502, retry_after_secs = 3 },
  { respond = "invalid-token" },
  { respond = "validation-error", message = "Record/text is too long" },
]
then = { respond = "suspended" }

[[account]]
name = "disco"
webhook = "1234/disco-secret"

[[account]]
name = "disco-busy"
webhook = "5678/busy-secret"
script = [{ respond = "rate-limited", reset_ms = 1250 }]

[[account]]
name = "slacker"
webhook = "T01/B01/slack-secret"

[[account]]
name = "slack-busy"
webhook = "T01/B02/busy-secret"
script = [{ respond = "rate-limited", reset_secs = 4 }]

[[account]]
name = "bird"
client_id = "bird-client"
refresh_token = "bird-r0"
access_lifetime_secs = 120

[[account]]
name = "bird-busy"
client_id = "bird-client"
refresh_token = "busy-r0"
script = [{ respond = "rate-limited", reset_secs = 9 }]
"#;

async fn start() -> Sandbox {
    Sandbox::start_local(Scenario::parse(SCENARIO).unwrap())
        .await
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
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

async fn status_and_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn create_session(sandbox: &Sandbox, identifier: &str, password: &str) -> reqwest::Response {
    client()
        .post(format!(
            "{}/xrpc/com.atproto.server.createSession",
            sandbox.url()
        ))
        .json(&json!({ "identifier": identifier, "password": password }))
        .send()
        .await
        .unwrap()
}

/// A session's (accessJwt, refreshJwt).
async fn login(sandbox: &Sandbox, identifier: &str, password: &str) -> (String, String) {
    let (status, session) =
        status_and_json(create_session(sandbox, identifier, password).await).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    (
        session["accessJwt"].as_str().unwrap().to_owned(),
        session["refreshJwt"].as_str().unwrap().to_owned(),
    )
}

async fn refresh_session(sandbox: &Sandbox, refresh: &str) -> reqwest::Response {
    client()
        .post(format!(
            "{}/xrpc/com.atproto.server.refreshSession",
            sandbox.url()
        ))
        .bearer_auth(refresh)
        .send()
        .await
        .unwrap()
}

async fn create_record(
    sandbox: &Sandbox,
    access: &str,
    repo: &str,
    rkey: Option<&str>,
    text: &str,
) -> reqwest::Response {
    let mut input = json!({
        "repo": repo,
        "collection": "app.bsky.feed.post",
        "record": {
            "$type": "app.bsky.feed.post",
            "text": text,
            "createdAt": "2025-01-01T00:00:00.000Z",
            "langs": ["en"],
        },
    });
    if let Some(rkey) = rkey {
        input["rkey"] = rkey.into();
    }
    client()
        .post(format!(
            "{}/xrpc/com.atproto.repo.createRecord",
            sandbox.url()
        ))
        .bearer_auth(access)
        .json(&input)
        .send()
        .await
        .unwrap()
}

async fn counters(sandbox: &Sandbox) -> Counters {
    client()
        .get(format!("{}/_sandbox/counters", sandbox.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn create_session_answers_jwt_shaped_tokens() {
    let sandbox = start().await;
    let (status, session) =
        status_and_json(create_session(&sandbox, "sky.bsky.test", "sky-pw").await).await;
    assert_eq!(status, StatusCode::OK);
    let did = orchestrator_sandbox::bluesky::did_of("sky.bsky.test");
    assert!(did.starts_with("did:plc:"), "{did}");
    assert_eq!(session["did"], did.as_str());
    assert_eq!(session["handle"], "sky.bsky.test");
    let access = Claims::of(session["accessJwt"].as_str().unwrap()).unwrap();
    let refresh = Claims::of(session["refreshJwt"].as_str().unwrap()).unwrap();
    assert_eq!(access.scope, "com.atproto.access");
    assert_eq!(refresh.scope, "com.atproto.refresh");
    assert_eq!(access.sub, did);
    assert_eq!(access.exp - access.iat, 60);
    assert!(access.iat.abs_diff(now_secs()) <= 2, "{access:?}");
    assert_ne!(access.jti, refresh.jti);
    // The DID and a leading `@` identify the account too.
    login(&sandbox, &did, "sky-pw").await;
    let (again, _) = login(&sandbox, "@SKY.bsky.test", "sky-pw").await;
    assert_ne!(Claims::of(&again).unwrap().jti, access.jti);
    assert_eq!(sandbox.counters().accounts["sky"].logins, 3);
}

#[tokio::test]
async fn a_wrong_password_or_identifier_is_refused() {
    let sandbox = start().await;
    for (identifier, password) in [("sky.bsky.test", "nope"), ("nobody.bsky.test", "sky-pw")] {
        let (status, body) =
            status_and_json(create_session(&sandbox, identifier, password).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            json!({"error": "AuthenticationRequired", "message": "Invalid identifier or password"})
        );
    }
    let counters = sandbox.counters();
    assert_eq!(counters.accounts["sky"].login_refusals, 1);
    assert_eq!(counters.login_refusals, 1);
    assert_eq!(counters.logins, 0);
}

#[tokio::test]
async fn sessions_past_the_limit_are_rate_limited_until_the_window_passes() {
    let sandbox = start().await;
    // session_limit = 3: a wrong password uses up a call as well.
    login(&sandbox, "sky.bsky.test", "sky-pw").await;
    assert_eq!(
        create_session(&sandbox, "sky.bsky.test", "bad")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let third = create_session(&sandbox, "sky.bsky.test", "sky-pw").await;
    assert_eq!(third.status(), StatusCode::OK);
    assert_eq!(header(&third, "ratelimit-remaining"), "0");
    let refused = create_session(&sandbox, "sky.bsky.test", "sky-pw").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "ratelimit-limit"), "3");
    assert_eq!(header(&refused, "ratelimit-remaining"), "0");
    assert_eq!(header(&refused, "ratelimit-policy"), "3;w=300");
    let reset: u64 = header(&refused, "ratelimit-reset").parse().unwrap();
    assert!(
        reset > now_secs() + 290 && reset <= now_secs() + 301,
        "{reset}"
    );
    let (_, body) = status_and_json(refused).await;
    assert_eq!(
        body,
        json!({"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"})
    );
    let counters = sandbox.counters();
    assert_eq!(counters.accounts["sky"].logins, 2);
    assert_eq!(counters.accounts["sky"].login_refusals, 2);

    sandbox.advance_clock(Duration::from_secs(301));
    login(&sandbox, "sky.bsky.test", "sky-pw").await;
}

#[tokio::test]
async fn refresh_session_rotates_and_refuses_a_reused_token() {
    let sandbox = start().await;
    let (access, refresh) = login(&sandbox, "sky.bsky.test", "sky-pw").await;
    let (status, session) = status_and_json(refresh_session(&sandbox, &refresh).await).await;
    assert_eq!(status, StatusCode::OK);
    let new_access = session["accessJwt"].as_str().unwrap();
    let new_refresh = session["refreshJwt"].as_str().unwrap();
    assert_ne!(new_access, access);
    assert_ne!(new_refresh, refresh);
    assert_eq!(session["handle"], "sky.bsky.test");

    let (status, body) = status_and_json(refresh_session(&sandbox, &refresh).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "ExpiredToken", "message": "Token has been revoked"})
    );
    // The new pair works: refresh once more, post with the access JWT.
    assert_eq!(
        refresh_session(&sandbox, new_refresh).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        create_record(&sandbox, new_access, "sky.bsky.test", None, "hi")
            .await
            .status(),
        StatusCode::OK
    );
    // An access JWT is not a refresh JWT, and a request needs one.
    let (status, body) = status_and_json(refresh_session(&sandbox, new_access).await).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("InvalidToken"))
    );
    let response = client()
        .post(format!(
            "{}/xrpc/com.atproto.server.refreshSession",
            sandbox.url()
        ))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("AuthenticationRequired"))
    );
    let counters = counters(&sandbox).await;
    assert_eq!(counters.accounts["sky"].refreshes, 2);
    assert_eq!(counters.accounts["sky"].refresh_reuses, 1);
    assert_eq!(counters.refresh_reuses, 1);
}

#[tokio::test]
async fn create_record_posts_and_refuses_a_repeated_rkey() {
    let sandbox = start().await;
    let did = orchestrator_sandbox::bluesky::did_of("sky.bsky.test");
    let (access, _) = login(&sandbox, "sky.bsky.test", "sky-pw").await;
    let response = create_record(&sandbox, &access, &did, Some("job-1"), "first").await;
    assert_eq!(response.status(), StatusCode::OK);
    for name in [
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "ratelimit-policy",
    ] {
        header(&response, name);
    }
    assert_eq!(header(&response, "ratelimit-remaining"), "299");
    let created: Value = response.json().await.unwrap();
    let uri = format!("at://{did}/app.bsky.feed.post/job-1");
    assert_eq!(created["uri"], uri.as_str());
    assert!(created["cid"].as_str().unwrap().starts_with("bafy"));

    // The same key again, by handle this time: refused, nothing created.
    let response = create_record(&sandbox, &access, "sky.bsky.test", Some("job-1"), "first").await;
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "InvalidRequest", "message": "Record already exists"})
    );

    // Without a key, the sandbox makes one up.
    let response = create_record(&sandbox, &access, &did, None, "second").await;
    let (status, created) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    let rkey = created["uri"].as_str().unwrap().rsplit('/').next().unwrap();
    assert_eq!(rkey.len(), 13);

    let response = client()
        .get(format!(
            "{}/xrpc/com.atproto.repo.getRecord?repo={did}&collection=app.bsky.feed.post&rkey=job-1",
            sandbox.url()
        ))
        .send()
        .await
        .unwrap();
    let (status, record) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["uri"], uri.as_str());
    assert_eq!(record["value"]["text"], "first");
    let response = client()
        .get(format!(
            "{}/xrpc/com.atproto.repo.getRecord?repo=sky.bsky.test&collection=app.bsky.feed.post&rkey=nope",
            sandbox.url()
        ))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("RecordNotFound"))
    );

    let counters = counters(&sandbox).await;
    assert_eq!(counters.records, 2);
    assert_eq!(counters.accounts["sky"].records, 2);
    assert_eq!(counters.duplicates_prevented, 1);
    let posts = sandbox.posts();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].platform, Platform::Bluesky);
    assert_eq!(posts[0].rkey.as_deref(), Some("job-1"));
    assert_eq!(posts[0].id, uri);
    assert_eq!(posts[1].text, "second");
}

#[tokio::test]
async fn create_record_refuses_bad_input_and_bad_tokens() {
    let sandbox = start().await;
    let (access, refresh) = login(&sandbox, "sky.bsky.test", "sky-pw").await;
    let url = format!("{}/xrpc/com.atproto.repo.createRecord", sandbox.url());
    for input in [
        json!({"repo": "sky.bsky.test", "collection": "app.bsky.feed.like",
               "record": {"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2025-01-01T00:00:00Z"}}),
        json!({"repo": "sky.bsky.test", "collection": "app.bsky.feed.post",
               "record": {"$type": "app.bsky.feed.post", "createdAt": "2025-01-01T00:00:00Z"}}),
        json!({"repo": "sky.bsky.test", "collection": "app.bsky.feed.post",
               "record": {"$type": "app.bsky.feed.post", "text": " ", "createdAt": "2025-01-01T00:00:00Z"}}),
        json!({"repo": "fails.bsky.test", "collection": "app.bsky.feed.post",
               "record": {"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2025-01-01T00:00:00Z"}}),
    ] {
        let response = client()
            .post(&url)
            .bearer_auth(&access)
            .json(&input)
            .send()
            .await
            .unwrap();
        let (status, body) = status_and_json(response).await;
        assert_eq!(
            (status, &body["error"]),
            (StatusCode::BAD_REQUEST, &json!("InvalidRequest")),
            "{input}"
        );
    }
    for token in ["garbage", refresh.as_str()] {
        let response = create_record(&sandbox, token, "sky.bsky.test", None, "x").await;
        assert!(response.headers().contains_key("ratelimit-limit"));
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            json!({"error": "InvalidToken", "message": "Bad token"})
        );
    }
    let response = client().post(&url).json(&json!({})).send().await.unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("AuthenticationRequired"))
    );
    assert_eq!(sandbox.counters().records, 0);
}

#[tokio::test]
async fn an_access_jwt_expires_by_the_sandboxs_clock() {
    let sandbox = start().await;
    // access_lifetime_secs = 60; session_limit = 3 per 300 s, which the
    // clock's moves leave behind.
    for i in 0..20 {
        let (access, _) = login(&sandbox, "sky.bsky.test", "sky-pw").await;
        sandbox.advance_clock(Duration::from_secs(30));
        let response = create_record(
            &sandbox,
            &access,
            "sky.bsky.test",
            None,
            &format!("post {i}"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "round {i}");
        sandbox.advance_clock(Duration::from_secs(31));
        let (status, body) =
            status_and_json(create_record(&sandbox, &access, "sky.bsky.test", None, "late").await)
                .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "round {i}");
        assert_eq!(
            body,
            json!({"error": "ExpiredToken", "message": "Token has expired"})
        );
        sandbox.advance_clock(Duration::from_secs(300));
    }
    assert_eq!(sandbox.counters().records, 20);
}

#[tokio::test]
async fn an_access_jwt_of_one_second_expires_in_real_time() {
    let sandbox = start_with(
        "[[account]]\nname = 'quick'\nhandle = 'quick.test'\npassword = 'pw'\naccess_lifetime_secs = 1\n",
    )
    .await;
    let (access, _) = login(&sandbox, "quick.test", "pw").await;
    let exp = Claims::of(&access).unwrap().exp;
    // The token lives until its `exp` second begins; sleeping past it can
    // only make expiry more certain.
    while now_secs() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) =
        status_and_json(create_record(&sandbox, &access, "quick.test", None, "x").await).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("ExpiredToken"))
    );
}

async fn start_with(scenario: &str) -> Sandbox {
    Sandbox::start_local(Scenario::parse(scenario).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn create_record_plays_the_script_in_xrpc_shapes() {
    let sandbox = start().await;
    let (access, _) = login(&sandbox, "fails.bsky.test", "fails-pw").await;
    let post = || create_record(&sandbox, &access, "fails.bsky.test", None, "x");

    let limited = post().await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "ratelimit-remaining"), "0");
    let reset: u64 = header(&limited, "ratelimit-reset").parse().unwrap();
    assert!(
        reset >= now_secs() + 5 && reset <= now_secs() + 8,
        "{reset}"
    );
    assert_eq!(
        limited.json::<Value>().await.unwrap(),
        json!({"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"})
    );

    let failed = post().await;
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(header(&failed, "retry-after"), "3");
    assert_eq!(
        failed.json::<Value>().await.unwrap()["error"],
        "InternalServerError"
    );

    let (status, body) = status_and_json(post().await).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("InvalidToken"))
    );
    let (status, body) = status_and_json(post().await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "InvalidRequest", "message": "Record/text is too long"})
    );
    for _ in 0..2 {
        let (status, body) = status_and_json(post().await).await;
        assert_eq!(
            (status, &body["error"]),
            (StatusCode::BAD_REQUEST, &json!("AccountTakedown"))
        );
    }
    let counters = sandbox.counters();
    assert_eq!(counters.requests_by_account["sky-fails"], 6);
    assert_eq!(counters.records, 0);
}

async fn discord(sandbox: &Sandbox, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}/api/webhooks/{path}", sandbox.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_discord_webhook_answers_204_or_the_message_with_wait() {
    let sandbox = start().await;
    let response = discord(&sandbox, "1234/disco-secret", json!({"content": "hello"})).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());

    let response = discord(
        &sandbox,
        "1234/disco-secret?wait=true",
        json!({"content": "again", "username": "bot"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    header(&response, "x-ratelimit-limit");
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["content"], "again");
    assert!(
        message["id"].as_str().unwrap().parse::<u64>().is_ok(),
        "{message}"
    );
    assert!(
        message["channel_id"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    assert!(message["timestamp"].as_str().unwrap().ends_with("+00:00"));

    let posts = sandbox.posts();
    assert_eq!(posts.len(), 2);
    assert!(
        posts
            .iter()
            .all(|p| p.platform == Platform::Discord && p.account == "disco")
    );
    assert_eq!(posts[1].id, message["id"].as_str().unwrap());
    assert_eq!(sandbox.counters().accounts["disco"].webhook_messages, 2);
}

#[tokio::test]
async fn a_discord_webhook_refuses_unknown_ids_wrong_tokens_and_empty_messages() {
    let sandbox = start().await;
    for (path, content, status, expected) in [
        (
            "999/disco-secret",
            "x",
            StatusCode::NOT_FOUND,
            json!({"message": "Unknown Webhook", "code": 10015}),
        ),
        (
            "1234/wrong",
            "x",
            StatusCode::UNAUTHORIZED,
            json!({"message": "Invalid Webhook Token", "code": 50027}),
        ),
        (
            "1234/disco-secret",
            " ",
            StatusCode::BAD_REQUEST,
            json!({"message": "Cannot send an empty message", "code": 50006}),
        ),
    ] {
        let (got, body) =
            status_and_json(discord(&sandbox, path, json!({"content": content})).await).await;
        assert_eq!((got, body), (status, expected), "{path}");
    }
    assert_eq!(sandbox.counters().webhook_messages, 0);
}

#[tokio::test]
async fn a_rate_limited_discord_webhook_says_when_in_fractional_seconds() {
    let sandbox = start().await;
    let response = discord(&sandbox, "5678/busy-secret", json!({"content": "x"})).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after"), "2");
    assert_eq!(header(&response, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&response, "x-ratelimit-reset-after"), "1.250");
    header(&response, "x-ratelimit-limit");
    header(&response, "x-ratelimit-reset");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"message": "You are being rate limited.", "retry_after": 1.25, "global": false})
    );
    assert!(body["retry_after"].is_f64());
    assert_eq!(
        discord(&sandbox, "5678/busy-secret", json!({"content": "x"}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
}

async fn slack(sandbox: &Sandbox, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}/services/{path}", sandbox.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn status_and_text(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_slack_webhook_answers_ok_or_plain_error_codes() {
    let sandbox = start().await;
    let response = slack(&sandbox, "T01/B01/slack-secret", json!({"text": "hello"})).await;
    assert!(header(&response, "content-type").starts_with("text/plain"));
    assert_eq!(
        status_and_text(response).await,
        (StatusCode::OK, "ok".into())
    );
    for (path, text, status, expected) in [
        ("T01/B01/wrong", "x", StatusCode::FORBIDDEN, "invalid_token"),
        (
            "T01/B09/slack-secret",
            "x",
            StatusCode::NOT_FOUND,
            "no_service",
        ),
        (
            "T01/B01/slack-secret",
            "",
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
    ] {
        let got = status_and_text(slack(&sandbox, path, json!({"text": text})).await).await;
        assert_eq!(got, (status, expected.to_owned()), "{path}");
    }
    let response = slack(&sandbox, "T01/B02/busy-secret", json!({"text": "x"})).await;
    assert_eq!(header(&response, "retry-after"), "4");
    assert_eq!(
        status_and_text(response).await,
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into())
    );
    let posts = sandbox.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(
        (posts[0].platform, posts[0].text.as_str()),
        (Platform::Slack, "hello")
    );
    assert_eq!(sandbox.counters().webhook_messages, 1);
}

async fn oauth_token(sandbox: &Sandbox, refresh: &str, client_id: &str) -> reqwest::Response {
    client()
        .post(format!("{}/2/oauth2/token", sandbox.url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", client_id),
        ])
        .send()
        .await
        .unwrap()
}

/// Exchanges `refresh`; returns the answer's (access, refresh) and its body.
async fn rotate(sandbox: &Sandbox, refresh: &str) -> (String, String, String) {
    let response = oauth_token(sandbox, refresh, "bird-client").await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
        text,
    )
}

async fn tweet(sandbox: &Sandbox, access: &str, text: &str) -> reqwest::Response {
    client()
        .post(format!("{}/2/tweets", sandbox.url()))
        .bearer_auth(access)
        .json(&json!({ "text": text }))
        .send()
        .await
        .unwrap()
}

const INVALID_GRANT: &str = "Value passed for the token was invalid.";

#[tokio::test]
async fn oauth2_refresh_tokens_rotate_replay_once_and_lock_out_on_reuse() {
    let sandbox = start().await;
    let response = oauth_token(&sandbox, "bird-r0", "bird-client").await;
    let (status, first) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["token_type"], "bearer");
    assert_eq!(first["expires_in"], 120);
    assert_eq!(
        first["scope"],
        "tweet.read tweet.write users.read offline.access"
    );
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, "bird-r0");

    // The answer was lost: r0 again, while r1 is unused, replays it.
    let (_, _, replayed) = rotate(&sandbox, "bird-r0").await;
    assert_eq!(serde_json::from_str::<Value>(&replayed).unwrap(), first);

    let (a2, r2, _) = rotate(&sandbox, &r1).await;
    assert_ne!(r2, r1);
    assert_eq!(
        tweet(&sandbox, &a2, "before").await.status(),
        StatusCode::CREATED
    );
    // r1's successor is unused, so r1 replays; r0's successor was used.
    let (a2_again, r2_again, _) = rotate(&sandbox, &r1).await;
    assert_eq!((a2_again, r2_again), (a2.clone(), r2.clone()));
    let (status, body) =
        status_and_json(oauth_token(&sandbox, "bird-r0", "bird-client").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": INVALID_GRANT})
    );
    // Locked out: the unused r2 and the access token are revoked too.
    let (status, body) = status_and_json(oauth_token(&sandbox, &r2, "bird-client").await).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_grant"))
    );
    assert_eq!(
        tweet(&sandbox, &a2, "after").await.status(),
        StatusCode::UNAUTHORIZED
    );

    let counters = counters(&sandbox).await;
    let bird = &counters.accounts["bird"];
    assert_eq!(
        (bird.refreshes, bird.refresh_replays, bird.refresh_reuses),
        (2, 2, 1)
    );
    assert_eq!(counters.refresh_replays, 2);
    // Another account of the same client is not affected.
    rotate(&sandbox, "busy-r0").await;
}

#[tokio::test]
async fn oauth2_refuses_wrong_clients_unknown_tokens_and_other_grants() {
    let sandbox = start().await;
    let (status, body) =
        status_and_json(oauth_token(&sandbox, "bird-r0", "other-client").await).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_client"))
    );
    let (status, body) =
        status_and_json(oauth_token(&sandbox, "made-up", "bird-client").await).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_grant"))
    );
    let response = client()
        .post(format!("{}/2/oauth2/token", sandbox.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "bird-client"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // None of these used up the first refresh token.
    rotate(&sandbox, "bird-r0").await;
    assert_eq!(sandbox.counters().refresh_reuses, 0);
}

#[tokio::test]
async fn tweets_are_created_once_per_text_and_need_a_live_token() {
    let sandbox = start().await;
    let (access, _, _) = rotate(&sandbox, "bird-r0").await;
    let response = tweet(&sandbox, &access, "hello birds").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    for name in [
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ] {
        header(&response, name);
    }
    let body: Value = response.json().await.unwrap();
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    assert!(id.parse::<u64>().is_ok(), "{body}");
    assert_eq!(
        body,
        json!({"data": {"id": id, "text": "hello birds", "edit_history_tweet_ids": [id]}})
    );

    let (status, body) = status_and_json(tweet(&sandbox, &access, "hello birds").await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({
            "detail": "You are not allowed to create a Tweet with duplicate content.",
            "type": "about:blank", "title": "Forbidden", "status": 403
        })
    );

    let unauthorized = json!({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"});
    let response = tweet(&sandbox, "made-up", "x").await;
    header(&response, "x-rate-limit-reset");
    assert_eq!(
        status_and_json(response).await,
        (StatusCode::UNAUTHORIZED, unauthorized.clone())
    );
    sandbox.advance_clock(Duration::from_secs(121));
    assert_eq!(
        status_and_json(tweet(&sandbox, &access, "too late").await).await,
        (StatusCode::UNAUTHORIZED, unauthorized)
    );

    let counters = sandbox.counters();
    assert_eq!((counters.tweets, counters.duplicates_prevented), (1, 1));
    let posts = sandbox.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(
        (posts[0].platform, posts[0].id.as_str()),
        (Platform::X, id.as_str())
    );
}

#[tokio::test]
async fn a_rate_limited_tweet_says_when_in_x_headers() {
    let sandbox = start().await;
    let response = oauth_token(&sandbox, "busy-r0", "bird-client").await;
    let access = response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = tweet(&sandbox, &access, "x").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "x-rate-limit-remaining"), "0");
    let reset: u64 = header(&response, "x-rate-limit-reset").parse().unwrap();
    assert!(
        reset >= now_secs() + 7 && reset <= now_secs() + 10,
        "{reset}"
    );
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429})
    );
    assert_eq!(
        tweet(&sandbox, &access, "x").await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn echo_answers_what_arrived() {
    let sandbox = start().await;
    let response = client()
        .put(format!(
            "{}/_sandbox/echo/some/where?a=1&b=two",
            sandbox.url()
        ))
        .bearer_auth("secret-token")
        .header("X-Custom", "yes")
        .body("the body")
        .send()
        .await
        .unwrap();
    let (status, echo) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/_sandbox/echo/some/where");
    assert_eq!(echo["query"], "a=1&b=two");
    assert_eq!(echo["headers"]["authorization"], "Bearer secret-token");
    assert_eq!(echo["headers"]["x-custom"], "yes");
    assert_eq!(echo["body"], "the body");
    let response = client()
        .get(format!("{}/_sandbox/echo", sandbox.url()))
        .send()
        .await
        .unwrap();
    let (status, echo) = status_and_json(response).await;
    assert_eq!(
        (status, &echo["method"], &echo["body"]),
        (StatusCode::OK, &json!("GET"), &json!(""))
    );
}

#[tokio::test]
async fn posts_and_counters_cover_every_shape() {
    let sandbox = start().await;
    let mastodon = client()
        .post(format!("{}/api/v1/statuses", sandbox.url()))
        .bearer_auth("mast-token")
        .header("Idempotency-Key", "k1")
        .json(&json!({"status": "toot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mastodon.status(), StatusCode::OK);
    let (access, _) = login(&sandbox, "sky.bsky.test", "sky-pw").await;
    create_record(&sandbox, &access, "sky.bsky.test", Some("r1"), "skeet").await;
    discord(&sandbox, "1234/disco-secret", json!({"content": "disco"})).await;
    slack(&sandbox, "T01/B01/slack-secret", json!({"text": "slack"})).await;
    let (x_access, _, _) = rotate(&sandbox, "bird-r0").await;
    tweet(&sandbox, &x_access, "tweet").await;

    let posts: Value = client()
        .get(format!("{}/_sandbox/posts", sandbox.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let summary: Vec<(String, String, String)> = posts
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["account"].as_str().unwrap().to_owned(),
                p["platform"].as_str().unwrap().to_owned(),
                p["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("mast", "mastodon", "toot"),
        ("sky", "bluesky", "skeet"),
        ("disco", "discord", "disco"),
        ("slacker", "slack", "slack"),
        ("bird", "x", "tweet"),
    ]
    .iter()
    .map(|(a, p, t)| (a.to_string(), p.to_string(), t.to_string()))
    .collect();
    assert_eq!(summary, expected);
    assert_eq!(posts[0]["idempotency_key"], "k1");
    assert_eq!(posts[1]["rkey"], "r1");
    assert!(
        posts
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["id"].is_string())
    );

    let raw: Value = client()
        .get(format!("{}/_sandbox/counters", sandbox.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for field in [
        "requests",
        "statuses_created",
        "duplicates_prevented",
        "created_by_idempotency_key",
        "logins",
        "login_refusals",
        "refreshes",
        "refresh_reuses",
        "refresh_replays",
        "records",
        "webhook_messages",
        "tweets",
    ] {
        assert!(raw.get(field).is_some(), "missing {field}: {raw}");
    }
    assert_eq!(raw["accounts"]["sky"]["logins"], 1);
    assert_eq!(raw["accounts"]["bird"]["tweets"], 1);
    assert_eq!(raw["statuses_created"], 1);
    assert_eq!(
        (
            &raw["records"],
            &raw["webhook_messages"],
            &raw["tweets"],
            &raw["refreshes"]
        ),
        (&json!(1), &json!(2), &json!(1), &json!(1))
    );
    // Posting requests of every shape number each account's script.
    assert_eq!(raw["requests_by_account"]["disco"], 1);
    assert_eq!(raw["requests_by_account"]["sky"], 1);
}
