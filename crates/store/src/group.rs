//! [`GroupCommit`]: the attempts' writes, many to a transaction.
//!
//! Every attempt writes twice: "in flight" before its plugin runs, and its
//! outcome after. Each write must be on disk before its caller goes on (the
//! write-ahead rule), and with `synchronous = FULL` a commit costs an fsync,
//! so one transaction per write caps a run at what the disk can sync.
//!
//! Here a caller queues its write and then takes the connection. Whoever
//! holds the connection commits everything queued so far in one transaction
//! and hands each caller its own result; callers whose write was committed
//! by someone else just pick their result up. A write still returns only
//! once it is durable, but while one commit syncs, the writes that arrive
//! meanwhile gather for the next, so a busy run pays one fsync for many
//! attempts. Each write runs under a savepoint: a write that fails is rolled
//! back alone and reports its own error.

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::Connection;

use crate::sqlite::{begin_attempt_in, finish_attempt_in};
use crate::{AttemptId, AttemptOutcome, Result, StoreError, StoredJob};

/// One write of the attempts' hot path.
#[derive(Debug)]
pub(crate) enum Write {
    Begin {
        job: StoredJob,
        pass: u32,
    },
    Finish {
        attempt: AttemptId,
        outcome: AttemptOutcome,
    },
}

/// What a write returns.
#[derive(Debug)]
pub(crate) enum Written {
    Begun(AttemptId),
    Finished,
}

#[derive(Debug, Default)]
struct Queue {
    next_ticket: u64,
    waiting: Vec<(u64, Write)>,
    done: HashMap<u64, Result<Written>>,
}

/// Writes waiting for a commit, and the results of committed ones.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
}

impl GroupCommit {
    /// Queues `write`, and returns once it is committed (by this caller or
    /// another).
    pub(crate) fn submit(&self, conn: &Mutex<Connection>, write: Write) -> Result<Written> {
        let ticket = {
            let mut queue = self.lock();
            queue.next_ticket += 1;
            let ticket = queue.next_ticket;
            queue.waiting.push((ticket, write));
            ticket
        };
        let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
        // Whoever held the connection before took every write queued by
        // then, so this one is either done or still waiting.
        let batch = {
            let mut queue = self.lock();
            if let Some(result) = queue.done.remove(&ticket) {
                return result;
            }
            std::mem::take(&mut queue.waiting)
        };
        let results = commit(&mut conn, batch);
        let mut queue = self.lock();
        queue.done.extend(results);
        queue
            .done
            .remove(&ticket)
            .expect("a write taken from the queue has a result")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Commits `batch` in one transaction; every write gets its own result.
fn commit(conn: &mut Connection, batch: Vec<(u64, Write)>) -> Vec<(u64, Result<Written>)> {
    let mut tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return fail_all(batch, &e),
    };
    let mut results = Vec::with_capacity(batch.len());
    for (ticket, write) in &batch {
        let result = (|| {
            let sp = tx.savepoint()?;
            let written = match write {
                Write::Begin { job, pass } => Written::Begun(begin_attempt_in(&sp, job, *pass)?),
                Write::Finish { attempt, outcome } => {
                    finish_attempt_in(&sp, *attempt, outcome)?;
                    Written::Finished
                }
            };
            sp.commit()?;
            Ok(written)
        })();
        results.push((*ticket, result));
    }
    match tx.commit() {
        Ok(()) => results,
        // Nothing of the batch is on disk: every write failed.
        Err(e) => fail_all(batch, &e),
    }
}

fn fail_all(batch: Vec<(u64, Write)>, error: &rusqlite::Error) -> Vec<(u64, Result<Written>)> {
    batch
        .into_iter()
        .map(|(ticket, _)| (ticket, Err(StoreError::Commit(error.to_string()))))
        .collect()
}
