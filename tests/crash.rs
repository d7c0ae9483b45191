//! Crash safety: SIGKILL at seeded random moments, resume each time, and
//! nothing is lost or posted twice. Also signals and one run per state.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use orchestrator_store::JobState;

use crate::support::Fixture;
use crate::support::{run, signal};

/// A small deterministic generator, so a failing seed reproduces.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// 50 accounts, 40 jobs each; every tenth account has scripted trouble.
fn scenario() -> String {
    let mut s = String::new();
    for i in 0..50 {
        s.push_str(&format!(
            "[[account]]\nname = \"a{i:02}\"\ntoken = \"t{i:02}\"\ndelay_ms = 40\n"
        ));
        match i % 10 {
            1 => s.push_str("script = [{ respond = \"server-error\", status = 503, times = 5 }]\n"),
            2 => s.push_str("script = [{ respond = \"drop-connection\", times = 3 }]\n"),
            3 => s.push_str("then = { respond = \"suspended\" }\n"),
            _ => {}
        }
    }
    s
}

/// Waits until the `n`th process has joined a run on the state.
pub(crate) fn wait_for_process(f: &Fixture, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = run(&mut f.command(&["--status", "--json"]));
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&status.stdout)
            && let Some(processes) = value["batch"]["processes"].as_array()
            && processes.iter().any(|p| p["id"].as_i64() == Some(n))
        {
            return;
        }
        assert!(Instant::now() < deadline, "process {n} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_posts_nothing_twice() {
    let seed = 0x5eed_2026;
    let mut rng = Lcg(seed);
    let f = Fixture::new(&scenario(), 40);
    let flags = ["--workers", "8", "--max-passes", "4"];
    let mut kills = 0;
    let mut took_over = 0;
    while kills < 5 {
        let mut child = f.spawn(&flags);
        // Kill at a random moment once the run is working, not while it is
        // still loading plugins: then every kill interrupts attempts.
        wait_for_process(&f, kills + 1);
        let wait = Duration::from_millis(rng.next(600));
        std::thread::sleep(wait);
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
            panic!(
                "seed {seed:#x}: the run ended ({status}) before kill {} at {wait:?}:\n{stderr}",
                kills + 1
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
        took_over += usize::from(stderr.contains("Taking over"));
    }
    let last = run(f.command(&flags).arg("--run"));
    assert_eq!(last.code, 1, "seed {seed:#x}: {}", last.stderr);
    assert!(last.stderr.contains("Taking over"), "{}", last.stderr);
    assert_eq!(took_over, 4, "every run after a kill takes over the lock");

    let state = f.state();
    let jobs = state.job_summaries().unwrap();
    assert_eq!(jobs.len(), 2000, "no job is missing from the store");
    let counters = f.sandbox.counters();
    let mut succeeded = 0;
    for job in &jobs {
        let account: usize = job.account[1..].parse().unwrap();
        let expected = if account % 10 == 3 {
            JobState::Failed
        } else {
            JobState::Succeeded
        };
        assert_eq!(job.state, expected, "seed {seed:#x}: {job:?}");
        let attempts = state.attempts(&job.id).unwrap();
        assert!(
            attempts.iter().all(|a| a.outcome != "in-flight"),
            "{attempts:?}"
        );
        // Passes in which the job had an attempt that counted: never more
        // than --max-passes, and a non-retryable job only one.
        let mut passes: Vec<u32> = attempts
            .iter()
            .filter(|a| a.outcome != "uncertain")
            .map(|a| a.pass)
            .collect();
        passes.dedup();
        assert!(passes.len() <= 4, "{job:?}: {attempts:?}");
        if expected == JobState::Failed {
            assert_eq!(passes.len(), 1, "{job:?}: {attempts:?}");
        } else {
            succeeded += 1;
            let key = format!(
                "{}/{}",
                job.account,
                orchestrator_store::idempotency_key(&job.account, &job.id)
            );
            assert_eq!(
                counters.created_by_idempotency_key.get(&key),
                Some(&1),
                "{job:?}"
            );
        }
    }
    assert_eq!(counters.statuses_created, succeeded);
    let per_key: BTreeMap<_, _> = counters.created_by_idempotency_key;
    assert!(per_key.values().all(|n| *n == 1));
}

#[test]
fn a_second_run_on_the_same_state_is_refused_by_name() {
    let f = Fixture::new(
        "[[account]]\nname = \"slow\"\ntoken = \"t\"\ndelay_ms = 200\n",
        10,
    );
    let mut first = f.spawn(&[]);
    wait_for_process(&f, 1);
    let second = run(&mut f.command(&["--run"]));
    assert_eq!(second.code, 2, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains(&format!("another run (pid {}) is working on", first.id())),
        "{}",
        second.stderr
    );
    // SIGTERM stops it like --stop-all.
    signal(&first, "TERM");
    let status = first.wait().unwrap();
    let stderr = std::io::read_to_string(first.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("Signal received: stopping"), "{stderr}");
    let after = run(&mut f.command(&["--status", "--json"]));
    let value: serde_json::Value = serde_json::from_str(&after.stdout).unwrap();
    assert_eq!(value["batch"]["last_run"]["state"], "stopped");
}

/// Runs `mount` with `args`; false when this machine does not allow it.
fn mount(args: &[&str]) -> bool {
    std::process::Command::new("mount")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_state_disk_that_fills_up_mid_run_stops_cleanly() {
    let f = Fixture::new(
        "[[account]]\nname = \"slow\"\ntoken = \"t\"\ndelay_ms = 100\n",
        30,
    );
    let disk = f.path("disk");
    std::fs::create_dir(&disk).unwrap();
    let disk_str = disk.display().to_string();
    if !mount(&["-t", "tmpfs", "-o", "size=8m", "tmpfs", &disk_str]) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must run this test"
        );
        eprintln!("\n*** SKIPPED: mounting a tmpfs needs root ***\n");
        return;
    }
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk_str.clone());
    let flags = ["--state-file", "disk/state.sqlite"];
    let mut child = f.spawn(&flags);
    // Let it record some attempts, then fill the disk so writes fail.
    let deadline = Instant::now() + Duration::from_secs(60);
    while f.sandbox.counters().statuses_created < 3 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let filler = disk.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).and_then(|()| file.flush()).is_ok() {}
    }
    let status = child.wait().unwrap();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let error: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(error[0].contains("database or disk is full"), "{stderr}");

    // Space comes back; the state is intact and the batch finishes, each
    // job posted once.
    std::fs::remove_file(&filler).unwrap();
    let done = run(f.command(&flags).arg("--run"));
    assert_eq!(done.code, 0, "{}", done.stderr);
    let counters = f.sandbox.counters();
    assert_eq!(counters.statuses_created, 30);
    assert!(
        counters
            .created_by_idempotency_key
            .values()
            .all(|n| *n == 1)
    );
}

