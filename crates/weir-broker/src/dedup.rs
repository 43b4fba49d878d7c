//! Deduplication of client-supplied message ids: `xxh3-128(id)` → (expiry time, offset of the
//! original). Only ids the client chose are remembered (server-made ids are unique by
//! construction). Expired entries are pruned in one pass at most every `max(window / 8, 1 s)`, so
//! the table holds about one window's ids.
//!
//! Two durability rules (docs/reliability.md, findings 1 and 2) rest on the offset:
//! - **a duplicate is confirmed only once its original is durable**: the queue answers a duplicate
//!   with the original append's durability, and a snapshot keeps only the entries whose original
//!   is below the log's durable end ([`Dedup::iter_below`]); the others are found again by the
//!   recovery scan of the log, or not at all if a crash took them back — then a retry is stored.
//! - **an entry stays recoverable for its whole window**: an entry at or past the last durable
//!   snapshot's `covered` offset is recoverable only from the message log, so [`Dedup::hold`]
//!   names the lowest such offset while any of those entries is unexpired, and the queue never
//!   moves the log's low-water mark past it.

use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_128;

#[derive(Clone, Copy, Debug)]
struct Seen {
    expires_ms: u64,
    /// The original's offset in the message log (0 when known durable without an offset: loaded
    /// from a snapshot, or kept by a topic).
    offset: u64,
}

/// The dedup table of one queue.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    seen: HashMap<u128, Seen>,
    next_prune_ms: u64,
    /// The `covered` offset of the last durable snapshot that holds this table's older entries.
    covered: u64,
    /// (lowest offset, latest expiry) of the entries at or past `covered`: those exist only in the
    /// message log.
    uncovered: Option<(u64, u64)>,
}

/// The dedup hash of an id.
pub(crate) fn hash_id(id: &str) -> u128 {
    xxh3_128(id.as_bytes())
}

impl Dedup {
    /// Whether `hash` was seen and its window has not passed at `now_ms`.
    pub(crate) fn contains(&self, hash: u128, now_ms: u64) -> bool {
        self.lookup(hash, now_ms).is_some()
    }

    /// The original's offset if `hash` was seen and its window has not passed at `now_ms`.
    pub(crate) fn lookup(&self, hash: u128, now_ms: u64) -> Option<u64> {
        self.seen
            .get(&hash)
            .filter(|s| s.expires_ms > now_ms)
            .map(|s| s.offset)
    }

    /// Remembers `hash` until `expires_ms` (keeps the later expiry if already present), for an
    /// original that is known durable.
    pub(crate) fn insert(&mut self, hash: u128, expires_ms: u64) {
        self.put(hash, expires_ms, 0);
    }

    /// Remembers `hash` until `expires_ms` for the original at `offset` of the message log.
    pub(crate) fn insert_at(&mut self, hash: u128, expires_ms: u64, offset: u64) {
        self.put(hash, expires_ms, offset);
        if offset >= self.covered {
            self.uncovered = Some(match self.uncovered {
                Some((o, e)) => (o.min(offset), e.max(expires_ms)),
                None => (offset, expires_ms),
            });
        }
    }

    fn put(&mut self, hash: u128, expires_ms: u64, offset: u64) {
        let e = self.seen.entry(hash).or_insert(Seen { expires_ms, offset });
        if expires_ms >= e.expires_ms {
            *e = Seen { expires_ms, offset };
        }
    }

    /// Forgets `hash` if it still names the original at `offset` (whose append failed).
    pub(crate) fn remove_at(&mut self, hash: u128, offset: u64) {
        if self.seen.get(&hash).is_some_and(|s| s.offset == offset) {
            self.seen.remove(&hash);
        }
    }

    /// Drops expired entries, at most every `max(window / 8, 1000)` ms.
    pub(crate) fn prune(&mut self, now_ms: u64, window_ms: u64) {
        if now_ms < self.next_prune_ms {
            return;
        }
        self.seen.retain(|_, s| s.expires_ms > now_ms);
        self.next_prune_ms = now_ms.saturating_add((window_ms / 8).max(1000));
        // Tighten the hold to what is still live (the running minimum only ever falls otherwise).
        self.set_covered(self.covered, now_ms);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// The entries whose original is below `covered` (durable), for a snapshot.
    pub(crate) fn iter_below(&self, covered: u64) -> impl Iterator<Item = (u128, u64)> + '_ {
        self.seen
            .iter()
            .filter(move |(_, s)| s.offset < covered)
            .map(|(h, s)| (*h, s.expires_ms))
    }

    /// A durable snapshot now holds every entry below `covered`; the others (at or past it) are
    /// recoverable only from the message log.
    pub(crate) fn set_covered(&mut self, covered: u64, now_ms: u64) {
        self.covered = covered;
        self.uncovered = self
            .seen
            .values()
            .filter(|s| s.offset >= covered && s.expires_ms > now_ms)
            .fold(None, |acc, s| {
                Some(match acc {
                    Some((o, e)) => (s.offset.min(o), s.expires_ms.max(e)),
                    None => (s.offset, s.expires_ms),
                })
            });
    }

    /// The lowest message-log offset that must stay readable so that an unexpired entry can be
    /// rebuilt after a restart (`None`: every unexpired entry is in a durable snapshot).
    pub(crate) fn hold(&mut self, now_ms: u64) -> Option<u64> {
        match self.uncovered {
            Some((o, until)) if until > now_ms => Some(o),
            _ => {
                self.uncovered = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_window_and_prunes_after() {
        let mut d = Dedup::default();
        let h = hash_id("a");
        assert_ne!(h, hash_id("b"));
        d.insert(h, 1000);
        assert!(d.contains(h, 999));
        assert!(!d.contains(h, 1000));
        d.prune(500, 1000);
        assert_eq!(d.len(), 1);
        d.prune(1000, 1000); // too soon after the last prune
        assert_eq!(d.len(), 1);
        d.prune(1500, 1000);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn snapshots_only_what_is_durable_and_holds_the_rest() {
        let mut d = Dedup::default();
        d.insert(1, 5_000); // from a snapshot: durable
        d.insert_at(2, 5_000, 10);
        d.insert_at(3, 6_000, 12);
        assert_eq!(d.lookup(2, 0), Some(10));
        let mut below: Vec<u128> = d.iter_below(11).map(|(h, _)| h).collect();
        below.sort_unstable();
        assert_eq!(below, vec![1, 2]);
        assert_eq!(d.hold(0), Some(10));
        d.set_covered(11, 0);
        assert_eq!(d.hold(0), Some(12));
        assert_eq!(d.hold(6_000), None, "expired entries hold nothing");
        d.remove_at(3, 99);
        assert!(d.contains(3, 0));
        d.remove_at(3, 12);
        assert!(!d.contains(3, 0));
    }
}
