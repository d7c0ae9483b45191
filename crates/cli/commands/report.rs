//! `orchestrator report --format csv|json`: every attempt, for spreadsheets
//! and scripts.

use anyhow::Result;
use clap::{Args, ValueEnum};
use orchestrator_store::ReportRow;

use crate::commands::batch::{BatchArgs, open_existing};
use crate::commands::status::time;
use crate::exit;
use crate::output::{print, print_json};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
}

/// The CSV columns, one row per attempt: `run` is the run the attempt
/// belonged to (its `pass` is that run's), `process` the process that made
/// it, `classifiers` every classifier asked and its answer (`name: answer`,
/// separated by `; `), and `started_at`/`ended_at` the times of
/// `started_ms`/`ended_ms` in RFC 3339 (UTC).
const COLUMNS: [&str; 24] = [
    "job",
    "account",
    "pass",
    "attempt",
    "started_ms",
    "ended_ms",
    "outcome",
    "remote_id",
    "http_status",
    "error_code",
    "failure",
    "fault_kind",
    "fault",
    "category",
    "decided_by",
    "reason",
    "retry_after_ms",
    "retry_scope",
    "decision",
    "run",
    "process",
    "classifiers",
    "started_at",
    "ended_at",
];

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn csv_row(r: &ReportRow) -> Vec<String> {
    let a = &r.attempt;
    let failure = a.failure.as_ref();
    vec![
        r.job.clone(),
        r.account.clone(),
        a.pass.to_string(),
        a.number.to_string(),
        a.started_ms.to_string(),
        opt(&a.ended_ms),
        a.outcome.clone(),
        opt(&a.remote_id),
        opt(&failure.and_then(|f| f.http_status)),
        opt(&failure.and_then(|f| f.error_code.clone())),
        opt(&failure.map(|f| f.message.clone())),
        opt(&a.fault.as_ref().map(|f| f.kind())),
        opt(&a.fault.as_ref().map(|f| f.to_string())),
        opt(&a.category),
        opt(&a.decided_by),
        opt(&a.reason),
        opt(&a.retry_after_ms),
        opt(&a.retry_scope),
        opt(&a.decision),
        opt(&a.run),
        opt(&a.process),
        a.consulted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        time(a.started_ms),
        opt(&a.ended_ms.map(time)),
    ]
}

/// RFC 4180 quoting: a field with a comma, quote or line break is quoted.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

impl ReportArgs {
    pub fn run(self, batch: &BatchArgs) -> Result<u8> {
        let store = open_existing(&batch.state_file)?;
        let rows = store.report()?;
        match self.format {
            Format::Json => {
                // The rows as stored, with their times in RFC 3339 beside the
                // milliseconds.
                let rows: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|row| {
                        let mut value = serde_json::to_value(row).unwrap_or_default();
                        if let Some(fields) = value.as_object_mut() {
                            let a = &row.attempt;
                            fields.insert("started_at".into(), time(a.started_ms).into());
                            fields.insert("ended_at".into(), a.ended_ms.map(time).into());
                        }
                        value
                    })
                    .collect();
                print_json(&rows)?
            }
            Format::Csv => {
                let mut out = COLUMNS.join(",");
                out.push('\n');
                for row in &rows {
                    let fields: Vec<String> = csv_row(row).iter().map(|f| csv_field(f)).collect();
                    out.push_str(&fields.join(","));
                    out.push('\n');
                }
                print(&out)?;
            }
        }
        Ok(exit::SUCCESS)
    }
}
