//! [`Broker`]: the queue map, the meta journal, dead-letter hand-over between queues, and the
//! public entry points (validation first, then one queue's lock).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use weir_store::{Durable, Store, StoreError, StoreName};

use crate::core::QueueCore;
use crate::envelope::{self, Envelope};
use crate::events::EventSink;
use crate::meta::{Meta, QueueMeta};
use crate::queue::Queue;
use crate::recovery::recover;
use crate::rng::Rng;
use crate::shared::SharedDurable;
use crate::stream::Stream;
use crate::topic::Topic;
use crate::{
    validate, BrokerError, BrokerEvent, BrokerOptions, Clock, NewMessage, PublishOutcome,
    QueueConfig, QueueStats, ReceiptOutcome, TickReport,
};

/// Header added to a dead letter: why it died ("max_attempts" or "lease_expired").
pub const DEAD_REASON_HEADER: &str = "x-weir-dead-reason";
/// Header added to a dead letter: the queue it came from.
pub const ORIGINAL_QUEUE_HEADER: &str = "x-weir-original-queue";

/// Distinguishes broker instances opened in one process (receipt salts differ even with a fixed
/// seed and a stopped clock).
static OPENED: AtomicU64 = AtomicU64::new(0);

/// The broker: every queue, over one [`Store`]. `Send + Sync`; share it as `Arc<Broker>`.
#[derive(Debug)]
pub struct Broker {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) options: BrokerOptions,
    /// The meta journal; its lock also serialises create / delete (of queues, topics,
    /// subscriptions and streams).
    pub(crate) meta: Mutex<Meta>,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    /// Queues whose storage failed verification at open: known to the meta journal, never
    /// served (every call names the damage), deletable. See [`Broker::quarantined`].
    quarantined: RwLock<HashMap<String, StoreError>>,
    pub(crate) topics: RwLock<HashMap<String, Arc<Topic>>>,
    pub(crate) streams: RwLock<HashMap<String, Arc<Stream>>>,
    pub(crate) events: EventSink,
    pub(crate) rng: Mutex<Rng>,
}

pub(crate) fn wait(durable: Durable) -> Result<(), BrokerError> {
    // Admin paths only (create, delete, purge): blocking on durability is accepted there.
    Ok(futures::executor::block_on(durable)?)
}

fn queue_base(name: &str) -> Result<StoreName, BrokerError> {
    Ok(StoreName::parse("queues")?.join(name)?)
}

