//! [`Durable`]: the answer to a write on its way to disk.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::{Result, StoreError};

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
    Waiting(oneshot::Receiver<Result<T>>),
}

impl<T> Durable<T> {
    /// An answer already known.
    pub fn ready(result: Result<T>) -> Self {
        Durable {
            state: DurableState::Ready(Some(result)),
        }
    }

    /// An answer that `answer` will bring.
    pub(crate) fn waiting(answer: oneshot::Receiver<Result<T>>) -> Self {
        Durable {
            state: DurableState::Waiting(answer),
        }
    }

    /// Blocks this thread until the answer arrives. Not for async code.
    pub fn wait(self) -> Result<T> {
        match self.state {
            DurableState::Ready(result) => result.expect("an answer is taken once"),
            DurableState::Waiting(answer) => match answer.blocking_recv() {
                Ok(result) => result,
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
            DurableState::Waiting(answer) => match Pin::new(answer).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(result)) => Poll::Ready(result),
                Poll::Ready(Err(_)) => {
                    Poll::Ready(Err(StoreError::Commit("the store's writer stopped".into())))
                }
            },
        }
    }
}
