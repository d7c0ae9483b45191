//! Writing results to stdout: plain tables and JSON, and a closed pipe
//! (`orchestrator plugins list | head -1`) is not an error.

use std::io::Write;

/// Writes `text` to stdout; a broken pipe counts as success.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Prints `value` as pretty JSON followed by a newline.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    print(&text)
}

/// A duration in seconds as every line of the CLI writes one: whole seconds
/// as configured (`10s`, `1m 30s`), a fraction to a tenth below a minute
/// (`2.5s`).
pub fn seconds(s: f64) -> String {
    let tenths = (s.max(0.0) * 10.0).round() as u64;
    if tenths.is_multiple_of(10) || tenths >= 600 {
        let whole = std::time::Duration::from_secs((tenths + 5) / 10);
        humantime::format_duration(whole).to_string()
    } else {
        format!("{}.{}s", tenths / 10, tenths % 10)
    }
}

pub use orchestrator_contract::text::count;

/// Text from outside (a jobs file, a plugin, a platform) as a terminal may
/// show it: escaped, one line.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    orchestrator_contract::text::printable(text)
}

/// A plain-text table with left-aligned columns separated by two spaces.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    /// Adds a row. Its cells are shown escaped
    /// ([`orchestrator_contract::text::printable`]): most come from jobs
    /// files, plugins or platforms, and a table cell may not break its line
    /// or drive the terminal.
    pub fn row(&mut self, row: Vec<String>) {
        self.rows.push(
            row.into_iter()
                .map(|cell| shown(&cell).into_owned())
                .collect(),
        );
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                out.push_str(cell);
                if i != last {
                    // Padded by hand: a width past u16::MAX (a plugin's
                    // megabyte-long name) is out of `format!`'s range.
                    let pad = w.saturating_sub(cell.chars().count()) + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn durations_read_as_they_were_given() {
        use super::seconds;
        assert_eq!(seconds(10.0), "10s");
        assert_eq!(seconds(9.998), "10s");
        assert_eq!(seconds(2.5), "2.5s");
        assert_eq!(seconds(0.0), "0s");
        assert_eq!(seconds(90.0), "1m 30s");
        assert_eq!(seconds(3600.0), "1h");
        assert_eq!(seconds(0.04), "0s");
        assert_eq!(super::count(1, "job"), "1 job");
        assert_eq!(super::count(3, "job"), "3 jobs");
    }

    #[test]
    fn a_cell_of_a_megabyte_is_laid_out_too() {
        let mut t = Table::new(vec!["NAME", "KIND"]);
        t.row(vec!["x".repeat(1 << 20), "poster".into()]);
        t.row(vec!["y".into(), "classifier".into()]);
        let text = t.render();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with(&format!("y{}classifier\n", " ".repeat((1 << 20) + 1))));
    }

    #[test]
    fn columns_line_up_and_the_last_is_not_padded() {
        let mut t = Table::new(vec!["NAME", "KIND"]);
        t.row(vec!["mastodon-poster".into(), "poster".into()]);
        t.row(vec!["x".into(), "classifier".into()]);
        assert_eq!(
            t.render(),
            "NAME             KIND\nmastodon-poster  poster\nx                classifier\n"
        );
    }
}
