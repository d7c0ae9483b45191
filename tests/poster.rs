//! `mastodon-poster` publishing to the sandbox through the host: the
//! receipt on success, and a structured failure for each error shape.

use orchestrator_contract::{Account, HostFault, JobContext, PluginKind};
use orchestrator_plugin_host::{Attempt, OutboundAccess, Secret};
use orchestrator_sandbox::{Sandbox, Scenario};

use crate::support::{self, artifacts};

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
then = { respond = "validation-error", message = "Validation failed: Text character limit of 500 exceeded" }

[[account]]
name = "busy"
token = "busy-token"
script = [{ respond = "rate-limited", reset_secs = 30 }]

[[account]]
name = "flaky"
token = "flaky-token"
script = [{ respond = "server-error", status = 502, times = 2 }]

[[account]]
name = "dropper"
token = "dropper-token"
script = [{ respond = "drop-connection" }]
"#;

fn job(sandbox: &Sandbox, account: &str, id: &str, status: &str) -> JobContext {
    JobContext {
        job_id: id.into(),
        account: Account {
            name: account.into(),
            base_url: sandbox.url().into(),
            settings: vec![],
        },
        payload: serde_json::json!({ "status": status, "visibility": "unlisted" }).to_string(),
        attempt: 1,
        pass: 1,
        idempotency_key: format!("key-{id}"),
    }
}

fn access(sandbox: &Sandbox, account: &str) -> OutboundAccess {
    OutboundAccess::for_account(sandbox.url(), Some(Secret::new(format!("{account}-token"))))
}

/// Posts one job for `account` and returns what the host saw.
async fn post(sandbox: &Sandbox, account: &str, id: &str) -> Attempt {
    let plugin = support::poster(artifacts::MASTODON_POSTER).await;
    assert_eq!(plugin.meta().kind, PluginKind::Poster);
    plugin
        .post(
            &job(sandbox, account, id, "hello from a test"),
            access(sandbox, account),
        )
        .await
}

fn failure(attempt: Attempt) -> orchestrator_contract::PostFailure {
    match attempt {
        Attempt::Failed {
            failure: Some(f), ..
        } => f,
        other => panic!("expected a failure from the plugin, got {other:?}"),
    }
}

async fn sandbox() -> Sandbox {
    Sandbox::start_local(Scenario::parse(SCENARIO).unwrap())
        .await
        .unwrap()
}

#[test]
fn a_post_returns_the_created_status_as_receipt() {
    support::runtime().block_on(async {
        let sandbox = sandbox().await;
        let Attempt::Posted(receipt) = post(&sandbox, "alice", "j1").await else {
            panic!("expected a receipt");
        };
        let statuses = sandbox.statuses();
        assert_eq!(statuses.len(), 1);
        assert_eq!(receipt.remote_id, statuses[0].id.to_string());
        assert_eq!(
            receipt.url.as_deref(),
            Some(format!("{}/@alice/{}", sandbox.url(), receipt.remote_id).as_str())
        );
        // The host added alice's token: the sandbox knows who posted.
        assert_eq!(statuses[0].account, "alice");
        assert_eq!(statuses[0].text, "hello from a test");
        assert_eq!(statuses[0].idempotency_key.as_deref(), Some("key-j1"));
    });
}

#[test]
fn a_repeated_idempotency_key_returns_the_original_status() {
    support::runtime().block_on(async {
        let sandbox = sandbox().await;
        let Attempt::Posted(first) = post(&sandbox, "alice", "j1").await else {
            panic!("first attempt should post");
        };
        let Attempt::Posted(again) = post(&sandbox, "alice", "j1").await else {
            panic!("second attempt should replay");
        };
        assert_eq!(first, again);
        let counters = sandbox.counters();
        assert_eq!(counters.statuses_created, 1);
        assert_eq!(counters.duplicates_prevented, 1);
        assert_eq!(counters.created_by_idempotency_key["alice/key-j1"], 1);
    });
}

#[test]
fn error_responses_become_structured_failures() {
    support::runtime().block_on(async {
        let sandbox = sandbox().await;

        let f = failure(post(&sandbox, "revoked", "j1").await);
        assert_eq!(f.http_status, Some(401));
        assert_eq!(f.error_code.as_deref(), Some("The access token is invalid"));

        let f = failure(post(&sandbox, "suspended", "j2").await);
        assert_eq!(f.http_status, Some(403));
        assert_eq!(
            f.error_code.as_deref(),
            Some("Your login is currently disabled")
        );

        let f = failure(post(&sandbox, "wordy", "j3").await);
        assert_eq!(f.http_status, Some(422));
        assert!(f.message.contains("character limit"), "{}", f.message);

        let f = failure(post(&sandbox, "flaky", "j4").await);
        assert_eq!(f.http_status, Some(502));
        assert_eq!(f.retry_after_ms, None);
        assert_eq!(sandbox.counters().statuses_created, 0);
    });
}

