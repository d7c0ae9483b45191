//! Peers of the orchestrator, measured against the same in-process sandbox:
//! what else one could run to post a batch, and the load generator that
//! sets the ceiling.
//!
//! - `wrk` with `peers/post.lua`: the ceiling, a load generator in its own
//!   process (as the orchestrator is), each request with its own
//!   Idempotency-Key;
//! - `peers/asyncio_poster.py`: asyncio + aiohttp, each outcome durable in
//!   SQLite with the orchestrator's durability (WAL, synchronous=FULL)
//!   before the worker goes on: committed in groups as the orchestrator
//!   does, or each alone as the simplest script does;
//! - GNU parallel running one curl per job, outcomes in its `--joblog`.
//!
//! Each runs against a fresh sandbox, which must have created exactly one
//! status per job. CPU is what the peer's processes used (their children
//! included, as waited for), and, apart, what this process (the sandbox)
//! used meanwhile. A missing tool makes a peer `n/a`, except on CI
//! (`CI` set), where it fails the run.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use orchestrator_sandbox::{Sandbox, Scenario};

use super::{Sizes, write_batch};

/// How to get every peer.
pub const INSTALL: &str = "install: apt-get install wrk parallel; pip install aiohttp";

const POST_LUA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/post.lua");
const ASYNCIO_POSTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/peers/asyncio_poster.py"
);

/// One peer's measured run.
pub struct PeerRun {
    /// Jobs (requests, for wrk) per second of wall time.
    pub per_sec: f64,
    /// User + system CPU of the peer's processes, per job.
    pub cpu_per_job: Duration,
    /// User + system CPU of this process (the sandbox) meanwhile, per
    /// request it served.
    pub sandbox_cpu_per_job: Duration,
    pub jobs: usize,
    pub wall: Duration,
    /// The rate of each try, when the run is the best of several.
    pub tries: Vec<f64>,
}

/// A run, or why the peer could not run (a tool is missing).
pub type Outcome = Result<PeerRun, String>;

/// User + system CPU this process used so far, all its threads.
pub fn self_cpu() -> Duration {
    proc_stat_cpu().0
}

/// User + system CPU of this process's children that have ended and been
/// waited for, their own waited-for children included (`getrusage`'s
/// `RUSAGE_CHILDREN`).
pub fn children_cpu() -> Duration {
    proc_stat_cpu().1
}

/// `/proc/self/stat`'s utime + stime and cutime + cstime. (rustix 1.1 has
/// no `getrusage`; these are the same kernel counters, in clock ticks.)
fn proc_stat_cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name is in parentheses and may hold anything: fields
    // are counted from after its last `)`, where field 3 (state) begins.
    let rest = &stat[stat.rfind(')').expect("a /proc stat line") + 1..];
    let field = |n: usize| -> u64 {
        rest.split_whitespace()
            .nth(n - 3)
            .and_then(|f| f.parse().ok())
            .expect("a /proc stat field")
    };
    // USER_HZ: 100 on every architecture this runs on.
    let ticks = |t: u64| Duration::from_millis(t * 10);
    (ticks(field(14) + field(15)), ticks(field(16) + field(17)))
}

/// What a measured child cost.
pub struct Measured {
    pub output: std::io::Result<Output>,
    pub wall: Duration,
    /// The child's CPU, its descendants included.
    pub children_cpu: Duration,
    /// This process's CPU meanwhile: the in-process sandbox's.
    pub self_cpu: Duration,
}

/// Runs `cmd` to its end (its output captured) on a blocking thread,
/// timing it and measuring its CPU and this process's meanwhile.
pub async fn measured(mut cmd: Command) -> Measured {
    tokio::task::spawn_blocking(move || {
        let (me, children) = (self_cpu(), children_cpu());
        let started = Instant::now();
        let output = cmd.output();
        let wall = started.elapsed();
        Measured {
            output,
            wall,
            children_cpu: children_cpu().saturating_sub(children),
            self_cpu: self_cpu().saturating_sub(me),
        }
    })
    .await
    .expect("the measuring thread")
}

