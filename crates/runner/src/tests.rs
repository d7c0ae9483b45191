//! The pass loop and the dispatcher with plain-Rust plugins, a real SQLite
//! store on a RAM disk where there is one, and tokio's paused clock: every
//! wait is exact, and none takes real time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_contract::{
    Category, Classification, FailureReport, HostFault, JobContext, PluginInfo, PostFailure,
    Receipt, RetryScope, Verdict,
};
use orchestrator_plugin_host::{Attempt, OutboundAccess};
use orchestrator_retry::RetryConfig;
use orchestrator_store::{Answer, NewJob, RunStore, SqliteStore, Store};
use tokio::sync::{Notify, watch};

use crate::clock::TokioClock;
use crate::plugins::BoxFuture;
use crate::{
    AccountConfig, Batch, CallKind, Classify, Clock, PluginCall, Post, RunEnd, RunEvent,
    RunOptions, RunOutcome, Runner,
};

/// One call of the fake poster: which job, in which pass, when.
#[derive(Debug, Clone)]
struct Call {
    job: String,
    pass: u32,
    at_ms: u64,
}

type Script = dyn Fn(&JobContext) -> Attempt + Send + Sync;

/// A poster that answers as its script says, after `delay`, and remembers
/// every call; a job named in `hang` never gets an answer.
struct FakePoster {
    info: PluginInfo,
    clock: Arc<dyn Clock>,
    answer: Box<Script>,
    delay: Duration,
    hang: Option<String>,
    called: Arc<Notify>,
    calls: Mutex<Vec<Call>>,
    /// The rate budgets it declares for its platform.
    budgets: Vec<orchestrator_contract::RateBudget>,
}

impl FakePoster {
    fn new(
        clock: &Arc<TokioClock>,
        answer: impl Fn(&JobContext) -> Attempt + Send + Sync + 'static,
    ) -> Self {
        FakePoster {
            info: info("fake-poster"),
            clock: clock.clone(),
            answer: Box::new(answer),
            delay: Duration::ZERO,
            hang: None,
            called: Arc::new(Notify::new()),
            calls: Mutex::default(),
            budgets: Vec::new(),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn calls_of(&self, job: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.job == job).collect()
    }
}

impl Post for FakePoster {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn rate_budgets(&self) -> Vec<orchestrator_contract::RateBudget> {
        self.budgets.clone()
    }

    fn post<'a>(&'a self, job: &'a JobContext, _access: OutboundAccess) -> BoxFuture<'a, Attempt> {
        self.calls.lock().unwrap().push(Call {
            job: job.job_id.clone(),
            pass: job.pass,
            at_ms: self.clock.now_ms(),
        });
        self.called.notify_one();
        Box::pin(async move {
            if self.hang.as_deref() == Some(job.job_id.as_str()) {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(self.delay).await;
            (self.answer)(job)
        })
    }
}

/// A classifier that always gives `verdict`, counting the times it was asked.
struct FakeClassifier {
    info: PluginInfo,
    verdict: Verdict,
    asked: Mutex<u32>,
}

impl Classify for FakeClassifier {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn classify<'a>(
        &'a self,
        _report: &'a FailureReport,
    ) -> BoxFuture<'a, Result<Verdict, HostFault>> {
        *self.asked.lock().unwrap() += 1;
        Box::pin(async move { Ok(self.verdict.clone()) })
    }
}

fn info(name: &str) -> PluginInfo {
    PluginInfo {
        name: name.into(),
        version: "1.0.0".into(),
        description: String::new(),
    }
}

fn posted() -> Attempt {
    Attempt::Posted(Receipt {
        remote_id: "1".into(),
        url: None,
    })
}

fn http(status: u16, retry_after_ms: Option<u64>) -> Attempt {
    Attempt::Failed {
        failure: Some(PostFailure {
            http_status: Some(status),
            retry_after_ms,
            ..PostFailure::new(format!("HTTP {status}"))
        }),
        fault: None,
    }
}

