//! [`GroupCommit`]: the attempts' writes, many to a transaction.
//!
//! Every attempt writes twice: "in flight" before its plugin runs, and its
//! outcome after. Each write must be on disk before its caller goes on (the
//! write-ahead rule), and with `synchronous = FULL` a commit costs an fsync,
//! so one transaction per write caps a run at what the disk can sync.
//!
//! Here writes go to one writer thread, which commits everything queued so
//! far in one transaction and then answers each write's [`Durable`]: while
//! one commit syncs, the writes that arrive meanwhile gather for the next,
//! so a busy run pays one fsync for many attempts, and a waiting attempt
//! costs no thread. A write that fails is rolled back alone and reports its
//! own error: the group is then written again with a savepoint per write.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::attempts::{begin_attempt_in, finish_attempt_in};
use crate::write::{Reply, Write};
use crate::{AttemptId, Durable, Result, StoreError};

/// The writer thread's queue.
#[derive(Debug)]
pub(super) struct GroupCommit {
    /// `None` once the store is being dropped.
    queue: Option<mpsc::Sender<(Write, Reply)>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the writer thread for `conn`; it ends when the store is
    /// dropped.
    pub(super) fn start(conn: Arc<Mutex<Connection>>) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<(Write, Reply)>();
        let writer = std::thread::Builder::new()
            .name("orchestrator-store".into())
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let mut batch = vec![first];
                    batch.extend(receiver.try_iter());
                    let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                    let (writes, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    for (reply, result) in replies.into_iter().zip(commit(&mut conn, &writes)) {
                        reply.send(result);
                    }
                }
            })?;
        Ok(GroupCommit {
            queue: Some(sender),
            writer: Some(writer),
        })
    }

    /// Queues `write`, answered through `reply` once it is committed;
    /// returns the answer to wait for.
    pub(super) fn submit<T>(
        &self,
        write: Write,
        (reply, answer): (Reply, Durable<T>),
    ) -> Durable<T> {
        match self.queue.as_ref().map(|q| q.send((write, reply)).is_ok()) {
            Some(true) => answer,
            _ => Durable::ready(Err(StoreError::Commit("the store's writer stopped".into()))),
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has answered the rest;
        // waiting for it closes the connection before the store is gone, as
        // a store's owner expects (the file is whole, the WAL folded in).
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Commits `writes` in one transaction; every write gets its own result,
/// the attempt it wrote.
pub(super) fn commit(conn: &mut Connection, writes: &[Write]) -> Vec<Result<AttemptId>> {
    match commit_whole(conn, writes) {
        Ok(Some(written)) => written.into_iter().map(Ok).collect(),
        // A write failed, perhaps halfway: nothing was kept, so the group
        // is written again with each write under its own savepoint.
        Ok(None) => commit_each(conn, writes),
        // Nothing of the batch is on disk: every write failed.
        Err(e) => fail_all(writes.len(), &e),
    }
}

/// Every write of the group in one transaction, without savepoints (each
/// copies the pages it first touches into a statement journal, a cost
/// every write would pay for the rare one that fails); `None`, with
/// nothing kept, when a write fails.
fn commit_whole(
    conn: &mut Connection,
    writes: &[Write],
) -> rusqlite::Result<Option<Vec<AttemptId>>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut written = Vec::with_capacity(writes.len());
    for write in writes {
        match write_in(&tx, write) {
            Ok(attempt) => written.push(attempt),
            // Dropping the transaction rolls it back.
            Err(_) => return Ok(None),
        }
    }
    tx.commit()?;
    Ok(Some(written))
}

/// Every write under a savepoint of one transaction: a write that fails is
/// rolled back alone and reports its own error.
fn commit_each(conn: &mut Connection, writes: &[Write]) -> Vec<Result<AttemptId>> {
    let mut tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return fail_all(writes.len(), &e),
    };
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        let result: Result<AttemptId> = (|| {
            let sp = tx.savepoint()?;
            let written = write_in(&sp, write)?;
            sp.commit()?;
            Ok(written)
        })();
        // Some errors (a full disk, an I/O error) make SQLite roll back the
        // whole transaction: the writes before are gone, and a savepoint
        // now would open a transaction of its own, committing each later
        // write alone. Nothing of the group is on disk: every write failed.
        if let Err(e) = &result
            && tx.is_autocommit()
        {
            let error = e.to_string();
            return (0..writes.len())
                .map(|_| Err(StoreError::Commit(error.clone())))
                .collect();
        }
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => fail_all(writes.len(), &e),
    }
}

fn write_in(tx: &Connection, write: &Write) -> Result<AttemptId> {
    match write {
        Write::Begin { job, at } => begin_attempt_in(tx, job, *at),
        Write::Finish { attempt, outcome } => {
            finish_attempt_in(tx, *attempt, outcome)?;
            Ok(*attempt)
        }
    }
}

fn fail_all(count: usize, error: &rusqlite::Error) -> Vec<Result<AttemptId>> {
    (0..count)
        .map(|_| Err(StoreError::Commit(error.to_string())))
        .collect()
}
