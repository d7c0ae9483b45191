//! `--metrics-listen`: `/metrics` scraped while a run goes on and while it
//! waits between passes, read back by a strict Prometheus text-format
//! parser; and an address that cannot be had, refused before anything
//! runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};

use crate::support::{Fixture, log_lines};

pub(crate) type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

/// Five accounts whose every post takes 100 ms; `flaky`'s first answer is
/// a 500, so its first job is retried in pass 2.
const SLOW: &str = r#"
[[account]]
name = "a1"
token = "t1"
delay_ms = 100

[[account]]
name = "a2"
token = "t2"
delay_ms = 100

[[account]]
name = "a3"
token = "t3"
delay_ms = 100

[[account]]
name = "a4"
token = "t4"
delay_ms = 100

[[account]]
name = "flaky"
token = "tf"
delay_ms = 100
script = [{ respond = "server-error", status = 500 }]
"#;

const JOBS_PER_ACCOUNT: usize = 4;
const JOBS: f64 = (5 * JOBS_PER_ACCOUNT) as f64;
const WORKERS: f64 = 2.0;

/// One `GET` of `path`: the status code, the Content-Type and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {response:?}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// `/metrics`, parsed: the test fails on anything the format does not allow.
fn scrape(addr: SocketAddr) -> Exposition {
    let (status, content_type, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    parse(&body)
}

/// The Prometheus text in `body`; the test fails on anything the format
/// does not allow.
pub(crate) fn parse(body: &str) -> Exposition {
    parse_prometheus(body).unwrap_or_else(|e| panic!("{e:?} in\n{body}"))
}

/// The sum of `family`'s samples whose labels include `labels`: a
/// histogram's count, any other's value.
pub(crate) fn total(m: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    let family = m
        .families
        .get(family)
        .unwrap_or_else(|| panic!("no {family} in {:?}", m.families.keys()));
    family
        .iter_samples()
        .filter(|s| {
            let set = s.get_labelset().unwrap();
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|s| match &s.value {
            PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
            PrometheusValue::Counter(c) => c.value.as_f64(),
            PrometheusValue::Histogram(h) => h.count.unwrap() as f64,
            PrometheusValue::Summary(_) => panic!("no summaries here"),
        })
        .sum()
}

/// The sum of `family`'s histogram observations.
fn histogram_sum(m: &Exposition, family: &str) -> f64 {
    m.families[family]
        .iter_samples()
        .map(|s| match &s.value {
            PrometheusValue::Histogram(h) => h.sum.unwrap().as_f64(),
            other => panic!("{family} is not a histogram: {other:?}"),
        })
        .sum()
}

/// Every line of a child's stderr, as it comes.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

/// The address in the "Metrics on http://ADDR/metrics" line.
fn metrics_address(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no metrics line in:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if let Some(rest) = log_lines(&line)[0].strip_prefix("Metrics on http://") {
            let addr = rest.strip_suffix("/metrics").unwrap();
            return addr.parse().unwrap();
        }
    }
}

#[test]
fn metrics_are_served_while_a_run_goes_on() {
    let f = Fixture::new(SLOW, JOBS_PER_ACCOUNT);
    // Pass 2 waits ten minutes: the test scrapes the run between passes,
    // then stops it.
    let mut child = f.spawn(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--max-passes",
        "2",
        "--retry-delay",
        "600",
    ]);
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    let addr = metrics_address(&lines, &mut seen);
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    // While the pass goes on: never more in flight than workers.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut during = 0;
    let between = loop {
        let m = scrape(addr);
        let attempts = total(&m, "orchestrator_attempts_total", &[]);
        let in_flight = total(&m, "orchestrator_attempts_in_flight", &[]);
        assert!(
            (0.0..=WORKERS).contains(&in_flight),
            "{in_flight} in flight"
        );
        if attempts == JOBS && in_flight == 0.0 {
            break m;
        }
        during += 1;
        assert!(Instant::now() < deadline, "pass 1 never ended");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(during > 0, "no scrape came while the pass went on");

    // Between the passes, everything pass 1 did.
    let m = &between;
    let attempts = |labels: &[(&str, &str)]| total(m, "orchestrator_attempts_total", labels);
    assert_eq!(
        attempts(&[("outcome", "succeeded"), ("category", "none")]),
        JOBS - 1.0
    );
    assert_eq!(attempts(&[("outcome", "failed")]), 1.0);
    assert_eq!(
        attempts(&[("outcome", "failed"), ("category", "none")]),
        0.0
    );
    let jobs = |state| total(m, "orchestrator_jobs", &[("state", state)]);
    assert_eq!(jobs("succeeded"), JOBS - 1.0);
    assert_eq!(jobs("retry"), 1.0);
    assert_eq!(jobs("running"), 0.0);
    assert_eq!(total(m, "orchestrator_run", &[]), 1.0);
    assert_eq!(total(m, "orchestrator_pass", &[]), 1.0);
    assert_eq!(total(m, "orchestrator_paused_accounts", &[]), 0.0);
    // Every attempt waited for its 100 ms post.
    assert_eq!(total(m, "orchestrator_attempt_duration_seconds", &[]), JOBS);
    assert!(histogram_sum(m, "orchestrator_attempt_duration_seconds") >= JOBS * 0.1);
    let calls = |plugin, call| {
        total(
            m,
            "orchestrator_plugin_call_duration_seconds",
            &[("plugin", plugin), ("call", call)],
        )
    };
    assert_eq!(calls("mastodon-poster", "post"), JOBS);
    assert_eq!(calls("http-classifier", "classify"), 1.0);
    for plugin in ["mastodon-poster", "http-classifier"] {
        let loads = total(
            m,
            "orchestrator_plugin_load_duration_seconds",
            &[("plugin", plugin)],
        );
        assert_eq!(loads, 1.0, "{plugin}");
    }
    let (status, _, _) = get(addr, "/");
    assert_eq!(status, 404);

    let stop = f.tool(&["--stop-all"]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    let status = child.wait().unwrap();
    seen.extend(lines.iter());
    assert_eq!(status.code(), Some(3), "{}", seen.join("\n"));
    // The server ended with the run.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

/// A port another program holds, as a `--metrics-listen` value.
fn taken_port() -> (std::net::TcpListener, String) {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    (holder, addr)
}

#[test]
fn an_address_that_cannot_be_had_is_refused_before_anything_runs() {
    let f = Fixture::new(SLOW, 1);
    let (_holder, taken) = taken_port();
    let refused = |out: crate::support::Output, says: &str| {
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
        assert!(out.stderr.contains(says), "{}", out.stderr);
        assert!(!f.path("orchestrator-state.sqlite").exists());
        assert_eq!(f.sandbox.counters().requests, 0);
    };
    refused(
        f.run(&["--metrics-listen", &taken]),
        &format!("--metrics-listen {taken}: "),
    );
    refused(
        f.run(&["--metrics-listen", "nowhere:port"]),
        "--metrics-listen must be IP:PORT",
    );
    // orchestrator.toml sets it as it sets every batch flag.
    std::fs::write(
        f.path("orchestrator.toml"),
        format!("metrics-listen = \"{taken}\"\n"),
    )
    .unwrap();
    refused(f.run(&[]), &format!("--metrics-listen {taken}: "));
}
