//! Progress of a run, as plain lines every few seconds: done, in flight,
//! failed by category, rate and ETA for the pass in progress.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator_runner::RunEvent;

/// Counts for the pass in progress, fed by the run's events.
#[derive(Debug, Default)]
pub struct Progress {
    pass: u32,
    max: u32,
    jobs: usize,
    started: Option<Instant>,
    in_flight: u64,
    /// When the rate budgets let the pass's jobs all have started.
    budget_finish_ms: Option<u64>,
    posted: u64,
    failed: BTreeMap<&'static str, u64>,
}

impl Progress {
    pub fn observe(&mut self, event: &RunEvent) {
        match event {
            RunEvent::PassStarted {
                pass,
                max,
                jobs,
                budget_finish_ms,
                ..
            } => {
                *self = Progress {
                    pass: *pass,
                    max: *max,
                    jobs: *jobs,
                    budget_finish_ms: *budget_finish_ms,
                    started: Some(Instant::now()),
                    ..Progress::default()
                };
            }
            RunEvent::AttemptStarted { .. } => self.in_flight += 1,
            RunEvent::AttemptFinished { failed, .. } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                match failed {
                    None => self.posted += 1,
                    Some(category) => *self.failed.entry(category.as_str()).or_default() += 1,
                }
            }
            RunEvent::PassEnded { .. } => self.started = None,
            _ => {}
        }
    }

    /// One line, or `None` between passes.
    pub fn line(&self) -> Option<String> {
        let started = self.started?;
        let failed: u64 = self.failed.values().sum();
        let done = self.posted + failed;
        let elapsed = started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / elapsed;
        let left = (self.jobs as u64).saturating_sub(done);
        // No sooner than the rate budgets allow the last job to start.
        let budget = self
            .budget_finish_ms
            .filter(|_| left > 0)
            .map(|t| t.saturating_sub(orchestrator_contract::time::now_ms()) as f64 / 1000.0)
            .filter(|s| *s > 0.0);
        let by_rate = (rate > 0.0).then(|| left as f64 / rate);
        let eta = match (by_rate, budget) {
            (Some(r), Some(b)) if b <= r => format!("{r:.0}s"),
            (_, Some(b)) => format!("{b:.0}s (rate budgets)"),
            (Some(r), None) => format!("{r:.0}s"),
            (None, None) => "?".into(),
        };
        let failures = if self.failed.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = self
                .failed
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            format!(" (failed: {})", parts.join(", "))
        };
        Some(format!(
            "Pass {}/{}: {done}/{} done, {} posted{failures}, {} in flight, {rate:.1}/s, ETA {eta}",
            self.pass, self.max, self.jobs, self.posted, self.in_flight
        ))
    }
}

/// Where the run's log lines and progress go: on a terminal, a live status
/// line kept below the log (log lines are printed above it, never through
/// it); elsewhere, plain lines, each with its time (RFC 3339, UTC) when
/// they go to a file or a pipe rather than a terminal.
#[derive(Clone)]
pub enum Display {
    Live(indicatif::ProgressBar),
    Plain { stamped: bool },
}

/// `line`, after the time it is written, when `stamped`.
fn stamp(line: &str, stamped: bool) -> String {
    if !stamped {
        return line.to_owned();
    }
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    format!("{now} {line}")
}

impl Display {
    /// A live display when stderr is a terminal and nothing asked for
    /// plain output.
    pub fn for_stderr(plain: bool) -> Display {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        if plain || !terminal {
            return Display::Plain { stamped: !terminal };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Display::Live(bar)
    }

    /// Prints one log line.
    pub fn say(&self, line: &str) {
        match self {
            Display::Live(bar) => bar.suspend(|| eprintln!("{line}")),
            Display::Plain { stamped } => {
                // A block's indented lines (the configuration's) belong to
                // the line above them and are not stamped again.
                for part in line.lines() {
                    if part.starts_with(char::is_whitespace) {
                        eprintln!("{part}");
                    } else {
                        eprintln!("{}", stamp(part, *stamped));
                    }
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Display::Live(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Shows progress until the returned handle is aborted: the live line is
/// refreshed four times a second; plain lines come every `interval`.
pub fn every(
    interval: Duration,
    progress: Arc<Mutex<Progress>>,
    display: Display,
) -> tokio::task::JoinHandle<()> {
    let period = match display {
        Display::Live(_) => Duration::from_millis(250),
        Display::Plain { .. } => interval,
    };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let line = progress.lock().unwrap_or_else(|e| e.into_inner()).line();
            match (&display, line) {
                (Display::Live(bar), Some(line)) => bar.set_message(line),
                (Display::Live(bar), None) => bar.set_message(""),
                (Display::Plain { stamped }, Some(line)) => {
                    eprintln!("{}", stamp(&line, *stamped))
                }
                (Display::Plain { .. }, None) => {}
            }
        }
    })
}
