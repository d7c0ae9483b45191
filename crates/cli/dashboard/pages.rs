//! The dashboard's pages, rendered on the server with `maud` (which
//! escapes every value: a job id, an account name or a platform's message
//! can never become markup). Each page reads only what it shows: the
//! store's aggregates (`status`), a page of accounts or jobs, one job.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use orchestrator_contract::time::now_ms;
use orchestrator_store::{JobState, StatusReport};

use super::{Dashboard, Failure, PageQuery, chart};
use crate::commands::status::time;

/// Accounts or jobs on one page.
const PAGE: u64 = 50;
/// The chart: the last hour, by the minute.
const BUCKET_MS: u64 = 60_000;
const BUCKETS: u64 = 60;
/// The rate is taken over the last five minutes.
const RATE_WINDOW_MS: u64 = 5 * 60_000;

fn layout(d: &Dashboard, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · orchestrator" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header {
                    h1 { "orchestrator" }
                    nav {
                        a href="/" { "Batch" }
                        a href="/accounts" { "Accounts" }
                        a href="/jobs" { "Jobs" }
                        a href="/metrics" { "Metrics" }
                    }
                    span.store { (d.store_name) }
                }
                main { (body) }
            }
        }
    }
}

/// A page that only says something (an error, a missing job).
pub(super) fn message_page(message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "orchestrator" } link rel="stylesheet" href="/assets/app.css"; }
            body { main { section { p { (message) } p { a href="/" { "Back to the batch" } } } } }
        }
    }
}

fn flash(done: Option<&str>) -> Markup {
    html! {
        @if let Some(done) = done {
            div.flash role="status" { (done) }
        }
    }
}

/// A hidden field that proves a form came from this server's page.
fn csrf(d: &Dashboard) -> Markup {
    html! { input type="hidden" name="csrf" value=(d.csrf); }
}

/// `text` as one path segment of a URL.
pub(super) fn url_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn count(report: &StatusReport, state: JobState) -> u64 {
    report
        .by_state
        .iter()
        .find(|(s, _)| s == state.as_str())
        .map_or(0, |(_, n)| *n)
}

/// What the live numbers are: the store's counts, the rate over the last
/// minutes, what is left and when it will be done at that rate.
#[derive(serde::Serialize)]
pub(super) struct Overview {
    updated_ms: u64,
    jobs: u64,
    pending: u64,
    retry: u64,
    running: u64,
    succeeded: u64,
    failed: u64,
    cancelled: u64,
    needs_review: u64,
    /// Attempts per minute over the last five.
    rate_per_minute: u64,
    /// Jobs still to do, and how long they take at that rate.
    left: u64,
    eta: String,
    paused: usize,
    run: Option<u32>,
    pass: Option<String>,
}

fn overview_of(report: &StatusReport, recent: u64, paused: usize) -> Overview {
    let left = count(report, JobState::Pending)
        + count(report, JobState::Retry)
        + count(report, JobState::Running);
    let rate_per_minute = recent * 60_000 / RATE_WINDOW_MS;
    let eta = match (left, rate_per_minute) {
        (0, _) => "done".into(),
        (_, 0) => "-".into(),
        (left, rate) => {
            let secs = left * 60 / rate;
            humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
        }
    };
    Overview {
        updated_ms: now_ms(),
        jobs: report.jobs,
        pending: count(report, JobState::Pending),
        retry: count(report, JobState::Retry),
        running: count(report, JobState::Running),
        succeeded: count(report, JobState::Succeeded),
        failed: count(report, JobState::Failed),
        cancelled: count(report, JobState::Cancelled),
        needs_review: count(report, JobState::NeedsReview),
        rate_per_minute,
        left,
        eta,
        paused,
        run: report.last_run.as_ref().map(|r| r.run),
        pass: report
            .last_run
            .as_ref()
            .map(|r| format!("{}/{}", r.passes, r.max_passes)),
    }
}

