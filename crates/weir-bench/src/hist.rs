//! Latency histograms (HDR, microsecond resolution) and the percentiles reported from them.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Highest latency a histogram can hold: 10 minutes, in microseconds. Larger values are clamped.
pub const MAX_LATENCY_US: u64 = 600_000_000;

/// A latency histogram in microseconds with 3 significant digits.
#[derive(Debug, Clone)]
pub struct LatencyHist {
    inner: Histogram<u64>,
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHist {
    /// An empty histogram covering 1 µs ..= [`MAX_LATENCY_US`].
    pub fn new() -> Self {
        let inner = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .expect("static bounds are valid for hdrhistogram");
        Self { inner }
    }

    /// Records one latency; values below 1 µs count as 1 µs, above the maximum as the maximum.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record_us(us);
    }

    /// Records one latency given in microseconds (clamped like [`LatencyHist::record`]).
    pub fn record_us(&mut self, us: u64) {
        let v = us.clamp(1, MAX_LATENCY_US);
        self.inner.saturating_record(v);
    }

    /// Adds every value of `other` to this histogram.
    pub fn merge(&mut self, other: &LatencyHist) {
        // Same bounds on both sides, so `add` cannot fail.
        self.inner
            .add(&other.inner)
            .expect("histograms share their bounds");
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.inner.len()
    }

    /// The summary reported for this histogram, or `None` when it is empty.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.inner.is_empty() {
            return None;
        }
        let q = |q: f64| self.inner.value_at_quantile(q);
        Some(Percentiles {
            count: self.inner.len(),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.inner.max(),
            mean_us: self.inner.mean(),
        })
    }
}

/// Latency percentiles in microseconds (HDR, 3 significant digits: each value is within 0.1 %).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value.
    pub max_us: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

/// Formats microseconds for humans: `850 µs`, `1.25 ms`, `3.1 s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(value: u64, expected: u64) -> bool {
        // 3 significant digits: HDR reports the highest value equivalent to the bucket, ≤ 0.1 % off.
        let tol = (expected / 1000).max(1);
        value.abs_diff(expected) <= tol
    }

    #[test]
    fn uniform_1_to_10000_gives_textbook_percentiles() {
        let mut h = LatencyHist::new();
        for us in 1..=10_000 {
            h.record_us(us);
        }
        let p = h.percentiles().unwrap();
        assert_eq!(p.count, 10_000);
        assert!(within(p.p50_us, 5_000), "p50 {}", p.p50_us);
        assert!(within(p.p90_us, 9_000), "p90 {}", p.p90_us);
        assert!(within(p.p99_us, 9_900), "p99 {}", p.p99_us);
        assert!(within(p.p999_us, 9_990), "p999 {}", p.p999_us);
        assert!(within(p.max_us, 10_000), "max {}", p.max_us);
        assert!((p.mean_us - 5_000.5).abs() < 10.0);
    }

    #[test]
    fn a_single_outlier_shows_in_max_and_p999_only() {
        let mut h = LatencyHist::new();
        for _ in 0..999 {
            h.record_us(100);
        }
        h.record_us(50_000);
        let p = h.percentiles().unwrap();
        assert_eq!(p.p50_us, 100);
        assert_eq!(p.p99_us, 100);
        assert!(within(p.max_us, 50_000));
        // 0.999 × 1000 = 999 values ≤ 100 µs, so p99.9 is still the common value.
        assert_eq!(p.p999_us, 100);
    }

    #[test]
    fn merge_adds_counts_and_clamps_apply() {
        let mut a = LatencyHist::new();
        let mut b = LatencyHist::new();
        a.record(Duration::from_nanos(10)); // below 1 µs → 1 µs
        b.record_us(u64::MAX); // above the maximum → clamped
        a.merge(&b);
        let p = a.percentiles().unwrap();
        assert_eq!(p.count, 2);
        assert_eq!(p.p50_us, 1);
        assert!(within(p.max_us, MAX_LATENCY_US));
        assert!(LatencyHist::new().percentiles().is_none());
    }

    #[test]
    fn fmt_us_picks_units() {
        assert_eq!(fmt_us(850), "850 µs");
        assert_eq!(fmt_us(1_250), "1.25 ms");
        assert_eq!(fmt_us(3_100_000), "3.10 s");
    }
}
