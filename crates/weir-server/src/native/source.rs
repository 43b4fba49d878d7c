//! What queues and topic subscriptions share on the native protocol, as `http/consume.rs` does
//! over HTTP: a consume [`Target`] (a queue, or a subscription that behaves exactly like one)
//! for receive / ack / nack / extend / subscribe, and a publish [`Dest`] (a queue or a topic).
//! The handlers and the subscription task call these and never match on the kind themselves.

use tokio::sync::watch;
use weir_broker::{Broker, BrokerError, Delivery, NewMessage, PublishOutcome, ReceiptOutcome};
use weir_proto::frame::Target;

/// The broker calls of a consume target.
pub(super) trait Source {
    /// Leases up to `max` messages.
    fn receive(
        &self,
        broker: &Broker,
        max: usize,
        lease_ms: Option<u64>,
    ) -> Result<Vec<Delivery>, BrokerError>;
    /// Acknowledges receipts.
    fn ack(&self, broker: &Broker, receipts: &[String]) -> Result<ReceiptOutcome, BrokerError>;
    /// Gives receipts back, after `delay_ms` or the backoff.
    fn nack(
        &self,
        broker: &Broker,
        receipts: &[String],
        delay_ms: Option<u64>,
    ) -> Result<ReceiptOutcome, BrokerError>;
    /// Extends leases to `lease_ms` from now.
    fn extend(
        &self,
        broker: &Broker,
        receipts: &[String],
        lease_ms: u64,
    ) -> Result<ReceiptOutcome, BrokerError>;
    /// A channel that changes when messages may have become receivable; closed on deletion.
    fn watch(&self, broker: &Broker) -> Result<watch::Receiver<u64>, BrokerError>;
    /// When the next delayed message or lease end is due, in ms since the epoch.
    fn next_due_ms(&self, broker: &Broker) -> Result<Option<u64>, BrokerError>;
}

impl Source for Target {
    fn receive(
        &self,
        broker: &Broker,
        max: usize,
        lease_ms: Option<u64>,
    ) -> Result<Vec<Delivery>, BrokerError> {
        match self {
            Target::Queue(q) => broker.receive(q, max, lease_ms),
            Target::Subscription {
                topic,
                subscription,
            } => broker.receive_subscription(topic, subscription, max, lease_ms),
        }
    }

    fn ack(&self, broker: &Broker, receipts: &[String]) -> Result<ReceiptOutcome, BrokerError> {
        match self {
            Target::Queue(q) => broker.ack(q, receipts),
            Target::Subscription {
                topic,
                subscription,
            } => broker.ack_subscription(topic, subscription, receipts),
        }
    }

    fn nack(
        &self,
        broker: &Broker,
        receipts: &[String],
        delay_ms: Option<u64>,
    ) -> Result<ReceiptOutcome, BrokerError> {
        match self {
            Target::Queue(q) => broker.nack(q, receipts, delay_ms),
            Target::Subscription {
                topic,
                subscription,
            } => broker.nack_subscription(topic, subscription, receipts, delay_ms),
        }
    }

    fn extend(
        &self,
        broker: &Broker,
        receipts: &[String],
        lease_ms: u64,
    ) -> Result<ReceiptOutcome, BrokerError> {
        match self {
            Target::Queue(q) => broker.extend(q, receipts, lease_ms),
            Target::Subscription {
                topic,
                subscription,
            } => broker.extend_subscription(topic, subscription, receipts, lease_ms),
        }
    }

    fn watch(&self, broker: &Broker) -> Result<watch::Receiver<u64>, BrokerError> {
        match self {
            Target::Queue(q) => broker.watch_queue(q),
            Target::Subscription {
                topic,
                subscription,
            } => broker.watch_subscription(topic, subscription),
        }
    }

    fn next_due_ms(&self, broker: &Broker) -> Result<Option<u64>, BrokerError> {
        match self {
            Target::Queue(q) => broker.next_due_ms(q),
            Target::Subscription {
                topic,
                subscription,
            } => broker.subscription_next_due_ms(topic, subscription),
        }
    }
}

/// Where a publish goes: a queue, or a topic (stored once, every subscription gets it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Dest {
    /// `Publish`.
    Queue(String),
    /// `PublishTopic`.
    Topic(String),
}

impl Dest {
    /// Publishes a batch, all or nothing; await `durable` before confirming.
    pub(super) fn publish(
        &self,
        broker: &Broker,
        messages: Vec<NewMessage>,
    ) -> Result<PublishOutcome, BrokerError> {
        match self {
            Dest::Queue(q) => broker.publish(q, messages),
            Dest::Topic(t) => broker.publish_topic(t, messages),
        }
    }
}
