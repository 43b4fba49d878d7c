//! Back pressure: admission against `max_depth`, `max_bytes` and `max_latency_ms`, and the 70 %
//! warnings.
//!
//! Latency is predicted from the observed **drain rate**: an exponentially weighted moving average
//! of acks per second (one sample per whole second, α = 0.3; seconds without acks count as zero
//! samples). The predicted wait of a new message is `depth ÷ rate` — equivalent to
//! `depth × mean service time ÷ active consumers`, without having to know how many consumers are
//! active. Until the first ack is observed the rate is unknown and the latency bound is not
//! applied (a new queue must be able to fill before anyone consumes). The retry hint is the time
//! the drain rate needs to make room, clamped to 1–60 s (5 s while the rate is unknown or zero).

use crate::QueueConfig;

/// The bounds, in the order of [`Pressure::above`].
pub(crate) const BOUNDS: [&str; 3] = ["max_depth", "max_bytes", "max_latency_ms"];
/// Warning threshold, percent of a bound.
pub(crate) const WARN_PERCENT: u64 = 70;
/// Shortest and longest retry hint.
pub(crate) const MIN_RETRY_MS: u64 = 1000;
/// Longest retry hint.
pub(crate) const MAX_RETRY_MS: u64 = 60_000;
const UNKNOWN_RATE_RETRY_MS: u64 = 5000;
const ALPHA: f64 = 0.3;
const MAX_CATCH_UP_SECONDS: u64 = 120;

/// Drain-rate tracking and warning state of one queue.
#[derive(Debug, Default)]
pub(crate) struct Pressure {
    rate_per_sec: f64,
    sampled: bool,
    window_start_ms: Option<u64>,
    acks_in_window: u64,
    pub(crate) above: [bool; 3],
}

/// A refusal.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reason: String,
    pub(crate) retry_after_ms: u64,
}

/// A warning transition.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Crossing {
    pub(crate) bound: &'static str,
    pub(crate) above: bool,
    pub(crate) value: u64,
    pub(crate) limit: u64,
}

impl Pressure {
    /// Counts acks (drain).
    pub(crate) fn record_acks(&mut self, n: u64, now_ms: u64) {
        self.roll(now_ms);
        if self.window_start_ms.is_none() {
            self.window_start_ms = Some(now_ms);
        }
        self.acks_in_window += n;
    }

    /// Closes whole one-second windows up to `now_ms`.
    pub(crate) fn roll(&mut self, now_ms: u64) {
        let Some(start) = self.window_start_ms else {
            return;
        };
        let elapsed = now_ms.saturating_sub(start) / 1000;
        if elapsed == 0 {
            return;
        }
        for i in 0..elapsed.min(MAX_CATCH_UP_SECONDS) {
            let sample = if i == 0 {
                self.acks_in_window as f64
            } else {
                0.0
            };
            self.rate_per_sec = if self.sampled {
                ALPHA * sample + (1.0 - ALPHA) * self.rate_per_sec
            } else {
                sample
            };
            self.sampled = true;
        }
        if elapsed > MAX_CATCH_UP_SECONDS {
            self.rate_per_sec = 0.0;
        }
        self.acks_in_window = 0;
        self.window_start_ms = Some(start + elapsed * 1000);
    }

    /// Acks per second, `None` until the first full second with acks was observed.
    pub(crate) fn rate(&self) -> Option<f64> {
        self.sampled.then_some(self.rate_per_sec)
    }

    /// Predicted wait of a message behind `depth` others, in ms (`u64::MAX` when nothing drains).
    pub(crate) fn predicted_wait_ms(&self, depth: u64) -> Option<u64> {
        let rate = self.rate()?;
        if depth == 0 {
            return Some(0);
        }
        if rate < 1e-6 {
            return Some(u64::MAX);
        }
        Some((depth as f64 / rate * 1000.0).min(u64::MAX as f64) as u64)
    }

    fn retry_after(&self, excess_messages: u64) -> u64 {
        match self.rate() {
            Some(rate) if rate >= 1e-6 => ((excess_messages.max(1) as f64 / rate * 1000.0)
                .min(MAX_RETRY_MS as f64) as u64)
                .clamp(MIN_RETRY_MS, MAX_RETRY_MS),
            _ => UNKNOWN_RATE_RETRY_MS,
        }
    }

