//! The keeper against a small platform in memory: logins, refreshes and
//! rotation counted, tokens kept in a real state file.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use orchestrator_contract::{OAuth2Refresh, SessionLogin};
use orchestrator_store::SqliteStore;

use super::*;
use crate::Exchange;

/// Issues opaque tokens; rotates refresh tokens and refuses a used one.
#[derive(Default)]
struct Platform {
    logins: AtomicU64,
    login_refusals: AtomicU64,
    refreshes: AtomicU64,
    reuses: AtomicU64,
    next: AtomicU64,
    /// Refresh tokens not yet used.
    live: Mutex<Vec<String>>,
    /// Sent `Authorization` headers and bodies, to look for secrets in.
    seen: Mutex<Vec<String>>,
}

impl Platform {
    fn issue(&self, json: bool) -> http::Response<Bytes> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let (access, refresh) = (format!("access-{n}"), format!("refresh-{n}"));
        self.live.lock().unwrap().push(refresh.clone());
        let body = if json {
            format!(r#"{{"accessJwt":"{access}","refreshJwt":"{refresh}"}}"#)
        } else {
            format!(r#"{{"access_token":"{access}","refresh_token":"{refresh}","expires_in":60}}"#)
        };
        http::Response::new(Bytes::from(body))
    }

    fn refused(&self, status: u16, body: &str) -> http::Response<Bytes> {
        http::Response::builder()
            .status(status)
            .body(Bytes::from(body.to_owned()))
            .unwrap()
    }

    fn answer(&self, request: &http::Request<Bytes>) -> http::Response<Bytes> {
        let body = String::from_utf8_lossy(request.body()).into_owned();
        let auth = request
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        self.seen.lock().unwrap().push(format!("{auth:?} {body}"));
        let use_token = |token: &str| {
            let mut live = self.live.lock().unwrap();
            match live.iter().position(|t| t == token) {
                Some(i) => {
                    live.remove(i);
                    self.refreshes.fetch_add(1, Ordering::SeqCst);
                    true
                }
                None => {
                    self.reuses.fetch_add(1, Ordering::SeqCst);
                    false
                }
            }
        };
        match request.uri().path() {
            "/login" => {
                if body.contains("\"pw\"") {
                    self.logins.fetch_add(1, Ordering::SeqCst);
                    self.issue(true)
                } else {
                    self.login_refusals.fetch_add(1, Ordering::SeqCst);
                    self.refused(401, r#"{"error":"AuthenticationRequired","message":"Invalid identifier or password"}"#)
                }
            }
            "/refresh" => {
                let token = auth.unwrap_or_default().replace("Bearer ", "");
                if use_token(&token) {
                    self.issue(true)
                } else {
                    self.refused(
                        400,
                        r#"{"error":"ExpiredToken","message":"Token has been revoked"}"#,
                    )
                }
            }
            "/token" => {
                let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
                let token = &form.iter().find(|(k, _)| k == "refresh_token").unwrap().1;
                if token == "seed" {
                    self.live.lock().unwrap().push("seed".into());
                }
                if use_token(token) {
                    self.issue(false)
                } else {
                    self.refused(400, r#"{"error":"invalid_grant","error_description":"Value passed for the token was invalid."}"#)
                }
            }
            _ => self.refused(404, "{}"),
        }
    }
}

struct Fake(Arc<Platform>);

impl Transport for Fake {
    fn send(&self, request: http::Request<Bytes>, _limit: usize) -> Exchange<'_> {
        let platform = self.0.clone();
        Box::pin(async move {
            // Let the other jobs pile up on the lock meanwhile.
            tokio::task::yield_now().await;
            Ok(platform.answer(&request))
        })
    }
}

fn support() -> AuthSupport {
    AuthSupport {
        session: Some(SessionLogin {
            login_path: "/login".into(),
            identifier_field: "identifier".into(),
            password_field: "password".into(),
            refresh_path: "/refresh".into(),
            access_token_field: "accessJwt".into(),
            refresh_token_field: "refreshJwt".into(),
        }),
        oauth2: Some(OAuth2Refresh {
            token_path: "/token".into(),
        }),
        token_lifetime_secs: 100,
        expired_codes: vec!["ExpiredToken".into()],
    }
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    platform: Arc<Platform>,
    clock: Arc<AtomicU64>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        World {
            _dir: dir,
            store: Arc::new(store),
            platform: Default::default(),
            clock: Arc::new(AtomicU64::new(1_000_000)),
        }
    }

    fn account(&self, scheme: Scheme, secret: &str) -> AccountAuth {
        let spec = AccountSpec {
            name: "alice".into(),
            base_url: "https://pds.example".into(),
            scheme,
            secret: Some(Secret::new(secret)),
            identifier: Some("alice.example".into()),
            client_id: Some("app".into()),
        };
        let clock = self.clock.clone();
        AccountAuth::new(
            spec,
            &support(),
            "test-poster",
            self.store.clone(),
            Arc::new(Fake(self.platform.clone())),
        )
        .unwrap()
        .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)))
    }

    fn advance_secs(&self, s: u64) {
        self.clock.fetch_add(s * 1000, Ordering::SeqCst);
    }

    fn logins(&self) -> u64 {
        self.platform.logins.load(Ordering::SeqCst)
    }

    fn refreshes(&self) -> u64 {
        self.platform.refreshes.load(Ordering::SeqCst)
    }
}