/// Whether this is a CI run, where every peer's tool must be installed.
fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// Why a peer cannot run; on CI, a failure.
fn missing(what: &str) -> String {
    assert!(!on_ci(), "{what} (CI installs every peer: {INSTALL})");
    what.to_owned()
}

/// The output of a peer that must have run; `Err` if its program is not
/// installed.
fn ran(measured: &Measured, program: &str) -> Result<Output, String> {
    match &measured.output {
        Ok(output) => Ok(output.clone()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(missing(&format!("{program} is not installed")))
        }
        Err(e) => panic!("{program} cannot start: {e}"),
    }
}

fn per_job(cpu: Duration, jobs: usize) -> Duration {
    cpu / u32::try_from(jobs.max(1)).unwrap_or(u32::MAX)
}

/// `wrk` posting to a fresh sandbox for `sizes.wrk_secs` over `concurrency`
/// connections, the best of `tries`.
pub async fn wrk_ceiling(sizes: &Sizes, concurrency: usize, tries: usize) -> Outcome {
    let mut best: Option<PeerRun> = None;
    let mut rates = Vec::new();
    for _ in 0..tries {
        let run = wrk_once(sizes, concurrency).await?;
        rates.push(run.per_sec);
        if best.as_ref().is_none_or(|b| run.per_sec > b.per_sec) {
            best = Some(run);
        }
    }
    let mut best = best.expect("at least one try");
    best.tries = rates;
    Ok(best)
}

async fn wrk_once(sizes: &Sizes, concurrency: usize) -> Outcome {
    let sandbox = Sandbox::start_local(Scenario::default())
        .await
        .expect("the sandbox starts");
    let threads = 2.min(concurrency);
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{concurrency}"))
        .arg(format!("-d{}s", sizes.wrk_secs))
        .args(["-s", POST_LUA, sandbox.url(), "--"])
        .arg(sizes.accounts.to_string())
        .arg(threads.to_string())
        .stdin(Stdio::null());
    let measured = measured(cmd).await;
    let output = ran(&measured, "wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let number = |prefix: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let per_sec = number("Requests/sec:").unwrap_or_else(|| panic!("no Requests/sec: {text}"));
    let completed = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no request count: {text}"));
    let not_ok = number("Non-2xx or 3xx responses:").unwrap_or(0.0);
    assert_eq!(not_ok, 0.0, "wrk got error answers: {text}");
    assert!(
        !text.contains("Socket errors:"),
        "wrk had socket errors: {text}"
    );
    // Every request made its own status (the keys are distinct); wrk counts
    // those answered before its time was up, and cuts one in flight per
    // connection, which the sandbox may or may not have finished.
    let counters = sandbox.counters();
    let created = counters.statuses_created as usize;
    assert_eq!(counters.duplicates_prevented, 0, "distinct keys");
    assert!(
        (completed..=completed + concurrency).contains(&created),
        "wrk counted {completed} requests, the sandbox created {created} statuses"
    );
    Ok(PeerRun {
        per_sec,
        cpu_per_job: per_job(measured.children_cpu, completed),
        sandbox_cpu_per_job: per_job(measured.self_cpu, created),
        jobs: completed,
        wall: measured.wall,
        tries: vec![per_sec],
    })
}

/// How the asyncio poster makes its outcomes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commits {
    /// Everything queued in one transaction, off the event loop.
    Grouped,
    /// One commit per outcome, on the event loop: an fsync per post, so
    /// it posts a smaller batch ([`Sizes::parallel_jobs`] × 2).
    EachAlone,
}

