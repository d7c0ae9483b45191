//! Prometheus metrics of a run and of its store.
//!
//! [`RunMetrics`] is the key type: what a `--run` process measures as it
//! works — attempts by outcome and category, how long they took, attempts
//! in flight, the run and pass it is on, how long loading and calling each
//! plugin took. [`encode`] adds what the store says at the moment of the
//! scrape (jobs by state, accounts waiting out a pause, and, without a
//! run, the newest run and its pass) and writes it all in the Prometheus
//! text format ([`CONTENT_TYPE`]). A `--run` process serves both halves;
//! whoever holds only a store (the dashboard) serves the store's.
//!
//! The metrics are `prometheus-client`'s, named by the Prometheus
//! conventions: an `orchestrator_` prefix, base units in the name
//! (`_seconds`), `_total` on counters. Label values a plugin chooses (its
//! name) are hostile: [`RunMetrics`] makes them printable and cuts them to
//! [`LABEL_BYTES`], and `prometheus-client` escapes what the format gives
//! meaning to (`\`, `"`, line breaks), so no name can forge a line or a
//! series.

use std::time::{Duration, SystemTime};

use orchestrator_contract::text::printable;
use orchestrator_contract::{Category, RetryScope};
use orchestrator_store::{ReadStore, StoreError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[cfg(test)]
mod tests;

/// The `Content-Type` of what [`encode`] writes: the Prometheus text
/// format, version 0.0.4, which every scraper reads.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The most bytes of a label value taken from a plugin, once printable.
/// Names are short; a longer one is a plugin's mistake or malice, and
/// each distinct value is a series a scraper keeps.
pub const LABEL_BYTES: usize = 64;

/// The longest platform wait counted as still running when nothing says
/// otherwise: `--max-retry-after`'s default, as a run clamps waits.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(3600);

/// Bucket bounds of every duration histogram, in seconds: from a
/// millisecond (a classifier's answer) to a minute (`--job-timeout`'s
/// default, past which a call is cut off).
const SECONDS_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Why the metrics could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot read the store for the metrics: {0}")]
    Store(#[from] StoreError),
    #[error("cannot encode the metrics")]
    Encode(#[from] std::fmt::Error),
}

/// Which call of a plugin was timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// A poster's `post`: one attempt of a job.
    Post,
    /// A classifier's `classify`: its verdict on a failure.
    Classify,
}

impl Call {
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Post => "post",
            Call::Classify => "classify",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    outcome: &'static str,
    category: &'static str,
}

impl AttemptLabels {
    /// `failed`: `None` when the attempt posted, else its category.
    fn of(failed: Option<Category>) -> Self {
        match failed {
            None => AttemptLabels {
                outcome: "succeeded",
                category: "none",
            },
            Some(category) => AttemptLabels {
                outcome: "failed",
                category: category.as_str(),
            },
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    plugin: String,
    call: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

/// What a `--run` process measures as it works. Cheap to update from
/// every attempt (atomics and a lock per histogram); shared by the run's
/// observer and the server that encodes it.
#[derive(Debug)]
pub struct RunMetrics {
    attempts: Family<AttemptLabels, Counter>,
    attempt_duration: Histogram,
    in_flight: Gauge,
    run: Gauge,
    pass: Gauge,
    plugin_load: Histograms<PluginLabels>,
    plugin_call: Histograms<CallLabels>,
    /// The run's `--max-retry-after`: a stored wait counts as running for
    /// at most this long, as the run honours it.
    max_wait: Duration,
}

impl RunMetrics {
    /// Metrics of a run whose waits last at most `max_wait`.
    pub fn new(max_wait: Duration) -> Self {
        let metrics = RunMetrics {
            attempts: Family::default(),
            attempt_duration: seconds_histogram(),
            in_flight: Gauge::default(),
            run: Gauge::default(),
            pass: Gauge::default(),
            plugin_load: Family::new_with_constructor(seconds_histogram),
            plugin_call: Family::new_with_constructor(seconds_histogram),
            max_wait,
        };
        // Every outcome exists from the start at 0: a rate over a series
        // needs the series before its first increase.
        let outcomes = std::iter::once(None).chain(Category::ALL.map(Some));
        for failed in outcomes {
            metrics
                .attempts
                .get_or_create_owned(&AttemptLabels::of(failed));
        }
        metrics
    }

    /// The process joined run `run`, which stood at pass `at_pass`.
    pub fn run_started(&self, run: u32, at_pass: Option<u32>) {
        self.run.set(i64::from(run));
        self.pass.set(i64::from(at_pass.unwrap_or(0)));
    }

    pub fn pass_started(&self, pass: u32) {
        self.pass.set(i64::from(pass));
    }

    pub fn attempt_started(&self) {
        self.in_flight.inc();
    }

    /// An attempt ended: posted (`failed` is `None`) or failed as
    /// `failed`, after `took`.
    pub fn attempt_finished(&self, failed: Option<Category>, took: Duration) {
        self.in_flight.dec();
        self.attempts
            .get_or_create(&AttemptLabels::of(failed))
            .inc();
        self.attempt_duration.observe(took.as_secs_f64());
    }

    /// Loading `plugin` (its name, as it gives it) took `took`.
    pub fn plugin_loaded(&self, plugin: &str, took: Duration) {
        let labels = PluginLabels {
            plugin: label(plugin),
        };
        self.plugin_load
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// One `call` of `plugin` (its name, as it gives it) took `took`.
    pub fn plugin_called(&self, plugin: &str, call: Call, took: Duration) {
        let labels = CallLabels {
            plugin: label(plugin),
            call: call.as_str(),
        };
        self.plugin_call
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Adds these metrics to `registry`; they stay shared with `self`.
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "attempts",
            "Attempts this process finished, by outcome (succeeded, failed) and the failure's category (none when it posted)",
            self.attempts.clone(),
        );
        registry.register_with_unit(
            "attempt_duration",
            "How long an attempt took, from getting its credential to classifying its failure",
            Unit::Seconds,
            self.attempt_duration.clone(),
        );
        registry.register(
            "attempts_in_flight",
            "Attempts this process has in flight",
            self.in_flight.clone(),
        );
        register_run(registry, self.run.clone(), self.pass.clone());
        registry.register_with_unit(
            "plugin_load_duration",
            "How long loading a plugin took (compiling it, or reading the compiled-plugin cache), by plugin name",
            Unit::Seconds,
            self.plugin_load.clone(),
        );
        registry.register_with_unit(
            "plugin_call_duration",
            "How long one call of a plugin took, by plugin name and call (post, classify)",
            Unit::Seconds,
            self.plugin_call.clone(),
        );
    }
}

fn register_run(registry: &mut Registry, run: Gauge, pass: Gauge) {
    registry.register(
        "run",
        "The run being worked on: this process's, or without one the newest in the store (0: none)",
        run,
    );
    registry.register(
        "pass",
        "The pass of that run being worked on, or the last one begun (0: none yet)",
        pass,
    );
}

/// The metrics in the Prometheus text format ([`CONTENT_TYPE`]): `run`'s,
/// if given, and the store's as they are now. Reads only aggregates from
/// the store (`status`'s counts by state and newest run, the running
/// waits), never a list of jobs, so the answer stays small with a million
/// jobs. It blocks on the store: call it off an async runtime's threads.
pub fn encode(store: &dyn ReadStore, run: Option<&RunMetrics>) -> Result<String, MetricsError> {
    let mut registry = Registry::with_prefix("orchestrator");
    let status = store.status()?;

    let jobs = Family::<StateLabels, Gauge>::default();
    for (state, n) in &status.by_state {
        let labels = StateLabels {
            state: state.clone(),
        };
        jobs.get_or_create(&labels).set(gauge_value(*n));
    }
    registry.register("jobs", "Jobs of the batch, by state", jobs);

    // The store gives the latest wait per account and scope: each one is
    // an account.
    let max_wait = run.map_or(DEFAULT_MAX_WAIT, |r| r.max_wait);
    let max_wait_ms = u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX);
    let pauses = store.pauses(now_ms(), max_wait_ms)?;
    let paused = Family::<ScopeLabels, Gauge>::default();
    for scope in [RetryScope::Account, RetryScope::Platform] {
        let accounts = pauses.iter().filter(|p| p.scope == scope).count();
        let labels = ScopeLabels {
            scope: scope.as_str(),
        };
        paused
            .get_or_create(&labels)
            .set(gauge_value(accounts as u64));
    }
    registry.register(
        "paused_accounts",
        "Accounts waiting out a retry-after, by scope (account: the account waits; platform: every account on its platform instance waits)",
        paused,
    );

    match run {
        Some(run) => run.register(&mut registry),
        None => {
            let (run, pass) = (Gauge::default(), Gauge::default());
            if let Some(last) = &status.last_run {
                run.set(i64::from(last.run));
                pass.set(i64::from(last.passes));
            }
            register_run(&mut registry, run, pass);
        }
    }

    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// A label value from a plugin: printable (no control character, so no
/// line break of any kind), and at most [`LABEL_BYTES`] of it.
fn label(text: &str) -> String {
    let shown = printable(text);
    if shown.len() <= LABEL_BYTES {
        return shown.into_owned();
    }
    let mut end = LABEL_BYTES;
    while !shown.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &shown[..end])
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