/// A batch in a fresh store: `jobs` as (id, account), accounts named
/// after the part of the id before `-`, each on `http://NAME.example`
/// unless `hosts` puts it elsewhere.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: Arc<TokioClock>,
    accounts: BTreeMap<String, AccountConfig>,
}

impl Fixture {
    fn new(jobs: &[&str], hosts: &[(&str, &str)]) -> Fixture {
        let ram = std::path::Path::new("/dev/shm");
        let dir = if ram.is_dir() {
            tempfile::tempdir_in(ram)
        } else {
            tempfile::tempdir()
        }
        .unwrap();
        let store = SqliteStore::open(&dir.path().join("state.sqlite"))
            .unwrap()
            .without_group_commit();
        let new: Vec<NewJob> = jobs
            .iter()
            .map(|id| NewJob {
                id: (*id).into(),
                account: account_of(id).into(),
                payload: "{}".into(),
            })
            .collect();
        store.import(&new, "test").unwrap();
        let mut accounts = BTreeMap::new();
        for id in jobs {
            let name = account_of(id);
            let host = hosts
                .iter()
                .find(|(a, _)| *a == name)
                .map_or(format!("http://{name}.example"), |(_, h)| (*h).to_owned());
            accounts.insert(name.to_owned(), AccountConfig::new(name, &host));
        }
        Fixture {
            _dir: dir,
            store: Arc::new(store),
            clock: Arc::new(TokioClock::new()),
            accounts,
        }
    }

    fn options(&self, max_passes: u32, retry_delay_seconds: u64) -> RunOptions {
        RunOptions {
            config: RetryConfig {
                max_passes,
                retry_delay_seconds,
                ..RetryConfig::default()
            },
            workers: 4,
            only_accounts: None,
            grace: Duration::from_secs(5),
            allow_hosts: Vec::new(),
            key_window: Duration::from_secs(3600),
            halt_on_failure_rate: None,
            max_retry_after: Duration::from_secs(3600),
            outage_limit: Duration::from_secs(600),
        }
    }

    /// Runs the batch to its end (or `stop`), collecting what it reports.
    async fn run(
        &self,
        poster: Arc<FakePoster>,
        classifiers: Vec<Arc<dyn Classify>>,
        options: RunOptions,
        stop: watch::Sender<bool>,
    ) -> (RunOutcome, Vec<RunEvent>) {
        let batch = Batch::new(vec![poster], classifiers, self.accounts.clone(), None).unwrap();
        let runner = Runner::new(self.store.clone(), batch, options).with_clock(self.clock.clone());
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let outcome = runner
            .run(Arc::new(move |e| seen.lock().unwrap().push(e)), stop)
            .await
            .unwrap();
        let events = events.lock().unwrap().clone();
        (outcome, events)
    }
}

fn account_of(id: &str) -> &str {
    id.split('-').next().unwrap()
}

fn no_stop() -> watch::Sender<bool> {
    watch::channel(false).0
}

