//! The queue state machine: the index of one queue and every transition of its messages, with no
//! storage in sight. It knows messages by their offset in *some* log; which log holds the bodies is
//! the owner's business ([`crate::queue::Queue`] for a queue; a topic subscription can run the same
//! machine over the topic's shared log with its own journal). Operations that must be persisted
//! return the [`StateEntry`] values to journal; callers journal them first and apply after.
//!
//! ```text
//!  publish ─► Pending ──durable──► Ready ◄───────── Delayed (ready_at passes)
//!                 │ (ordered_by_key, key busy)    ▲ │ receive
//!                 └──► Blocked ──(key's head gone)┘ ▼
//!                                          InFlight ──ack──► removed
//!                       nack / lease expiry ┘  │ attempts exhausted
//!                                              ▼
//!                                            Dead ──(DLQ holds it durably)──► removed
//! ```

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::dedup::Dedup;
use crate::index::{Entry, EntryTable, State};
use crate::journal::SnapEntry;
use crate::pressure::Pressure;
use crate::receipt::Receipt;
use crate::rng::Rng;
use crate::QueueConfig;

/// The 32-bit key hash kept in the index (0 means "no key").
pub(crate) fn key_hash(key: Option<&[u8]>) -> u32 {
    match key {
        None => 0,
        // Truncating the 64-bit hash is intended: collisions only serialise two keys.
        Some(k) => (xxhash_rust::xxh3::xxh3_64(k) as u32).max(1),
    }
}

const PRIORITIES: usize = weir_proto::limits::MAX_PRIORITY as usize + 1;

/// Why a message goes to the dead-letter queue.
pub(crate) const REASON_MAX_ATTEMPTS: &str = "max_attempts";
/// The last lease of a message expired (or the broker restarted during it).
pub(crate) const REASON_LEASE_EXPIRED: &str = "lease_expired";

/// Counters reported in stats (since the broker opened).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: u64,
    pub(crate) delivered: u64,
    pub(crate) acked: u64,
    pub(crate) nacked: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) refused: u64,
    pub(crate) duplicates: u64,
    pub(crate) redelivered: u64,
    pub(crate) expired_leases: u64,
}

/// A message entering the index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewEntry {
    pub(crate) offset: u64,
    pub(crate) ready_at_ms: u64,
    pub(crate) size: u32,
    pub(crate) key_hash: u32,
    pub(crate) priority: u8,
}

/// A message just put under a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Leased {
    pub(crate) offset: u64,
    pub(crate) attempt: u16,
    pub(crate) deadline_ms: u64,
    pub(crate) receipt: Receipt,
}

/// Counts by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) ready: u64,
    pub(crate) in_flight: u64,
    pub(crate) delayed: u64,
    pub(crate) total: u64,
    pub(crate) bytes: u64,
}

/// The state machine of one queue.
#[derive(Debug)]
pub(crate) struct QueueCore {
    pub(crate) config: QueueConfig,
    /// A dead-letter queue has no dead-letter queue: its messages are redelivered forever.
    pub(crate) is_dlq: bool,
    table: EntryTable,
    ready: [BTreeSet<u64>; PRIORITIES],
    delayed: BTreeSet<(u64, u64)>,
    in_flight: BTreeSet<(u64, u64)>,
    /// `ordered_by_key`: per key hash, its messages in offset order; the front is the active one.
    keys: HashMap<u32, VecDeque<u64>>,
    /// Offsets appended but not yet known durable, ascending.
    pending: VecDeque<u64>,
    /// Chosen for the dead-letter queue, not yet handed over.
    dead: Vec<(u64, &'static str)>,
    dead_count: u64,
    bytes: u64,
    salt: u32,
    pub(crate) dedup: Dedup,
    pub(crate) pressure: Pressure,
    pub(crate) counters: Counters,
    pub(crate) rng: Rng,
}

impl QueueCore {
    pub(crate) fn new(config: QueueConfig, is_dlq: bool, mut rng: Rng) -> QueueCore {
        // The salt only has to differ between incarnations; truncation is the point.
        let salt = rng.next_u64() as u32;
        QueueCore {
            config,
            is_dlq,
            table: EntryTable::default(),
            ready: Default::default(),
            delayed: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            keys: HashMap::new(),
            pending: VecDeque::new(),
            dead: Vec::new(),
            dead_count: 0,
            bytes: 0,
            salt,
            dedup: Dedup::default(),
            pressure: Pressure::default(),
            counters: Counters::default(),
            rng,
        }
    }