async fn many(auth: &AccountAuth, n: usize) -> Vec<Credential> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(auth.credential().await.unwrap().unwrap());
    }
    out
}

#[tokio::test]
async fn many_jobs_in_flight_log_in_once() {
    let world = World::new();
    let auth = Arc::new(world.account(Scheme::Session, "pw"));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let auth = auth.clone();
        tasks.spawn(async move { auth.credential().await.unwrap().unwrap() });
    }
    let mut generations = Vec::new();
    while let Some(c) = tasks.join_next().await {
        generations.push(c.unwrap().generation);
    }
    assert_eq!(world.logins(), 1);
    assert!(generations.iter().all(|g| *g == 1), "{generations:?}");
}

#[tokio::test]
async fn the_next_run_reuses_the_session_the_last_one_left() {
    let world = World::new();
    let first = world
        .account(Scheme::Session, "pw")
        .credential()
        .await
        .unwrap()
        .unwrap();
    let second = world
        .account(Scheme::Session, "pw")
        .credential()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(world.logins(), 1);
    assert_eq!(first.secret, second.secret);
    assert_eq!(
        many(&world.account(Scheme::Session, "pw"), 3).await.len(),
        3
    );
    assert_eq!(world.logins(), 1);
}

#[tokio::test]
async fn a_token_near_its_end_is_refreshed_not_logged_in_again() {
    let world = World::new();
    let auth = world.account(Scheme::Session, "pw");
    let first = auth.credential().await.unwrap().unwrap();
    world.advance_secs(81); // past four fifths of its 100 s
    let second = auth.credential().await.unwrap().unwrap();
    assert_ne!(first.secret, second.secret);
    assert_eq!((world.logins(), world.refreshes()), (1, 1));
    assert_eq!(second.generation, 2);
}

#[tokio::test]
async fn an_expired_answer_from_many_jobs_renews_once() {
    let world = World::new();
    let auth = world.account(Scheme::Session, "pw");
    let first = auth.credential().await.unwrap().unwrap();
    assert!(auth.is_expired_answer(Some(400), Some("ExpiredToken")));
    assert!(auth.is_expired_answer(Some(401), None));
    assert!(!auth.is_expired_answer(Some(400), Some("InvalidRequest")));
    for _ in 0..10 {
        auth.expired(first.generation).await;
    }
    let renewed = auth.credential().await.unwrap().unwrap();
    // A late report about the old token changes nothing.
    auth.expired(first.generation).await;
    let again = auth.credential().await.unwrap().unwrap();
    assert_eq!((renewed.generation, again.generation), (2, 2));
    assert_eq!(world.refreshes(), 1);
}

#[tokio::test]
async fn a_refused_refresh_logs_in_again_with_the_password() {
    let world = World::new();
    let auth = world.account(Scheme::Session, "pw");
    auth.credential().await.unwrap();
    world.platform.live.lock().unwrap().clear(); // the platform revoked it
    world.advance_secs(100);
    let c = auth.credential().await.unwrap().unwrap();
    assert_eq!((world.logins(), c.generation), (2, 2));
}

#[tokio::test]
async fn a_wrong_password_is_the_platforms_refusal_without_the_password() {
    let world = World::new();
    let err = world
        .account(Scheme::Session, "wrong-pw")
        .credential()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(
        text,
        "the login was refused (401 AuthenticationRequired): Invalid identifier or password"
    );
}

