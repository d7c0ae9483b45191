//! [`Budgets`]: the rates accounts and platforms allow (`rate = "300/5m"`),
//! kept by the host before each attempt starts, so a well-configured batch
//! never meets the platform's 429.
//!
//! A budget is a sliding window: at most `count` attempts start in any
//! span of `per`. Every attempt of an account spends one unit of the
//! account's budgets and of its platform's (the `[platform."host"]` table
//! its base URL falls under). What was spent lives in the store — an
//! attempt's start time — so a resumed run, or another process of the same
//! run on a shared store, takes the budgets up where they stand
//! ([`Budgets::seed`]).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::AccountConfig;

/// The largest count a rate may allow, and the longest window it may
/// name: a week holds every platform's published budget, and keeps the
/// spend a run loads bounded.
pub const MAX_COUNT: u32 = 1_000_000;
pub const MAX_PER: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest margin a rate keeps beyond its window.
const MAX_MARGIN_MS: u64 = 15_000;

/// How far back any budget's spending can count: the longest window and
/// its margin.
pub const MAX_HORIZON: Duration = MAX_PER.saturating_add(Duration::from_millis(MAX_MARGIN_MS));

/// At most `count` attempts in any `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// Reads `COUNT/DURATION`, e.g. `300/5m` or `5000/1h`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let how = "write it as COUNT/DURATION, e.g. \"300/5m\"";
        let (count, per) = text
            .split_once('/')
            .ok_or_else(|| format!("rate {text:?} has no '/'; {how}"))?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|c| (1..=MAX_COUNT).contains(c))
            .ok_or_else(|| {
                format!(
                    "rate {text:?}: the count must be a whole number from 1 to {MAX_COUNT}; {how}"
                )
            })?;
        let per = humantime::parse_duration(per.trim())
            .ok()
            .filter(|d| (Duration::from_secs(1)..=MAX_PER).contains(d))
            .ok_or_else(|| {
                format!("rate {text:?}: the duration must be from 1s to 7days (e.g. 10s, 5m, 1h, 1day); {how}")
            })?;
        Ok(Rate { count, per })
    }

    fn per_ms(&self) -> u64 {
        self.per.as_millis() as u64
    }

    /// How long after a start the one `count` starts later may begin: the
    /// window and a margin (a twentieth of it, from 1 s — a tenth for
    /// windows under 10 s — to 15 s). A request reaches the platform a
    /// moment after its attempt starts, and the platform counts by its own
    /// clock: without it, a late request and an early one of the next
    /// window could fall in one of the platform's windows.
    fn span_ms(&self) -> u64 {
        self.per_ms() + self.margin_ms()
    }

    fn margin_ms(&self) -> u64 {
        let per = self.per_ms();
        (per / 20).max((per / 10).min(1_000)).min(MAX_MARGIN_MS)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

/// The rates of one account or platform: `rate = "300/5m"`, or several,
/// all kept (`rate = ["5000/1h", "35000/1d"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RateText")]
pub struct Rates(pub Vec<Rate>);

#[derive(Deserialize)]
#[serde(untagged)]
enum RateText {
    One(String),
    Many(Vec<String>),
}

impl TryFrom<RateText> for Rates {
    type Error = String;

    fn try_from(text: RateText) -> Result<Self, String> {
        let texts = match text {
            RateText::One(one) => vec![one],
            RateText::Many(many) => many,
        };
        texts
            .iter()
            .map(|t| Rate::parse(t))
            .collect::<Result<_, _>>()
            .map(Rates)
    }
}

impl Rates {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The longest window: how far back spending counts.
    fn horizon_ms(&self) -> u64 {
        self.0.iter().map(Rate::span_ms).max().unwrap_or(0)
    }

    /// The most starts any window allows: how many a log need keep.
    fn keep(&self) -> usize {
        self.0.iter().map(|r| r.count as usize).max().unwrap_or(0)
    }
}

impl fmt::Display for Rates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Rate::to_string).collect();
        f.write_str(&parts.join(" and "))
    }
}

/// Who spends: an account, or a platform by the host its
/// `[platform."host"]` table names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder {
    Account(String),
    Platform(String),
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Account(name) => write!(f, "account {name}"),
            Holder::Platform(host) => write!(f, "platform {host}"),
        }
    }
}

/// One holder's rates and the starts that count against them, oldest
/// first.
#[derive(Debug)]
struct Ledger {
    rates: Rates,
    starts: VecDeque<u64>,
}

impl Ledger {
    fn new(rates: Rates) -> Self {
        Ledger {
            rates,
            starts: VecDeque::new(),
        }
    }