/// `asyncio_poster.py` posting the batch `write_batch` writes.
pub async fn asyncio_aiohttp(
    sizes: &Sizes,
    concurrency: usize,
    root: &Path,
    commits: Commits,
) -> Outcome {
    let sandbox = Sandbox::start_local(Scenario::default())
        .await
        .expect("the sandbox starts");
    let (jobs, mode) = match commits {
        Commits::Grouped => (sizes.jobs, "group"),
        Commits::EachAlone => (sizes.parallel_jobs * 2, "each"),
    };
    let dir = root.join(format!("peer-asyncio-{mode}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_batch(&dir, sandbox.url(), sizes.accounts, jobs);
    let mut cmd = Command::new("python3");
    cmd.arg(ASYNCIO_POSTER)
        .arg(&dir)
        .arg(concurrency.to_string())
        .arg(mode)
        .stdin(Stdio::null());
    let measured = measured(cmd).await;
    let output = ran(&measured, "python3")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        return Err(missing(stderr.trim()));
    }
    assert!(
        output.status.success(),
        "the asyncio poster failed: {stderr}"
    );
    finish(&sandbox, jobs, &measured)
}

/// GNU parallel running one curl per job of the batch, `concurrency` at a
/// time, with a joblog.
pub async fn parallel_curl(sizes: &Sizes, concurrency: usize, root: &Path) -> Outcome {
    let sandbox = Sandbox::start_local(Scenario::default())
        .await
        .expect("the sandbox starts");
    let jobs = sizes.parallel_jobs;
    let dir = root.join("peer-parallel");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("parallel-home")).unwrap();
    write_batch(&dir, sandbox.url(), sizes.accounts, jobs);
    // What `jq -r '[.id, .account, (.payload | tojson)] | @tsv'` makes of
    // the jobs (each account's token is its name).
    let mut lines = String::new();
    for line in std::fs::read_to_string(dir.join("jobs.jsonl"))
        .unwrap()
        .lines()
    {
        let job: serde_json::Value = serde_json::from_str(line).unwrap();
        lines.push_str(&format!(
            "{}\t{}\t{}\n",
            job["id"].as_str().unwrap(),
            job["account"].as_str().unwrap(),
            job["payload"]
        ));
    }
    std::fs::write(dir.join("jobs.tsv"), lines).unwrap();
    // parallel quotes what it puts in place of {1}, {2} and {3}.
    let curl = format!(
        "curl -s -f -o /dev/null -w '%{{http_code}}\\n' -X POST \
         -H 'Content-Type: application/json' -H 'Authorization: Bearer '{{2}} \
         -H 'Idempotency-Key: '{{1}} --data-binary {{3}} {}/api/v1/statuses",
        sandbox.url()
    );
    let mut cmd = Command::new("parallel");
    cmd.current_dir(&dir)
        .env("PARALLEL_HOME", dir.join("parallel-home"))
        .args(["--will-cite", "-j", &concurrency.to_string()])
        .args(["--colsep", "\t", "--joblog", "joblog"])
        .arg(curl)
        .args(["::::", "jobs.tsv"])
        .stdin(Stdio::null());
    let measured = measured(cmd).await;
    let output = ran(&measured, "parallel")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "parallel failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let ok = stdout.lines().filter(|l| l.starts_with('2')).count();
    assert_eq!(ok, jobs, "every curl got a 2xx answer: {stdout}{stderr}");
    // Seq Host Starttime JobRuntime Send Receive Exitval Signal Command
    let joblog = std::fs::read_to_string(dir.join("joblog")).unwrap();
    let succeeded = joblog
        .lines()
        .skip(1)
        .filter(|l| l.split('\t').nth(6) == Some("0"))
        .count();
    assert_eq!(succeeded, jobs, "every job succeeded in the joblog");
    finish(&sandbox, jobs, &measured)
}

