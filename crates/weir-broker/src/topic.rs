//! One topic: a shared message log (`topics/<t>/messages`) and its subscriptions, each a full
//! queue state machine ([`Queue`]) over that log with a journal of its own
//! (`topics/<t>/subs/<s>/state`). A publish appends each body **once** and indexes it in every
//! subscription; the shared log's low-water mark is the minimum over the subscriptions.
//!
//! Locking: `state` (the publish lock) is taken before any subscription's lock, by publish,
//! subscription creation and the tick; lookups for receive / ack only read `subs`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use weir_store::{Durable, Log, StoreError};

use crate::codec::{put_varint, Reader};
use crate::core::{key_hash, NewEntry};
use crate::dedup::{hash_id, Dedup};
use crate::envelope::{self, decode_envelope, Envelope};
use crate::queue::Queue;
use crate::rng::Rng;
use crate::{
    BrokerError, BrokerOptions, NewMessage, PublishOutcome, Published, QueueStats, TickReport,
    MAX_DEDUP_WINDOW_MS,
};

/// A topic's own settings (each subscription has a full [`crate::QueueConfig`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    /// How long a client-supplied message id is remembered for deduplication, in milliseconds.
    /// Deduplication is per topic: a duplicate reaches no subscription.
    pub dedup_window_ms: u64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            dedup_window_ms: 300_000,
        }
    }
}

impl TopicConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), BrokerError> {
        if self.dedup_window_ms > MAX_DEDUP_WINDOW_MS {
            return Err(BrokerError::InvalidArgument(format!(
                "dedup_window_ms must be at most {MAX_DEDUP_WINDOW_MS}"
            )));
        }
        Ok(())
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(1); // version
        put_varint(out, self.dedup_window_ms);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<TopicConfig, StoreError> {
        let version = r.u8()?;
        if version != 1 {
            return Err(r.error(format!("unknown topic config version {version}")));
        }
        Ok(TopicConfig {
            dedup_window_ms: r.varint()?,
        })
    }
}

/// Where a new subscription starts in its topic's log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubscriptionStart {
    /// Only messages published after the subscription was created.
    #[default]
    Now,
    /// Every message the topic still retains (then everything published afterwards).
    Oldest,
}

/// A topic's counters and its subscriptions' stats.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicStats {
    /// The topic name.
    pub name: String,
    /// Its configuration.
    pub config: TopicConfig,
    /// Every subscription's queue stats (`name` is the subscription's name; `disk_bytes` is the
    /// shared log's size), by name.
    pub subscriptions: Vec<QueueStats>,
    /// The subscription holding the most messages (the one that refuses publishes first).
    pub slowest: Option<String>,
    /// Messages stored since the broker opened (once each, whatever the subscription count).
    pub published_total: u64,
    /// Duplicate publishes since the broker opened.
    pub duplicates_total: u64,
    /// Messages refused by back pressure since the broker opened.
    pub refused_total: u64,
    /// Bytes the shared message log occupies in the store.
    pub disk_bytes: u64,
    /// The lowest offset the log still holds.
    pub start_offset: u64,
    /// The offset the next message gets.
    pub next_offset: u64,
}

#[derive(Debug)]
pub(crate) struct TopicState {
    pub(crate) config: TopicConfig,
    dedup: Dedup,
    /// The highest low-water mark set on the log: "oldest" starts no lower.
    pub(crate) applied_low_water: u64,
    published: u64,
    duplicates: u64,
    refused: u64,
    rng: Rng,
}

/// A topic bound to its shared log.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: String,
    pub(crate) log: Arc<dyn Log>,
    /// The publish lock; see the module docs for the order.
    pub(crate) state: Mutex<TopicState>,
    pub(crate) subs: RwLock<BTreeMap<String, Arc<Queue>>>,
    /// Set before the topic's files are removed (see [`Topic::mark_deleted`]).
    deleted: std::sync::atomic::AtomicBool,
}

/// Wraps the shared log's durability so that success wakes every subscription's pollers.
fn waking_all(durable: Durable, watches: Vec<Arc<watch::Sender<u64>>>) -> Durable {
    Durable::from_future(async move {
        durable.await?;
        for w in watches {
            w.send_modify(|v| *v = v.wrapping_add(1));
        }
        Ok(())
    })
}

/// Records read per pass when rebuilding the dedup table.
const DEDUP_SCAN_RECORDS: usize = 1024;
/// Payload bytes per pass when rebuilding the dedup table (about).
const DEDUP_SCAN_BYTES: usize = 8 * 1024 * 1024;