    /// Forgets starts that no window reaches any more, and those beyond
    /// what the largest count needs.
    fn trim(&mut self, now_ms: u64) {
        if let Some(horizon) = now_ms.checked_sub(self.rates.horizon_ms()) {
            while self.starts.front().is_some_and(|t| *t <= horizon) {
                self.starts.pop_front();
            }
        }
        while self.starts.len() > self.rates.keep() {
            self.starts.pop_front();
        }
    }

    /// When the next start fits every rate: `now_ms` when it does now.
    fn next_free(&self, now_ms: u64) -> u64 {
        self.rates
            .0
            .iter()
            .map(|rate| {
                let n = rate.count as usize;
                // The n-th latest start must have left the window.
                match self.starts.len().checked_sub(n) {
                    Some(i) => (self.starts[i] + rate.span_ms()).max(now_ms),
                    None => now_ms,
                }
            })
            .max()
            .unwrap_or(now_ms)
    }

    /// Starts that hold back the next under `rate` at `now_ms` (those in
    /// its window, margin included).
    fn used(&self, rate: &Rate, now_ms: u64) -> usize {
        match now_ms.checked_sub(rate.span_ms()) {
            Some(since) => self.starts.iter().rev().take_while(|t| **t > since).count(),
            None => self.starts.len(),
        }
    }

    /// When `jobs` more starts can have begun, one as soon as the rates
    /// allow after another.
    fn finish_of(&self, jobs: u64, now_ms: u64) -> u64 {
        let mut starts: Vec<u64> = self.starts.iter().copied().collect();
        let mut last = now_ms;
        for _ in 0..jobs {
            let next = self
                .rates
                .0
                .iter()
                .map(|rate| match starts.len().checked_sub(rate.count as usize) {
                    Some(i) => starts[i] + rate.span_ms(),
                    None => now_ms,
                })
                .max()
                .unwrap_or(now_ms)
                .max(now_ms);
            starts.push(next);
            last = next;
        }
        last
    }
}

/// What a holder's budget stands at, for `--status` and `--dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub rate: Rate,
    /// Starts in the window now.
    pub used: u64,
    /// When the oldest of them leaves the window (ms since the epoch);
    /// `None` when none counts.
    pub refills_ms: Option<u64>,
}

/// The budgets of a run's accounts and their platforms.
#[derive(Debug, Default)]
pub struct Budgets {
    /// Each account's holders (itself, its platform), only those with
    /// rates.
    holders: HashMap<String, Vec<Holder>>,
    ledgers: Mutex<HashMap<Holder, Ledger>>,
    /// Each account's [`Budgets::late_after_ms`], worked out once: the
    /// rates never change, and every attempt asks.
    late_after: HashMap<String, u64>,
}