    /// Messages held.
    pub(crate) fn depth(&self) -> u64 {
        self.table.len() as u64
    }

    /// Body bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn counts(&self) -> Counts {
        let total = self.depth();
        let in_flight = self.in_flight.len() as u64;
        let delayed = self.delayed.len() as u64;
        Counts {
            ready: total.saturating_sub(in_flight + delayed + self.dead_count),
            in_flight,
            delayed,
            total,
            bytes: self.bytes,
        }
    }

    /// The lowest offset still needed (`next_offset` when the index is empty).
    pub(crate) fn low_water(&self, next_offset: u64) -> u64 {
        self.table.first_offset().unwrap_or(next_offset)
    }

    /// The earliest time a delayed message becomes ready or a lease ends.
    pub(crate) fn next_due_ms(&self) -> Option<u64> {
        let d = self.delayed.first().map(|(t, _)| *t);
        let f = self.in_flight.first().map(|(t, _)| *t);
        match (d, f) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn ordered(&self, e: &Entry) -> bool {
        self.config.ordered_by_key && e.key_hash != 0
    }

    /// Adds a just-appended (not yet durable) message.
    pub(crate) fn add_pending(&mut self, n: NewEntry) {
        let entry = Entry {
            due_ms: n.ready_at_ms,
            size: n.size,
            key_hash: n.key_hash,
            attempt: 0,
            priority: n.priority.min(PRIORITIES as u8 - 1),
            state: State::Pending,
        };
        if let Some(old) = self.table.insert(n.offset, entry) {
            // Offsets are never reused while indexed; replace the accounting if they were.
            self.bytes -= u64::from(old.size);
        }
        self.bytes += u64::from(n.size);
        self.pending.push_back(n.offset);
    }

    /// Makes pending messages below `durable_offset` receivable; returns how many.
    pub(crate) fn promote_durable(&mut self, durable_offset: u64, now_ms: u64) -> u64 {
        let mut n = 0;
        while let Some(&off) = self.pending.front() {
            if off >= durable_offset {
                break;
            }
            self.pending.pop_front();
            if self
                .table
                .get(off)
                .is_some_and(|e| e.state == State::Pending)
            {
                self.place(off, now_ms);
                n += 1;
            }
        }
        if self.pending.is_empty() && self.pending.capacity() > 1024 {
            self.pending.shrink_to_fit();
        }
        n
    }

    /// Forgets pending (never durable) messages at offsets `from..end`: their append failed and
    /// the log took the offsets back (they will be reused). Returns how many were dropped.
    pub(crate) fn drop_failed(&mut self, from: u64, end: u64, now_ms: u64) -> u64 {
        let mut n = 0;
        for off in from..end {
            if self
                .table
                .get(off)
                .is_some_and(|e| e.state == State::Pending)
                && self.remove(off, now_ms).is_some()
            {
                n += 1;
            }
        }
        self.pending.retain(|o| *o < from || *o >= end);
        n
    }

    /// Joins the key line (when ordered) or activates.
    fn place(&mut self, off: u64, now_ms: u64) {
        let Some(e) = self.table.get(off).copied() else {
            return;
        };
        if self.ordered(&e) {
            let line = self.keys.entry(e.key_hash).or_default();
            line.push_back(off);
            if line.len() > 1 {
                if let Some(e) = self.table.get_mut(off) {
                    e.state = State::Blocked;
                }
                return;
            }
        }
        self.activate(off, now_ms);
    }

    /// Ready or Delayed by its ready-at time. The entry must be in no structure.
    fn activate(&mut self, off: u64, now_ms: u64) {
        let Some(e) = self.table.get_mut(off) else {
            return;
        };
        if e.due_ms > now_ms {
            e.state = State::Delayed;
            self.delayed.insert((e.due_ms, off));
        } else {
            e.state = State::Ready;
            self.ready[usize::from(e.priority)].insert(off);
        }
    }

    /// Removes a message for good (ack, purge, dead-lettered), releasing its key's next message.
    fn remove(&mut self, off: u64, now_ms: u64) -> Option<Entry> {
        let e = self.table.remove(off)?;
        match e.state {
            State::Ready => {
                self.ready[usize::from(e.priority)].remove(&off);
            }
            State::Delayed => {
                self.delayed.remove(&(e.due_ms, off));
            }
            State::InFlight => {
                self.in_flight.remove(&(e.due_ms, off));
            }
            State::Dead => self.dead_count -= 1,
            State::Pending | State::Blocked => {}
        }
        self.bytes -= u64::from(e.size);
        if self.ordered(&e) {
            if let Some(line) = self.keys.get_mut(&e.key_hash) {
                if line.front() == Some(&off) {
                    line.pop_front();
                    let next = line.front().copied();
                    if let Some(next) = next {
                        if self
                            .table
                            .get(next)
                            .is_some_and(|n| n.state == State::Blocked)
                        {
                            self.activate(next, now_ms);
                        }
                    }
                } else {
                    line.retain(|o| *o != off);
                }
                if self.keys.get(&e.key_hash).is_some_and(VecDeque::is_empty) {
                    self.keys.remove(&e.key_hash);
                }
            }
        }
        Some(e)
    }

    fn mark_dead(&mut self, off: u64, reason: &'static str) {
        if let Some(e) = self.table.get_mut(off) {
            e.state = State::Dead;
            self.dead_count += 1;
            self.dead.push((off, reason));
        }
    }

    /// Ends leases whose deadline passed: ready again, or dead when attempts are exhausted.
    pub(crate) fn expire_leases(&mut self, now_ms: u64) -> u64 {
        let mut n = 0;
        while let Some(&(deadline, off)) = self.in_flight.first() {
            if deadline > now_ms {
                break;
            }
            self.in_flight.pop_first();
            n += 1;
            self.counters.expired_leases += 1;
            let Some(e) = self.table.get(off).copied() else {
                continue;
            };
            if !self.is_dlq && u32::from(e.attempt) >= self.config.max_attempts {
                self.mark_dead(off, REASON_LEASE_EXPIRED);
            } else if let Some(e) = self.table.get_mut(off) {
                e.due_ms = now_ms;
                e.state = State::Ready;
                self.ready[usize::from(e.priority)].insert(off);
            }
        }
        n
    }

    /// Delayed messages whose time came become ready; returns how many.
    pub(crate) fn promote_delayed(&mut self, now_ms: u64) -> u64 {
        let mut n = 0;
        while let Some(&(due, off)) = self.delayed.first() {
            if due > now_ms {
                break;
            }
            self.delayed.pop_first();
            if let Some(e) = self.table.get_mut(off) {
                e.state = State::Ready;
                self.ready[usize::from(e.priority)].insert(off);
                n += 1;
            }
        }
        n
    }

    /// Everything time- and durability-driven up to `now_ms`; returns (expired, promoted).
    pub(crate) fn advance(&mut self, durable_offset: u64, now_ms: u64) -> (u64, u64) {
        let promoted = self.promote_durable(durable_offset, now_ms);
        let expired = self.expire_leases(now_ms);
        let due = self.promote_delayed(now_ms);
        (expired, promoted + due)
    }

    /// Leases up to `max` ready messages: higher priority first, then lower offset (FIFO).
    pub(crate) fn receive(&mut self, now_ms: u64, max: usize, lease_ms: u64) -> Vec<Leased> {
        let mut out = Vec::new();
        let deadline_ms = now_ms.saturating_add(lease_ms);
        for p in (0..PRIORITIES).rev() {
            while out.len() < max {
                let Some(off) = self.ready[p].pop_first() else {
                    break;
                };
                let Some(e) = self.table.get_mut(off) else {
                    continue;
                };
                e.attempt = e.attempt.saturating_add(1);
                e.state = State::InFlight;
                e.due_ms = deadline_ms;
                let attempt = e.attempt;
                self.in_flight.insert((deadline_ms, off));
                self.counters.delivered += 1;
                if attempt > 1 {
                    self.counters.redelivered += 1;
                }
                out.push(Leased {
                    offset: off,
                    attempt,
                    deadline_ms,
                    receipt: Receipt {
                        salt: self.salt,
                        offset: off,
                        attempt,
                    },
                });
            }
        }
        out
    }

    /// The offset a receipt leases, if it is current and unexpired at `now_ms`.
    pub(crate) fn check_receipt(&self, receipt: &str, now_ms: u64) -> Option<(u64, u16)> {
        let r = Receipt::parse(receipt)?;
        if r.salt != self.salt {
            return None;
        }
        let e = self.table.get(r.offset)?;
        (e.state == State::InFlight && e.attempt == r.attempt && e.due_ms > now_ms)
            .then_some((r.offset, e.attempt))
    }

    /// Acks a checked, leased message.
    pub(crate) fn ack(&mut self, off: u64, now_ms: u64) {
        if self.remove(off, now_ms).is_some() {
            self.counters.acked += 1;
            self.pressure.record_acks(1, now_ms);
        }
    }

    /// Full-jitter backoff after the given attempt: `rand(0, min(max, base × 2^(attempt-1)))`.
    pub(crate) fn backoff_ms(&mut self, attempt: u16) -> u64 {
        let exp = u32::from(attempt.saturating_sub(1)).min(63);
        let cap = self
            .config
            .backoff_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.config.backoff_max_ms);
        self.rng.up_to(cap)
    }