/// Checks that every job was posted once, and makes the result.
fn finish(sandbox: &Sandbox, jobs: usize, measured: &Measured) -> Outcome {
    let counters = sandbox.counters();
    assert_eq!(
        counters.statuses_created as usize, jobs,
        "every job posted once"
    );
    assert_eq!(counters.requests as usize, jobs, "one request per job");
    Ok(PeerRun {
        per_sec: jobs as f64 / measured.wall.as_secs_f64(),
        cpu_per_job: per_job(measured.children_cpu, jobs),
        sandbox_cpu_per_job: per_job(measured.self_cpu, jobs),
        jobs,
        wall: measured.wall,
        tries: vec![],
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The table's rows for the peers; with the orchestrator's rate, each
/// batch peer's says how many times faster the orchestrator is.
pub fn rows(
    sizes: &Sizes,
    concurrency: usize,
    wrk: &Outcome,
    asyncio: &[(Commits, Outcome)],
    parallel: &Outcome,
    orchestrator_per_sec: Option<f64>,
) -> Vec<(String, String, String)> {
    let na = |why: &str| ("n/a".to_owned(), format!("{why}; {INSTALL}"));
    let versus = |peer: &PeerRun| {
        orchestrator_per_sec.map_or(String::new(), |o| {
            format!("; orchestrator is {:.1}×", o / peer.per_sec)
        })
    };
    let threads = 2.min(concurrency);
    let wrk = match wrk {
        Ok(run) => (
            format!("{:.0} req/s", run.per_sec),
            format!(
                "wrk -t{threads} -c{concurrency} -d{}s, Lua script: POST with a distinct Idempotency-Key each, {} accounts; {:.1} µs CPU per request (wrk), {:.1} µs (sandbox); {} requests{}",
                sizes.wrk_secs,
                sizes.accounts,
                micros(run.cpu_per_job),
                micros(run.sandbox_cpu_per_job),
                run.jobs,
                if run.tries.len() > 1 {
                    let tries: Vec<String> = run.tries.iter().map(|t| format!("{t:.0}")).collect();
                    format!("; best of {}", tries.join(", "))
                } else {
                    String::new()
                }
            ),
        ),
        Err(why) => na(why),
    };
    let asyncio = asyncio.iter().map(|(commits, outcome)| {
        let (what, how) = match commits {
            Commits::Grouped => ("grouped", "outcomes committed in groups off the event loop"),
            Commits::EachAlone => ("each alone", "each outcome committed alone"),
        };
        let (value, text) = match outcome {
            Ok(run) => (
                format!("{:.0} jobs/s", run.per_sec),
                format!(
                    "{} jobs, {} accounts, one aiohttp session, {concurrency} connections, {how} to SQLite (WAL, synchronous=FULL); {:.0} µs CPU per job (python), {:.0} µs (sandbox){}; {:.2} s wall",
                    run.jobs,
                    sizes.accounts,
                    micros(run.cpu_per_job),
                    micros(run.sandbox_cpu_per_job),
                    versus(run),
                    run.wall.as_secs_f64()
                ),
            ),
            Err(why) => na(why),
        };
        (format!("peer: asyncio + aiohttp, outcomes in SQLite {what}"), value, text)
    });
    let parallel = match parallel {
        Ok(run) => (
            format!("{:.0} jobs/s", run.per_sec),
            format!(
                "{} jobs, parallel -j {concurrency}, one curl per job, outcomes in --joblog; {:.0} µs CPU per job (parallel + sh + curl), {:.0} µs (sandbox){}; {:.2} s wall",
                run.jobs,
                micros(run.cpu_per_job),
                micros(run.sandbox_cpu_per_job),
                versus(run),
                run.wall.as_secs_f64()
            ),
        ),
        Err(why) => na(why),
    };
    let (wrk_value, wrk_how) = wrk;
    let (parallel_value, parallel_how) = parallel;
    std::iter::once(("ceiling: wrk → sandbox".to_owned(), wrk_value, wrk_how))
        .chain(asyncio)
        .chain(std::iter::once((
            "peer: GNU parallel + curl, joblog".to_owned(),
            parallel_value,
            parallel_how,
        )))
        .collect()
}