impl Budgets {
    /// The budgets `accounts` name: their own `rate`, and their platform's.
    pub fn of<'a>(accounts: impl IntoIterator<Item = &'a AccountConfig>) -> Self {
        let mut holders: HashMap<String, Vec<Holder>> = HashMap::new();
        let mut ledgers = HashMap::new();
        for account in accounts {
            let mut own = Vec::new();
            if !account.rates.is_empty() {
                let holder = Holder::Account(account.name.clone());
                ledgers.insert(holder.clone(), Ledger::new(account.rates.clone()));
                own.push(holder);
            }
            if let Some((host, rates)) = &account.platform_rates
                && !rates.is_empty()
            {
                let holder = Holder::Platform(host.clone());
                ledgers
                    .entry(holder.clone())
                    .or_insert_with(|| Ledger::new(rates.clone()));
                own.push(holder);
            }
            if !own.is_empty() {
                holders.insert(account.name.clone(), own);
            }
        }
        let late_after = holders
            .iter()
            .filter_map(|(account, own)| {
                let least = own
                    .iter()
                    .filter_map(|h| ledgers.get(h))
                    .flat_map(|l: &Ledger| l.rates.0.iter().map(Rate::margin_ms))
                    .min()?;
                Some((account.clone(), least / 2))
            })
            .collect();
        Budgets {
            holders,
            ledgers: Mutex::new(ledgers),
            late_after,
        }
    }

    /// Whether any account has a budget: without, nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    /// How far back spending counts: the longest window of any budget.
    pub fn horizon(&self) -> Duration {
        let ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_millis(
            ledgers
                .values()
                .map(|l| l.rates.horizon_ms())
                .max()
                .unwrap_or(0),
        )
    }

    /// Takes what the store says was spent — each attempt's account and
    /// start, oldest first — in place of what was known, when no attempt
    /// of this process is in flight (every start it made is in the store).
    pub fn seed(&self, spent: &[(String, u64)], now_ms: u64) {
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        for ledger in ledgers.values_mut() {
            ledger.starts.clear();
        }
        for (account, started) in spent {
            for holder in self.holders.get(account).into_iter().flatten() {
                if let Some(ledger) = ledgers.get_mut(holder) {
                    // The store's order is by start; a start from a clock
                    // that ran ahead is counted as now.
                    let at = (*started).min(now_ms);
                    let position = ledger.starts.partition_point(|t| *t <= at);
                    ledger.starts.insert(position, at);
                }
            }
        }
        for ledger in ledgers.values_mut() {
            ledger.trim(now_ms);
        }
    }

    /// When `account` may start its next attempt, if not now.
    pub fn wait_until(&self, account: &str, now_ms: u64) -> Option<u64> {
        let holders = self.holders.get(account)?;
        let ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        let until = next_free(holders, &ledgers, now_ms);
        (until > now_ms).then_some(until)
    }

    /// How long after its budget was taken an attempt's request may still
    /// go out under that budget: half the least margin of the budgets
    /// `account` answers to; `None` when it answers to none. A request
    /// held longer (waiting for attachment memory, or a login) spends
    /// again when it goes ([`Budgets::take`] at that moment): the first
    /// unit stays spent, so no window of the platform's ever holds more
    /// than it allows.
    pub fn late_after_ms(&self, account: &str) -> Option<u64> {
        self.late_after.get(account).copied()
    }

    /// Spends one unit of every budget `account` answers to, if all allow
    /// it now; else says until when it must wait.
    pub fn take(&self, account: &str, now_ms: u64) -> Result<(), u64> {
        let Some(holders) = self.holders.get(account) else {
            return Ok(());
        };
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        let until = next_free(holders, &ledgers, now_ms);
        if until > now_ms {
            return Err(until);
        }
        for holder in holders {
            if let Some(ledger) = ledgers.get_mut(holder) {
                ledger.starts.push_back(now_ms);
                ledger.trim(now_ms);
            }
        }
        Ok(())
    }

    /// Each holder's budgets as they stand at `now_ms`, by holder.
    pub fn uses(&self, now_ms: u64) -> Vec<(Holder, Vec<Use>)> {
        let ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        let mut uses: Vec<(Holder, Vec<Use>)> = ledgers
            .iter()
            .map(|(holder, ledger)| {
                let uses = ledger
                    .rates
                    .0
                    .iter()
                    .map(|rate| {
                        let used = ledger.used(rate, now_ms);
                        let oldest = ledger.starts.len() - used;
                        Use {
                            rate: *rate,
                            used: used as u64,
                            refills_ms: ledger
                                .starts
                                .get(oldest)
                                .filter(|_| used > 0)
                                .map(|t| t + rate.span_ms()),
                        }
                    })
                    .collect();
                (holder.clone(), uses)
            })
            .collect();
        uses.sort_by(|a, b| a.0.cmp(&b.0));
        uses
    }

    /// The earliest the budgets let `open` jobs (by account) all start:
    /// each holder's jobs one after another as fast as its rates allow.
    /// `None` when no budget holds any of them back.
    pub fn earliest_finish(&self, open: &[(String, u64)], now_ms: u64) -> Option<u64> {
        let mut per_holder: HashMap<&Holder, u64> = HashMap::new();
        for (account, jobs) in open {
            for holder in self.holders.get(account).into_iter().flatten() {
                *per_holder.entry(holder).or_default() += jobs;
            }
        }
        let ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        per_holder
            .into_iter()
            .filter_map(|(holder, jobs)| ledgers.get(holder).map(|l| l.finish_of(jobs, now_ms)))
            .max()
            .filter(|t| *t > now_ms)
    }
}