    /// Whether a nack of this leased message sends it to the dead-letter queue.
    pub(crate) fn nack_exhausts(&self, attempt: u16) -> bool {
        !self.is_dlq && u32::from(attempt) >= self.config.max_attempts
    }

    /// Applies a nack: ready again at `ready_at_ms`, or dead when `dead`.
    pub(crate) fn nack(&mut self, off: u64, ready_at_ms: u64, dead: bool, now_ms: u64) {
        let Some(e) = self.table.get(off).copied() else {
            return;
        };
        if e.state != State::InFlight {
            return;
        }
        self.in_flight.remove(&(e.due_ms, off));
        self.counters.nacked += 1;
        if dead {
            self.mark_dead(off, REASON_MAX_ATTEMPTS);
        } else if let Some(m) = self.table.get_mut(off) {
            m.due_ms = ready_at_ms;
            self.activate(off, now_ms);
        }
    }

    /// Moves a lease's deadline.
    pub(crate) fn extend(&mut self, off: u64, deadline_ms: u64) {
        if let Some(e) = self.table.get_mut(off) {
            if e.state == State::InFlight {
                self.in_flight.remove(&(e.due_ms, off));
                e.due_ms = deadline_ms;
                self.in_flight.insert((deadline_ms, off));
            }
        }
    }

