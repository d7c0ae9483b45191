//! `--take-over` (the original tool's `--force-kill-ports`): end the run
//! that holds this state file, safely, so that this one can start.
//!
//! [`acquire`] takes the state file's [`RunLock`]. When another run holds
//! it and `--take-over` was given, it asks that run to stop through the
//! store (as `--stop-all` does) and waits `--grace-period` for it to finish
//! its attempts in flight and let go. A run that does not is signalled —
//! SIGTERM, then SIGKILL after [`TERM_WAIT`] — but only the pid the lock
//! file names, and only after checking that this pid is an orchestrator
//! process holding this very lock file open. The signal goes through a
//! pidfd opened before the check, so a pid reused in the meantime is never
//! hit. Anything else is refused in one line, with nothing signalled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use orchestrator_store::{Acquired, RunLock, StoreError};

use crate::commands::batch::BatchArgs;
use crate::exit::{self, Exit};

/// How long a run that was sent SIGTERM has before SIGKILL.
const TERM_WAIT: Duration = Duration::from_secs(5);
/// How long the kernel may take to drop a killed run's lock.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How often the lock is tried while waiting.
const POLL: Duration = Duration::from_millis(100);
/// What the asked run may take beyond the grace period to notice the
/// request (it reads stop requests every second or so).
const NOTICE: Duration = Duration::from_secs(2);

fn refused(message: impl Into<String>) -> anyhow::Error {
    Exit::new(exit::USAGE, message).into()
}

fn lock_path(state_file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.lock", state_file.display()))
}

/// Takes the lock of the state file, taking it over from the run that
/// holds it when `args.take_over` says so.
pub async fn acquire(args: &BatchArgs) -> Result<(RunLock, Acquired)> {
    let state_file = &args.state_file;
    let pid = match RunLock::acquire(state_file) {
        Ok(taken) => return Ok(taken),
        Err(StoreError::Locked { pid, .. }) if args.take_over => pid,
        Err(e) => return Err(e.into()),
    };
    let name = state_file.display();
    let grace = Duration::from_secs(args.grace_period);
    let holder = pid
        .map(|p| format!("the run (pid {p})"))
        .unwrap_or_else(|| "the run".into());
    eprintln!(
        "Asking {holder} on {name} to stop; waiting up to {} for its attempts in flight",
        crate::output::seconds(grace.as_secs_f64())
    );
    args.open_store()?.request_stop()?;
    if let Some(taken) = wait_for_lock(state_file, grace + NOTICE).await? {
        return Ok(taken);
    }

    // It did not stop when asked: it hangs. Only now does the pid matter.
    let pid = match pid {
        Some(pid) => pid,
        // The holder writes its pid as soon as it has the lock; a lock
        // held this long without one is not a run of ours.
        None => {
            return Err(refused(format!(
                "{name} is locked by a process that names no pid in {}; nothing was signalled — stop it yourself",
                lock_path(state_file).display()
            )));
        }
    };
    let process = Process::open(pid, &lock_path(state_file)).map_err(refused)?;
    eprintln!("The run (pid {pid}) did not stop; sending it SIGTERM");
    process.signal(Signal::Term).map_err(refused)?;
    if let Some(taken) = wait_for_lock(state_file, TERM_WAIT).await? {
        return Ok(taken);
    }
    eprintln!(
        "The run (pid {pid}) is still running after {}; sending it SIGKILL",
        crate::output::seconds(TERM_WAIT.as_secs_f64())
    );
    process.signal(Signal::Kill).map_err(refused)?;
    match wait_for_lock(state_file, KILL_WAIT).await? {
        Some(taken) => Ok(taken),
        None => Err(refused(format!(
            "{name} is still locked after SIGKILL to pid {pid}; see `ls -l /proc/{pid}/fd`"
        ))),
    }
}

/// Tries the lock until `within` has passed; `None` if it stayed held.
async fn wait_for_lock(state_file: &Path, within: Duration) -> Result<Option<(RunLock, Acquired)>> {
    let deadline = Instant::now() + within;
    loop {
        match RunLock::acquire(state_file) {
            Ok(taken) => return Ok(Some(taken)),
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(POLL).await;
            }
            Err(StoreError::Locked { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

/// A process that was checked to be an orchestrator run holding the lock.
#[cfg(target_os = "linux")]
struct Process {
    pid: u32,
    /// Signals go here, never to the number: the pidfd stays this process
    /// even if the pid is reused.
    pidfd: std::os::fd::OwnedFd,
}

#[cfg(target_os = "linux")]
impl Process {
    /// Opens `pid` and checks that it is an orchestrator process with
    /// `lock` open; a message saying why not otherwise.
    fn open(pid: u32, lock: &Path) -> Result<Process, String> {
        use rustix::process::{Pid, PidfdFlags, pidfd_open};
        let not_ours = |why: &str| {
            format!(
                "pid {pid}, named in {}, {why}; nothing was signalled — stop the run holding it yourself",
                lock.display()
            )
        };
        let raw = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| not_ours("is not a valid pid"))?;
        let pidfd = pidfd_open(raw, PidfdFlags::empty())
            .map_err(|e| not_ours(&format!("cannot be opened ({e})")))?;
        // Checked after the pidfd is open: if the pid was reused before
        // this point, the check sees the new process and refuses.
        if !is_orchestrator(pid) {
            return Err(not_ours("is not an orchestrator process"));
        }
        if !holds_open(pid, lock) {
            return Err(not_ours("does not hold this state file's lock"));
        }
        Ok(Process { pid, pidfd })
    }

    fn signal(&self, signal: Signal) -> Result<(), String> {
        use rustix::process::{Signal as Sig, pidfd_send_signal};
        let sig = match signal {
            Signal::Term => Sig::TERM,
            Signal::Kill => Sig::KILL,
        };
        match pidfd_send_signal(&self.pidfd, sig) {
            // It ended on its own meanwhile: the lock is free.
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(format!("cannot signal pid {}: {e}", self.pid)),
        }
    }
}

/// Whether `pid` runs an orchestrator binary: the same executable as this
/// one, or one named like it (another build or version).
#[cfg(target_os = "linux")]
fn is_orchestrator(pid: u32) -> bool {
    let Ok(theirs) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    // A binary replaced while running reads "… (deleted)".
    let name = |p: &Path| {
        p.file_name().map(|n| {
            n.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_owned()
        })
    };
    let mine = std::env::current_exe().ok();
    mine.as_deref().is_some_and(|m| m == theirs)
        || name(&theirs).is_some_and(|n| {
            n.starts_with("orchestrator") || mine.as_deref().and_then(name) == Some(n)
        })
}

/// Whether `pid` has `file` open (the same file, by device and inode).
#[cfg(target_os = "linux")]
fn holds_open(pid: u32, file: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(wanted) = std::fs::metadata(file) else {
        return false;
    };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::metadata(fd.path())
            .is_ok_and(|m| m.dev() == wanted.dev() && m.ino() == wanted.ino())
    })
}

/// Elsewhere nothing is signalled: the checks need Linux's /proc, so no
/// process can be opened (the type has no values).
#[cfg(not(target_os = "linux"))]
enum Process {}

#[cfg(not(target_os = "linux"))]
impl Process {
    fn open(pid: u32, _lock: &Path) -> Result<Process, String> {
        Err(format!(
            "the run (pid {pid}) did not stop when asked, and --take-over signals a run only on Linux; stop it yourself"
        ))
    }

    fn signal(&self, _signal: Signal) -> Result<(), String> {
        match *self {}
    }
}
