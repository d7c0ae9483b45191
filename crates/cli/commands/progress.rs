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
    posted: u64,
    failed: BTreeMap<&'static str, u64>,
}

impl Progress {
    pub fn observe(&mut self, event: &RunEvent) {
        match event {
            RunEvent::PassStarted { pass, max, jobs } => {
                *self = Progress {
                    pass: *pass,
                    max: *max,
                    jobs: *jobs,
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
        let eta = if rate > 0.0 {
            format!("{:.0}s", left as f64 / rate)
        } else {
            "?".into()
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

/// Prints a progress line every `interval` until the returned handle is
/// aborted.
pub fn every(interval: Duration, progress: Arc<Mutex<Progress>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let line = progress.lock().unwrap_or_else(|e| e.into_inner()).line();
            if let Some(line) = line {
                eprintln!("{line}");
            }
        }
    })
}
