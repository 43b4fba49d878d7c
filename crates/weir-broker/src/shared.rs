//! A [`Durable`] that several parties can wait on: the caller awaits it, and the queue polls it
//! (without blocking) to learn when its journal or a dead-letter hand-over is durable.

use std::fmt;

use futures::future::{BoxFuture, FutureExt, Shared};
use weir_store::{Durable, StoreError};

/// A cloneable durability future.
#[derive(Clone)]
pub(crate) struct SharedDurable(Shared<BoxFuture<'static, Result<(), StoreError>>>);

impl SharedDurable {
    pub(crate) fn new(durable: Durable) -> SharedDurable {
        SharedDurable(durable.boxed().shared())
    }

    /// A [`Durable`] for a caller to await.
    pub(crate) fn durable(&self) -> Durable {
        Durable::from_future(self.0.clone())
    }

    /// The outcome if already known (polls once, never blocks).
    pub(crate) fn poll_now(&self) -> Option<Result<(), StoreError>> {
        self.0.clone().now_or_never()
    }
}

impl fmt::Debug for SharedDurable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedDurable")
    }
}
