//! Exponential backoff with full jitter that honours the server's retry-after hint.

use std::time::Duration;

use rand::Rng;

/// Retry policy for `busy` refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First backoff ceiling.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub max: Duration,
    /// Retries before giving up (0: never retry).
    pub max_retries: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_secs(10),
            max_retries: 10,
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (0-based): a uniform random duration in
    /// `0..=min(max, base·2^attempt)` ("full jitter"), but never less than the server's
    /// `retry_after` hint.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base
            .checked_mul(2u32.saturating_pow(attempt.min(30)))
            .unwrap_or(self.max)
            .min(self.max);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling_ms));
        jitter.max(retry_after.unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_is_jittered_below_the_ceiling_and_honours_retry_after() {
        let b = Backoff::default();
        for attempt in 0..40 {
            let d = b.delay(attempt, None);
            assert!(d <= b.max, "{d:?}");
            if attempt == 0 {
                assert!(d <= b.base);
            }
        }
        let hint = Duration::from_millis(1500);
        assert!(b.delay(0, Some(hint)) >= hint);
    }
}
