//! The requests the host sends itself — a session login, a session
//! refresh, an OAuth 2 refresh-token grant — and how their answers are
//! read. Everything in an answer is hostile until checked: tokens are
//! bounded, lifetimes clamped, error texts cut and never trusted to be
//! free of secrets (the keeper scrubs them).

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use orchestrator_contract::text::{MESSAGE_BYTES, NAME_BYTES, bounded};
use orchestrator_contract::{OAuth2Refresh, SessionLogin};

use crate::{Refusal, Secret};

/// The most bytes of a login or refresh answer the host reads.
pub const ANSWER_BYTES: usize = 64 * 1024;
/// The longest token the host keeps.
const TOKEN_BYTES: usize = 16 * 1024;
/// The longest wait a platform may ask for, and the longest lifetime a
/// token may claim: a day and a year.
const MAX_WAIT_MS: u64 = 24 * 3600 * 1000;
const MAX_LIFETIME_MS: u64 = 366 * 24 * 3600 * 1000;

/// What a login or refresh issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access: Secret,
    pub refresh: Option<Secret>,
    /// How long the access token lives, when the answer says (in
    /// `expires_in` or a JWT `exp`), in milliseconds from now, clamped.
    pub lifetime_ms: Option<u64>,
}

fn url(base_url: &str, path: &str) -> String {
    format!("{}{path}", base_url.trim_end_matches('/'))
}

fn post(url: String, content_type: &'static str, body: Vec<u8>) -> http::Request<Bytes> {
    let mut request = http::Request::post(url)
        .header(CONTENT_TYPE, content_type)
        .header(http::header::ACCEPT, "application/json")
        .body(Bytes::from(body))
        .unwrap_or_else(|_| http::Request::new(Bytes::new()));
    // A URL the `http` crate refuses becomes a request with no host, which
    // the transport refuses in turn; the base URL was checked long before.
    *request.method_mut() = http::Method::POST;
    request
}

fn bearer(secret: &Secret) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", secret.expose())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `POST {base}{login-path}` with `{identifier-field: identifier,
/// password-field: password}`.
pub fn login_request(
    base_url: &str,
    login: &SessionLogin,
    identifier: &str,
    password: &Secret,
) -> http::Request<Bytes> {
    let mut body = serde_json::Map::new();
    body.insert(login.identifier_field.clone(), identifier.into());
    body.insert(login.password_field.clone(), password.expose().into());
    let body = serde_json::to_vec(&body).expect("a map of strings serialises");
    post(url(base_url, &login.login_path), "application/json", body)
}

/// `POST {base}{refresh-path}` with the refresh token as the Bearer.
pub fn session_refresh_request(
    base_url: &str,
    login: &SessionLogin,
    refresh: &Secret,
) -> http::Request<Bytes> {
    let mut request = post(
        url(base_url, &login.refresh_path),
        "application/json",
        Vec::new(),
    );
    if let Some(value) = bearer(refresh) {
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    request
}

/// The refresh-token grant (RFC 6749 section 6) at `{base}{token-path}`.
pub fn oauth2_request(
    base_url: &str,
    oauth2: &OAuth2Refresh,
    refresh: &Secret,
    client_id: &str,
) -> http::Request<Bytes> {
    let body = serde_urlencoded::to_string([
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.expose()),
        ("client_id", client_id),
    ])
    .expect("strings encode");
    post(
        url(base_url, &oauth2.token_path),
        "application/x-www-form-urlencoded",
        body.into_bytes(),
    )
}

/// The tokens of a session login's or refresh's answer.
pub fn session_answer(
    what: &'static str,
    login: &SessionLogin,
    response: &http::Response<Bytes>,
    now_ms: u64,
) -> Result<Issued, Refusal> {
    let json = answer_json(what, response, now_ms)?;
    let access = token(what, &json, &login.access_token_field, response)?;
    let refresh = token(what, &json, &login.refresh_token_field, response)?;
    let lifetime_ms = jwt_exp_ms(access.expose()).map(|exp| exp.saturating_sub(now_ms));
    Ok(Issued {
        access,
        refresh: Some(refresh),
        lifetime_ms: lifetime_ms.map(clamp_lifetime),
    })
}

