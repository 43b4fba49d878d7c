//! One queue: the state machine ([`QueueCore`]) bound to its storage — the message log that holds
//! the bodies and the journal that holds its state — plus its watch channel. Every operation takes
//! the queue's mutex once, briefly; log reads of bodies happen outside it.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use weir_store::{Durable, Journal, Log, Record, StoreError, StoredRecord};

use crate::core::{key_hash, Leased, NewEntry, QueueCore};
use crate::dedup::hash_id;
use crate::envelope::{self, Envelope, Message};
use crate::events::EventSink;
use crate::journal::{encode_snapshot, StateEntry};
use crate::shared::SharedDurable;
use crate::{
    BrokerError, BrokerEvent, BrokerOptions, Delivery, NewMessage, PublishOutcome, Published,
    QueueConfig, QueueStats, ReceiptOutcome, TickReport,
};

/// Most offsets in one journal entry (a purge of a million messages makes many entries).
const MAX_OFFSETS_PER_ENTRY: usize = 4096;

/// A snapshot is also taken once this many times `snapshot_every_bytes` of message bodies were
/// appended since the last one, so that recovery never scans an unbounded stretch of the log.
const LOG_BYTES_PER_JOURNAL_BYTE: u64 = 4;

#[derive(Debug)]
struct Inner {
    core: QueueCore,
    /// The newest journal append; when it is durable every earlier one is.
    last_journal: Option<SharedDurable>,
    /// A low-water mark to apply once the journal append that justifies it is durable.
    low_water: Option<(u64, SharedDurable)>,
    /// Dead letters appended to the DLQ, waiting for that append to be durable.
    handing_over: Vec<(Vec<u64>, SharedDurable)>,
    /// Body bytes appended since the last snapshot: recovery scans them, so they also trigger one.
    appended_since_snapshot: u64,
    /// The highest low-water mark known safe (its justifying journal entries are durable); a
    /// topic takes the minimum of its subscriptions' marks for the shared log.
    safe_low_water: u64,
    /// This queue's appends to its log not yet known durable, oldest first (see [`Queue::reap`]).
    recent: VecDeque<RecentAppend>,
    /// Messages just published, so their first delivery need not read them back.
    tail: TailCache,
}

/// Most body (and id) bytes a queue's [`TailCache`] holds.
const TAIL_CACHE_BYTES: usize = 16 << 20;
/// Most messages a queue's [`TailCache`] holds.
const TAIL_CACHE_MESSAGES: usize = 32_768;
/// Most bytes every queue's [`TailCache`] holds together: the process-wide bound, so that many
/// queues with a backlog cannot make the caches grow with the number of queues.
const TAIL_CACHE_TOTAL_BYTES: usize = 256 << 20;
/// Bytes held by every queue's [`TailCache`] together.
static TAIL_CACHE_TOTAL: AtomicUsize = AtomicUsize::new(0);
const _: () = assert!(TAIL_CACHE_BYTES <= TAIL_CACHE_TOTAL_BYTES);

/// The messages a queue appended most recently, by offset (ascending), so that a first delivery
/// takes the message from here instead of reading back and CRC-checking what was just written.
/// Bounded by [`TAIL_CACHE_BYTES`] and [`TAIL_CACHE_MESSAGES`] per queue and by
/// [`TAIL_CACHE_TOTAL_BYTES`] for the process (oldest dropped first); a delivery
/// takes its entry out. It is only consulted for leased offsets, which are durable; the entries of
/// an append that failed are dropped in [`Queue::reap`] before the log can reuse their offsets.
#[derive(Debug, Default)]
struct TailCache {
    entries: VecDeque<(u64, Option<Message>)>,
    bytes: usize,
}

impl TailCache {
    fn cost(m: &Message) -> usize {
        m.body.len() + m.envelope.id.len() + 64
    }

    fn add_bytes(&mut self, n: usize) {
        self.bytes += n;
        TAIL_CACHE_TOTAL.fetch_add(n, Ordering::Relaxed);
    }

    fn sub_bytes(&mut self, n: usize) {
        self.bytes -= n;
        TAIL_CACHE_TOTAL.fetch_sub(n, Ordering::Relaxed);
    }

    /// Adds a message at an offset above every held one, then drops the oldest entries while
    /// this cache or all caches together are over their bounds (possibly the new one too).
    fn push(&mut self, offset: u64, m: Message) {
        if self.entries.back().is_some_and(|(o, _)| *o >= offset) {
            // Not ascending (not expected): start over rather than risk a stale entry.
            self.clear_from(0);
        }
        self.add_bytes(Self::cost(&m));
        self.entries.push_back((offset, Some(m)));
        while self.bytes > TAIL_CACHE_BYTES
            || self.entries.len() > TAIL_CACHE_MESSAGES
            || TAIL_CACHE_TOTAL.load(Ordering::Relaxed) > TAIL_CACHE_TOTAL_BYTES
        {
            match self.entries.pop_front() {
                Some((_, Some(m))) => self.sub_bytes(Self::cost(&m)),
                Some((_, None)) => {}
                None => break,
            }
        }
    }

