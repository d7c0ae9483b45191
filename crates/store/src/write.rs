//! [`Write`]: one of the attempts' writes on its way to a store's writer,
//! and [`Reply`], where its answer goes.
//!
//! Both stores commit these writes in groups, on writers of their own, and
//! answer each once its group is durable.

use tokio::sync::oneshot;

use crate::{AttemptId, AttemptOutcome, Durable, Result, RunPass, StoredJob};

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

/// Where a queued write's answer goes, by the write's kind: a begin's
/// caller waits for the id of the attempt it recorded, a finish's only to
/// know the outcome is durable.
///
/// A writer answers every write with the attempt it wrote (the one a begin
/// recorded, the one a finish ended), so a begin cannot be answered without
/// its id.
#[derive(Debug)]
pub(crate) enum Reply {
    Begun(oneshot::Sender<Result<AttemptId>>),
    Finished(oneshot::Sender<Result<()>>),
}

impl Reply {
    /// A begin's reply, and the answer its caller waits for.
    pub(crate) fn begun() -> (Reply, Durable<AttemptId>) {
        let (reply, answer) = oneshot::channel();
        (Reply::Begun(reply), Durable::waiting(answer))
    }

    /// A finish's reply, and the answer its caller waits for.
    pub(crate) fn finished() -> (Reply, Durable<()>) {
        let (reply, answer) = oneshot::channel();
        (Reply::Finished(reply), Durable::waiting(answer))
    }

    /// Answers with what the write did: the attempt it wrote, or why not.
    pub(crate) fn send(self, written: Result<AttemptId>) {
        // A caller that gave up waiting does not mind.
        match self {
            Reply::Begun(reply) => {
                let _ = reply.send(written);
            }
            Reply::Finished(reply) => {
                let _ = reply.send(written.map(drop));
            }
        }
    }
}