/// When the next start fits every budget of `holders`: `now_ms` when it
/// does now.
fn next_free(holders: &[Holder], ledgers: &HashMap<Holder, Ledger>, now_ms: u64) -> u64 {
    holders
        .iter()
        .filter_map(|h| ledgers.get(h))
        .map(|l| l.next_free(now_ms))
        .max()
        .unwrap_or(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, rate: &str, platform: Option<(&str, &str)>) -> AccountConfig {
        let mut account = AccountConfig::new(name, "https://one.example");
        account.rates = Rates(vec![Rate::parse(rate).unwrap()]);
        account.platform_rates =
            platform.map(|(host, r)| (host.to_owned(), Rates(vec![Rate::parse(r).unwrap()])));
        account
    }

    #[test]
    fn rates_read_as_count_over_duration() {
        assert_eq!(
            Rate::parse("300/5m"),
            Ok(Rate {
                count: 300,
                per: Duration::from_secs(300)
            })
        );
        assert_eq!(Rate::parse(" 20 / 10s ").unwrap().to_string(), "20/10s");
        let (no_slash, count, duration) = (
            "has no '/'",
            "the count must be a whole number from 1 to 1000000",
            "the duration must be from 1s to 7days",
        );
        for (bad, why) in [
            ("300", no_slash),
            ("0/5m", count),
            ("x/5m", count),
            ("-1/5m", count),
            ("9999999/1h", count),
            ("300/5", duration),
            ("300/0s", duration),
            ("300/30days", duration),
            ("1/\u{1b}[2J", duration),
        ] {
            let err = Rate::parse(bad).unwrap_err();
            assert!(
                err.contains(why) && err.contains("COUNT/DURATION"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn an_account_starts_no_more_than_its_rate_in_any_window() {
        let budgets = Budgets::of([&account("alice", "2/10s", None)]);
        assert_eq!(budgets.take("alice", 1_000), Ok(()));
        assert_eq!(budgets.take("alice", 2_000), Ok(()));
        // 10 s, and a margin of 1 s.
        assert_eq!(budgets.take("alice", 3_000), Err(12_000));
        assert_eq!(budgets.wait_until("alice", 3_000), Some(12_000));
        assert_eq!(budgets.take("alice", 12_000), Ok(()));
        assert_eq!(budgets.take("alice", 12_500), Err(13_000));
        // An account without a budget is never held back.
        assert_eq!(budgets.take("bob", 0), Ok(()));
        assert_eq!(budgets.wait_until("bob", 0), None);
    }

    #[test]
    fn a_request_held_past_half_the_margin_spends_again() {
        // 10 s has a margin of 1 s; 1 s of 100 ms; 1 h of 15 s.
        let budgets = Budgets::of([
            &account("alice", "2/10s", None),
            &account("bob", "5/1s", None),
            // The least margin of its own and its platform's budgets.
            &account("carol", "1000/1h", Some(("two.example", "2/10s"))),
        ]);
        assert_eq!(budgets.late_after_ms("alice"), Some(500));
        assert_eq!(budgets.late_after_ms("bob"), Some(50));
        assert_eq!(budgets.late_after_ms("carol"), Some(500));
        assert_eq!(budgets.late_after_ms("dave"), None);
        // A request taken at 0 s and held (a login, attachment memory)
        // until 9.9 s spends again as it goes, and with 0.2 s's start
        // still in the window it waits until 11 s: the platform never sees
        // 0.2 s, 9.9 s and the next start in one window.
        assert_eq!(budgets.take("alice", 0), Ok(()));
        assert_eq!(budgets.take("alice", 200), Ok(()));
        assert_eq!(budgets.take("alice", 9_900), Err(11_000));
        assert_eq!(budgets.take("alice", 11_000), Ok(()));
        assert_eq!(budgets.take("alice", 11_000), Err(11_200));
    }

    #[test]
    fn a_platform_budget_is_shared_by_its_accounts() {
        let budgets = Budgets::of([
            &account("alice", "100/1s", Some(("one.example", "3/1m"))),
            &account("bob", "100/1s", Some(("one.example", "3/1m"))),
        ]);
        assert_eq!(budgets.take("alice", 0), Ok(()));
        assert_eq!(budgets.take("bob", 0), Ok(()));
        assert_eq!(budgets.take("alice", 0), Ok(()));
        assert_eq!(budgets.take("bob", 0), Err(63_000));
    }

    #[test]
    fn what_the_store_says_was_spent_counts() {
        let budgets = Budgets::of([&account("alice", "2/10s", None)]);
        budgets.seed(&[("alice".into(), 5_000), ("alice".into(), 8_000)], 9_000);
        assert_eq!(budgets.take("alice", 9_000), Err(16_000));
        let uses = budgets.uses(9_000);
        assert_eq!(uses.len(), 1);
        assert_eq!(
            uses[0].1,
            [Use {
                rate: Rate::parse("2/10s").unwrap(),
                used: 2,
                refills_ms: Some(16_000)
            }]
        );
    }

    #[test]
    fn the_earliest_finish_follows_the_budget() {
        let budgets = Budgets::of([&account("alice", "20/10s", None)]);
        // 100 jobs at 20 per 10 s (and 1 s): the last starts 44 s on.
        assert_eq!(
            budgets.earliest_finish(&[("alice".into(), 100)], 0),
            Some(44_000)
        );
        assert_eq!(budgets.earliest_finish(&[("alice".into(), 20)], 0), None);
        assert_eq!(budgets.earliest_finish(&[("bob".into(), 1000)], 0), None);
    }
}