/// Everything the batch page shows, read in one go.
struct Batch {
    report: StatusReport,
    chart: Vec<orchestrator_store::Throughput>,
    now: u64,
}

fn read_batch(
    s: &dyn orchestrator_store::Store,
    max_wait_ms: u64,
) -> orchestrator_store::Result<Batch> {
    let now = now_ms();
    let mut report = s.status()?;
    report.pauses = s.pauses(now, max_wait_ms)?;
    let since = (now - now % BUCKET_MS).saturating_sub((BUCKETS - 1) * BUCKET_MS);
    let chart = s.throughput(since, BUCKET_MS)?;
    Ok(Batch { report, chart, now })
}

fn recent_attempts(batch: &Batch) -> u64 {
    let since = batch.now.saturating_sub(RATE_WINDOW_MS);
    batch
        .chart
        .iter()
        .filter(|b| b.start_ms + BUCKET_MS > since)
        .map(|b| b.succeeded + b.failed)
        .sum()
}

pub(super) async fn overview_json(State(d): State<Arc<Dashboard>>) -> Result<Response, Failure> {
    let max_wait = d.max_wait_ms;
    let batch = d.store(move |s| read_batch(s, max_wait)).await?;
    let overview = overview_of(
        &batch.report,
        recent_attempts(&batch),
        batch.report.pauses.len(),
    );
    Ok(axum::Json(overview).into_response())
}