/// The tokens of an OAuth 2 token endpoint's answer. A platform that does
/// not rotate answers no `refresh_token`: the one sent stays good.
pub fn oauth2_answer(response: &http::Response<Bytes>, now_ms: u64) -> Result<Issued, Refusal> {
    let what = "the OAuth 2 refresh";
    let json = answer_json(what, response, now_ms)?;
    let access = token(what, &json, "access_token", response)?;
    let refresh = match json.get("refresh_token") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => Some(token(what, &json, "refresh_token", response)?),
    };
    let lifetime_ms = json
        .get("expires_in")
        .and_then(serde_json::Value::as_f64)
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| (s.min(MAX_LIFETIME_MS as f64 / 1000.0) * 1000.0) as u64)
        .or_else(|| jwt_exp_ms(access.expose()).map(|exp| exp.saturating_sub(now_ms)));
    Ok(Issued {
        access,
        refresh,
        lifetime_ms: lifetime_ms.map(clamp_lifetime),
    })
}

fn clamp_lifetime(ms: u64) -> u64 {
    ms.clamp(1000, MAX_LIFETIME_MS)
}

/// The answer's JSON object, or the platform's refusal.
fn answer_json(
    what: &'static str,
    response: &http::Response<Bytes>,
    now_ms: u64,
) -> Result<serde_json::Map<String, serde_json::Value>, Refusal> {
    if !response.status().is_success() {
        return Err(refusal(what, response, now_ms));
    }
    match serde_json::from_slice(response.body()) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(Refusal::Platform {
            what,
            status: response.status().as_u16(),
            code: None,
            message: "the answer is not a JSON object".into(),
            retry_after_ms: None,
        }),
    }
}

fn token(
    what: &'static str,
    json: &serde_json::Map<String, serde_json::Value>,
    field: &str,
    response: &http::Response<Bytes>,
) -> Result<Secret, Refusal> {
    match json.get(field).and_then(serde_json::Value::as_str) {
        Some(t)
            if !t.is_empty()
                && t.len() <= TOKEN_BYTES
                && t.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Secret::new(t))
        }
        _ => Err(Refusal::Platform {
            what,
            status: response.status().as_u16(),
            code: None,
            message: format!("the answer has no usable `{field}`"),
            retry_after_ms: None,
        }),
    }
}

/// The platform's refusal: its status, its error code and message in the
/// shapes platforms use (`error` with `message` as XRPC, or with
/// `error_description` as OAuth 2), and the wait it asked for.
fn refusal(what: &'static str, response: &http::Response<Bytes>, now_ms: u64) -> Refusal {
    let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap_or_default();
    let text = |key: &str| {
        json.get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let code = text("error").map(|c| bounded(c, NAME_BYTES));
    let message = text("message")
        .or_else(|| text("error_description"))
        .or_else(|| text("detail"))
        .unwrap_or_else(|| {
            response
                .status()
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_owned()
        });
    Refusal::Platform {
        what,
        status: response.status().as_u16(),
        code,
        message: bounded(message, MESSAGE_BYTES),
        retry_after_ms: retry_after_ms(response.headers(), now_ms),
    }
}

/// The wait a refusal asks for: `Retry-After` (seconds), or a rate-limit
/// reset time (`RateLimit-Reset`, `X-RateLimit-Reset`: epoch seconds),
/// whichever is later, at most a day.
pub fn retry_after_ms(headers: &http::HeaderMap, now_ms: u64) -> Option<u64> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    let after = number("retry-after").map(|s| s.saturating_mul(1000));
    let reset = ["ratelimit-reset", "x-ratelimit-reset", "x-rate-limit-reset"]
        .iter()
        .find_map(|name| number(name))
        .map(|epoch_s| epoch_s.saturating_mul(1000).saturating_sub(now_ms));
    after
        .into_iter()
        .chain(reset)
        .max()
        .map(|ms| ms.min(MAX_WAIT_MS))
}

