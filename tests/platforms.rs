//! Platforms beyond Mastodon, each account authenticated its own way by
//! the host: Bluesky sessions, Discord and Slack webhooks, X-style OAuth 2,
//! and Mastodon's bearer token, in one batch — and a poster that tries
//! every channel it has to learn a secret, under every scheme.

use std::time::Duration;

use orchestrator_store::JobState::{self, Succeeded};

use crate::support::{Fixture, artifacts, run};

const PLATFORMS: &str = r#"
[[account]]
name = "masto"
token = "masto-token"

[[account]]
name = "sky1"
handle = "sky1.bsky.test"
password = "sky1-app-password"

[[account]]
name = "sky2"
handle = "sky2.bsky.test"
password = "sky2-app-password"

[[account]]
name = "disco"
webhook = "4242/disco-webhook-token"
script = [{ respond = "rate-limited", reset_ms = 300 }]

[[account]]
name = "slacker"
webhook = "T01/B01/slack-webhook-secret"

[[account]]
name = "bird"
client_id = "bird-app"
refresh_token = "bird-first-refresh"
"#;

/// The accounts file for [`PLATFORMS`]: each account names its poster and
/// scheme, secrets by environment variable as an operator would give them.
fn accounts(url: &str) -> String {
    format!(
        r#"
[accounts.masto]
base_url = "{url}"
poster = "mastodon-poster"
secret_env = "MASTO_TOKEN"

[accounts.sky1]
base_url = "{url}"
poster = "bluesky-poster"
auth = "session"
secret_env = "SKY1_PASSWORD"
settings = {{ identifier = "sky1.bsky.test" }}

[accounts.sky2]
base_url = "{url}"
poster = "bluesky-poster"
auth = "session"
secret_env = "SKY2_PASSWORD"
settings = {{ identifier = "sky2.bsky.test" }}

[accounts.disco]
base_url = "{url}"
poster = "webhook-poster"
auth = "url-secret"
secret_env = "DISCO_WEBHOOK"

[accounts.slacker]
base_url = "{url}"
poster = "webhook-poster"
auth = "url-secret"
secret_env = "SLACK_WEBHOOK"
settings = {{ style = "slack" }}

[accounts.bird]
base_url = "{url}"
poster = "x-poster"
auth = "oauth2"
secret_env = "BIRD_REFRESH"
settings = {{ client_id = "bird-app" }}
"#
    )
}

const SECRETS: &[(&str, &str)] = &[
    ("MASTO_TOKEN", "masto-token"),
    ("SKY1_PASSWORD", "sky1-app-password"),
    ("SKY2_PASSWORD", "sky2-app-password"),
    ("DISCO_WEBHOOK", "4242/disco-webhook-token"),
    ("SLACK_WEBHOOK", "T01/B01/slack-webhook-secret"),
    ("BIRD_REFRESH", "bird-first-refresh"),
];

const ACCOUNTS: &[&str] = &["masto", "sky1", "sky2", "disco", "slacker", "bird"];

fn jobs(round: &str, per_account: usize) -> String {
    let mut jobs = String::new();
    for account in ACCOUNTS {
        for i in 1..=per_account {
            let text = format!("{round} post {i} of {account}");
            jobs.push_str(&format!(
                "{{\"id\": \"{round}-{account}-{i}\", \"account\": \"{account}\", \"payload\": {{\"status\": \"{text}\", \"text\": \"{text}\"}}}}\n"
            ));
        }
    }
    jobs
}

fn mixed(per_account: usize) -> Fixture {
    let mut f = Fixture::new(PLATFORMS, 0).with_jobs(&jobs("first", per_account));
    std::fs::write(f.path("accounts.toml"), accounts(f.sandbox.url())).unwrap();
    f.plugins = vec![
        artifacts::MASTODON_POSTER,
        artifacts::BLUESKY_POSTER,
        artifacts::WEBHOOK_POSTER,
        artifacts::X_POSTER,
        artifacts::XRPC_CLASSIFIER,
        artifacts::WEBHOOK_CLASSIFIER,
        artifacts::HTTP_CLASSIFIER,
    ];
    f
}

fn run_with_secrets(f: &Fixture, extra: &[&str]) -> crate::support::Output {
    let mut cmd = f.command(extra);
    cmd.arg("--run");
    for (var, value) in SECRETS {
        cmd.env(var, value);
    }
    run(&mut cmd)
}

/// Posts per account the sandbox holds, of any platform.
fn posted(f: &Fixture) -> std::collections::BTreeMap<String, usize> {
    let mut by_account = std::collections::BTreeMap::new();
    for post in f.sandbox.posts() {
        *by_account.entry(post.account.clone()).or_default() += 1;
    }
    by_account
}

