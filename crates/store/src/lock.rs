//! [`RunLock`]: one run per state file.
//!
//! The lock is an OS file lock on `<state file>.lock`, so the kernel drops
//! it when its process dies, however it dies; the file holds the pid of the
//! run that has it, for the refusal message and the takeover log line.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Result, StoreError};

/// Held for as long as a run works on a state file.
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

/// What acquiring the lock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// Nobody had it.
    Free,
    /// A run that no longer exists had it (it was killed): its pid.
    TakenOver(u32),
}

impl RunLock {
    /// Takes the lock of `state_file`, or says which process holds it.
    pub fn acquire(state_file: &Path) -> Result<(RunLock, Acquired)> {
        let path = lock_path(state_file);
        let io = |e: std::io::Error| StoreError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        let previous: Option<u32> = previous.trim().parse().ok();
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: state_file.display().to_string(),
                    pid: previous,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        let acquired = match previous {
            Some(pid) if pid != std::process::id() => Acquired::TakenOver(pid),
            _ => Acquired::Free,
        };
        Ok((RunLock { file }, acquired))
    }
}

/// Whether a run holds the lock of `state_file`, without taking it (a
/// look lasting a shared lock's moment): `Some` with the pid it wrote,
/// when it said one.
pub fn holder(state_file: &Path) -> Result<Option<Option<u32>>> {
    let path = lock_path(state_file);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        // No lock file: no run has worked here since it was made.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StoreError::Open {
                path: path.display().to_string(),
                reason: e.to_string(),
            });
        }
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Ok(Some(pid.trim().parse().ok()))
        }
        Err(TryLockError::Error(e)) => Err(StoreError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Where the lock of `state_file` is.
fn lock_path(state_file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.lock", state_file.display()))
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // A clean end leaves no pid behind, so the next run does not report
        // a takeover; the lock itself goes with the file handle.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_a_dead_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.sqlite");
        let (first, acquired) = RunLock::acquire(&state).unwrap();
        assert_eq!(acquired, Acquired::Free);
        let err = RunLock::acquire(&state).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        // A holder that died without cleaning up leaves its pid.
        std::fs::write(dir.path().join("state.sqlite.lock"), "4194303").unwrap();
        // A process another test spawns at the moment `first` is dropped
        // holds a copy of its descriptor, and so the lock, until it execs.
        let started = std::time::Instant::now();
        let (_lock, acquired) = loop {
            match RunLock::acquire(&state) {
                Err(StoreError::Locked { .. }) if started.elapsed().as_secs() < 5 => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(acquired, Acquired::TakenOver(4194303));
    }

    #[test]
    fn a_look_at_the_lock_names_its_holder_and_takes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.sqlite");
        // No lock file: no run.
        assert_eq!(holder(&state).unwrap(), None);
        let (lock, _) = RunLock::acquire(&state).unwrap();
        assert_eq!(holder(&state).unwrap(), Some(Some(std::process::id())));
        drop(lock);
        // Free once its holder lets go (allowing, as above, for a spawned
        // child's copy of the descriptor).
        let started = std::time::Instant::now();
        while holder(&state).unwrap().is_some() {
            assert!(started.elapsed().as_secs() < 5, "the lock stayed held");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Looking left it free: a run takes it.
        let (_lock, acquired) = RunLock::acquire(&state).unwrap();
        assert_eq!(acquired, Acquired::Free);
    }
}