pub(super) async fn overview(
    State(d): State<Arc<Dashboard>>,
    Query(q): Query<PageQuery>,
) -> Result<Markup, Failure> {
    let max_wait = d.max_wait_ms;
    let batch = d.store(move |s| read_batch(s, max_wait)).await?;
    let r = &batch.report;
    let o = overview_of(r, recent_attempts(&batch), r.pauses.len());
    let tiles = [
        ("jobs", "jobs", o.jobs, ""),
        ("pending", "pending", o.pending, ""),
        ("retry", "to retry", o.retry, "retry"),
        ("running", "in flight", o.running, ""),
        ("succeeded", "succeeded", o.succeeded, "succeeded"),
        ("failed", "failed", o.failed, "failed"),
        (
            "needs_review",
            "held for review",
            o.needs_review,
            "needs-review",
        ),
        ("cancelled", "cancelled", o.cancelled, ""),
    ];
    let mut plugins: Vec<&orchestrator_store::PluginUse> = Vec::new();
    for p in r.processes.iter().flat_map(|p| &p.plugins) {
        if !plugins
            .iter()
            .any(|q| q.sha256 == p.sha256 && q.name == p.name)
        {
            plugins.push(p);
        }
    }
    let body = html! {
        (flash(q.done.as_deref()))
        section {
            h2 { "Batch" }
            div.tiles {
                @for (key, label, value, class) in tiles {
                    div.tile { div class={"v " (class)} data-live=(key) { (value) } div.k { (label) } }
                }
                div.tile { div.v data-live="rate_per_minute" { (o.rate_per_minute) } div.k { "attempts per minute" } }
                div.tile { div.v data-live="eta" { (o.eta) } div.k { "left at this rate" } }
                div.tile { div.v data-live="paused" { (o.paused) } div.k { "waits going on" } }
            }
            p {
                form.inline method="post" action="/actions/stop" {
                    (csrf(&d))
                    button.danger type="submit" { "Stop all" }
                }
                " "
                @if r.held_total > 0 {
                    form.inline method="post" action="/actions/release-held" {
                        (csrf(&d))
                        button type="submit" { "Release " (r.held_total) " held for review" }
                    }
                }
            }
        }
        section {
            h2 { "Attempts per minute, the last hour" }
            (chart::throughput(&batch.chart, batch.now - batch.now % BUCKET_MS + BUCKET_MS, BUCKET_MS, BUCKETS))
        }
        section {
            h2 { "Runs" }
            table {
                tr { th { "run" } th { "state" } th.n { "passes" } th.n { "attempts" } th { "started" } th { "ended" } }
                @for run in r.runs.iter().rev() {
                    tr {
                        td { "#" (run.run) } td { (run.state) }
                        td.n { (run.passes) "/" (run.max_passes) } td.n { (run.attempts) }
                        td { (time(run.started_ms)) } td { (run.ended_ms.map(time).unwrap_or_default()) }
                    }
                }
            }
            @if !r.passes.is_empty() {
                h2 { "Passes of run " (r.passes[0].run) }
                table {
                    tr { th { "pass" } th.n { "attempts" } th.n { "succeeded" } th { "failed" } th.n { "in flight" } th { "result" } }
                    @for p in &r.passes {
                        tr {
                            td { (p.pass) } td.n { (p.attempts) } td.n { (p.succeeded) }
                            td { @for (c, n) in &p.failed_by_category { (c) " " (n) " " } }
                            td.n { (p.in_flight) } td { (p.result.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Waits going on" }
            @if r.pauses.is_empty() { p.muted { "No account or platform is waiting." } }
            @else {
                table {
                    tr { th { "account" } th { "who waits" } th { "until" } th { "why" } }
                    @for p in &r.pauses {
                        tr {
                            td { a href={"/jobs?account=" (url_segment(&p.account))} { (p.account) } }
                            td { (p.scope.as_str()) } td { (time(p.until_ms)) }
                            td { (p.reason.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Failed, by reason (" (r.failures_total) ")" }
            @if r.failure_reasons.is_empty() { p.muted { "No job has failed." } }
            @else {
                table {
                    tr { th.n { "jobs" } th { "category" } th { "reason" } th { "e.g." } }
                    @for f in &r.failure_reasons {
                        tr {
                            td.n { (f.jobs) } td { (f.category.clone().unwrap_or_default()) }
                            td { (f.reason.clone().unwrap_or_default()) }
                            td { a href={"/jobs/" (url_segment(&f.example))} { (f.example) } }
                        }
                    }
                }
                p { a href="/jobs?state=failed" { "Every failed job" } }
            }
        }
        section {
            h2 { "Plugins in use" }
            @if plugins.is_empty() { p.muted { "No run has recorded its plugins yet." } }
            @else {
                table {
                    tr { th { "name" } th { "version" } th { "kind" } th { "backend" } th { "sha256" } }
                    @for p in &plugins {
                        tr { td { (p.name) } td { (p.version) } td { (p.kind) } td { (p.backend) } td.muted { (p.sha256.get(..16).unwrap_or(&p.sha256)) "…" } }
                    }
                }
            }
            h2 { "Processes" }
            table {
                tr { th { "process" } th.n { "pid" } th { "host" } th { "state" } th { "started" } }
                @for p in &r.processes {
                    tr {
                        td { "#" (p.id) } td.n { (p.pid) } td { (p.host.clone().unwrap_or_default()) }
                        td { (p.state) @if p.stop_requested { " (asked to stop)" } }
                        td { (time(p.started_ms)) }
                    }
                }
            }
        }
    };
    Ok(layout(&d, "Batch", body))
}

fn pager(base: &str, page: u64, total: u64) -> Markup {
    let pages = total.div_ceil(PAGE).max(1);
    let sep = if base.contains('?') { '&' } else { '?' };
    html! {
        p.pager {
            @if page > 0 { a href={(base) (sep) "page=" (page - 1)} { "← previous" } }
            span.muted { "page " (page + 1) " of " (pages) " (" (total) ")" }
            " "
            @if page + 1 < pages { a href={(base) (sep) "page=" (page + 1)} { "next →" } }
        }
    }
}

pub(super) async fn accounts(
    State(d): State<Arc<Dashboard>>,
    Query(q): Query<PageQuery>,
) -> Result<Markup, Failure> {
    let page = q.page.unwrap_or(0).min(u64::MAX / PAGE);
    let max_wait = d.max_wait_ms;
    let (rows, total, pauses) = d
        .store(move |s| {
            let (rows, total) = s.accounts_page(page * PAGE, PAGE)?;
            Ok((rows, total, s.pauses(now_ms(), max_wait)?))
        })
        .await?;
    let states = JobState::ALL;
    let body = html! {
        section {
            h2 { "Accounts" }
            table {
                tr {
                    th { "account" } th.n { "jobs" }
                    @for s in states { th.n { (s.as_str()) } }
                    th { "waits" }
                }
                @for a in &rows {
                    tr {
                        td { a href={"/jobs?account=" (url_segment(&a.account))} { (a.account) } }
                        td.n { (a.jobs) }
                        @for s in states { td class={"n " (s.as_str())} { (a.in_state(s)) } }
                        td {
                            @for p in pauses.iter().filter(|p| p.account == a.account) {
                                div {
                                    (p.scope.as_str()) " until " (time(p.until_ms))
                                    @if let Some(why) = &p.reason { ": " (why) }
                                }
                            }
                        }
                    }
                }
            }
            (pager("/accounts", page, total))
        }
    };
    Ok(layout(&d, "Accounts", body))
}

pub(super) async fn jobs(
    State(d): State<Arc<Dashboard>>,
    Query(q): Query<PageQuery>,
) -> Result<Markup, Failure> {
    let page = q.page.unwrap_or(0).min(u64::MAX / PAGE);
    let filter = q.filter();
    let f = filter.clone();
    let (jobs, total) = d.store(move |s| s.jobs_page(&f, page * PAGE, PAGE)).await?;
    let mut base = String::from("/jobs");
    let query = serde_urlencoded::to_string(
        [
            ("state", filter.state.map(|s| s.as_str().to_owned())),
            ("account", filter.account.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    if !query.is_empty() {
        base = format!("/jobs?{query}");
    }
    let body = html! {
        section {
            h2 { "Jobs" }
            form method="get" action="/jobs" {
                "state "
                select name="state" {
                    option value="" { "any" }
                    @for s in JobState::ALL {
                        option value=(s.as_str()) selected[filter.state == Some(s)] { (s.as_str()) }
                    }
                }
                " account "
                input name="account" value=(filter.account.clone().unwrap_or_default());
                " "
                button type="submit" { "Show" }
            }
            table {
                tr { th { "job" } th { "account" } th { "state" } th { "category" } th.n { "attempts" } th { "posted as" } }
                @for j in &jobs {
                    tr {
                        td { a href={"/jobs/" (url_segment(&j.id))} { (j.id) } }
                        td { (j.account) }
                        td class=(j.state.as_str()) { (j.state.as_str()) }
                        td { (j.category.clone().unwrap_or_default()) }
                        td.n { (j.attempts) }
                        td { (j.remote_id.clone().unwrap_or_default()) }
                    }
                }
            }
            (pager(&base, page, total))
        }
    };
    Ok(layout(&d, "Jobs", body))
}

pub(super) async fn job(
    State(d): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Markup, Failure> {
    let wanted = id.clone();
    let found = d
        .store(move |s| {
            Ok(match s.job(&wanted)? {
                Some(job) => {
                    let attempts = s.attempts(&job.id)?;
                    Some((job, attempts))
                }
                None => None,
            })
        })
        .await?;
    let Some((job, attempts)) = found else {
        return Err(Failure::NotFound(format!(
            "no job {id:?} in {}",
            d.store_name
        )));
    };
    let segment = url_segment(&job.id);
    let body = html! {
        (flash(q.done.as_deref()))
        section {
            h2 { "Job " (job.id) }
            pre { (crate::commands::explain::render(&job, &attempts)) }
            form.inline method="post" action={"/jobs/" (segment) "/retry"} {
                (csrf(&d)) button type="submit" { "Retry" }
            }
            " "
            form.inline method="post" action={"/jobs/" (segment) "/cancel"} {
                (csrf(&d)) button.danger type="submit" { "Cancel" }
            }
        }
    };
    Ok(layout(&d, &format!("Job {}", job.id), body))
}