impl Broker {
    /// Opens the broker over `store`, recovering every queue.
    pub fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        options: BrokerOptions,
    ) -> Result<Broker, BrokerError> {
        if options.max_body_bytes == 0
            || options.max_body_bytes > weir_proto::limits::MAX_BODY_BYTES_CEILING
        {
            return Err(BrokerError::InvalidArgument(format!(
                "max_body_bytes must be within 1..={}",
                weir_proto::limits::MAX_BODY_BYTES_CEILING
            )));
        }
        let seed = options.rng_seed.unwrap_or_else(Rng::entropy_seed)
            ^ OPENED
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ clock.now_ms().rotate_left(32);
        let meta = Meta::open(&*store, options.log.fsync)?;
        let broker = Broker {
            store,
            clock,
            options,
            meta: Mutex::new(meta),
            queues: RwLock::new(HashMap::new()),
            quarantined: RwLock::new(HashMap::new()),
            topics: RwLock::new(HashMap::new()),
            streams: RwLock::new(HashMap::new()),
            events: EventSink::default(),
            rng: Mutex::new(Rng::new(seed)),
        };
        let known: Vec<(String, QueueMeta)> = broker
            .meta
            .lock()
            .queues
            .iter()
            .map(|(n, m)| (n.clone(), m.clone()))
            .collect();
        // Storage the meta journal does not mention is never removed automatically: it may be a
        // queue whose meta record was lost (a damaged last record is cut like a torn write), and
        // `delete_queue` removes storage before it journals the delete, so a crash cannot leave
        // a deleted queue's storage behind. Creating the queue again adopts it.
        for orphan in broker.store.list(&StoreName::parse("queues")?)? {
            if !known.iter().any(|(n, _)| *n == orphan) {
                tracing::error!(queue = %orphan, path = %queue_base(&orphan)?,
                    "storage of a queue unknown to the meta journal kept (not served); creating \
                     the queue again adopts it, deleting the queue removes it");
            }
        }
        for (name, m) in known {
            match broker.open_queue(&name, &m) {
                Ok(q) => {
                    broker.queues.write().insert(name, Arc::new(q));
                }
                // One damaged queue must not take the others down, nor be served as if whole.
                Err(BrokerError::Storage(e @ StoreError::Corrupt { .. })) => {
                    tracing::error!(queue = %name, error = %e,
                        "queue quarantined: its storage is corrupt; it is not served until deleted or repaired");
                    broker.quarantined.write().insert(name, e);
                }
                Err(e) => return Err(e),
            }
        }
        broker.open_topics()?;
        broker.open_streams()?;
        Ok(broker)
    }

    /// Queues quarantined at open because their storage is corrupt, with the damage (file, byte
    /// position, reason), by name. Every call on such a queue fails with
    /// [`BrokerError::Conflict`] naming the damage; `delete_queue` removes it.
    pub fn quarantined(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .quarantined
            .read()
            .iter()
            .map(|(n, e)| (n.clone(), e.to_string()))
            .collect();
        out.sort();
        out
    }

    fn check_quarantine(&self, name: &str) -> Result<(), BrokerError> {
        match self.quarantined.read().get(name) {
            Some(e) => Err(BrokerError::Conflict(format!(
                "queue {name:?} is quarantined: {e}"
            ))),
            None => Ok(()),
        }
    }

    fn open_queue(&self, name: &str, m: &QueueMeta) -> Result<Queue, BrokerError> {
        let base = queue_base(name)?;
        let log = self
            .store
            .open_log(&base.join("messages")?, &self.options.log)?;
        let journal = self
            .store
            .open_journal(&base.join("state")?, self.options.log.fsync)?;
        let rng = Rng::new(self.rng.lock().next_u64());
        let mut core = QueueCore::new(m.config.clone(), m.is_dlq, rng);
        recover(&mut core, &*log, &*journal, self.clock.now_ms())?;
        Ok(Queue::new(
            name.to_string(),
            core,
            log,
            journal,
            self.events.clone(),
        ))
    }

    fn queue(&self, name: &str) -> Result<Arc<Queue>, BrokerError> {
        BrokerError::check_name(name)?;
        self.check_quarantine(name)?;
        self.queues
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::queue_not_found(name))
    }

    /// Creates a queue (and its dead-letter queue) or updates its configuration. Returns the
    /// queue's stats and whether it was created. Durable before it returns.
    pub fn create_queue(
        &self,
        name: &str,
        config: QueueConfig,
    ) -> Result<(QueueStats, bool), BrokerError> {
        BrokerError::check_name(name)?;
        self.check_quarantine(name)?;
        config.validate()?;
        let dlq_name = config.dead_letter_name(name);
        if dlq_name == name {
            return Err(BrokerError::InvalidArgument(
                "a queue cannot be its own dead-letter queue".into(),
            ));
        }
        let now = self.clock.now_ms();
        let mut meta = self.meta.lock();
        let existing = meta.queues.get(name).cloned();
        let is_dlq = existing.as_ref().is_some_and(|m| m.is_dlq)
            || name.ends_with(".dlq")
            || meta
                .queues
                .iter()
                .any(|(n, m)| !m.is_dlq && m.config.dead_letter_name(n) == name);
        let mut puts = Vec::new();
        let mut fresh = Vec::new();
        if !is_dlq {
            match meta.queues.get(&dlq_name) {
                None => {
                    let m = QueueMeta {
                        config: QueueConfig::default(),
                        is_dlq: true,
                    };
                    puts.push((dlq_name.clone(), m));
                    fresh.push(dlq_name.clone());
                }
                Some(m) if !m.is_dlq => puts.push((
                    dlq_name.clone(),
                    QueueMeta {
                        config: m.config.clone(),
                        is_dlq: true,
                    },
                )),
                Some(_) => {}
            }
        }
        let this = QueueMeta {
            config: config.clone(),
            is_dlq,
        };
        if existing.is_none() {
            fresh.push(name.to_string());
        }
        puts.push((name.to_string(), this));
        for f in &fresh {
            self.log_adoption(f)?;
        }
        wait(meta.put(&puts)?)?;
        for (n, m) in &puts {
            if fresh.contains(n) {
                let q = self.open_queue(n, m)?;
                self.queues.write().insert(n.clone(), Arc::new(q));
            } else if let Some(q) = self.queues.read().get(n) {
                q.set_config(m.config.clone(), m.is_dlq, now);
            }
        }
        drop(meta);
        Ok((self.queue(name)?.stats(now), existing.is_none()))
    }

    /// Makes sure a dead-letter queue exists (created with defaults when it does not).
    pub(crate) fn ensure_dlq(&self, name: &str) -> Result<Arc<Queue>, BrokerError> {
        if let Ok(q) = self.queue(name) {
            return Ok(q);
        }
        // Never re-create (and so wipe) a damaged dead-letter queue.
        self.check_quarantine(name)?;
        let mut meta = self.meta.lock();
        if let Some(q) = self.queues.read().get(name) {
            return Ok(q.clone());
        }
        let m = QueueMeta {
            config: QueueConfig::default(),
            is_dlq: true,
        };
        self.log_adoption(name)?;
        wait(meta.put(&[(name.to_string(), m.clone())])?)?;
        let q = Arc::new(self.open_queue(name, &m)?);
        self.queues.write().insert(name.to_string(), q.clone());
        Ok(q)
    }

    /// A queue about to be created may find storage the meta journal lost track of (see
    /// [`Broker::open`]): it is adopted, never wiped.
    fn log_adoption(&self, name: &str) -> Result<(), BrokerError> {
        if self
            .store
            .list(&StoreName::parse("queues")?)?
            .iter()
            .any(|n| n == name)
        {
            tracing::warn!(queue = %name, "adopting existing storage of a queue unknown to the meta journal");
        }
        Ok(())
    }

    /// Deletes a queue and its storage (its dead-letter queue stays). The storage goes first and
    /// the meta record after, so a crash in between leaves a queue that exists (empty), never
    /// storage of a deleted queue (which [`Broker::open`] would keep and a create would adopt).
    pub fn delete_queue(&self, name: &str) -> Result<(), BrokerError> {
        BrokerError::check_name(name)?;
        let mut meta = self.meta.lock();
        if !meta.queues.contains_key(name) {
            return Err(BrokerError::queue_not_found(name));
        }
        let q = self.queues.write().remove(name);
        if let Some(q) = q {
            q.mark_deleted(); // a tick holding its own handle leaves the files alone
        }
        self.store.remove(&queue_base(name)?)?;
        wait(meta.delete(name)?)?;
        self.quarantined.write().remove(name);
        Ok(())
    }

    /// Removes every ready and delayed message (not those in flight); returns how many.
    pub fn purge_queue(&self, name: &str) -> Result<u64, BrokerError> {
        let q = self.queue(name)?;
        let (n, durable) = q.purge(self.clock.now_ms())?;
        wait(durable)?;
        Ok(n)
    }

    /// A queue's configuration and counters.
    pub fn queue_stats(&self, name: &str) -> Result<QueueStats, BrokerError> {
        Ok(self.queue(name)?.stats(self.clock.now_ms()))
    }

    /// Every queue's stats, by name.
    pub fn list_queues(&self) -> Vec<QueueStats> {
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        let now = self.clock.now_ms();
        let mut out: Vec<QueueStats> = queues.iter().map(|q| q.stats(now)).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Checks a publish batch as [`Broker::publish`] does, changing nothing (a server merging
    /// several requests into one publish refuses a bad one alone).
    pub fn check_messages(&self, messages: &[NewMessage]) -> Result<(), BrokerError> {
        validate::messages(messages, self.options.max_body_bytes)
    }

    /// Publishes a batch, all or nothing. Await `durable` before confirming to the producer.
    pub fn publish(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> Result<PublishOutcome, BrokerError> {
        let q = self.queue(queue)?;
        validate::messages(&messages, self.options.max_body_bytes)?;
        if messages.is_empty() {
            return Ok(PublishOutcome {
                messages: Vec::new(),
                durable: Durable::ready(Ok(())),
            });
        }
        q.publish(self.clock.now_ms(), messages)
    }

    /// Leases up to `max` durable, ready messages (never waits). `lease_ms` defaults to the
    /// queue's.
    pub fn receive(
        &self,
        queue: &str,
        max: usize,
        lease_ms: Option<u64>,
    ) -> Result<Vec<crate::Delivery>, BrokerError> {
        self.receive_on(&self.queue(queue)?, max, lease_ms)
    }

    /// Receive on a queue or a topic subscription.
    pub(crate) fn receive_on(
        &self,
        q: &Arc<Queue>,
        max: usize,
        lease_ms: Option<u64>,
    ) -> Result<Vec<crate::Delivery>, BrokerError> {
        validate::receive_max(max)?;
        if let Some(l) = lease_ms {
            validate::lease(l)?;
        }
        let now = self.clock.now_ms();
        let out = q.receive(now, max, lease_ms);
        self.dead_letter(q, now);
        out
    }

    /// Acks leased messages; unknown, stale or expired receipts are reported as invalid.
    pub fn ack(&self, queue: &str, receipts: &[String]) -> Result<ReceiptOutcome, BrokerError> {
        self.ack_on(&self.queue(queue)?, receipts)
    }

    /// Ack on a queue or a topic subscription.
    pub(crate) fn ack_on(
        &self,
        q: &Arc<Queue>,
        receipts: &[String],
    ) -> Result<ReceiptOutcome, BrokerError> {
        validate::receipts(receipts)?;
        let now = self.clock.now_ms();
        let out = q.ack(now, receipts);
        self.dead_letter(q, now);
        out
    }

    /// Gives leased messages back: ready after `delay_ms`, or after the queue's backoff when
    /// `None`; to the dead-letter queue when their attempts are exhausted.
    pub fn nack(
        &self,
        queue: &str,
        receipts: &[String],
        delay_ms: Option<u64>,
    ) -> Result<ReceiptOutcome, BrokerError> {
        self.nack_on(&self.queue(queue)?, receipts, delay_ms)
    }

    /// Nack on a queue or a topic subscription.
    pub(crate) fn nack_on(
        &self,
        q: &Arc<Queue>,
        receipts: &[String],
        delay_ms: Option<u64>,
    ) -> Result<ReceiptOutcome, BrokerError> {
        validate::receipts(receipts)?;
        if let Some(d) = delay_ms {
            validate::delay(d)?;
        }
        let now = self.clock.now_ms();
        let out = q.nack(now, receipts, delay_ms);
        self.dead_letter(q, now);
        out
    }

    /// Extends leases to `lease_ms` from now.
    pub fn extend(
        &self,
        queue: &str,
        receipts: &[String],
        lease_ms: u64,
    ) -> Result<ReceiptOutcome, BrokerError> {
        self.extend_on(&self.queue(queue)?, receipts, lease_ms)
    }

    /// Extend on a queue or a topic subscription.
    pub(crate) fn extend_on(
        &self,
        q: &Arc<Queue>,
        receipts: &[String],
        lease_ms: u64,
    ) -> Result<ReceiptOutcome, BrokerError> {
        validate::receipts(receipts)?;
        validate::lease(lease_ms)?;
        q.extend(self.clock.now_ms(), receipts, lease_ms)
    }

    /// A channel whose value changes whenever messages may have become receivable.
    pub fn watch_queue(&self, queue: &str) -> Result<watch::Receiver<u64>, BrokerError> {
        Ok(self.queue(queue)?.subscribe())
    }

    /// The earliest time a delayed message becomes ready or a lease ends.
    pub fn next_due_ms(&self, queue: &str) -> Result<Option<u64>, BrokerError> {
        Ok(self.queue(queue)?.next_due_ms())
    }

    /// Periodic work over every queue: expire leases, promote due messages, dead-letter
    /// exhausted ones, snapshot journals, reclaim space, 70 % warnings. Call every ~50 ms.
    pub fn tick(&self) -> TickReport {
        let now = self.clock.now_ms();
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        let mut report = TickReport::default();
        for q in &queues {
            let r = q.tick(now, &self.options);
            report.expired_leases += r.expired_leases;
            report.promoted += r.promoted;
            report.dead_lettered += r.dead_lettered;
            report.snapshots += r.snapshots;
            report.reclaimed_bytes += r.reclaimed_bytes;
            report.dead_lettered += self.dead_letter(q, now);
        }
        self.tick_topics(now, &mut report);
        self.tick_streams(now);
        match self
            .meta
            .lock()
            .maybe_snapshot(self.options.snapshot_every_bytes)
        {
            Ok(true) => report.snapshots += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "meta snapshot failed"),
        }
        report
    }

    /// Drains the events recorded since the last call.
    pub fn events(&self) -> Vec<BrokerEvent> {
        self.events.drain()
    }

    /// Moves `src`'s exhausted messages to its dead-letter queue; returns how many left `src`.
    pub(crate) fn dead_letter(&self, src: &Arc<Queue>, now: u64) -> u64 {
        if !src.has_dead() {
            return 0;
        }
        let dead = src.take_dead();
        let offsets: Vec<u64> = dead.iter().map(|(o, _)| *o).collect();
        let messages = match src.read_messages(&offsets) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(queue = %src.name, error = %e, "reading dead letters failed; will retry");
                src.restore_dead(dead);
                return 0;
            }
        };
        let reasons: HashMap<u64, &'static str> = dead.iter().copied().collect();
        let records = messages
            .into_iter()
            .map(|(off, m)| {
                let mut headers = m.headers;
                let reason = reasons.get(&off).copied().unwrap_or_default();
                headers.insert(DEAD_REASON_HEADER.to_string(), reason.to_string());
                headers.insert(ORIGINAL_QUEUE_HEADER.to_string(), src.name.clone());
                let size = u32::try_from(m.body.len()).unwrap_or(u32::MAX);
                let env = Envelope {
                    ready_at_ms: now,
                    ..m.envelope
                };
                let priority = env.priority;
                (
                    envelope::encode(&env, now, m.key, &headers, m.body),
                    priority,
                    size,
                )
            })
            .collect::<Vec<_>>();
        let durable = if records.is_empty() {
            Durable::ready(Ok(()))
        } else {
            let dlq_name = src.config().dead_letter_name(&src.name);
            let appended = self
                .ensure_dlq(&dlq_name)
                .and_then(|dlq| Ok(dlq.accept_dead_letters(now, records)?));
            match appended {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(queue = %src.name, dlq = %dlq_name, error = %e, "dead-lettering failed; will retry");
                    src.restore_dead(dead);
                    return 0;
                }
            }
        };
        let n = src.handed_over(offsets, SharedDurable::new(durable), now);
        tracing::debug!(queue = %src.name, count = n, "dead-lettered");
        n
    }
}