#[test]
fn a_rate_limit_carries_its_retry_hints() {
    support::runtime().block_on(async {
        let sandbox = sandbox().await;
        let f = failure(post(&sandbox, "busy", "j1").await);
        assert_eq!(f.http_status, Some(429));
        assert_eq!(f.error_code.as_deref(), Some("Too many requests"));
        // Retry-After: 30, and X-RateLimit-Reset about 30 s from now: the
        // poster keeps the later of the two.
        let wait = f.retry_after_ms.expect("a retry-after hint");
        assert!((28_000..=31_000).contains(&wait), "retry after {wait} ms");
        let reset = f.rate_limit_reset.expect("the reset time as sent");
        assert!(reset.ends_with('Z'), "{reset}");
        // The script is over: the next attempt posts.
        assert!(matches!(
            post(&sandbox, "busy", "j1").await,
            Attempt::Posted(_)
        ));
    });
}

#[test]
fn a_dropped_connection_is_a_transport_failure_and_a_host_fault() {
    support::runtime().block_on(async {
        let sandbox = sandbox().await;
        let Attempt::Failed { failure, fault } = post(&sandbox, "dropper", "j1").await else {
            panic!("expected a failure");
        };
        let failure = failure.expect("the plugin reported it");
        assert!(failure.http_status.is_none());
        assert!(failure.transport_error.is_some(), "{failure:?}");
        assert!(
            matches!(fault, Some(HostFault::ConnectionError(_))),
            "{fault:?}"
        );
        assert!(matches!(
            post(&sandbox, "dropper", "j1").await,
            Attempt::Posted(_)
        ));
    });
}

#[test]
fn a_host_that_was_not_granted_is_denied() {
    support::runtime().block_on(async {
        let sandbox = sandbox().await;
        let plugin = support::poster(artifacts::MASTODON_POSTER).await;
        let attempt = plugin
            .post(
                &job(&sandbox, "alice", "j1", "hi"),
                OutboundAccess::for_account("https://elsewhere.example", None),
            )
            .await;
        let Attempt::Failed { fault, .. } = attempt else {
            panic!("expected a denial");
        };
        let host = sandbox.url().trim_start_matches("http://").to_owned();
        assert_eq!(fault, Some(HostFault::DeniedRequest(host)));
        assert_eq!(sandbox.counters().requests, 0);
    });
}

#[test]
fn a_payload_without_status_text_fails_before_any_request() {
    support::runtime().block_on(async {
        let sandbox = sandbox().await;
        let plugin = support::poster(artifacts::MASTODON_POSTER).await;
        let mut job = job(&sandbox, "alice", "j1", "");
        job.payload = r#"{"visibility": "public"}"#.into();
        let f = failure(plugin.post(&job, access(&sandbox, "alice")).await);
        assert!(f.message.contains("no `status` text"), "{}", f.message);
        assert_eq!(sandbox.counters().requests, 0);
    });
}

#[test]
fn https_platforms_are_reached_over_kept_alive_connections() {
    let f = crate::support::Fixture::new_tls(
        "[[account]]\nname = \"a\"\ntoken = \"ta\"\n[[account]]\nname = \"b\"\ntoken = \"tb\"\n",
        10,
    );
    assert!(f.sandbox.url().starts_with("https://localhost:"));
    // Without the sandbox's certificate, the host refuses the connection.
    let out = f.run(&["--max-passes", "1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let attempt = f.state().attempts("a-1").unwrap().remove(0);
    assert!(
        attempt
            .fault
            .as_ref()
            .is_some_and(|fault| fault.to_string().contains("TLS certificate")),
        "{attempt:?}"
    );
    assert_eq!(f.sandbox.counters().requests, 0);

    // Trusting it, a fresh batch posts everything.
    let refused = f.sandbox.counters().connections;
    let out = f.run(&["--ca-file", "ca.pem", "--state-file", "trusted.sqlite"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let counters = f.sandbox.counters();
    assert_eq!(counters.statuses_created, 20);
    // Each account's posts share a connection (and its TLS handshake).
    let connections = counters.connections - refused;
    assert!(connections < 20, "{connections} connections for 20 posts");
}