/// The `exp` of a JWT-shaped token, in epoch milliseconds; `None` for a
/// token of another shape. Read only to know when to renew: the platform,
/// not this, decides whether a token is good.
pub fn jwt_exp_ms(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > TOKEN_BYTES {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    (exp.is_finite() && exp > 0.0).then(|| (exp.min(u64::MAX as f64 / 2000.0) * 1000.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> http::Response<Bytes> {
        http::Response::builder()
            .status(status)
            .body(Bytes::from(body.to_owned()))
            .unwrap()
    }

    fn bluesky() -> SessionLogin {
        SessionLogin {
            login_path: "/xrpc/com.atproto.server.createSession".into(),
            identifier_field: "identifier".into(),
            password_field: "password".into(),
            refresh_path: "/xrpc/com.atproto.server.refreshSession".into(),
            access_token_field: "accessJwt".into(),
            refresh_token_field: "refreshJwt".into(),
        }
    }

    fn jwt(exp: u64) -> String {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.sig",
            b64(r#"{"alg":"ES256K"}"#),
            b64(&format!(r#"{{"exp":{exp}}}"#))
        )
    }

    #[test]
    fn a_login_sends_the_fields_the_poster_named_to_the_accounts_host() {
        let req = login_request(
            "https://pds.example/",
            &bluesky(),
            "alice.bsky",
            &Secret::new("pw"),
        );
        assert_eq!(
            req.uri(),
            "https://pds.example/xrpc/com.atproto.server.createSession"
        );
        let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"identifier": "alice.bsky", "password": "pw"})
        );
    }

    #[test]
    fn a_session_answer_gives_both_tokens_and_the_jwt_lifetime() {
        let now = 1_000_000_000;
        let body = format!(
            r#"{{"accessJwt":"{}","refreshJwt":"r1"}}"#,
            jwt(now / 1000 + 120)
        );
        let issued = session_answer("the login", &bluesky(), &response(200, &body), now).unwrap();
        assert_eq!(issued.refresh.unwrap().expose(), "r1");
        assert_eq!(issued.lifetime_ms, Some(120_000));
    }

    #[test]
    fn a_refusal_keeps_the_platforms_code_message_and_wait() {
        let mut r = response(
            429,
            r#"{"error":"RateLimitExceeded","message":"Rate Limit Exceeded"}"#,
        );
        r.headers_mut()
            .insert("ratelimit-reset", "1030".parse().unwrap());
        let err = session_answer("the login", &bluesky(), &r, 1_000_000).unwrap_err();
        assert_eq!(
            err,
            Refusal::Platform {
                what: "the login",
                status: 429,
                code: Some("RateLimitExceeded".into()),
                message: "Rate Limit Exceeded".into(),
                retry_after_ms: Some(30_000),
            }
        );
    }

    #[test]
    fn an_oauth2_answer_clamps_what_it_claims() {
        let r = response(
            200,
            r#"{"access_token":"a","refresh_token":"r2","expires_in":1e30}"#,
        );
        let issued = oauth2_answer(&r, 0).unwrap();
        assert_eq!(issued.lifetime_ms, Some(MAX_LIFETIME_MS));
        let r = response(200, r#"{"access_token":"a","expires_in":-5}"#);
        let issued = oauth2_answer(&r, 0).unwrap();
        assert!(issued.refresh.is_none() && issued.lifetime_ms.is_none());
        let r = response(200, r#"{"access_token":"a\u001b[2J"}"#);
        assert!(
            oauth2_answer(&r, 0).is_err(),
            "a token with control characters is refused"
        );
        let r = response(
            400,
            r#"{"error":"invalid_grant","error_description":"Value passed for the token was invalid."}"#,
        );
        let err = oauth2_answer(&r, 0).unwrap_err().to_string();
        assert_eq!(
            err,
            "the OAuth 2 refresh was refused (400 invalid_grant): Value passed for the token was invalid."
        );
    }

    #[test]
    fn a_hostile_refusal_is_cut_to_size_and_its_wait_to_a_day() {
        let message = "x".repeat(1 << 20);
        let body = format!(
            r#"{{"error":"{}","message":"{message}"}}"#,
            "E".repeat(10_000)
        );
        let mut r = response(429, &body);
        r.headers_mut()
            .insert("retry-after", "99999999999999".parse().unwrap());
        let Refusal::Platform {
            code,
            message,
            retry_after_ms,
            ..
        } = session_answer("the login", &bluesky(), &r, 0).unwrap_err()
        else {
            panic!("a platform refusal")
        };
        assert!(code.unwrap().len() <= NAME_BYTES + 64);
        assert!(message.len() <= MESSAGE_BYTES + 64);
        assert_eq!(retry_after_ms, Some(MAX_WAIT_MS));
    }

    #[test]
    fn only_a_jwt_shaped_token_has_an_expiry() {
        assert_eq!(jwt_exp_ms(&jwt(5)), Some(5000));
        assert_eq!(jwt_exp_ms("opaque-token"), None);
        assert_eq!(jwt_exp_ms("a.!!!.c"), None);
    }
}
