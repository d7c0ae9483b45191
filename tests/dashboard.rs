//! `orchestrator dashboard` over plain HTTP: its pages beside a run going
//! on, its actions reaching the store, and who may open it. (The same in a
//! real browser is in `browser.rs`.)

use std::io::{BufRead, Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use orchestrator_store::JobState;

use crate::support::{Fixture, orchestrator};

/// A dashboard child process, killed when dropped.
struct Served {
    child: Child,
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the dashboard on a free loopback port with `extra` flags, and
/// reads the address it says it listens on.
fn serve(f: &Fixture, extra: &[&str]) -> Served {
    let mut cmd = orchestrator();
    cmd.current_dir(f.dir.path())
        .args(["dashboard", "--listen", "127.0.0.1:0"]);
    if let Some(url) = &f.store_url {
        cmd.args(["--state-file", url]);
    }
    let mut child = cmd
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Served { child, addr }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        text.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(text.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn get(addr: &str, path: &str) -> Answer {
    request(addr, "GET", path, &[], "")
}

/// The token this server's pages put in their forms.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form with its token")
        .to_owned()
}

fn live_succeeded(addr: &str) -> u64 {
    let answer = get(addr, "/api/overview");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let overview: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    overview["succeeded"].as_u64().unwrap()
}

#[test]
fn the_pages_follow_a_run_and_an_action_reaches_the_store() {
    let f = Fixture::new(
        "[[account]]\nname = \"slow\"\ntoken = \"slow-token\"\ndelay_ms = 150\n\
         [[account]]\nname = \"gone\"\ntoken = \"gone-token\"\nthen = { respond = \"suspended\" }\n",
        12,
    );
    let mut run = f.spawn(&["--max-passes", "1"]);
    crate::crash::wait_for_process(&f, 1);
    let served = serve(&f, &[]);
    let addr = &served.addr;
    // The live numbers move while the run goes on.
    let first = live_succeeded(addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while live_succeeded(addr) == first {
        assert!(Instant::now() < deadline, "the succeeded count never moved");
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    for part in [
        "Attempts per minute",
        "Runs",
        "mastodon-poster",
        "http-classifier",
        "Stop all",
    ] {
        assert!(page.body.contains(part), "no {part:?} on the batch page");
    }
    assert!(
        page.head
            .to_ascii_lowercase()
            .contains("content-security-policy: default-src 'self'")
    );
    run.wait().unwrap();

    let accounts = get(addr, "/accounts");
    assert!(
        accounts.body.contains("href=\"/jobs?account=gone\""),
        "{}",
        accounts.body
    );
    let failed = get(addr, "/jobs?state=failed");
    assert!(failed.body.contains("gone-1"), "{}", failed.body);
    let job = get(addr, "/jobs/gone-1");
    assert!(
        job.body.contains("Attempt 1 (run 1, pass 1): failed"),
        "{}",
        job.body
    );

    // An action needs this server's token and comes back to the job.
    let token = csrf_of(&job.body);
    let refused = request(addr, "POST", "/jobs/gone-1/cancel", &[], "csrf=forged");
    assert_eq!(refused.status, 403);
    let cross = request(
        addr,
        "POST",
        "/jobs/gone-1/cancel",
        &[("Origin", "http://evil.example")],
        &format!("csrf={token}"),
    );
    assert_eq!(cross.status, 403);
    assert_eq!(
        f.outcomes()["gone-1"].0,
        JobState::Failed,
        "nothing changed"
    );
    let done = request(
        addr,
        "POST",
        "/jobs/gone-1/cancel",
        &[],
        &format!("csrf={token}"),
    );
    assert_eq!(done.status, 303, "{}", done.head);
    assert!(
        done.head.contains("location: /jobs/gone-1?done="),
        "{}",
        done.head
    );
    assert_eq!(f.outcomes()["gone-1"].0, JobState::Cancelled);
    assert_eq!(get(addr, "/jobs/no-such-job").status, 404);

    // What the store says, for Prometheus, in a format a parser takes.
    let metrics = get(addr, "/metrics");
    assert!(
        metrics.head.contains("text/plain; version=0.0.4"),
        "{}",
        metrics.head
    );
    let m = crate::metrics::parse(&metrics.body);
    let total = |state| crate::metrics::total(&m, "orchestrator_jobs", &[("state", state)]);
    assert_eq!((total("succeeded"), total("cancelled")), (12.0, 1.0));
}

#[test]
fn beyond_loopback_it_needs_an_access_token() {
    let f = Fixture::new("[[account]]\nname = \"a\"\ntoken = \"a-token\"\n", 1);
    assert_eq!(f.run(&[]).code, 0);
    let out = crate::support::run(orchestrator().current_dir(f.dir.path()).args([
        "dashboard",
        "--listen",
        "0.0.0.0:0",
    ]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(
            "--listen 0.0.0.0:0 is reachable from other machines: give --token-file FILE"
        ),
        "{}",
        out.stderr
    );
    std::fs::write(f.path("short.token"), "short").unwrap();
    let out = crate::support::run(orchestrator().current_dir(f.dir.path()).args([
        "dashboard",
        "--token-file",
        "short.token",
    ]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("shorter than 16 characters"),
        "{}",
        out.stderr
    );

    let token = "a-long-access-token-0123456789";
    std::fs::write(f.path("dash.token"), token).unwrap();
    let served = serve(&f, &["--token-file", "dash.token"]);
    let addr = &served.addr;
    assert_eq!(get(addr, "/").status, 401);
    assert_eq!(get(addr, "/api/overview").status, 401);
    let wrong = get(addr, "/?token=not-it");
    assert_eq!(wrong.status, 401);
    let visit = get(addr, &format!("/?token={token}"));
    assert_eq!(visit.status, 303, "{}", visit.head);
    assert!(
        visit.head.contains("HttpOnly; SameSite=Strict"),
        "{}",
        visit.head
    );
    let cookie = format!("orchestrator_dashboard={token}");
    assert_eq!(
        request(addr, "GET", "/", &[("Cookie", &cookie)], "").status,
        200
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        request(addr, "GET", "/jobs", &[("Authorization", &bearer)], "").status,
        200
    );
}

#[test]
fn a_missing_store_is_one_line() {
    let dir = crate::support::temp_dir();
    let out = crate::support::run(orchestrator().current_dir(dir.path()).arg("dashboard"));
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr.trim(),
        "error: no state file at orchestrator-state.sqlite; give --state-file PATH"
    );
}