    /// Takes the message at `offset`, if held.
    fn take(&mut self, offset: u64) -> Option<Message> {
        let i = self.entries.partition_point(|(o, _)| *o < offset);
        let m = match self.entries.get_mut(i) {
            Some((o, slot)) if *o == offset => slot.take()?,
            _ => return None,
        };
        self.sub_bytes(Self::cost(&m));
        while self.entries.front().is_some_and(|(_, m)| m.is_none()) {
            self.entries.pop_front();
        }
        Some(m)
    }

    /// Drops every entry at or above `from`.
    fn clear_from(&mut self, from: u64) {
        while self.entries.back().is_some_and(|(o, _)| *o >= from) {
            if let Some((_, Some(m))) = self.entries.pop_back() {
                self.sub_bytes(Self::cost(&m));
            }
        }
    }
}

impl Drop for TailCache {
    fn drop(&mut self) {
        TAIL_CACHE_TOTAL.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// An append not yet known durable: a duplicate of one of its messages is confirmed with its
/// durability, and if it fails its dedup entries and index entries are dropped.
#[derive(Debug)]
struct RecentAppend {
    first: u64,
    end: u64,
    durable: SharedDurable,
    /// (dedup hash, offset) of its messages that carry a client id.
    hashes: Vec<(u128, u64)>,
}

/// A queue bound to its storage.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) name: String,
    log: Arc<dyn Log>,
    journal: Arc<dyn Journal>,
    watch: Arc<watch::Sender<u64>>,
    events: EventSink,
    inner: Mutex<Inner>,
    /// Set by the broker before it removes the queue's files: a tick that raced the delete (it
    /// holds its own handle) then skips the work whose files are going, and does not warn
    /// about failures the delete explains.
    deleted: std::sync::atomic::AtomicBool,
}

fn bump(watch: &watch::Sender<u64>) {
    watch.send_modify(|v| *v = v.wrapping_add(1));
}

/// Wraps a log's durability so that success wakes the queue's long-pollers.
fn waking(durable: Durable, watch: Arc<watch::Sender<u64>>) -> Durable {
    Durable::from_future(async move {
        durable.await?;
        bump(&watch);
        Ok(())
    })
}

impl Queue {
    /// Binds a recovered state machine to its storage.
    pub(crate) fn new(
        name: String,
        core: QueueCore,
        log: Arc<dyn Log>,
        journal: Arc<dyn Journal>,
        events: EventSink,
    ) -> Queue {
        Queue {
            name,
            log,
            journal,
            watch: Arc::new(watch::channel(0).0),
            events,
            deleted: std::sync::atomic::AtomicBool::new(false),
            inner: Mutex::new(Inner {
                core,
                last_journal: None,
                low_water: None,
                handing_over: Vec::new(),
                appended_since_snapshot: 0,
                safe_low_water: 0,
                recent: VecDeque::new(),
                tail: TailCache::default(),
            }),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.watch.subscribe()
    }

    /// The sender behind [`Queue::subscribe`] (a topic wakes its subscriptions' pollers).
    pub(crate) fn watch_sender(&self) -> Arc<watch::Sender<u64>> {
        self.watch.clone()
    }

    /// Admission of `add` messages of `add_bytes` body bytes under this queue's bounds (a topic
    /// asks every subscription before it appends). A refusal is counted here.
    pub(crate) fn admit(
        &self,
        now_ms: u64,
        add: u64,
        add_bytes: u64,
        batch_len: u64,
    ) -> Result<(), BrokerError> {
        let mut inner = self.inner.lock();
        let core = &mut inner.core;
        core.pressure.roll(now_ms);
        core.pressure
            .admit(&core.config, core.depth(), core.bytes(), add, add_bytes)
            .map_err(|r| {
                core.counters.refused += batch_len;
                BrokerError::Busy {
                    reason: format!("subscription {}: {}", self.name, r.reason),
                    retry_after_ms: r.retry_after_ms,
                }
            })
    }

    /// Indexes messages a topic appended to the shared log this subscription reads, and keeps
    /// them (`cached[i]` is at `entries[i].offset`) in the tail cache for their first delivery.
    /// The topic publishes under its lock, so offsets reach each subscription ascending; should
    /// a full disk make the log reuse offsets, the cache's ascending check drops what it held.
    pub(crate) fn add_published(&self, entries: &[NewEntry], add_bytes: u64, cached: &[Message]) {
        debug_assert_eq!(entries.len(), cached.len());
        let mut inner = self.inner.lock();
        for (e, m) in entries.iter().zip(cached) {
            inner.core.add_pending(*e);
            inner.tail.push(e.offset, m.clone());
        }
        inner.appended_since_snapshot += add_bytes;
        inner.core.counters.published += entries.len() as u64;
        self.warnings(&mut inner);
    }

    pub(crate) fn config(&self) -> QueueConfig {
        self.inner.lock().core.config.clone()
    }

    pub(crate) fn set_config(&self, config: QueueConfig, is_dlq: bool, now_ms: u64) {
        let mut inner = self.inner.lock();
        inner.core.is_dlq = is_dlq;
        inner.core.set_config(config, now_ms);
        drop(inner);
        bump(&self.watch);
    }

    fn journal(&self, inner: &mut Inner, entries: &[StateEntry]) -> Result<Durable, StoreError> {
        let encoded: Vec<Bytes> = entries.iter().map(StateEntry::encode).collect();
        let shared = SharedDurable::new(self.journal.append(&encoded)?);
        let out = shared.durable();
        inner.last_journal = Some(shared);
        Ok(out)
    }

    fn warnings(&self, inner: &mut Inner) {
        let (depth, bytes) = (inner.core.depth(), inner.core.bytes());
        let crossings = {
            let core = &mut inner.core;
            core.pressure.check_warnings(&core.config, depth, bytes)
        };
        for c in crossings {
            self.events.push(BrokerEvent::BoundWarning {
                queue: self.name.clone(),
                bound: c.bound,
                above: c.above,
                value: c.value,
                limit: c.limit,
            });
        }
    }

    /// Settles [`Inner::recent`] against the log, under the queue's lock (every append to this
    /// queue's log happens under it, after this): appends below the durable end are done; an
    /// append past the log's next offset failed and the log took its offsets back (a full disk:
    /// they will be reused), so its dedup entries and pending index entries are forgotten — a
    /// retry of those ids must be stored, and must not be answered with somebody else's record.
    fn reap(&self, inner: &mut Inner, now_ms: u64) {
        if inner.recent.is_empty() {
            return;
        }
        let stats = self.log.stats();
        while inner
            .recent
            .front()
            .is_some_and(|r| r.end <= stats.durable_offset)
        {
            inner.recent.pop_front();
        }
        while let Some(r) = inner.recent.back() {
            if r.end <= stats.next_offset {
                break;
            }
            let r = inner.recent.pop_back().expect("checked");
            // The log takes these offsets back and will reuse them: forget their messages.
            inner.tail.clear_from(r.first);
            for (h, off) in &r.hashes {
                inner.core.dedup.remove_at(*h, *off);
            }
            let dropped = inner.core.drop_failed(r.first, r.end, now_ms);
            tracing::debug!(queue = %self.name, first = r.first, end = r.end, dropped,
                "append failed and was taken back by the log; its ids are forgotten");
        }
    }

    /// Publishes a validated batch: dedup, admission, append, index.
    pub(crate) fn publish(
        &self,
        now_ms: u64,
        messages: Vec<NewMessage>,
    ) -> Result<PublishOutcome, BrokerError> {
        let mut inner = self.inner.lock();
        self.reap(&mut inner, now_ms);
        let window = inner.core.config.dedup_window_ms;
        inner.core.dedup.prune(now_ms, window);
        let mut in_batch = HashSet::new();
        let hashes: Vec<Option<u128>> = messages
            .iter()
            .map(|m| m.id.as_deref().map(hash_id))
            .collect();
        // A duplicate is confirmed only once its original is durable: a crash may still take back
        // an original that is merely written, and then nothing would hold the confirmed message.
        let durable_offset = self.log.stats().durable_offset;
        let mut originals: Vec<u64> = Vec::new();
        let duplicate: Vec<bool> = hashes
            .iter()
            .map(|h| {
                h.is_some_and(|h| match inner.core.dedup.lookup(h, now_ms) {
                    Some(o) => {
                        originals.push(o);
                        true
                    }
                    // A duplicate inside the batch is confirmed with the batch.
                    None => !in_batch.insert(h),
                })
            })
            .collect();
        originals.sort_unstable();
        originals.dedup();
        let mut waits: Vec<Durable> = Vec::new();
        let mut appends: Vec<usize> = Vec::new();
        for o in originals.into_iter().filter(|o| *o >= durable_offset) {
            match inner.recent.iter().position(|r| r.first <= o && o < r.end) {
                Some(i) if appends.contains(&i) => {}
                Some(i) => {
                    appends.push(i);
                    waits.push(inner.recent[i].durable.durable());
                }
                // Not appended by this incarnation, yet not durable: not expected (recovery
                // only reads durable records); wait for the log anyway.
                None => waits.push(self.log.wait_durable(o)),
            }
        }
        let core = &mut inner.core;
        let add = duplicate.iter().filter(|d| !**d).count() as u64;
        let add_bytes: u64 = messages
            .iter()
            .zip(&duplicate)
            .filter(|(_, d)| !**d)
            .map(|(m, _)| m.body.len() as u64)
            .sum();
        if add > 0 {
            core.pressure.roll(now_ms);
            if let Err(r) =
                core.pressure
                    .admit(&core.config, core.depth(), core.bytes(), add, add_bytes)
            {
                core.counters.refused += messages.len() as u64;
                return Err(BrokerError::Busy {
                    reason: r.reason,
                    retry_after_ms: r.retry_after_ms,
                });
            }
        }
        let mut published = Vec::with_capacity(messages.len());
        let mut records = Vec::with_capacity(add as usize);
        let mut entries = Vec::with_capacity(add as usize);
        let mut cached = Vec::with_capacity(add as usize);
        for ((m, dup), hash) in messages.into_iter().zip(&duplicate).zip(&hashes) {
            let client_id = m.id.is_some();
            let id = m.id.unwrap_or_else(|| core.rng.hex128());
            published.push(Published {
                id: id.clone(),
                duplicate: *dup,
            });
            if *dup {
                continue;
            }
            let ready_at_ms = now_ms.saturating_add(m.delay_ms);
            entries.push((
                NewEntry {
                    offset: 0,
                    ready_at_ms,
                    size: u32::try_from(m.body.len()).unwrap_or(u32::MAX),
                    key_hash: key_hash(m.key.as_deref()),
                    priority: m.priority,
                },
                *hash,
            ));
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
        if !records.is_empty() {
            let appended = self.log.append(&records)?;
            for (i, m) in cached.into_iter().enumerate() {
                inner.tail.push(appended.first_offset + i as u64, m);
            }
            let core = &mut inner.core;
            let mut ids = Vec::new();
            for (i, (mut e, hash)) in entries.into_iter().enumerate() {
                e.offset = appended.first_offset + i as u64;
                core.add_pending(e);
                if let Some(h) = hash {
                    core.dedup
                        .insert_at(h, now_ms.saturating_add(window), e.offset);
                    ids.push((h, e.offset));
                }
            }
            let shared = SharedDurable::new(appended.durable);
            waits.insert(0, waking(shared.durable(), self.watch.clone()));
            inner.recent.push_back(RecentAppend {
                first: appended.first_offset,
                end: appended.next_offset,
                durable: shared,
                hashes: ids,
            });
        }
        let durable = match waits.len() {
            0 => Durable::ready(Ok(())),
            1 => waits.pop().expect("one"),
            _ => Durable::all(waits),
        };
        inner.appended_since_snapshot += add_bytes;
        let core = &mut inner.core;
        core.counters.published += add;
        core.counters.duplicates += published.len() as u64 - add;
        self.warnings(&mut inner);
        Ok(PublishOutcome {
            messages: published,
            durable,
        })
    }

    /// Appends dead letters from another queue (no dedup, no bounds: they were already held).
    pub(crate) fn accept_dead_letters(
        &self,
        now_ms: u64,
        records: Vec<(Record, u8, u32)>,
    ) -> Result<Durable, StoreError> {
        let mut inner = self.inner.lock();
        self.reap(&mut inner, now_ms);
        let (records, meta): (Vec<Record>, Vec<(u8, u32)>) = records
            .into_iter()
            .map(|(r, p, size)| (r, (p, size)))
            .unzip();
        let appended = self.log.append(&records)?;
        for (i, ((priority, size), rec)) in meta.into_iter().zip(&records).enumerate() {
            inner.core.add_pending(NewEntry {
                offset: appended.first_offset + i as u64,
                ready_at_ms: now_ms,
                size,
                key_hash: key_hash(rec.key.as_deref()),
                priority,
            });
        }
        inner.core.counters.published += records.len() as u64;
        self.warnings(&mut inner);
        let shared = SharedDurable::new(appended.durable);
        inner.recent.push_back(RecentAppend {
            first: appended.first_offset,
            end: appended.next_offset,
            durable: shared.clone(),
            hashes: Vec::new(),
        });
        Ok(waking(shared.durable(), self.watch.clone()))
    }

    /// Leases up to `max` messages and reads their bodies.
    pub(crate) fn receive(
        &self,
        now_ms: u64,
        max: usize,
        lease_ms: Option<u64>,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let (leased, cached) = {
            let mut inner = self.inner.lock();
            let durable = self.log.stats().durable_offset;
            let (expired, promoted) = inner.core.advance(durable, now_ms);
            let lease_ms = lease_ms.unwrap_or(inner.core.config.lease_ms);
            let leased = inner.core.receive(now_ms, max, lease_ms);
            if !leased.is_empty() {
                let attempts = leased.iter().map(|l| (l.offset, l.attempt)).collect();
                // Attempt counts are journaled deferred: they ride on the journal's next
                // fdatasync (the ack's, typically) instead of costing one per delivery. A crash
                // within ~50 ms of a delivery may forget it: the message comes back with its
                // attempt count one lower (leases are at least 100 ms, so by one at most).
                let entry = StateEntry::Attempts(attempts).encode();
                if let Err(e) = self.journal.append_deferred(std::slice::from_ref(&entry)) {
                    tracing::warn!(queue = %self.name, error = %e, "journaling delivery attempts failed");
                }
            }
            if expired + promoted > 0 {
                bump(&self.watch);
            }
            let cached: Vec<Option<Message>> =
                leased.iter().map(|l| inner.tail.take(l.offset)).collect();
            (leased, cached)
        };
        if leased.is_empty() {
            return Ok(Vec::new());
        }
        // Only what the tail cache did not hold is read back from the log.
        let offsets: Vec<u64> = leased
            .iter()
            .zip(&cached)
            .filter(|(_, c)| c.is_none())
            .map(|(l, _)| l.offset)
            .collect();
        let mut records = if offsets.is_empty() {
            BTreeMap::new()
        } else {
            self.read_records(&offsets)?
        };
        let mut out = Vec::with_capacity(leased.len());
        for (l, cached) in leased.into_iter().zip(cached) {
            let m = match cached {
                Some(m) => m,
                None => {
                    let Some(rec) = records.remove(&l.offset) else {
                        tracing::warn!(queue = %self.name, offset = l.offset, "leased message missing from its log");
                        continue;
                    };
                    envelope::decode(rec)?
                }
            };
            out.push(delivery(m, &l));
        }
        Ok(out)
    }

    /// Reads records by offset, one log read per run of adjacent offsets.
    fn read_records(&self, offsets: &[u64]) -> Result<BTreeMap<u64, StoredRecord>, StoreError> {
        let mut sorted = offsets.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut out = BTreeMap::new();
        let mut i = 0;
        while i < sorted.len() {
            let mut j = i + 1;
            while j < sorted.len() && sorted[j] == sorted[j - 1] + 1 {
                j += 1;
            }
            let mut from = sorted[i];
            let end = sorted[j - 1] + 1;
            while from < end {
                let want = usize::try_from(end - from).unwrap_or(usize::MAX);
                let batch = self.log.read(from, want, usize::MAX)?;
                let Some(last) = batch.last().map(|r| r.offset) else {
                    break;
                };
                for r in batch {
                    out.insert(r.offset, r);
                }
                from = last + 1;
            }
            i = j;
        }
        Ok(out)
    }

    /// Reads whole messages (for dead-lettering).
    pub(crate) fn read_messages(&self, offsets: &[u64]) -> Result<Vec<(u64, Message)>, StoreError> {
        self.read_records(offsets)?
            .into_iter()
            .map(|(o, r)| Ok((o, envelope::decode(r)?)))
            .collect()
    }

    fn check_all(
        inner: &mut Inner,
        receipts: &[String],
        now_ms: u64,
    ) -> (Vec<(u64, u16)>, Vec<String>) {
        inner.core.expire_leases(now_ms);
        let mut valid = Vec::new();
        let mut seen = HashSet::new();
        let mut invalid = Vec::new();
        for r in receipts {
            match inner.core.check_receipt(r, now_ms) {
                Some((off, attempt)) if seen.insert(off) => valid.push((off, attempt)),
                _ => invalid.push(r.clone()),
            }
        }
        (valid, invalid)
    }

    pub(crate) fn ack(
        &self,
        now_ms: u64,
        receipts: &[String],
    ) -> Result<ReceiptOutcome, BrokerError> {
        let mut inner = self.inner.lock();
        let (valid, invalid) = Self::check_all(&mut inner, receipts, now_ms);
        if valid.is_empty() {
            return Ok(outcome(0, invalid, Durable::ready(Ok(()))));
        }
        let offsets: Vec<u64> = valid.iter().map(|(o, _)| *o).collect();
        let durable = self.journal(&mut inner, &[StateEntry::Remove(offsets.clone())])?;
        for off in &offsets {
            inner.core.ack(*off, now_ms);
        }
        self.warnings(&mut inner);
        Ok(outcome(offsets.len(), invalid, durable))
    }

    pub(crate) fn nack(
        &self,
        now_ms: u64,
        receipts: &[String],
        delay_ms: Option<u64>,
    ) -> Result<ReceiptOutcome, BrokerError> {
        let mut inner = self.inner.lock();
        let (valid, invalid) = Self::check_all(&mut inner, receipts, now_ms);
        if valid.is_empty() {
            return Ok(outcome(0, invalid, Durable::ready(Ok(()))));
        }
        let mut plan = Vec::with_capacity(valid.len());
        let mut requeue = Vec::new();
        for (off, attempt) in &valid {
            let dead = inner.core.nack_exhausts(*attempt);
            let delay = delay_ms.unwrap_or_else(|| inner.core.backoff_ms(*attempt));
            let ready_at = now_ms.saturating_add(delay);
            if !dead {
                requeue.push((*off, *attempt, ready_at));
            }
            plan.push((*off, ready_at, dead));
        }
        let durable = if requeue.is_empty() {
            Durable::ready(Ok(()))
        } else {
            self.journal(&mut inner, &[StateEntry::Requeue(requeue)])?
        };
        for (off, ready_at, dead) in &plan {
            inner.core.nack(*off, *ready_at, *dead, now_ms);
        }
        drop(inner);
        bump(&self.watch);
        Ok(outcome(plan.len(), invalid, durable))
    }

    pub(crate) fn extend(
        &self,
        now_ms: u64,
        receipts: &[String],
        lease_ms: u64,
    ) -> Result<ReceiptOutcome, BrokerError> {
        let mut inner = self.inner.lock();
        let (valid, invalid) = Self::check_all(&mut inner, receipts, now_ms);
        let deadline = now_ms.saturating_add(lease_ms);
        for (off, _) in &valid {
            inner.core.extend(*off, deadline);
        }
        // Leases are not persisted (a restart ends them all), so there is nothing to wait for.
        Ok(outcome(valid.len(), invalid, Durable::ready(Ok(()))))
    }

    /// Removes ready, delayed and blocked messages; returns how many and the journal's durability.
    pub(crate) fn purge(&self, now_ms: u64) -> Result<(u64, Durable), BrokerError> {
        let mut inner = self.inner.lock();
        let durable_offset = self.log.stats().durable_offset;
        inner.core.advance(durable_offset, now_ms);
        let offsets = inner.core.purgeable();
        if offsets.is_empty() {
            return Ok((0, Durable::ready(Ok(()))));
        }
        let entries: Vec<StateEntry> = offsets
            .chunks(MAX_OFFSETS_PER_ENTRY)
            .map(|c| StateEntry::Remove(c.to_vec()))
            .collect();
        let durable = self.journal(&mut inner, &entries)?;
        let n = inner.core.remove_all(&offsets, now_ms);
        self.warnings(&mut inner);
        Ok((n, durable))
    }

    pub(crate) fn stats(&self, now_ms: u64) -> QueueStats {
        let log = self.log.stats();
        let disk_bytes = log.bytes;
        let mut inner = self.inner.lock();
        let (expired, promoted) = inner.core.advance(log.durable_offset, now_ms);
        if expired + promoted > 0 {
            bump(&self.watch);
        }
        let core = &inner.core;
        let counts = core.counts();
        let c = core.counters;
        QueueStats {
            name: self.name.clone(),
            config: core.config.clone(),
            ready: counts.ready,
            in_flight: counts.in_flight,
            delayed: counts.delayed,
            total: counts.total,
            bytes: counts.bytes,
            published_total: c.published,
            delivered_total: c.delivered,
            acked_total: c.acked,
            nacked_total: c.nacked,
            dead_lettered_total: c.dead_lettered,
            refused_total: c.refused,
            duplicates_total: c.duplicates,
            redelivered_total: c.redelivered,
            expired_leases_total: c.expired_leases,
            disk_bytes,
            above_warning: core.pressure.any_above(),
        }
    }

    pub(crate) fn next_due_ms(&self) -> Option<u64> {
        self.inner.lock().core.next_due_ms()
    }

    pub(crate) fn has_dead(&self) -> bool {
        self.inner.lock().core.has_dead()
    }

    pub(crate) fn take_dead(&self) -> Vec<(u64, &'static str)> {
        self.inner.lock().core.take_dead()
    }

    pub(crate) fn restore_dead(&self, dead: Vec<(u64, &'static str)>) {
        self.inner.lock().core.restore_dead(dead);
    }

    /// Records that the DLQ appended these messages; they leave once that append is durable.
    pub(crate) fn handed_over(
        &self,
        offsets: Vec<u64>,
        durable: SharedDurable,
        now_ms: u64,
    ) -> u64 {
        let mut inner = self.inner.lock();
        inner.handing_over.push((offsets, durable));
        self.finish_handovers(&mut inner, now_ms)
    }

    fn finish_handovers(&self, inner: &mut Inner, now_ms: u64) -> u64 {
        let mut done = 0;
        let pending = std::mem::take(&mut inner.handing_over);
        for (offsets, durable) in pending {
            match durable.poll_now() {
                None => inner.handing_over.push((offsets, durable)),
                Some(Ok(())) => match self.journal(inner, &[StateEntry::Remove(offsets.clone())]) {
                    Ok(_) => {
                        inner.core.finish_dead(&offsets, now_ms);
                        done += offsets.len() as u64;
                    }
                    Err(e) => {
                        tracing::warn!(queue = %self.name, error = %e, "journaling dead letters failed; will retry");
                        inner.handing_over.push((offsets, durable));
                    }
                },
                Some(Err(e)) => {
                    tracing::warn!(queue = %self.name, error = %e, "dead-letter queue append failed; will retry");
                    let reasons = offsets
                        .into_iter()
                        .map(|o| (o, crate::core::REASON_LEASE_EXPIRED))
                        .collect();
                    inner.core.restore_dead(reasons);
                }
            }
        }
        done
    }

    /// Marks the queue deleted (its files are about to be removed); see [`Queue::tick`].
    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Periodic work: leases, delays, warnings, dead-letter completion, snapshots, reclamation.
    /// Nothing for a deleted queue.
    pub(crate) fn tick(&self, now_ms: u64, options: &BrokerOptions) -> TickReport {
        if self.is_deleted() {
            return TickReport::default();
        }
        let (mut report, mark) = self.tick_state(now_ms, options, None);
        if let Some(mark) = mark {
            match self
                .log
                .set_low_water(mark)
                .and_then(|()| self.log.reclaim(now_ms))
            {
                Ok(r) => report.reclaimed_bytes = r.bytes,
                Err(e) if self.is_deleted() => {
                    tracing::debug!(queue = %self.name, error = %e, "reclaiming raced the queue's deletion");
                }
                Err(e) => tracing::warn!(queue = %self.name, error = %e, "reclaiming failed"),
            }
        }
        report
    }

    /// Periodic work of a topic subscription over its topic's shared log: everything
    /// [`Queue::tick`] does except reclamation, which the topic does with the minimum of its
    /// subscriptions' marks. `next_offset` must be read under the topic's publish lock, so that
    /// every offset below it is already indexed here. Returns the subscription's safe mark.
    pub(crate) fn tick_shared(
        &self,
        now_ms: u64,
        options: &BrokerOptions,
        next_offset: u64,
    ) -> (TickReport, u64) {
        let (report, _) = self.tick_state(now_ms, options, Some(next_offset));
        (report, self.inner.lock().safe_low_water)
    }

    fn tick_state(
        &self,
        now_ms: u64,
        options: &BrokerOptions,
        next_offset: Option<u64>,
    ) -> (TickReport, Option<u64>) {
        let mut report = TickReport::default();
        let mut inner = self.inner.lock();
        if next_offset.is_none() {
            self.reap(&mut inner, now_ms);
        }
        let durable_offset = self.log.stats().durable_offset;
        let (expired, promoted) = inner.core.advance(durable_offset, now_ms);
        report.expired_leases = expired;
        report.promoted = promoted;
        if expired + promoted > 0 {
            bump(&self.watch);
        }
        let window = inner.core.config.dedup_window_ms;
        inner.core.dedup.prune(now_ms, window);
        inner.core.pressure.roll(now_ms);
        self.warnings(&mut inner);
        report.dead_lettered = self.finish_handovers(&mut inner, now_ms);
        if self.journal.bytes_since_snapshot() > options.snapshot_every_bytes
            || inner.appended_since_snapshot
                > options
                    .snapshot_every_bytes
                    .saturating_mul(LOG_BYTES_PER_JOURNAL_BYTE)
        {
            match self.snapshot(&mut inner, now_ms) {
                Ok(()) => report.snapshots += 1,
                Err(e) if self.is_deleted() => {
                    tracing::debug!(queue = %self.name, error = %e, "snapshot raced the queue's deletion");
                }
                Err(e) => tracing::warn!(queue = %self.name, error = %e, "snapshot failed"),
            }
        }
        let next_offset = next_offset.unwrap_or_else(|| self.log.stats().next_offset);
        let mark = self.low_water_mark(&mut inner, next_offset, now_ms);
        if let Some(mark) = mark {
            inner.safe_low_water = inner.safe_low_water.max(mark);
        }
        (report, mark)
    }

    /// A low-water mark is applied only once the journal entries that removed the messages below
    /// it are durable; otherwise a crash could bring back an index entry whose body is gone.
    ///
    /// It also never passes an offset whose message carries an unexpired dedup entry that no
    /// durable snapshot holds ([`crate::dedup::Dedup::hold`]): recovery rebuilds such an entry
    /// from the log, so reclaiming its segment would forget the id inside its window.
    fn low_water_mark(&self, inner: &mut Inner, next_offset: u64, now_ms: u64) -> Option<u64> {
        let mut apply = None;
        if let Some((mark, durable)) = inner.low_water.take() {
            match durable.poll_now() {
                Some(Ok(())) => apply = Some(mark),
                Some(Err(_)) => {}
                None => inner.low_water = Some((mark, durable)),
            }
        }
        if inner.low_water.is_none() {
            let hold = inner.core.dedup.hold(now_ms).unwrap_or(u64::MAX);
            let candidate = inner.core.low_water(next_offset).min(hold);
            match &inner.last_journal {
                Some(j) => inner.low_water = Some((candidate, j.clone())),
                None => apply = Some(candidate.max(apply.unwrap_or(0))),
            }
        }
        apply
    }

    /// Writes a snapshot of the index. Offsets at or past the log's durable end are left out and
    /// recovered by scanning the log, so a snapshot never names an offset a crash could reuse.
    /// The same holds for dedup entries: only those whose original is durable are kept, so a
    /// snapshot never vouches for a message a crash could still take back.
    fn snapshot(&self, inner: &mut Inner, now_ms: u64) -> Result<(), StoreError> {
        let covered = self.log.stats().durable_offset;
        let entries = inner.core.snapshot_entries(covered);
        let dedup: Vec<(u128, u64)> = inner.core.dedup.iter_below(covered).collect();
        let bytes = encode_snapshot(covered, dedup.into_iter(), &entries);
        self.journal.snapshot(bytes)?;
        inner.core.dedup.set_covered(covered, now_ms);
        inner.last_journal = None;
        inner.appended_since_snapshot = 0;
        Ok(())
    }
}

fn outcome(done: usize, invalid: Vec<String>, durable: Durable) -> ReceiptOutcome {
    ReceiptOutcome {
        done,
        invalid,
        durable,
    }
}

fn delivery(m: Message, l: &Leased) -> Delivery {
    Delivery {
        id: m.envelope.id,
        receipt: l.receipt.encode(),
        key: m.key,
        headers: m.headers,
        body: m.body,
        attempt: u32::from(l.attempt),
        enqueued_at_ms: m.enqueued_at_ms,
        priority: m.envelope.priority,
        lease_deadline_ms: l.deadline_ms,
    }
}

#[cfg(test)]
mod tail_cache_tests {
    use super::*;

    fn message(body_len: usize) -> Message {
        Message {
            envelope: Envelope {
                id: "m".into(),
                client_id: false,
                priority: 0,
                ready_at_ms: 0,
            },
            enqueued_at_ms: 0,
            key: None,
            headers: BTreeMap::new(),
            body: Bytes::from(vec![0u8; body_len]),
        }
    }

    #[test]
    fn caches_are_bounded_per_queue_and_together() {
        const MIB: usize = 1 << 20;
        // 24 queues each offered 24 MiB: 576 MiB unbounded.
        let mut caches: Vec<TailCache> = (0..24).map(|_| TailCache::default()).collect();
        for offset in 0..24u64 {
            for cache in &mut caches {
                cache.push(offset, message(MIB));
                assert!(cache.bytes <= TAIL_CACHE_BYTES);
            }
        }
        let held: usize = caches.iter().map(|c| c.bytes).sum();
        assert!(held <= TAIL_CACHE_TOTAL_BYTES, "{held} bytes held");
        assert!(
            held >= TAIL_CACHE_TOTAL_BYTES / 2,
            "the budget is used: {held}"
        );
        // A take gives bytes back; dropping the caches gives everything back.
        let before = caches[23].bytes;
        let newest = caches[23].entries.back().map(|(o, _)| *o).expect("held");
        assert!(caches[23].take(newest).is_some());
        assert!(caches[23].bytes < before);
        drop(caches);
    }
}

#[cfg(test)]
mod deleted_tests {
    use super::*;
    use crate::rng::Rng;
    use crate::{NewMessage, QueueConfig};
    use weir_store::memory::MemoryStore;
    use weir_store::{FsyncPolicy, LogConfig, Store, StoreName};

    fn queue(store: &MemoryStore) -> Queue {
        let name = |s: &str| StoreName::parse(s).expect("name");
        let log = store
            .open_log(&name("queues/q/messages"), &LogConfig::default())
            .expect("log");
        let journal = store
            .open_journal(&name("queues/q/state"), FsyncPolicy::Always)
            .expect("journal");
        let core = QueueCore::new(QueueConfig::default(), false, Rng::new(7));
        Queue::new("q".into(), core, log, journal, EventSink::default())
    }

    #[test]
    fn a_tick_holding_a_deleted_queue_does_no_work() {
        let store = MemoryStore::new();
        let q = queue(&store);
        let message = NewMessage {
            body: Bytes::from_static(b"x"),
            ..NewMessage::default()
        };
        let published = q.publish(1, vec![message]).expect("publish");
        futures::executor::block_on(published.durable).expect("durable");
        // A snapshot is due at every tick with this setting.
        let options = BrokerOptions {
            snapshot_every_bytes: 0,
            ..BrokerOptions::default()
        };
        assert_eq!(q.tick(2, &options).snapshots, 1, "a live queue snapshots");
        q.mark_deleted();
        let report = q.tick(3, &options);
        assert_eq!(report.snapshots, 0, "a deleted queue writes no snapshot");
        assert_eq!(report.reclaimed_bytes, 0);
    }
}
