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
//! costs no thread. Each write runs under a savepoint: a write that fails is
//! rolled back alone and reports its own error.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::sqlite::{begin_attempt_in, finish_attempt_in};
use crate::{AttemptId, AttemptOutcome, Result, RunPass, StoreError, StoredJob};

/// One write of the attempts' hot path.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    Begin {
        job: StoredJob,
        at: RunPass,
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

type Reply = oneshot::Sender<Result<Written>>;

/// The writer thread's queue.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    /// `None` once the store is being dropped.
    queue: Option<mpsc::Sender<(Write, Reply)>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the writer thread for `conn`; it ends when the store is
    /// dropped.
    pub(crate) fn start(conn: Arc<Mutex<Connection>>) -> std::io::Result<Self> {
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
                        // A caller that gave up waiting does not mind.
                        let _ = reply.send(result);
                    }
                }
            })?;
        Ok(GroupCommit {
            queue: Some(sender),
            writer: Some(writer),
        })
    }

    /// Queues `write`; the answer (turned into a `T` by `map`) comes once
    /// it is committed.
    pub(crate) fn submit<T>(&self, write: Write, map: fn(Written) -> T) -> Durable<T> {
        let (reply, answer) = oneshot::channel();
        match self.queue.as_ref().map(|q| q.send((write, reply)).is_ok()) {
            Some(true) => Durable::waiting(answer, map),
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

/// Commits `writes` in one transaction; every write gets its own result.
pub(crate) fn commit(conn: &mut Connection, writes: &[Write]) -> Vec<Result<Written>> {
    let mut tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return fail_all(writes.len(), &e),
    };
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        let result = (|| {
            let sp = tx.savepoint()?;
            let written = match write {
                Write::Begin { job, at } => Written::Begun(begin_attempt_in(&sp, job, *at)?),
                Write::Finish { attempt, outcome } => {
                    finish_attempt_in(&sp, *attempt, outcome)?;
                    Written::Finished
                }
            };
            sp.commit()?;
            Ok(written)
        })();
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        // Nothing of the batch is on disk: every write failed.
        Err(e) => fail_all(writes.len(), &e),
    }
}

fn fail_all(count: usize, error: &rusqlite::Error) -> Vec<Result<Written>> {
    (0..count)
        .map(|_| Err(StoreError::Commit(error.to_string())))
        .collect()
}

/// A write on its way to disk: await it (or [`Durable::wait`] outside async
/// code) for its result, which arrives once the write is durable.
#[derive(Debug)]
#[must_use = "a write is only known to be durable once its answer arrived"]
pub struct Durable<T> {
    state: DurableState<T>,
}

#[derive(Debug)]
enum DurableState<T> {
    Ready(Option<Result<T>>),
    Waiting(oneshot::Receiver<Result<Written>>, fn(Written) -> T),
}

impl<T> Durable<T> {
    /// An answer already known.
    pub fn ready(result: Result<T>) -> Self {
        Durable {
            state: DurableState::Ready(Some(result)),
        }
    }

    /// An answer that `answer` will bring, turned into a `T` by `map`.
    pub(crate) fn waiting(
        answer: oneshot::Receiver<Result<Written>>,
        map: fn(Written) -> T,
    ) -> Self {
        Durable {
            state: DurableState::Waiting(answer, map),
        }
    }

    /// Blocks this thread until the answer arrives. Not for async code.
    pub fn wait(self) -> Result<T> {
        match self.state {
            DurableState::Ready(result) => result.expect("an answer is taken once"),
            DurableState::Waiting(answer, map) => match answer.blocking_recv() {
                Ok(result) => result.map(map),
                Err(_) => Err(StoreError::Commit("the store's writer stopped".into())),
            },
        }
    }
}

impl<T: Unpin> Future for Durable<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        match &mut self.state {
            DurableState::Ready(result) => {
                Poll::Ready(result.take().expect("a ready answer is taken once"))
            }
            DurableState::Waiting(answer, map) => {
                let map = *map;
                match Pin::new(answer).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Ok(result)) => Poll::Ready(result.map(map)),
                    Poll::Ready(Err(_)) => {
                        Poll::Ready(Err(StoreError::Commit("the store's writer stopped".into())))
                    }
                }
            }
        }
    }
}