    /// Offsets a purge would remove: ready, delayed and blocked messages (not in flight, not
    /// pending durability, not on their way to the DLQ).
    pub(crate) fn purgeable(&self) -> Vec<u64> {
        self.table
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Ready | State::Delayed | State::Blocked))
            .map(|(o, _)| o)
            .collect()
    }

    /// Removes the given messages (purge); returns how many were held.
    pub(crate) fn remove_all(&mut self, offsets: &[u64], now_ms: u64) -> u64 {
        offsets
            .iter()
            .filter(|o| self.remove(**o, now_ms).is_some())
            .count() as u64
    }

    /// Hands over the messages chosen for the DLQ.
    pub(crate) fn take_dead(&mut self) -> Vec<(u64, &'static str)> {
        std::mem::take(&mut self.dead)
    }

    pub(crate) fn has_dead(&self) -> bool {
        !self.dead.is_empty()
    }

    /// Gives back dead messages whose hand-over failed (retried later).
    pub(crate) fn restore_dead(&mut self, dead: Vec<(u64, &'static str)>) {
        self.dead.extend(dead);
    }

    /// The DLQ holds these durably: remove them here.
    pub(crate) fn finish_dead(&mut self, offsets: &[u64], now_ms: u64) {
        for off in offsets {
            if self.remove(*off, now_ms).is_some() {
                self.counters.dead_lettered += 1;
            }
        }
    }

    /// Replaces the configuration, re-deriving the key lines when `ordered_by_key` changed.
    pub(crate) fn set_config(&mut self, config: QueueConfig, now_ms: u64) {
        let reorder = config.ordered_by_key != self.config.ordered_by_key;
        self.config = config;
        if reorder {
            self.rebuild(now_ms);
        }
    }

    /// Re-derives the ready / delayed sets and key lines from the table. In-flight, dead and
    /// pending messages keep their state.
    pub(crate) fn rebuild(&mut self, now_ms: u64) {
        for set in &mut self.ready {
            set.clear();
        }
        self.delayed.clear();
        self.keys.clear();
        let all: Vec<(u64, Entry)> = self.table.iter().map(|(o, e)| (o, *e)).collect();
        for (off, e) in all {
            match e.state {
                State::InFlight | State::Dead => {
                    if self.ordered(&e) {
                        self.keys.entry(e.key_hash).or_default().push_back(off);
                    }
                }
                State::Pending => {}
                State::Ready | State::Delayed | State::Blocked => self.place(off, now_ms),
            }
        }
    }

    /// Loads a recovered table (all durable, none leased) and derives every structure. Messages
    /// whose attempts are exhausted were leased when the broker stopped: their lease is over.
    pub(crate) fn restore(&mut self, mut table: EntryTable, now_ms: u64) {
        self.bytes = 0;
        for (_, e) in table.iter_mut() {
            e.state = State::Ready;
            self.bytes += u64::from(e.size);
        }
        self.table = table;
        let exhausted: Vec<u64> = self
            .table
            .iter()
            .filter(|(_, e)| !self.is_dlq && u32::from(e.attempt) >= self.config.max_attempts)
            .map(|(o, _)| o)
            .collect();
        for off in exhausted {
            self.mark_dead(off, REASON_LEASE_EXPIRED);
        }
        self.rebuild(now_ms);
    }

    /// The index below `covered`, for a snapshot (leased and dying messages are kept as ready:
    /// after a restart their lease is over).
    pub(crate) fn snapshot_entries(&self, covered: u64) -> Vec<SnapEntry> {
        self.table
            .iter()
            .take_while(|(o, _)| *o < covered)
            .map(|(offset, e)| SnapEntry {
                offset,
                ready_at_ms: match e.state {
                    State::InFlight | State::Dead => 0,
                    _ => e.due_ms,
                },
                size: e.size,
                key_hash: e.key_hash,
                attempt: e.attempt,
                priority: e.priority,
            })
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut by_state = HashMap::new();
        let mut bytes = 0;
        for (off, e) in self.table.iter() {
            *by_state.entry(e.state).or_insert(0u64) += 1;
            bytes += u64::from(e.size);
            match e.state {
                State::Ready => assert!(self.ready[usize::from(e.priority)].contains(&off)),
                State::Delayed => assert!(self.delayed.contains(&(e.due_ms, off))),
                State::InFlight => assert!(self.in_flight.contains(&(e.due_ms, off))),
                _ => {}
            }
        }
        assert_eq!(bytes, self.bytes);
        let get = |s| by_state.get(&s).copied().unwrap_or(0);
        assert_eq!(
            get(State::Ready),
            self.ready.iter().map(|s| s.len() as u64).sum()
        );
        assert_eq!(get(State::Delayed), self.delayed.len() as u64);
        assert_eq!(get(State::InFlight), self.in_flight.len() as u64);
        assert_eq!(get(State::Dead), self.dead_count);
        if self.config.ordered_by_key {
            let mut active = HashMap::new();
            for (_, e) in self.table.iter() {
                if e.key_hash != 0 && matches!(e.state, State::InFlight) {
                    *active.entry(e.key_hash).or_insert(0) += 1;
                }
            }
            assert!(
                active.values().all(|n| *n <= 1),
                "two in flight for one key"
            );
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
