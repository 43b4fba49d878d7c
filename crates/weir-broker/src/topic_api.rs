//! The public topic API of [`Broker`]: topics, subscriptions, publish, and receive / ack / nack /
//! extend on a subscription. A subscription behaves exactly like a queue (leases, retries, DLQ,
//! delay, back pressure); its dead-letter queue is `<topic>.<sub>.dlq` unless its config names
//! another, and it is created with the subscription.

use std::sync::Arc;

use tokio::sync::watch;
use weir_store::{Durable, StoreName};

use crate::broker::wait;
use crate::core::QueueCore;
use crate::meta::{MetaChange, SubMeta};
use crate::queue::Queue;
use crate::recovery::recover_from;
use crate::rng::Rng;
use crate::topic::{SubscriptionStart, Topic, TopicConfig, TopicStats};
use crate::{
    validate, Broker, BrokerError, Delivery, NewMessage, PublishOutcome, QueueConfig, QueueStats,
    ReceiptOutcome, TickReport,
};

fn topic_base(topic: &str) -> Result<StoreName, BrokerError> {
    Ok(StoreName::parse("topics")?.join(topic)?)
}

fn sub_base(topic: &str, sub: &str) -> Result<StoreName, BrokerError> {
    Ok(topic_base(topic)?.join("subs")?.join(sub)?)
}

/// The name a subscription's queue goes by (in dead letters' `x-weir-original-queue`, events and
/// the default dead-letter queue `<topic>.<sub>.dlq`).
fn sub_queue_name(topic: &str, sub: &str) -> String {
    format!("{topic}.{sub}")
}

fn topic_not_found(name: &str) -> BrokerError {
    BrokerError::NotFound {
        kind: "topic",
        name: name.to_string(),
    }
}

impl Broker {
    /// Opens every topic and subscription the meta journal knows; removes storage of deleted ones.
    pub(crate) fn open_topics(&self) -> Result<(), BrokerError> {
        let known = self.meta.lock().topics.clone();
        for leftover in self.store.list(&StoreName::parse("topics")?)? {
            if !known.contains_key(&leftover) {
                tracing::info!(topic = %leftover, "removing storage of a deleted topic");
                self.store.remove(&topic_base(&leftover)?)?;
            }
        }
        let now = self.clock.now_ms();
        for (name, t) in known {
            let topic = self.open_topic(&name, t.config.clone())?;
            for leftover in self.store.list(&topic_base(&name)?.join("subs")?)? {
                if !t.subs.contains_key(&leftover) {
                    self.store.remove(&sub_base(&name, &leftover)?)?;
                }
            }
            for (sub, m) in &t.subs {
                let q = self.open_sub(&topic, sub, m, now)?;
                topic.subs.write().insert(sub.clone(), Arc::new(q));
            }
            self.topics.write().insert(name, Arc::new(topic));
        }
        Ok(())
    }

    fn open_topic(&self, name: &str, config: TopicConfig) -> Result<Topic, BrokerError> {
        let log = self
            .store
            .open_log(&topic_base(name)?.join("messages")?, &self.options.log)?;
        let rng = Rng::new(self.rng.lock().next_u64());
        Ok(Topic::open(
            name.to_string(),
            config,
            log,
            rng,
            self.clock.now_ms(),
        )?)
    }