#[test]
fn a_mixed_batch_posts_every_job_once_per_platform_and_logs_in_once_per_bluesky_account() {
    let f = mixed(4);
    let out = run_with_secrets(&f, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let every = ACCOUNTS.iter().map(|a| (a.to_string(), 4)).collect();
    assert_eq!(posted(&f), every, "one post per job on every platform");
    let texts: std::collections::BTreeSet<String> =
        f.sandbox.posts().into_iter().map(|p| p.text).collect();
    assert_eq!(texts.len(), 24, "no job posted twice");
    let counters = f.sandbox.counters();
    for sky in ["sky1", "sky2"] {
        assert_eq!(counters.accounts[sky].logins, 1, "{sky} logged in once");
    }
    // The webhook's 429 (its wait in the body) was waited out and retried.
    assert_eq!(counters.requests_by_account["disco"], 5);
    assert_eq!((counters.refreshes, counters.refresh_reuses), (1, 0));
    assert!(f.outcomes().values().all(|(state, _)| *state == Succeeded));

    // A day later on the platforms' clocks every access token has expired
    // mid-batch; the next run renews each once and logs in no more.
    f.sandbox.advance_clock(Duration::from_secs(24 * 3600));
    std::fs::write(f.path("jobs.jsonl"), jobs("second", 3)).unwrap();
    let out = run_with_secrets(&f, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let counters = f.sandbox.counters();
    for sky in ["sky1", "sky2"] {
        let c = &counters.accounts[sky];
        assert_eq!(
            (c.logins, c.refreshes),
            (1, 1),
            "{sky}: the session was refreshed, not opened again"
        );
    }
    assert_eq!(counters.accounts["bird"].refreshes, 2);
    assert_eq!(counters.refresh_reuses, 0);
    assert_eq!(posted(&f).values().sum::<usize>(), 24 + 18);
    let states: Vec<JobState> = f.outcomes().values().map(|(s, _)| *s).collect();
    assert!(states.iter().all(|s| *s == Succeeded), "{states:?}");
}

#[test]
fn tokens_rest_in_the_state_file_sealed_and_no_output_shows_a_secret() {
    let f = mixed(1);
    let out = run_with_secrets(&f, &["-vvv"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let state = std::fs::read(f.path("orchestrator-state.sqlite")).unwrap();
    let report = f.tool(&["report", "--json"]);
    let status = f.tool(&["--status", "--json"]);
    let explain = f.tool(&["explain", "first-sky1-1"]);
    let secrets = secrets_of(&f);
    assert!(secrets.len() > SECRETS.len(), "the platforms issued tokens");
    for secret in &secrets {
        let shown = |text: &str| text.contains(secret.as_str());
        assert!(
            !shown(&out.stderr) && !shown(&out.stdout),
            "the run's output shows {secret}"
        );
        for (what, o) in [
            ("report", &report),
            ("status", &status),
            ("explain", &explain),
        ] {
            assert!(
                !shown(&o.stdout) && !shown(&o.stderr),
                "{what} shows {secret}"
            );
        }
        assert!(
            !state.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the state file holds {secret} in clear"
        );
    }
}

/// Every secret of the run: the configured ones and every token the
/// platforms issued.
fn secrets_of(f: &Fixture) -> Vec<String> {
    let mut secrets: Vec<String> = SECRETS.iter().map(|(_, s)| s.to_string()).collect();
    secrets.extend(f.sandbox.issued_tokens());
    secrets
}

#[test]
fn a_hostile_poster_never_sees_a_password_or_token_under_any_scheme() {
    let mut f = mixed(1);
    let url = f.sandbox.url();
    // The same four schemes, every account served by the hostile poster.
    let accounts = accounts(url)
        .replace(
            "poster = \"mastodon-poster\"",
            "poster = \"hostile-poster\"",
        )
        .replace("poster = \"bluesky-poster\"", "poster = \"hostile-poster\"")
        .replace("poster = \"webhook-poster\"", "poster = \"hostile-poster\"")
        .replace("poster = \"x-poster\"", "poster = \"hostile-poster\"");
    std::fs::write(f.path("accounts.toml"), accounts).unwrap();
    f.plugins = vec![artifacts::HOSTILE_POSTER];
    let out = run_with_secrets(&f, &["--max-passes", "1", "-v"]);
    assert_eq!(
        out.code, 1,
        "every job fails, as the poster says: {}",
        out.stderr
    );

    // What it saw is in each failure's message; all of it is in explain.
    let mut seen = out.stderr.clone();
    for account in ACCOUNTS {
        let explain = f.tool(&["explain", &format!("first-{account}-1")]);
        seen.push_str(&explain.stdout);
    }
    assert!(seen.contains("hostile"), "the poster reported what it saw");
    assert!(
        seen.contains("[redacted]"),
        "the echo came back with the host's secrets cut out"
    );
    for secret in secrets_of(&f) {
        assert!(!seen.contains(&secret), "the poster saw {secret}");
    }
    // Every scheme was at work: the host logged in and refreshed for it.
    let counters = f.sandbox.counters();
    assert_eq!((counters.logins, counters.refreshes), (2, 1));
    assert_eq!(
        counters.statuses_created + counters.records + counters.tweets,
        0
    );
    if std::env::var_os("SHOW_HOSTILE").is_some() {
        eprintln!("{seen}");
    }
}

#[test]
fn a_session_or_oauth2_account_needs_a_poster_that_describes_its_login() {
    let f = mixed(1);
    let accounts = accounts(f.sandbox.url()).replace(
        "poster = \"bluesky-poster\"\nauth = \"session\"\nsecret_env = \"SKY1_PASSWORD\"",
        "poster = \"mastodon-poster\"\nauth = \"session\"\nsecret_env = \"SKY1_PASSWORD\"",
    );
    std::fs::write(f.path("accounts.toml"), accounts).unwrap();
    let out = run_with_secrets(&f, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("account sky1: auth = \"session\", but its poster mastodon-poster describes no session login"),
        "{}",
        out.stderr
    );
    assert!(
        !f.path("orchestrator-state.sqlite").exists(),
        "refused before anything was opened"
    );
}

#[test]
fn an_unknown_scheme_is_refused_naming_the_ones_there_are() {
    let f = mixed(1);
    let accounts = accounts(f.sandbox.url()).replace("auth = \"oauth2\"", "auth = \"oauth\"");
    std::fs::write(f.path("accounts.toml"), accounts).unwrap();
    let out = run_with_secrets(&f, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("account bird: auth \"oauth\" is not a scheme this host knows; use one of bearer, url-secret, session, oauth2"),
        "{}",
        out.stderr
    );
}

/// Four OAuth 2 accounts whose access tokens live one second, posting
/// slowly enough that every run refreshes each account several times.
fn short_lived_oauth2() -> (String, String) {
    let (mut scenario, mut accounts) = (String::new(), String::new());
    for i in 0..4 {
        scenario.push_str(&format!(
            "[[account]]\nname = \"x{i}\"\nclient_id = \"app\"\nrefresh_token = \"first-{i}\"\naccess_lifetime_secs = 1\ndelay_ms = 30\n"
        ));
        accounts.push_str(&format!(
            "[accounts.x{i}]\nbase_url = \"URL\"\nauth = \"oauth2\"\nsecret = \"first-{i}\"\nsettings = {{ client_id = \"app\" }}\n"
        ));
    }
    (scenario, accounts)
}

#[test]
fn sigkill_during_token_refreshes_leaves_every_oauth2_account_able_to_post() {
    use crate::crash::{Lcg, wait_for_process};
    let seed = 0xa07_2026_u64;
    let mut rng = Lcg(seed);
    let (scenario, accounts) = short_lived_oauth2();
    let mut jobs = String::new();
    for i in 0..4 {
        for n in 1..=60 {
            jobs.push_str(&format!(
                "{{\"id\": \"x{i}-{n}\", \"account\": \"x{i}\", \"payload\": {{\"text\": \"post {n} of x{i}\"}}}}\n"
            ));
        }
    }
    let mut f = Fixture::new(&scenario, 0).with_jobs(&jobs);
    std::fs::write(
        f.path("accounts.toml"),
        accounts.replace("URL", f.sandbox.url()),
    )
    .unwrap();
    f.plugins = vec![
        artifacts::X_POSTER,
        artifacts::WEBHOOK_CLASSIFIER,
        artifacts::HTTP_CLASSIFIER,
    ];
    let flags = ["--workers", "4", "--max-passes", "4"];
    for kill in 1..=6 {
        let mut child = f.spawn(&flags);
        wait_for_process(&f, kill);
        std::thread::sleep(Duration::from_millis(200 + rng.next(1300)));
        if child.try_wait().unwrap().is_some() {
            break; // the batch finished before this kill
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let counters = f.sandbox.counters();
    assert!(
        counters.refreshes >= 8,
        "the kills fell among refreshes: {}",
        counters.refreshes
    );

    let last = run(f.command(&flags).arg("--run"));
    assert_eq!(last.code, 0, "seed {seed:#x}: {}", last.stderr);
    // Every account can still post: one more job each, after every token
    // the kills may have interrupted has expired.
    std::thread::sleep(Duration::from_millis(1100));
    let more: String = (0..4)
        .map(|i| format!("{{\"id\": \"x{i}-after\", \"account\": \"x{i}\", \"payload\": {{\"text\": \"after the kills, x{i}\"}}}}\n"))
        .collect();
    std::fs::write(f.path("jobs.jsonl"), more).unwrap();
    let after = run(f.command(&flags).arg("--run"));
    assert_eq!(after.code, 0, "seed {seed:#x}: {}", after.stderr);

    let counters = f.sandbox.counters();
    assert_eq!(
        counters.refresh_reuses, 0,
        "seed {seed:#x}: a refresh token was used twice"
    );
    let states: Vec<_> = f.outcomes().into_values().map(|(s, _)| s).collect();
    assert_eq!(states.len(), 244);
    assert!(
        states.iter().all(|s| *s == Succeeded),
        "seed {seed:#x}: {states:?}"
    );
    let mut texts: Vec<String> = f.sandbox.posts().into_iter().map(|p| p.text).collect();
    let total = texts.len();
    texts.sort();
    texts.dedup();
    assert_eq!(
        (texts.len(), total),
        (244, 244),
        "every job posted, none twice"
    );
    eprintln!(
        "refreshes {}, replays of a lost answer {}",
        counters.refreshes, counters.refresh_replays
    );
}

#[test]
fn a_wrong_password_fails_the_accounts_jobs_after_one_login_attempt() {
    let f = mixed(5);
    let out = {
        let mut cmd = f.command(&["--max-passes", "2"]);
        cmd.arg("--run");
        for (var, value) in SECRETS {
            cmd.env(var, value);
        }
        cmd.env("SKY1_PASSWORD", "not-the-password");
        run(&mut cmd)
    };
    assert_eq!(out.code, 1, "{}", out.stderr);
    let counters = f.sandbox.counters();
    assert_eq!(
        (
            counters.accounts["sky1"].login_refusals,
            counters.accounts["sky1"].logins
        ),
        (1, 0),
        "a refused login is not tried again by every job"
    );
    let failed: Vec<String> = f
        .outcomes()
        .into_iter()
        .filter(|(_, (state, _))| *state != Succeeded)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(failed.len(), 5, "only sky1's jobs failed: {failed:?}");
    assert!(failed.iter().all(|id| id.starts_with("first-sky1-")));
    let explain = f.tool(&["explain", "first-sky1-3"]);
    assert!(
        explain.stdout.contains(
            "the login was refused (401 AuthenticationRequired): Invalid identifier or password"
        ),
        "{}",
        explain.stdout
    );
    assert!(!explain.stdout.contains("not-the-password"));
}

#[test]
fn inspect_shows_each_accounts_poster_scheme_and_grants() {
    let f = mixed(1);
    let mut cmd = f.command(&[]);
    let out = run(cmd.args(["plugins", "inspect", artifacts::X_POSTER]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let host = f.sandbox.url().trim_start_matches("http://").to_owned();
    for line in [
        "  login        accounts may use bearer, url-secret, oauth2 (token endpoint /2/oauth2/token)"
            .to_owned(),
        format!("    bird: {host} (oauth2: the host refreshes; access token added for {host} only)"),
        "    sky1: served by bluesky-poster, not this poster".to_owned(),
        "    masto: served by mastodon-poster, not this poster".to_owned(),
    ] {
        assert!(out.stdout.contains(&line), "no {line:?} in:\n{}", out.stdout);
    }
    let out = run(f
        .command(&[])
        .args(["plugins", "inspect", artifacts::BLUESKY_POSTER, "--json"]));
    let record: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let grants = record["capabilities"]["outbound_http"].as_array().unwrap();
    let sky1 = grants.iter().find(|g| g["account"] == "sky1").unwrap();
    assert_eq!(
        (sky1["auth"].as_str(), sky1["served"].as_bool()),
        (Some("session"), Some(true))
    );
    assert_eq!(
        record["capabilities"]["login"]["session"]["login_path"],
        "/xrpc/com.atproto.server.createSession"
    );
}

#[test]
fn an_expired_token_is_retried_even_where_no_classifier_knows_the_platform() {
    let mut f = mixed(1);
    // No xrpc-classifier: http-classifier does not know Bluesky's 400, and
    // this run does not retry what nobody knows.
    f.plugins = vec![
        artifacts::MASTODON_POSTER,
        artifacts::BLUESKY_POSTER,
        artifacts::WEBHOOK_POSTER,
        artifacts::X_POSTER,
        artifacts::HTTP_CLASSIFIER,
    ];
    assert_eq!(run_with_secrets(&f, &[]).code, 0);
    f.sandbox.advance_clock(Duration::from_secs(24 * 3600));
    std::fs::write(f.path("jobs.jsonl"), jobs("second", 1)).unwrap();
    let out = run_with_secrets(&f, &["--no-retry-unknown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let explain = f.tool(&["explain", "second-sky1-1"]);
    assert!(
        explain.stdout.contains("retryable by built-in: the access token expired, and the host renews it before the next attempt (http-classifier said unknown"),
        "{}",
        explain.stdout
    );
    assert_eq!(f.outcomes()["second-sky1-1"], (Succeeded, 2));
}
