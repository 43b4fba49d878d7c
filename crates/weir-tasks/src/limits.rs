//! Rate limits per task name: a token bucket shared by every worker, enforced where it cannot be
//! bypassed — at submission. A task that would exceed the rate is published with a delivery
//! delay that spaces its start out (GCRA: the "theoretical arrival time" per name), so no worker
//! can run tasks of that name faster than the limit, however many workers there are.
//!
//! Retries are not charged again (they already waited their backoff). The per-name arrival time
//! lives in memory: after a restart each bucket starts full.

use std::collections::HashMap;

/// A token bucket: one token every `interval_ms`, at most `burst` saved up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Milliseconds per token (≥ 1).
    pub interval_ms: u64,
    /// Bucket size (≥ 1).
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` tokens a second (0 < per_second ≤ 1000), `burst` at most saved up.
    pub fn per_second(per_second: f64, burst: u32) -> Option<RateLimit> {
        if !(per_second > 0.0 && per_second <= 1000.0) || burst == 0 {
            return None;
        }
        // In range by the check above: 1..=1e12 ms.
        let interval_ms = (1000.0 / per_second).round().max(1.0) as u64;
        Some(RateLimit { interval_ms, burst })
    }

    /// Tokens per second.
    pub fn rate_per_second(&self) -> f64 {
        1000.0 / self.interval_ms as f64
    }
}

/// Theoretical arrival times per task name.
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    tat_ms: HashMap<String, u64>,
}

impl Buckets {
    /// Takes a token for `name` at `now_ms`; returns how long the task must wait for it.
    pub(crate) fn take(&mut self, name: &str, limit: &RateLimit, now_ms: u64) -> u64 {
        let tat = self.tat_ms.get(name).copied().unwrap_or(now_ms).max(now_ms);
        let next = tat.saturating_add(limit.interval_ms);
        let window = limit.interval_ms.saturating_mul(u64::from(limit.burst));
        let earliest = next.saturating_sub(window);
        self.tat_ms.insert(name.to_string(), next);
        earliest.saturating_sub(now_ms)
    }

    /// Forgets a name's history (its limit changed or was removed).
    pub(crate) fn reset(&mut self, name: &str) {
        self.tat_ms.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_spaced() {
        let l = RateLimit::per_second(2.0, 3).unwrap();
        assert_eq!(l.interval_ms, 500);
        let mut b = Buckets::default();
        let delays: Vec<u64> = (0..6).map(|_| b.take("x", &l, 1000)).collect();
        assert_eq!(delays, vec![0, 0, 0, 500, 1000, 1500]);
        // Much later the bucket is full again.
        assert_eq!(b.take("x", &l, 100_000), 0);
        assert!(RateLimit::per_second(0.0, 1).is_none());
        assert!(RateLimit::per_second(1.0, 0).is_none());
    }
}
