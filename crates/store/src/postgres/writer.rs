//! [`writer`]: the attempts' writes, committed in groups.
//!
//! Every attempt writes twice, and each write must be durable before its
//! caller goes on: one transaction per write would cap a run at one WAL
//! flush per write, and cost the database a statement and a commit each. A
//! writer commits what is queued in one statement and answers each write
//! once it is durable; while one group commits, the next gathers, so the
//! groups grow with the load.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::attempts::{Begin, Finish, write_group};
use super::outage::{Failure, Step, retrying};
use super::{Inner, PostgresStore};
use crate::write::{Reply, Write};
use crate::{AttemptId, Durable, Result, StoreError};

/// Writers committing the attempts' writes side by side. One: a group
/// costs the database a statement and a WAL flush whatever its size, and
/// a second writer splits what one would gather into smaller groups. (One
/// process, 10,000 jobs, database CPU per job: 1 writer 174-183 µs, 2
/// writers 181-237, 4 writers 278-292, 8 writers 401; and no more jobs a
/// second.)
pub(super) const WRITERS: usize = 1;

/// The most writes one group commits.
const GROUP_MAX: usize = 256;

/// What each writer's connection is told as it is made: that a row it
/// looks up is in memory (a random page costs little more than a
/// sequential one, as on an SSD, or cached). A group's statement looks its
/// rows up by key, and each connection plans it once, maybe while the
/// attempts table is still small: priced as on a spinning disk, a scan of
/// a small table wins that plan, and keeps it while the table grows.
pub(super) const CONNECTION_SETUP: &str = "SET random_page_cost = 1.1";

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

/// Commits `writes` in one statement (two or more only when a job or an
/// attempt is written twice): one round trip and one WAL flush for many
/// attempts. Each write is answered with the attempt it wrote; one that
/// finds its job taken over or cancelled answers so without failing the
/// others.
pub(super) async fn commit_writes(
    inner: Arc<Inner>,
    writes: Arc<Vec<Write>>,
) -> Step<Vec<Result<AttemptId>>> {
    let client = inner.writers_pool.get().await?;
    let mut begins: Vec<Begin<'_>> = Vec::new();
    let mut finishes: Vec<Finish<'_>> = Vec::new();
    for write in writes.iter() {
        match write {
            Write::Begin { job, at } => begins.push((job, *at)),
            Write::Finish { attempt, outcome } => finishes.push((*attempt, outcome)),
        }
    }
    let mut begun = write_group(&client, inner.lease, &begins, &finishes)
        .await?
        .into_iter();
    Ok(writes
        .iter()
        .map(|write| match write {
            Write::Begin { .. } => begun.next().expect("one answer per begin"),
            Write::Finish { attempt, .. } => Ok(*attempt),
        })
        .collect())
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
