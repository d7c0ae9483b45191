//! [`cluster_cpu`]: the CPU a PostgreSQL cluster has used so far, from
//! `/proc`, so the benchmark can say what the database costs per job.

use std::path::Path;
use std::time::Duration;

/// Clock ticks per second of the times in `/proc/PID/stat`
/// (`sysconf(_SC_CLK_TCK)`): 100 on every Linux this runs on, assumed.
const TICKS_PER_SECOND: u64 = 100;

/// The user and system CPU of the cluster whose data folder is `data`: the
/// postmaster's own and that of the children it has reaped (`cutime` and
/// `cstime`: backends that ended during a run), plus that of its children
/// alive now. `None` off Linux, or when the server is not running.
pub fn cluster_cpu(data: &Path) -> Option<Duration> {
    let pid: u32 = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    // A backend that ends while its siblings are read may be counted twice
    // or not at all: read again until the postmaster reaped none meanwhile.
    loop {
        let postmaster = stat(pid)?;
        let mut ticks = postmaster.own + postmaster.reaped;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(child) = stat(child).filter(|s| s.parent == pid) {
                ticks += child.own + child.reaped;
            }
        }
        if stat(pid)?.reaped == postmaster.reaped {
            return Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND));
        }
    }
}

/// What [`cluster_cpu`] reads of one process, in clock ticks.
struct Stat {
    parent: u32,
    /// utime + stime.
    own: u64,
    /// cutime + cstime: its children that ended and were waited for.
    reaped: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: fields are counted
    // after its closing parenthesis, from field 3 (the state).
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        parent: field(4)? as u32,
        own: field(14)? + field(15)?,
        reaped: field(16)? + field(17)?,
    })
}