    /// Admission of `add` messages of `add_bytes` body bytes onto `depth` / `bytes`.
    pub(crate) fn admit(
        &self,
        config: &QueueConfig,
        depth: u64,
        bytes: u64,
        add: u64,
        add_bytes: u64,
    ) -> Result<(), Refusal> {
        let new_depth = depth.saturating_add(add);
        if new_depth > config.max_depth {
            return Err(Refusal {
                reason: format!(
                    "queue holds {depth} messages; {add} more would exceed max_depth {}",
                    config.max_depth
                ),
                retry_after_ms: self.retry_after(new_depth - config.max_depth),
            });
        }
        let new_bytes = bytes.saturating_add(add_bytes);
        if new_bytes > config.max_bytes {
            // Messages to drain to make room, estimated with the mean body size held.
            let mean = bytes.checked_div(depth).unwrap_or(1).max(1);
            return Err(Refusal {
                reason: format!(
                    "queue holds {bytes} body bytes; {add_bytes} more would exceed max_bytes {}",
                    config.max_bytes
                ),
                retry_after_ms: self.retry_after((new_bytes - config.max_bytes).div_ceil(mean)),
            });
        }
        if let (Some(target), Some(wait)) = (config.max_latency_ms, self.predicted_wait_ms(depth)) {
            if depth > 0 && wait > target {
                let rate = self.rate().unwrap_or(0.0);
                let allowed = (rate * target as f64 / 1000.0) as u64;
                return Err(Refusal {
                    reason: format!(
                        "predicted wait {wait} ms exceeds max_latency_ms {target} \
                         ({depth} messages at {rate:.1} acks/s)"
                    ),
                    retry_after_ms: self.retry_after(depth.saturating_sub(allowed)),
                });
            }
        }
        Ok(())
    }

    /// Updates the 70 % flags and returns the transitions.
    pub(crate) fn check_warnings(
        &mut self,
        config: &QueueConfig,
        depth: u64,
        bytes: u64,
    ) -> Vec<Crossing> {
        let latency = config
            .max_latency_ms
            .map(|target| (self.predicted_wait_ms(depth).unwrap_or(0), target));
        let values = [
            Some((depth, config.max_depth)),
            Some((bytes, config.max_bytes)),
            latency,
        ];
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let (value, limit) = v.unwrap_or((0, u64::MAX));
            let above = u128::from(value) * 100 >= u128::from(limit) * u128::from(WARN_PERCENT);
            if above != self.above[i] {
                self.above[i] = above;
                out.push(Crossing {
                    bound: BOUNDS[i],
                    above,
                    value,
                    limit,
                });
            }
        }
        out
    }

    pub(crate) fn any_above(&self) -> bool {
        self.above.iter().any(|a| *a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> QueueConfig {
        QueueConfig {
            max_depth: 10,
            max_bytes: 100,
            ..QueueConfig::default()
        }
    }

    #[test]
    fn depth_and_bytes_bounds() {
        let p = Pressure::default();
        assert!(p.admit(&cfg(), 9, 0, 1, 0).is_ok());
        let r = p.admit(&cfg(), 9, 0, 2, 0).expect_err("busy");
        assert_eq!(r.retry_after_ms, UNKNOWN_RATE_RETRY_MS);
        assert!(p.admit(&cfg(), 0, 90, 1, 11).is_err());
    }

    #[test]
    fn drain_rate_drives_latency_and_retry_hints() {
        let mut p = Pressure::default();
        let c = QueueConfig {
            max_latency_ms: Some(2000),
            ..cfg()
        };
        assert!(
            p.admit(&c, 5, 0, 1, 0).is_ok(),
            "unknown rate: no latency bound"
        );
        p.record_acks(2, 1000);
        p.roll(2000);
        assert_eq!(p.rate(), Some(2.0));
        assert_eq!(p.predicted_wait_ms(4), Some(2000));
        assert!(p.admit(&c, 4, 0, 1, 0).is_ok());
        let r = p.admit(&c, 6, 0, 1, 0).expect_err("too slow");
        assert!((MIN_RETRY_MS..=MAX_RETRY_MS).contains(&r.retry_after_ms));
        p.roll(10_000); // eight idle seconds decay the rate
        assert!(p.rate().is_some_and(|r| r < 0.2));
        p.roll(1_000_000);
        assert_eq!(p.predicted_wait_ms(1), Some(u64::MAX));
    }

    #[test]
    fn warnings_fire_on_crossings_only() {
        let mut p = Pressure::default();
        assert!(p.check_warnings(&cfg(), 6, 0).is_empty());
        let up = p.check_warnings(&cfg(), 7, 0);
        assert_eq!(up.len(), 1);
        assert!(up[0].above && up[0].bound == "max_depth");
        assert!(p.any_above());
        assert!(p.check_warnings(&cfg(), 8, 0).is_empty());
        let down = p.check_warnings(&cfg(), 1, 0);
        assert!(!down[0].above);
    }
}