#[tokio::test]
async fn a_refused_login_is_not_asked_again_by_every_job() {
    let world = World::new();
    let auth = world.account(Scheme::Session, "wrong-pw");
    for _ in 0..5 {
        assert!(auth.credential().await.is_err());
    }
    assert_eq!(world.platform.login_refusals.load(Ordering::SeqCst), 1);
    // The next run asks again: the password may have been fixed.
    assert!(
        world
            .account(Scheme::Session, "wrong-pw")
            .credential()
            .await
            .is_err()
    );
    assert_eq!(world.platform.login_refusals.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_before_its_access_token_is_used() {
    let world = World::new();
    let auth = world.account(Scheme::OAuth2, "seed");
    let c = auth.credential().await.unwrap().unwrap();
    let sealed = world.store.sealed_tokens("alice").unwrap().unwrap();
    let stored = SealKey::derive(&Secret::new("seed"), "alice", Scheme::OAuth2)
        .open(&sealed)
        .unwrap();
    assert_eq!(stored.access, c.secret);
    assert_eq!(stored.refresh.unwrap().expose(), "refresh-0");
    assert!(!String::from_utf8_lossy(&sealed).contains("refresh-0"));
    // A new run starts from the rotated token, not the used seed.
    world.advance_secs(3600);
    let next = world
        .account(Scheme::OAuth2, "seed")
        .credential()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.generation, 2);
    assert_eq!(world.platform.reuses.load(Ordering::SeqCst), 0);
    // Nothing the keeper sent carried the token as anything but itself.
    assert!(c.scrub.iter().any(|s| s.expose() == "seed"));
}

#[tokio::test]
async fn a_fixed_secret_is_sent_as_it_is() {
    let world = World::new();
    let c = world
        .account(Scheme::UrlSecret, "123/abc")
        .credential()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.placement, c.secret.expose()),
        (Placement::UrlPath, "123/abc")
    );
    assert_eq!(world.logins() + world.refreshes(), 0);
}

#[test]
fn an_account_that_cannot_work_is_refused_before_any_attempt() {
    let world = World::new();
    let refuse = |spec: AccountSpec, support: &AuthSupport| {
        AccountAuth::new(
            spec,
            support,
            "old-poster",
            world.store.clone(),
            Arc::new(Fake(world.platform.clone())),
        )
        .err()
        .unwrap()
        .to_string()
    };
    let spec = |scheme, secret: Option<&str>| AccountSpec {
        name: "bob".into(),
        base_url: "https://x".into(),
        scheme,
        secret: secret.map(Secret::new),
        identifier: None,
        client_id: None,
    };
    assert_eq!(
        refuse(spec(Scheme::Session, Some("pw")), &AuthSupport::default()),
        "auth = \"session\", but its poster old-poster describes no session login (contract 0.2.0 posters describe none); use a poster that logs in, or another auth"
    );
    assert_eq!(
        refuse(spec(Scheme::Session, Some("pw")), &support()),
        "auth = \"session\" needs an `identifier` setting: the handle or e-mail it logs in with"
    );
    assert_eq!(
        refuse(spec(Scheme::OAuth2, None), &support()),
        "auth = \"oauth2\" needs its first refresh token: give secret_env, secret_file or secret"
    );
    assert!(refuse(spec(Scheme::UrlSecret, Some("a/../b")), &support()).contains("url-secret"));
}

#[tokio::test]
async fn a_renewal_by_another_process_is_taken_from_the_store() {
    let world = World::new();
    let (one, two) = (
        world.account(Scheme::Session, "pw"),
        world.account(Scheme::Session, "pw"),
    );
    one.credential().await.unwrap();
    two.credential().await.unwrap();
    world.advance_secs(100);
    let renewed = one.credential().await.unwrap().unwrap();
    let taken = two.credential().await.unwrap().unwrap();
    assert_eq!(taken.secret, renewed.secret);
    assert_eq!((world.logins(), world.refreshes()), (1, 1));
}

/// A platform nobody can reach.
struct Down;

impl Transport for Down {
    fn send(&self, _request: http::Request<Bytes>, _limit: usize) -> Exchange<'_> {
        Box::pin(async { Err("connection refused".to_owned()) })
    }
}

#[tokio::test]
async fn an_unreachable_platform_is_asked_again_by_the_next_attempt() {
    let world = World::new();
    let spec = AccountSpec {
        name: "alice".into(),
        base_url: "https://pds.example".into(),
        scheme: Scheme::Session,
        secret: Some(Secret::new("pw")),
        identifier: Some("alice.example".into()),
        client_id: None,
    };
    let auth = AccountAuth::new(
        spec,
        &support(),
        "test-poster",
        world.store.clone(),
        Arc::new(Down),
    )
    .unwrap();
    for _ in 0..2 {
        assert_eq!(
            auth.credential().await.unwrap_err(),
            Refusal::Unreachable {
                what: "the login",
                reason: "connection refused".into()
            }
        );
    }
    assert_eq!(world.store.sealed_tokens("alice").unwrap(), None);
}