impl Topic {
    /// Binds a topic to its log and rebuilds its dedup table from the log's last window
    /// (located by timestamp, so recovery reads one window of records, not the whole log).
    pub(crate) fn open(
        name: String,
        config: TopicConfig,
        log: Arc<dyn Log>,
        rng: Rng,
        now_ms: u64,
    ) -> Result<Topic, StoreError> {
        let mut dedup = Dedup::default();
        let window = config.dedup_window_ms;
        if window > 0 {
            if let Some(mut from) = log.offset_for_timestamp(now_ms.saturating_sub(window))? {
                loop {
                    let batch = log.read(from, DEDUP_SCAN_RECORDS, DEDUP_SCAN_BYTES)?;
                    let Some(last) = batch.last().map(|r| r.offset) else {
                        break;
                    };
                    for rec in &batch {
                        let env = decode_envelope(rec)?;
                        let expires_ms = rec.record.timestamp_ms.saturating_add(window);
                        if env.client_id && expires_ms > now_ms {
                            dedup.insert_at(hash_id(&env.id), expires_ms, rec.offset);
                        }
                    }
                    from = last + 1;
                }
            }
        }
        Ok(Topic {
            name,
            log,
            deleted: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(TopicState {
                config,
                dedup,
                applied_low_water: 0,
                published: 0,
                duplicates: 0,
                refused: 0,
                rng,
            }),
            subs: RwLock::new(BTreeMap::new()),
        })
    }

    pub(crate) fn sub(&self, name: &str) -> Option<Arc<Queue>> {
        self.subs.read().get(name).cloned()
    }

    /// Publishes a validated, non-empty batch: dedup, admission by every subscription, one
    /// append, and an index entry in every subscription.
    pub(crate) fn publish(
        &self,
        now_ms: u64,
        messages: Vec<NewMessage>,
    ) -> Result<PublishOutcome, BrokerError> {
        let mut st = self.state.lock();
        let window = st.config.dedup_window_ms;
        st.dedup.prune(now_ms, window);
        let mut in_batch = HashSet::new();
        let hashes: Vec<Option<u128>> = messages
            .iter()
            .map(|m| m.id.as_deref().map(hash_id))
            .collect();
        let duplicate: Vec<bool> = hashes
            .iter()
            .map(|h| h.is_some_and(|h| st.dedup.contains(h, now_ms) || !in_batch.insert(h)))
            .collect();
        let add = duplicate.iter().filter(|d| !**d).count() as u64;
        let add_bytes: u64 = messages
            .iter()
            .zip(&duplicate)
            .filter(|(_, d)| !**d)
            .map(|(m, _)| m.body.len() as u64)
            .sum();
        let subs: Vec<Arc<Queue>> = self.subs.read().values().cloned().collect();
        if add > 0 {
            // Back pressure: the fullest subscription decides for the whole topic.
            for s in &subs {
                if let Err(e) = s.admit(now_ms, add, add_bytes, messages.len() as u64) {
                    st.refused += messages.len() as u64;
                    return Err(e);
                }
            }
        }
        let mut published = Vec::with_capacity(messages.len());
        let mut records = Vec::with_capacity(add as usize);
        let mut entries = Vec::with_capacity(add as usize);
        let mut new_hashes = Vec::new();
        // The stored messages, for the subscriptions' tail caches: their first deliveries need
        // not read the shared log back (a fan-out to N subscriptions would read each body N times).
        let mut cached = Vec::with_capacity(add as usize);
        for ((m, dup), hash) in messages.into_iter().zip(&duplicate).zip(&hashes) {
            let client_id = m.id.is_some();
            let id = m.id.unwrap_or_else(|| st.rng.hex128());
            published.push(Published {
                id: id.clone(),
                duplicate: *dup,
            });
            if *dup {
                continue;
            }
            let ready_at_ms = now_ms.saturating_add(m.delay_ms);
            entries.push(NewEntry {
                offset: 0,
                ready_at_ms,
                size: u32::try_from(m.body.len()).unwrap_or(u32::MAX),
                key_hash: key_hash(m.key.as_deref()),
                priority: m.priority,
            });
            // The hash and the index of its entry, for the offset once appended.
            new_hashes.extend(hash.map(|h| (h, entries.len() - 1)));
            let env = Envelope {
                id,
                client_id,
                priority: m.priority,
                ready_at_ms,
            };
            let (record, message) = envelope::encode_keeping(env, now_ms, m.key, m.headers, m.body);
            records.push(record);
            cached.push(message);
        }
        let durable = if records.is_empty() {
            // Only duplicates: confirm once everything appended so far (the originals) is durable.
            match self.log.stats().next_offset.checked_sub(1) {
                Some(last) => self.log.wait_durable(last),
                None => Durable::ready(Ok(())),
            }
        } else {
            let appended = self.log.append(&records)?;
            for (i, e) in entries.iter_mut().enumerate() {
                e.offset = appended.first_offset + i as u64;
            }
            for s in &subs {
                s.add_published(&entries, add_bytes, &cached);
            }
            // Topics keep no dedup snapshot: each entry is recoverable only from the log, so
            // it holds the low-water mark (see `tick`) until its window passes.
            for (h, i) in new_hashes {
                let offset = appended.first_offset + i as u64;
                st.dedup.insert_at(h, now_ms.saturating_add(window), offset);
            }
            waking_all(
                appended.durable,
                subs.iter().map(|s| s.watch_sender()).collect(),
            )
        };
        st.published += add;
        st.duplicates += published.len() as u64 - add;
        Ok(PublishOutcome {
            messages: published,
            durable,
        })
    }

