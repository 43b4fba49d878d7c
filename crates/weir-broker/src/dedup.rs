//! Deduplication of client-supplied message ids: `xxh3-128(id)` → expiry time. Only ids the client
//! chose are remembered (server-made ids are unique by construction). Expired entries are pruned in
//! one pass at most every `max(window / 8, 1 s)`, so the table holds about one window's ids.

use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_128;

/// The dedup table of one queue.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    seen: HashMap<u128, u64>,
    next_prune_ms: u64,
}

/// The dedup hash of an id.
pub(crate) fn hash_id(id: &str) -> u128 {
    xxh3_128(id.as_bytes())
}

impl Dedup {
    /// Whether `hash` was seen and its window has not passed at `now_ms`.
    pub(crate) fn contains(&self, hash: u128, now_ms: u64) -> bool {
        self.seen.get(&hash).is_some_and(|exp| *exp > now_ms)
    }

    /// Remembers `hash` until `expires_ms` (keeps the later expiry if already present).
    pub(crate) fn insert(&mut self, hash: u128, expires_ms: u64) {
        let e = self.seen.entry(hash).or_insert(expires_ms);
        *e = (*e).max(expires_ms);
    }

    /// Drops expired entries, at most every `max(window / 8, 1000)` ms.
    pub(crate) fn prune(&mut self, now_ms: u64, window_ms: u64) {
        if now_ms < self.next_prune_ms {
            return;
        }
        self.seen.retain(|_, exp| *exp > now_ms);
        self.next_prune_ms = now_ms.saturating_add((window_ms / 8).max(1000));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (u128, u64)> + '_ {
        self.seen.iter().map(|(h, e)| (*h, *e))
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
}
