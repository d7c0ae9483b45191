//! [`writer`]: the attempts' writes, committed in groups by a few writers
//! side by side.
//!
//! Every attempt writes twice, and each write must be durable before its
//! caller goes on: one transaction per write would cap a run at one WAL
//! flush per write. A writer commits what is queued in one transaction and
//! answers each write once it is durable; while one group commits, the next
//! gathers, and the other writers commit theirs.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::attempts::{begin_attempt_in, finish_attempt_in};
use super::outage::{Failure, Step, retrying};
use super::{Inner, PostgresStore};
use crate::write::{Reply, Write};
use crate::{AttemptId, Durable, Result, StoreError};

/// Writers committing the attempts' writes side by side: while one waits
/// for its WAL flush, the others fill the next groups.
pub(super) const WRITERS: usize = 4;

/// The most writes one transaction commits.
const GROUP_MAX: usize = 256;

impl PostgresStore {
    /// Queues `write` with one of the writers, answered through `reply`
    /// once its group is committed; returns the answer to wait for.
    pub(super) fn submit<T>(
        &self,
        write: Write,
        (reply, answer): (Reply, Durable<T>),
    ) -> Durable<T> {
        let writer = self.next_writer.fetch_add(1, Ordering::Relaxed) % self.writers.len();
        if self.writers[writer].send((write, reply)).is_err() {
            return Durable::ready(Err(StoreError::Commit("the store's writer stopped".into())));
        }
        answer
    }
}

/// Commits `writes` in one transaction: one WAL flush for many attempts.
/// Each write is answered with the attempt it wrote; one that finds its job
/// taken over or cancelled answers so without failing the others.
async fn commit_writes(inner: Arc<Inner>, writes: Arc<Vec<Write>>) -> Step<Vec<Result<AttemptId>>> {
    let mut client = inner.pool.get().await?;
    let tx = client.transaction().await?;
    let mut results = Vec::with_capacity(writes.len());
    for write in writes.iter() {
        let written = match write {
            Write::Begin { job, at } => begin_attempt_in(&tx, inner.lease, job, *at).await,
            Write::Finish { attempt, outcome } => finish_attempt_in(&tx, *attempt, outcome)
                .await
                .map(|()| *attempt),
        };
        match written {
            Ok(written) => results.push(Ok(written)),
            Err(Failure::Store(
                skipped @ (StoreError::LeaseLost(_) | StoreError::NotEligible { .. }),
            )) => results.push(Err(skipped)),
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// A writer: commits what is queued in groups, and answers each write once
/// its group is durable. While one group commits, the next gathers.
pub(super) async fn writer(inner: Arc<Inner>, mut queue: mpsc::UnboundedReceiver<(Write, Reply)>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (writes, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let writes = Arc::new(writes);
        let results = match retrying(&inner, &|inner| commit_writes(inner, writes.clone())).await {
            Ok(results) => results,
            // One write is bad: commit each alone, so only it fails.
            Err(Failure::Store(_)) if writes.len() > 1 => {
                let mut results = Vec::with_capacity(writes.len());
                for write in writes.iter() {
                    let one = Arc::new(vec![write.clone()]);
                    results.push(
                        match retrying(&inner, &|inner| commit_writes(inner, one.clone())).await {
                            Ok(mut written) => written.pop().expect("one result per write"),
                            Err(e) => Err(e.into_store_error()),
                        },
                    );
                }
                results
            }
            Err(e) => {
                let e = e.into_store_error().to_string();
                writes
                    .iter()
                    .map(|_| Err(StoreError::Postgres(e.clone())))
                    .collect()
            }
        };
        for (reply, result) in replies.into_iter().zip(results) {
            reply.send(result);
        }
    }
}
