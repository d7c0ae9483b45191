//! [`Clock`]: where the runner reads the time, so that its waits can be
//! tested under tokio's paused time rather than the wall clock.

/// The time, in milliseconds since the Unix epoch: what the store records
/// and what every pause and pass opening is measured against.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        orchestrator_contract::time::now_ms()
    }
}

/// tokio's clock, from the wall time it was made at: under paused time it
/// moves only as the runtime's timers do, so waits take no real time.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        TokioClock {
            origin_ms: orchestrator_contract::time::now_ms(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.origin_ms
            .saturating_add(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}