    fn open_sub(
        &self,
        topic: &Topic,
        sub: &str,
        m: &SubMeta,
        now_ms: u64,
    ) -> Result<Queue, BrokerError> {
        let journal = self.store.open_journal(
            &sub_base(&topic.name, sub)?.join("state")?,
            self.options.log.fsync,
        )?;
        let rng = Rng::new(self.rng.lock().next_u64());
        let mut core = QueueCore::new(m.config.clone(), false, rng);
        recover_from(
            &mut core,
            &*topic.log,
            &*journal,
            now_ms,
            m.start_offset,
            false,
        )?;
        Ok(Queue::new(
            sub_queue_name(&topic.name, sub),
            core,
            topic.log.clone(),
            journal,
            self.events.clone(),
        ))
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        BrokerError::check_name(name)?;
        self.topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| topic_not_found(name))
    }

    fn subscription(&self, topic: &str, sub: &str) -> Result<Arc<Queue>, BrokerError> {
        BrokerError::check_name(sub)?;
        self.topic(topic)?
            .sub(sub)
            .ok_or_else(|| BrokerError::NotFound {
                kind: "subscription",
                name: format!("{topic}/{sub}"),
            })
    }

    /// Ticks every topic (subscriptions, shared-log reclamation) and moves dead letters.
    pub(crate) fn tick_topics(&self, now_ms: u64, report: &mut TickReport) {
        let topics: Vec<Arc<Topic>> = self.topics.read().values().cloned().collect();
        for t in topics {
            for sub in t.tick(now_ms, &self.options, report) {
                report.dead_lettered += self.dead_letter(&sub, now_ms);
            }
        }
    }

    /// Creates a topic or updates its configuration; returns its stats and whether it was
    /// created. Durable before it returns.
    pub fn create_topic(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<(TopicStats, bool), BrokerError> {
        BrokerError::check_name(name)?;
        config.validate()?;
        let mut meta = self.meta.lock();
        let created = !meta.topics.contains_key(name);
        if created {
            // Nothing of a topic unknown to the meta journal is worth keeping.
            self.store.remove(&topic_base(name)?)?;
        }
        wait(meta.change(vec![MetaChange::PutTopic(name.to_string(), config.clone())])?)?;
        if created {
            let topic = self.open_topic(name, config)?;
            self.topics
                .write()
                .insert(name.to_string(), Arc::new(topic));
        } else {
            self.topic(name)?.state.lock().config = config;
        }
        drop(meta);
        Ok((self.topic_stats(name)?, created))
    }

    /// Deletes a topic, its subscriptions and their storage (dead-letter queues stay).
    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        BrokerError::check_name(name)?;
        let mut meta = self.meta.lock();
        if !meta.topics.contains_key(name) {
            return Err(topic_not_found(name));
        }
        wait(meta.change(vec![MetaChange::DeleteTopic(name.to_string())])?)?;
        let t = self.topics.write().remove(name);
        if let Some(t) = t {
            t.mark_deleted(); // a tick holding its own handle leaves the files alone
        }
        self.store.remove(&topic_base(name)?)?;
        Ok(())
    }

    /// A topic's stats, with every subscription's backlog.
    pub fn topic_stats(&self, name: &str) -> Result<TopicStats, BrokerError> {
        Ok(self.topic(name)?.stats(self.clock.now_ms()))
    }

    /// Every topic's stats, by name.
    pub fn list_topics(&self) -> Vec<TopicStats> {
        let topics: Vec<Arc<Topic>> = self.topics.read().values().cloned().collect();
        let now = self.clock.now_ms();
        let mut out: Vec<TopicStats> = topics.iter().map(|t| t.stats(now)).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Creates a subscription (and its dead-letter queue) or updates its configuration (`start`
    /// matters only on creation). Returns its stats and whether it was created. Durable before
    /// it returns.
    pub fn create_subscription(
        &self,
        topic: &str,
        sub: &str,
        config: QueueConfig,
        start: SubscriptionStart,
    ) -> Result<(QueueStats, bool), BrokerError> {
        BrokerError::check_name(sub)?;
        config.validate()?;
        let qname = sub_queue_name(topic, sub);
        let dlq = config.dead_letter_name(&qname);
        BrokerError::check_name(&dlq).map_err(|_| {
            BrokerError::InvalidArgument(format!(
                "the default dead-letter queue name {dlq:?} is not a valid name; \
                 set dead_letter_queue"
            ))
        })?;
        let t = self.topic(topic)?;
        let now = self.clock.now_ms();
        let mut meta = self.meta.lock();
        let existing = meta
            .topics
            .get(topic)
            .and_then(|m| m.subs.get(sub))
            .cloned();
        let created = existing.is_none();
        match existing {
            Some(m) => {
                let m = SubMeta { config, ..m };
                wait(meta.change(vec![MetaChange::PutSub(
                    topic.to_string(),
                    sub.to_string(),
                    m.clone(),
                )])?)?;
                if let Some(q) = t.sub(sub) {
                    q.set_config(m.config, false, now);
                }
            }
            None => {
                // Holding the publish lock: no append can slip between the start offset and
                // the subscription joining the topic.
                let st = t.state.lock();
                let start_offset = match start {
                    SubscriptionStart::Now => t.log.stats().next_offset,
                    SubscriptionStart::Oldest => {
                        // Everything appended must be durable to be scanned into the index.
                        wait(t.log.flush())?;
                        t.log.stats().start_offset.max(st.applied_low_water)
                    }
                };
                self.store.remove(&sub_base(topic, sub)?)?;
                let m = SubMeta {
                    config,
                    start_offset,
                };
                wait(meta.change(vec![MetaChange::PutSub(
                    topic.to_string(),
                    sub.to_string(),
                    m.clone(),
                )])?)?;
                let q = self.open_sub(&t, sub, &m, now)?;
                t.subs.write().insert(sub.to_string(), Arc::new(q));
                drop(st);
            }
        }
        drop(meta);
        self.ensure_dlq(&dlq)?;
        Ok((self.subscription_stats(topic, sub)?, created))
    }

    /// Deletes a subscription and its state (the topic's messages stay for the others).
    pub fn delete_subscription(&self, topic: &str, sub: &str) -> Result<(), BrokerError> {
        let t = self.topic(topic)?;
        self.subscription(topic, sub)?;
        let mut meta = self.meta.lock();
        wait(meta.change(vec![MetaChange::DeleteSub(
            topic.to_string(),
            sub.to_string(),
        )])?)?;
        let q = t.subs.write().remove(sub);
        if let Some(q) = q {
            q.mark_deleted(); // a tick holding its own handle leaves the files alone
        }
        self.store.remove(&sub_base(topic, sub)?)?;
        Ok(())
    }

    /// One subscription's stats (`name` is the subscription's name; `total` is its backlog).
    pub fn subscription_stats(&self, topic: &str, sub: &str) -> Result<QueueStats, BrokerError> {
        let q = self.subscription(topic, sub)?;
        Ok(QueueStats {
            name: sub.to_string(),
            ..q.stats(self.clock.now_ms())
        })
    }

    /// Publishes a batch to a topic, all or nothing: stored once, indexed by every subscription.
    /// Refused (busy) when any subscription is full. Await `durable` before confirming.
    pub fn publish_topic(
        &self,
        topic: &str,
        messages: Vec<NewMessage>,
    ) -> Result<PublishOutcome, BrokerError> {
        let t = self.topic(topic)?;
        validate::messages(&messages, self.options.max_body_bytes)?;
        if messages.is_empty() {
            return Ok(PublishOutcome {
                messages: Vec::new(),
                durable: Durable::ready(Ok(())),
            });
        }
        t.publish(self.clock.now_ms(), messages)
    }

    /// [`Broker::receive`] on a subscription.
    pub fn receive_subscription(
        &self,
        topic: &str,
        sub: &str,
        max: usize,
        lease_ms: Option<u64>,
    ) -> Result<Vec<Delivery>, BrokerError> {
        self.receive_on(&self.subscription(topic, sub)?, max, lease_ms)
    }

    /// [`Broker::ack`] on a subscription.
    pub fn ack_subscription(
        &self,
        topic: &str,
        sub: &str,
        receipts: &[String],
    ) -> Result<ReceiptOutcome, BrokerError> {
        self.ack_on(&self.subscription(topic, sub)?, receipts)
    }

    /// [`Broker::nack`] on a subscription.
    pub fn nack_subscription(
        &self,
        topic: &str,
        sub: &str,
        receipts: &[String],
        delay_ms: Option<u64>,
    ) -> Result<ReceiptOutcome, BrokerError> {
        self.nack_on(&self.subscription(topic, sub)?, receipts, delay_ms)
    }

    /// [`Broker::extend`] on a subscription.
    pub fn extend_subscription(
        &self,
        topic: &str,
        sub: &str,
        receipts: &[String],
        lease_ms: u64,
    ) -> Result<ReceiptOutcome, BrokerError> {
        self.extend_on(&self.subscription(topic, sub)?, receipts, lease_ms)
    }

    /// [`Broker::watch_queue`] for a subscription.
    pub fn watch_subscription(
        &self,
        topic: &str,
        sub: &str,
    ) -> Result<watch::Receiver<u64>, BrokerError> {
        Ok(self.subscription(topic, sub)?.subscribe())
    }

    /// [`Broker::next_due_ms`] for a subscription.
    pub fn subscription_next_due_ms(
        &self,
        topic: &str,
        sub: &str,
    ) -> Result<Option<u64>, BrokerError> {
        Ok(self.subscription(topic, sub)?.next_due_ms())
    }
}