#[test]
fn a_second_signal_aborts_and_an_old_uncertain_attempt_is_held_for_review() {
    let f = Fixture::new(
        "[[account]]\nname = \"slow\"\ntoken = \"t\"\ndelay_ms = 300\n",
        6,
    );
    let mut child = f.spawn(&["--workers", "1"]);
    wait_for_process(&f, 1);
    // Wait until an attempt is in flight, then signal twice.
    let deadline = Instant::now() + Duration::from_secs(30);
    while f
        .sandbox
        .counters()
        .requests_by_account
        .get("slow")
        .copied()
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..2 {
        let pid = child.id().to_string();
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("Second signal: aborting"), "{stderr}");

    // With a key window of 0 s, the attempt cut off is too old to retry
    // blindly: its job is held, and --status says so.
    let held = run(&mut f.command(&["--key-window", "0", "--run"]));
    assert_eq!(held.code, 1, "{}", held.stderr);
    assert!(held.stderr.contains("1 held for review"), "{}", held.stderr);
    let status = run(&mut f.command(&["--status"]));
    assert!(
        status.stdout.contains("Held for review (1):"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("--release-held"),
        "{}",
        status.stdout
    );

    // Released after review, it is retried with its key: posted once.
    let released = run(&mut f.command(&["--release-held", "--run"]));
    assert_eq!(released.code, 0, "{}", released.stderr);
    assert!(
        released.stderr.contains("Released 1 job held for review"),
        "{}",
        released.stderr
    );
    let counters = f.sandbox.counters();
    assert_eq!(counters.statuses_created, 6);
    assert!(
        counters
            .created_by_idempotency_key
            .values()
            .all(|n| *n == 1)
    );
}
