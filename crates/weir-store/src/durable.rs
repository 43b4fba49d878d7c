//! Futures that resolve once data is durable.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;

use crate::StoreError;

/// Resolves once an append (or a flush) is durable under the log's policy.
///
/// Dropping it does not cancel the write: the data is written and fsync'd regardless; only the
/// notification is lost.
#[must_use = "an append is not confirmed until its Durable resolves"]
pub struct Durable {
    inner: BoxFuture<'static, Result<(), StoreError>>,
}

impl Durable {
    /// A `Durable` that is already resolved.
    pub fn ready(result: Result<(), StoreError>) -> Durable {
        Durable {
            inner: Box::pin(std::future::ready(result)),
        }
    }

    /// Wraps any future.
    pub fn from_future(
        future: impl Future<Output = Result<(), StoreError>> + Send + 'static,
    ) -> Durable {
        Durable {
            inner: Box::pin(future),
        }
    }

    /// Waits for every one of `all`, returning the first error.
    pub fn all(all: Vec<Durable>) -> Durable {
        Durable::from_future(async move {
            for d in all {
                d.await?;
            }
            Ok(())
        })
    }
}

impl fmt::Debug for Durable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Durable")
    }
}

impl Future for Durable {
    type Output = Result<(), StoreError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// Resolves once a log's durable end passes an offset ([`crate::Log::wait_durable`]).
pub type WaitDurable = Durable;
