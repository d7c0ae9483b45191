//! [`AuthSupport`]: how a poster's platform logs in and refreshes, as the
//! poster describes it (contract 0.3.0's `auth` interface) and the host
//! performs it. Everything here is checked before the host sends a secret
//! anywhere: paths stay on the account's own host, field names are short.

use serde::{Deserialize, Serialize};

use crate::text::{NAME_BYTES, bounded};

/// A login that trades a password for an access and a refresh token
/// (Bluesky's `com.atproto.server.createSession`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLogin {
    pub login_path: String,
    pub identifier_field: String,
    pub password_field: String,
    pub refresh_path: String,
    pub access_token_field: String,
    pub refresh_token_field: String,
}

/// The OAuth 2 refresh-token grant at `token_path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2Refresh {
    pub token_path: String,
}

/// What a poster says its platform supports beyond `bearer` and
/// `url-secret`. A 0.2.0 or native poster supports nothing more.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSupport {
    pub session: Option<SessionLogin>,
    pub oauth2: Option<OAuth2Refresh>,
    /// Seconds an access token lives when the platform's answer says
    /// neither `expires_in` nor a JWT `exp`.
    pub token_lifetime_secs: u64,
    /// `error-code`s that mean the access token expired.
    pub expired_codes: Vec<String>,
}

/// The longest path the host sends a login or refresh to.
const PATH_BYTES: usize = 512;
/// The most expired-token codes the host keeps.
const MAX_CODES: usize = 32;

impl AuthSupport {
    /// What a plugin said, checked: every path is a path on the account's
    /// own host (begins with `/`, no `//`, no scheme, no control
    /// characters, no `{secret}`), every field name a plain short name.
    /// A poster that describes a bad login supports no login at all.
    pub fn checked(self) -> Result<AuthSupport, String> {
        if let Some(s) = &self.session {
            for (what, path) in [
                ("login-path", &s.login_path),
                ("refresh-path", &s.refresh_path),
            ] {
                check_path(what, path)?;
            }
            for (what, field) in [
                ("identifier-field", &s.identifier_field),
                ("password-field", &s.password_field),
                ("access-token-field", &s.access_token_field),
                ("refresh-token-field", &s.refresh_token_field),
            ] {
                check_field(what, field)?;
            }
        }
        if let Some(o) = &self.oauth2 {
            check_path("token-path", &o.token_path)?;
        }
        Ok(AuthSupport {
            // A year at most: a lifetime is a time the host adds to now.
            token_lifetime_secs: self.token_lifetime_secs.min(366 * 24 * 3600),
            expired_codes: self
                .expired_codes
                .into_iter()
                .take(MAX_CODES)
                .map(|c| bounded(c, NAME_BYTES))
                .collect(),
            ..self
        })
    }

    /// Whether `code` (a post-failure's `error-code`) means the access
    /// token expired.
    pub fn is_expired_code(&self, code: &str) -> bool {
        self.expired_codes.iter().any(|c| c == code)
    }
}

fn check_path(what: &str, path: &str) -> Result<(), String> {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && path.len() <= PATH_BYTES
        && !path.contains("{secret}")
        && path.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "its {what} must be a path on the account's host, like /oauth/token"
        ))
    }
}

fn check_field(what: &str, field: &str) -> Result<(), String> {
    let ok = !field.is_empty()
        && field.len() <= 64
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!("its {what} must be a short JSON field name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bluesky() -> AuthSupport {
        AuthSupport {
            session: Some(SessionLogin {
                login_path: "/xrpc/com.atproto.server.createSession".into(),
                identifier_field: "identifier".into(),
                password_field: "password".into(),
                refresh_path: "/xrpc/com.atproto.server.refreshSession".into(),
                access_token_field: "accessJwt".into(),
                refresh_token_field: "refreshJwt".into(),
            }),
            oauth2: None,
            token_lifetime_secs: u64::MAX,
            expired_codes: vec!["ExpiredToken".into()],
        }
    }

    #[test]
    fn a_platform_login_is_kept_and_its_numbers_clamped() {
        let checked = bluesky().checked().unwrap();
        assert_eq!(checked.session, bluesky().session);
        assert_eq!(checked.token_lifetime_secs, 366 * 24 * 3600);
        assert!(checked.is_expired_code("ExpiredToken"));
        assert!(!checked.is_expired_code("InvalidRequest"));
    }

    #[test]
    fn a_login_elsewhere_than_the_accounts_host_is_refused() {
        for path in [
            "https://evil.example/login",
            "//evil.example/login",
            "login",
            "/x/{secret}",
            "/a b",
        ] {
            let mut auth = bluesky();
            auth.session.as_mut().unwrap().login_path = path.into();
            let err = auth.checked().unwrap_err();
            assert!(err.contains("login-path"), "{path}: {err}");
        }
        let mut auth = bluesky();
        auth.oauth2 = Some(OAuth2Refresh {
            token_path: "http://x/token".into(),
        });
        assert!(auth.checked().unwrap_err().contains("token-path"));
    }

    #[test]
    fn a_field_name_is_a_plain_name() {
        let mut auth = bluesky();
        auth.session.as_mut().unwrap().password_field = "pass\"word".into();
        assert!(auth.checked().unwrap_err().contains("password-field"));
    }
}
