//! The live display on a real terminal: run under tmux and read the screen.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::Fixture;
use crate::support::artifacts;

/// A private tmux server, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket]);
        cmd
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "run"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

#[test]
fn the_live_display_keeps_log_lines_whole() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs tmux and must run this test"
        );
        eprintln!("\n*** SKIPPED: the terminal display test needs tmux ***\n");
        return;
    }
    let f = Fixture::new(
        "[[account]]\nname = \"slow\"\ntoken = \"t\"\ndelay_ms = 300\n",
        8,
    );
    let command = format!(
        "cd {dir} && {bin} --plugin {poster} --plugin {classifier} --jobs jobs.jsonl \
         --accounts-file accounts.toml --max-passes 1 --workers 1 --run > /dev/null; \
         echo EXIT=$?; sleep 60",
        dir = f.dir.path().display(),
        bin = env!("CARGO_BIN_EXE_orchestrator"),
        poster = artifacts::MASTODON_POSTER,
        classifier = artifacts::HTTP_CLASSIFIER,
    );
    let tmux = Tmux {
        socket: format!("orchestrator-test-{}", std::process::id()),
    };
    let started = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "run",
            "-x",
            "160",
            "-y",
            "40",
            &command,
        ])
        .env_remove("ORCHESTRATOR_LOG")
        .env_remove("RUST_LOG")
        .status()
        .unwrap();
    assert!(started.success());

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut live = None;
    let screen = loop {
        let screen = tmux.screen();
        if live.is_none() {
            live = screen
                .lines()
                .find(|l| l.contains("Pass 1/1: "))
                .map(str::to_owned);
        }
        if screen.contains("EXIT=") {
            break screen;
        }
        assert!(Instant::now() < deadline, "the run never ended:\n{screen}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(screen.contains("EXIT=0"), "{screen}");
    // While it ran, a live line showed the pass, below the log.
    let live = live.expect("a live progress line while the pass ran");
    assert!(
        live.contains(" done, ") && live.contains(" in flight"),
        "{live}"
    );
    // The log lines are whole, each on its own line, and the live line is
    // gone at the end.
    let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    assert!(
        lines.contains(&"Starting pass 1/1 of run 1 (8 jobs)"),
        "{screen}"
    );
    assert!(lines.contains(&"Pass 1 ended: all jobs done"), "{screen}");
    assert!(lines.contains(&"All jobs succeeded."), "{screen}");
    assert!(!screen.contains("Pass 1/1: "), "{screen}");
}