    /// Ticks every subscription under the publish lock (so that every offset below the log's
    /// next offset is indexed wherever it belongs), then sets the shared log's low-water mark to
    /// the minimum of the subscriptions' safe marks and reclaims. Returns the subscriptions, for
    /// the caller to move their dead letters (outside the topic's lock).
    pub(crate) fn tick(
        &self,
        now_ms: u64,
        options: &BrokerOptions,
        report: &mut TickReport,
    ) -> Vec<Arc<Queue>> {
        let mut st = self.state.lock();
        let window = st.config.dedup_window_ms;
        st.dedup.prune(now_ms, window);
        let next_offset = self.log.stats().next_offset;
        let subs: Vec<Arc<Queue>> = self.subs.read().values().cloned().collect();
        // Without subscriptions nobody needs anything below the end.
        let mut mark = next_offset;
        for s in &subs {
            let (r, m) = s.tick_shared(now_ms, options, next_offset);
            report.expired_leases += r.expired_leases;
            report.promoted += r.promoted;
            report.dead_lettered += r.dead_lettered;
            report.snapshots += r.snapshots;
            mark = mark.min(m);
        }
        // Never reclaim a record whose id is still inside its dedup window: after a restart the
        // topic rebuilds its dedup table from the log, so the record must still be there.
        if let Some(hold) = st.dedup.hold(now_ms) {
            mark = mark.min(hold);
        }
        st.applied_low_water = st.applied_low_water.max(mark);
        drop(st);
        match self
            .log
            .set_low_water(mark)
            .and_then(|()| self.log.reclaim(now_ms))
        {
            Ok(r) => report.reclaimed_bytes += r.bytes,
            Err(e) if self.deleted.load(std::sync::atomic::Ordering::Acquire) => {
                tracing::debug!(topic = %self.name, error = %e, "reclaiming raced the topic's deletion");
            }
            Err(e) => tracing::warn!(topic = %self.name, error = %e, "reclaiming failed"),
        }
        subs
    }

    /// Marks the topic and its subscriptions deleted before their files are removed, so that a
    /// tick racing the delete neither touches them nor warns about what the delete explains.
    pub(crate) fn mark_deleted(&self) {
        self.deleted
            .store(true, std::sync::atomic::Ordering::Release);
        for s in self.subs.read().values() {
            s.mark_deleted();
        }
    }

    /// The topic's stats; every subscription's stats carry the subscription's own name.
    pub(crate) fn stats(&self, now_ms: u64) -> TopicStats {
        let log = self.log.stats();
        let st = self.state.lock();
        let config = st.config.clone();
        let (published_total, duplicates_total, refused_total) =
            (st.published, st.duplicates, st.refused);
        drop(st);
        let subs: Vec<(String, Arc<Queue>)> = self
            .subs
            .read()
            .iter()
            .map(|(n, q)| (n.clone(), q.clone()))
            .collect();
        let subscriptions: Vec<QueueStats> = subs
            .into_iter()
            .map(|(n, q)| QueueStats {
                name: n,
                ..q.stats(now_ms)
            })
            .collect();
        let slowest = subscriptions
            .iter()
            .filter(|s| s.total > 0)
            .max_by_key(|s| s.total)
            .map(|s| s.name.clone());
        TopicStats {
            name: self.name.clone(),
            config,
            subscriptions,
            slowest,
            published_total,
            duplicates_total,
            refused_total,
            disk_bytes: log.bytes,
            start_offset: log.start_offset,
            next_offset: log.next_offset,
        }
    }
}
