//! The traits a measured system implements.
//!
//! Client rules, the same for every system: each message is its own publish; a producer keeps at
//! most `window` unconfirmed publishes in flight (the driver enforces it by holding the
//! [`Confirm`] futures); each delivered message is acked on its own. A target that deviates (for
//! example PostgreSQL batching statements on the client side) says so in [`Target::notes`].

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::any::Any;
use std::time::Duration;

use crate::workload::{Kind, Workload};

/// Resolves when the broker has confirmed one publish (after fsync for a durable target).
pub type Confirm = BoxFuture<'static, anyhow::Result<()>>;

/// What a consumer needs to ack one delivery.
#[derive(Debug)]
pub enum AckToken {
    /// A number (AMQP delivery tag, row id).
    Tag(u64),
    /// A string (Weir receipt, Redis stream entry id).
    Text(String),
    /// Anything else the target needs (downcast by the target itself).
    Other(Box<dyn Any + Send>),
}

/// One delivered message.
#[derive(Debug)]
pub struct Delivery {
    /// The body as published.
    pub body: Bytes,
    /// How to ack it.
    pub token: AckToken,
}

/// A publishing connection.
#[async_trait]
pub trait Producer: Send {
    /// Sends one message; the returned future resolves when the broker confirms it.
    /// Returning does not wait for the confirm: that is what lets the driver keep a window.
    async fn publish(&mut self, body: Bytes) -> anyhow::Result<Confirm>;

    /// Called once after the last confirm; closes the connection.
    async fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A consuming connection (one subscription).
#[async_trait]
pub trait Consumer: Send {
    /// Waits up to `wait` for deliveries; an empty vector means none arrived in time.
    async fn recv(&mut self, wait: Duration) -> anyhow::Result<Vec<Delivery>>;

    /// Acks one delivery. May return before the broker has applied it (pipelined), but must
    /// keep the number of outstanding acks bounded.
    async fn ack(&mut self, token: AckToken) -> anyhow::Result<()>;

    /// Waits for outstanding acks and closes the connection.
    async fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Append-then-read stream operations (workload W5).
#[async_trait]
pub trait StreamTarget: Send {
    /// Appends one batch of records; the returned future resolves when the batch is confirmed.
    async fn append(&mut self, records: Vec<Bytes>) -> anyhow::Result<Confirm>;

    /// Reads every record from the start until `expected` have been read; returns the count.
    async fn read_all(&mut self, expected: u64) -> anyhow::Result<u64>;
}

/// A system under test.
#[async_trait]
pub trait Target: Send + Sync {
    /// Short label for tables, e.g. `weir (native)`, `redis (appendfsync always)`.
    fn label(&self) -> String;

    /// What "confirmed" means for this target and any deviation from the client rules.
    fn notes(&self) -> String;

    /// Server processes whose RSS is sampled during a run (empty: not sampled).
    fn server_pids(&self) -> Vec<u32>;

    /// Whether this target can run a workload of this kind (`false` is reported as "n/a").
    fn supports(&self, kind: &Kind) -> bool;

    /// Creates (or empties) everything the workload needs under `name`.
    async fn prepare(&self, name: &str, workload: &Workload) -> anyhow::Result<()>;

    /// Opens a producer for `name`.
    async fn producer(&self, name: &str, workload: &Workload) -> anyhow::Result<Box<dyn Producer>>;

    /// Opens a consumer on subscription `sub` (0 for a queue) of `name`.
    async fn consumer(
        &self,
        name: &str,
        sub: usize,
        workload: &Workload,
    ) -> anyhow::Result<Box<dyn Consumer>>;

    /// Opens a stream writer/reader for `name` (stream workloads).
    async fn stream(&self, name: &str) -> anyhow::Result<Box<dyn StreamTarget>> {
        anyhow::bail!(
            "{}: streams are not supported (stream {name})",
            self.label()
        )
    }

    /// Removes what [`Target::prepare`] created.
    async fn cleanup(&self, _name: &str, _workload: &Workload) -> anyhow::Result<()> {
        Ok(())
    }
}