fn waits(events: &[RunEvent]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Waiting { seconds } => Some(*seconds),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_failed_job_is_retried_in_the_next_pass_after_the_delay() {
    let f = Fixture::new(&["x-1", "y-1"], &[]);
    // x-1 fails twice with a 500, then posts; y-1 posts at once.
    let poster = Arc::new(FakePoster::new(&f.clock, |job| {
        match (job.job_id.as_str(), job.pass) {
            ("x-1", 1 | 2) => http(500, None),
            _ => posted(),
        }
    }));
    let (outcome, events) = f
        .run(poster.clone(), vec![], f.options(3, 10), no_stop())
        .await;

    assert_eq!(outcome.end, RunEnd::AllSucceeded);
    let x = poster.calls_of("x-1");
    assert_eq!(x.iter().map(|c| c.pass).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(poster.calls_of("y-1").len(), 1, "a job that posted is done");
    // Each pass opens the retry delay after the one before ended.
    for pair in x.windows(2) {
        assert_eq!(pair[1].at_ms - pair[0].at_ms, 10_000, "{x:?}");
    }
    assert_eq!(waits(&events), [10.0, 10.0]);
    let ended = events
        .iter()
        .filter(|e| matches!(e, RunEvent::PassEnded { .. }))
        .count();
    assert_eq!(ended, 3);
}

#[tokio::test(start_paused = true)]
async fn a_job_out_of_passes_fails_and_the_run_ends() {
    let f = Fixture::new(&["x-1"], &[]);
    let poster = Arc::new(FakePoster::new(&f.clock, |_| http(500, None)));
    let (outcome, _) = f
        .run(poster.clone(), vec![], f.options(2, 1), no_stop())
        .await;
    assert_eq!(outcome.end, RunEnd::SomeFailed);
    assert_eq!(outcome.tally.failed, 1);
    assert_eq!(poster.calls().len(), 2, "tried in both passes, no more");
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_holds_back_its_account_only() {
    let f = Fixture::new(&["a-1", "a-2", "a-3", "b-1", "b-2", "b-3"], &[]);
    // a's first post is told to wait 5 s (a 429: the whole account waits).
    let poster = Arc::new(FakePoster::new(&f.clock, |job| {
        match (job.job_id.as_str(), job.pass) {
            ("a-1", 1) => http(429, Some(5_000)),
            _ => posted(),
        }
    }));
    let (outcome, events) = f
        .run(poster.clone(), vec![], f.options(3, 0), no_stop())
        .await;
    assert_eq!(outcome.end, RunEnd::AllSucceeded);

    let limited = poster.calls_of("a-1")[0].at_ms;
    for job in ["a-2", "a-3"] {
        let at = poster.calls_of(job)[0].at_ms;
        assert!(at >= limited + 5_000, "{job} waited for a's limit");
    }
    for job in ["b-1", "b-2", "b-3"] {
        let at = poster.calls_of(job)[0].at_ms;
        assert!(at < limited + 5_000, "{job} did not wait for a");
    }
    assert!(events.iter().any(|e| matches!(
        e,
        RunEvent::Paused { scope: RetryScope::Account, account, seconds, .. }
            if account == "a" && *seconds == 5.0
    )));
}

#[tokio::test(start_paused = true)]
async fn a_server_wait_holds_back_every_account_on_its_platform() {
    // a and b share an instance; c is elsewhere.
    let shared = [
        ("a", "http://shared.example"),
        ("b", "http://shared.example"),
    ];
    let f = Fixture::new(&["a-1", "b-1", "b-2", "c-1", "c-2"], &shared);
    let poster = Arc::new(FakePoster::new(&f.clock, |job| {
        match (job.job_id.as_str(), job.pass) {
            ("a-1", 1) => http(503, Some(4_000)),
            _ => posted(),
        }
    }));
    let (outcome, events) = f
        .run(poster.clone(), vec![], f.options(3, 0), no_stop())
        .await;
    assert_eq!(outcome.end, RunEnd::AllSucceeded);

    let down = poster.calls_of("a-1")[0].at_ms;
    assert!(poster.calls_of("b-2")[0].at_ms >= down + 4_000);
    assert!(poster.calls_of("c-2")[0].at_ms < down + 4_000);
    assert!(events.iter().any(|e| matches!(
        e,
        RunEvent::Paused { scope: RetryScope::Platform, account, .. } if account == "a"
    )));
}

#[tokio::test(start_paused = true)]
async fn too_many_failures_halt_the_run() {
    let jobs: Vec<String> = (1..=40).map(|i| format!("acct{i}-1")).collect();
    let ids: Vec<&str> = jobs.iter().map(String::as_str).collect();
    let f = Fixture::new(&ids, &[]);
    let poster = Arc::new(FakePoster::new(&f.clock, |_| http(400, None)));
    let options = RunOptions {
        workers: 1,
        halt_on_failure_rate: Some(50.0),
        ..f.options(3, 0)
    };
    let (outcome, events) = f.run(poster.clone(), vec![], options, no_stop()).await;
    assert_eq!(outcome.end, RunEnd::Stopped);
    assert!(events.iter().any(|e| matches!(
        e,
        RunEvent::Halting {
            failed: 10,
            finished: 10,
            ..
        }
    )));
    assert!(poster.calls().len() < 40, "it stopped starting attempts");
}

#[tokio::test(start_paused = true)]
async fn a_stop_waits_the_grace_period_for_an_attempt_that_hangs() {
    let f = Fixture::new(&["h-1", "h-2", "ok-1"], &[]);
    let mut poster = FakePoster::new(&f.clock, |_| posted());
    poster.hang = Some("h-1".into());
    let poster = Arc::new(poster);
    let stop = no_stop();
    let started = f.clock.now_ms();
    // Once h-1 is in flight, stop.
    let asked = {
        let (poster, stop) = (poster.clone(), stop.clone());
        tokio::spawn(async move {
            while poster.calls_of("h-1").is_empty() {
                poster.called.notified().await;
            }
            stop.send(true).unwrap();
        })
    };
    let (outcome, events) = f.run(poster.clone(), vec![], f.options(3, 0), stop).await;
    asked.await.unwrap();

    assert_eq!(outcome.end, RunEnd::Stopped);
    assert!(events.iter().any(|e| matches!(
        e,
        RunEvent::Stopping { grace } if *grace == Duration::from_secs(5)
    )));
    // The attempt in flight had its grace period, then was left to the
    // next run; its account's next job was never begun.
    assert!(f.clock.now_ms() - started >= 5_000);
    assert!(poster.calls_of("h-2").is_empty());
    let h1 = f.store.attempts("h-1").unwrap();
    assert_eq!(h1.len(), 1);
    assert_eq!(h1[0].outcome, "in-flight");
}

#[tokio::test(start_paused = true)]
async fn classifiers_are_asked_in_order_until_one_decides() {
    let f = Fixture::new(&["x-1"], &[]);
    let classifier = |name: &str, verdict: Verdict| {
        Arc::new(FakeClassifier {
            info: info(name),
            verdict,
            asked: Mutex::new(0),
        })
    };
    let silent = classifier("silent", Verdict::NoOpinion);
    let decider = classifier(
        "decider",
        Verdict::Decided(Classification {
            category: Category::NonRetryable,
            reason: "not today".into(),
            retry_after_ms: None,
            scope: RetryScope::Job,
        }),
    );
    let never = classifier("never", Verdict::NoOpinion);
    let poster = Arc::new(FakePoster::new(&f.clock, |_| http(500, None)));
    let classifiers: Vec<Arc<dyn Classify>> = vec![silent.clone(), decider.clone(), never.clone()];
    let (outcome, _) = f
        .run(poster.clone(), classifiers, f.options(3, 0), no_stop())
        .await;

    // Non-retryable (the decider said so, over the built-in "retryable"):
    // one attempt only.
    assert_eq!(outcome.end, RunEnd::SomeFailed);
    assert_eq!(poster.calls().len(), 1);
    assert_eq!(*never.asked.lock().unwrap(), 0);
    let attempt = &f.store.attempts("x-1").unwrap()[0];
    assert_eq!(attempt.decided_by.as_deref(), Some("decider"));
    let answers: Vec<(&str, &Answer)> = attempt
        .consulted
        .iter()
        .map(|c| (c.classifier.as_str(), &c.answer))
        .collect();
    assert_eq!(
        answers,
        [
            ("silent", &Answer::NoOpinion),
            ("decider", &Answer::Decided(Category::NonRetryable))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_attempt_reports_how_long_it_and_each_plugin_call_took() {
    let f = Fixture::new(&["x-1", "y-1"], &[]);
    let mut poster = FakePoster::new(&f.clock, |job| match job.job_id.as_str() {
        "x-1" => http(500, None),
        _ => posted(),
    });
    poster.delay = Duration::from_secs(2);
    let silent = Arc::new(FakeClassifier {
        info: info("silent"),
        verdict: Verdict::NoOpinion,
        asked: Mutex::new(0),
    });
    let (_, events) = f
        .run(Arc::new(poster), vec![silent], f.options(1, 0), no_stop())
        .await;

    let finished: BTreeMap<String, (Option<Category>, Duration, Vec<PluginCall>)> = events
        .into_iter()
        .filter_map(|e| match e {
            RunEvent::AttemptFinished {
                job,
                failed,
                took,
                calls,
                ..
            } => Some((job, (failed, took, calls))),
            _ => None,
        })
        .collect();
    // On the paused clock the poster's 2 s are exact (to the timer's
    // millisecond), and an answer given at once takes no time.
    let about_two_seconds =
        |d: Duration| d >= Duration::from_secs(2) && d < Duration::from_millis(2_010);
    let (failed, took, calls) = &finished["y-1"];
    assert_eq!(*failed, None);
    assert!(about_two_seconds(*took), "{took:?}");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].plugin.as_str(), calls[0].call),
        ("fake-poster", CallKind::Post)
    );
    assert!(about_two_seconds(calls[0].took), "{calls:?}");

    // A failure adds each classifier asked, after the poster.
    let (failed, took, calls) = &finished["x-1"];
    assert!(failed.is_some());
    assert!(about_two_seconds(*took), "{took:?}");
    let asked: Vec<(&str, CallKind)> = calls.iter().map(|c| (c.plugin.as_str(), c.call)).collect();
    assert_eq!(
        asked,
        [
            ("fake-poster", CallKind::Post),
            ("silent", CallKind::Classify)
        ]
    );
    assert!(calls[1].took < Duration::from_millis(1), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn each_account_is_served_by_the_poster_it_names() {
    let mut f = Fixture::new(&["a-1", "a-2", "b-1"], &[]);
    f.accounts.get_mut("a").unwrap().poster = Some("first".into());
    f.accounts.get_mut("b").unwrap().poster = Some("second".into());
    let named = |name: &str| {
        let mut poster = FakePoster::new(&f.clock, |_| posted());
        poster.info = info(name);
        Arc::new(poster)
    };
    let (first, second) = (named("first"), named("second"));
    let batch = Batch::new(
        vec![first.clone(), second.clone()],
        vec![],
        f.accounts.clone(),
        None,
    )
    .unwrap();
    let runner = Runner::new(f.store.clone(), batch, f.options(1, 0)).with_clock(f.clock.clone());
    let outcome = runner.run(Arc::new(|_| {}), no_stop()).await.unwrap();

    assert_eq!(outcome.end, RunEnd::AllSucceeded);
    let jobs = |p: &FakePoster| {
        let mut jobs: Vec<String> = p.calls().into_iter().map(|c| c.job).collect();
        jobs.sort();
        jobs
    };
    assert_eq!(jobs(&first), ["a-1", "a-2"]);
    assert_eq!(jobs(&second), ["b-1"]);
}

#[test]
fn several_posters_need_every_account_to_name_one_of_them() {
    let clock = Arc::new(TokioClock::new());
    let poster = |name: &str| -> Arc<dyn Post> {
        let mut poster = FakePoster::new(&clock, |_| posted());
        poster.info = info(name);
        Arc::new(poster)
    };
    let accounts = |named: Option<&str>| {
        let mut account = AccountConfig::new("a", "http://a.example");
        account.poster = named.map(str::to_owned);
        BTreeMap::from([("a".to_owned(), account)])
    };
    let refused = |posters: Vec<Arc<dyn Post>>, named: Option<&str>| match Batch::new(
        posters,
        vec![],
        accounts(named),
        None,
    ) {
        Ok(_) => panic!("assembled"),
        Err(e) => e.to_string(),
    };
    // One poster serves every account, named or not.
    assert!(Batch::new(vec![poster("only")], vec![], accounts(None), None).is_ok());
    assert_eq!(
        refused(vec![poster("one"), poster("two")], None),
        "account a names no poster, and --plugin gives 2 (one and two); add poster = \"NAME\" to its entry in the accounts file"
    );
    assert_eq!(
        refused(vec![poster("one")], Some("three")),
        "account a names poster \"three\", which no --plugin gives (posters given: one)"
    );
    assert_eq!(
        refused(vec![poster("one"), poster("one")], Some("one")),
        "--plugin gives two posters named one; give each poster once"
    );
}

/// Each call's time, in ms from the first, for the jobs of `account`.
fn starts_of(poster: &FakePoster, account: &str) -> Vec<u64> {
    let calls = poster.calls();
    let first = calls.iter().map(|c| c.at_ms).min().unwrap_or(0);
    calls
        .iter()
        .filter(|c| account_of(&c.job) == account)
        .map(|c| c.at_ms - first)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_budget_spreads_an_accounts_attempts_over_its_windows() {
    let jobs = [
        "a-1", "a-2", "a-3", "a-4", "a-5", "a-6", "a-7", "b-1", "b-2",
    ];
    let mut f = Fixture::new(&jobs, &[]);
    f.accounts.get_mut("a").unwrap().rates =
        crate::budget::Rates(vec![crate::budget::Rate::parse("3/10s").unwrap()]);
    let poster = Arc::new(FakePoster::new(&f.clock, |_| posted()));
    let (outcome, events) = f
        .run(poster.clone(), vec![], f.options(1, 0), no_stop())
        .await;
    assert_eq!(outcome.end, RunEnd::AllSucceeded);
    // Three at once, three when the first leave the window (and its
    // margin), then the last.
    assert_eq!(
        starts_of(&poster, "a"),
        [0, 0, 0, 11_000, 11_000, 11_000, 22_000]
    );
    // An account without a budget is not held back by another's.
    assert_eq!(starts_of(&poster, "b"), [0, 0]);
    // The pass said when the budgets let its last job start.
    let finish = events.iter().find_map(|e| match e {
        RunEvent::PassStarted {
            budget_finish_ms, ..
        } => *budget_finish_ms,
        _ => None,
    });
    let first = poster.calls().iter().map(|c| c.at_ms).min().unwrap();
    assert_eq!(finish.map(|t| t.abs_diff(first + 22_000) < 50), Some(true));
}

#[tokio::test(start_paused = true)]
async fn a_platform_budget_is_shared_by_the_accounts_on_it() {
    let jobs = ["a-1", "a-2", "b-1", "b-2", "c-1", "c-2"];
    let shared = [
        ("a", "http://shared.example"),
        ("b", "http://shared.example"),
    ];
    let mut f = Fixture::new(&jobs, &shared);
    for name in ["a", "b"] {
        f.accounts.get_mut(name).unwrap().platform_rates = Some((
            "shared.example".into(),
            crate::budget::Rates(vec![crate::budget::Rate::parse("2/10s").unwrap()]),
        ));
    }
    let poster = Arc::new(FakePoster::new(&f.clock, |_| posted()));
    let (outcome, _) = f
        .run(poster.clone(), vec![], f.options(1, 0), no_stop())
        .await;
    assert_eq!(outcome.end, RunEnd::AllSucceeded);
    let mut shared_starts = starts_of(&poster, "a");
    shared_starts.extend(starts_of(&poster, "b"));
    shared_starts.sort_unstable();
    assert_eq!(shared_starts, [0, 0, 11_000, 11_000]);
    assert_eq!(
        starts_of(&poster, "c"),
        [0, 0],
        "another platform's account"
    );
}

#[tokio::test(start_paused = true)]
async fn a_posters_declared_budget_holds_the_accounts_without_their_own() {
    let jobs = ["a-1", "a-2", "a-3", "b-1", "b-2", "b-3"];
    let mut f = Fixture::new(&jobs, &[]);
    f.accounts.get_mut("b").unwrap().rates =
        crate::budget::Rates(vec![crate::budget::Rate::parse("3/10s").unwrap()]);
    let mut poster = FakePoster::new(&f.clock, |_| posted());
    poster.budgets = vec![orchestrator_contract::RateBudget {
        count: 2,
        per_ms: 10_000,
        platform: false,
    }];
    let poster = Arc::new(poster);
    let (outcome, _) = f
        .run(poster.clone(), vec![], f.options(1, 0), no_stop())
        .await;
    assert_eq!(outcome.end, RunEnd::AllSucceeded);
    assert_eq!(
        starts_of(&poster, "a"),
        [0, 0, 11_000],
        "the poster's default"
    );
    assert_eq!(starts_of(&poster, "b"), [0, 0, 0], "its own rate wins");
}
