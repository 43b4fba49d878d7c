//! The relay's metrics: rows pending, lag in seconds, publish rate, and counters, readable as a
//! snapshot or as Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Live counters and gauges of one relay. Cheap to update from the relay loop.
#[derive(Debug)]
pub struct RelayMetrics {
    published: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    busy: AtomicU64,
    unavailable: AtomicU64,
    errors: AtomicU64,
    cleaned: AtomicU64,
    held_back: AtomicU64,
    pending: AtomicU64,
    failed_rows: AtomicU64,
    lag_ms: AtomicU64,
    rate: Mutex<RateWindow>,
}

#[derive(Debug)]
struct RateWindow {
    since: Instant,
    published_then: u64,
    rate_per_sec: f64,
}

/// A point-in-time copy of [`RelayMetrics`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Rows Weir confirmed (including duplicates).
    pub published_total: u64,
    /// Rows Weir recognised as already stored (a re-publish after a crash or a lost answer).
    pub duplicates_total: u64,
    /// Rows Weir refused for good and that were marked failed.
    pub failed_total: u64,
    /// Batches claimed.
    pub batches_total: u64,
    /// Busy (503) answers.
    pub busy_total: u64,
    /// Publishes that failed because Weir was unreachable or answered unexpectedly.
    pub unavailable_total: u64,
    /// Database errors (each followed by a reconnect).
    pub errors_total: u64,
    /// Sent rows deleted after the retention period.
    pub cleaned_total: u64,
    /// Rows skipped in a batch because another relay held an older row of the same key.
    pub held_back_total: u64,
    /// Unsent rows in the table at the last measurement.
    pub pending_rows: u64,
    /// Rows marked failed in the table at the last measurement.
    pub failed_rows: u64,
    /// Age of the oldest unsent row at the last measurement, in seconds.
    pub lag_secs: f64,
    /// Rows published per second over the last measurement interval.
    pub publish_rate_per_sec: f64,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        RelayMetrics {
            published: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            cleaned: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            failed_rows: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            rate: Mutex::new(RateWindow {
                since: Instant::now(),
                published_then: 0,
                rate_per_sec: 0.0,
            }),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl RelayMetrics {
    pub(crate) fn record_batch(&self, published: u64, duplicates: u64, failed: u64, held: u64) {
        add(&self.batches, 1);
        add(&self.published, published);
        add(&self.duplicates, duplicates);
        add(&self.failed, failed);
        add(&self.held_back, held);
    }

    pub(crate) fn record_busy(&self) {
        add(&self.busy, 1);
    }

    pub(crate) fn record_unavailable(&self) {
        add(&self.unavailable, 1);
    }

    pub(crate) fn record_error(&self) {
        add(&self.errors, 1);
    }

    pub(crate) fn record_cleaned(&self, n: u64) {
        add(&self.cleaned, n);
    }

    pub(crate) fn set_lag_secs(&self, lag_secs: f64) {
        self.lag_ms
            .store((lag_secs.max(0.0) * 1000.0) as u64, Ordering::Relaxed);
    }

    /// Records a table measurement and rolls the publish-rate window.
    pub(crate) fn record_stats(&self, pending: u64, failed_rows: u64, lag_secs: f64) {
        self.pending.store(pending, Ordering::Relaxed);
        self.failed_rows.store(failed_rows, Ordering::Relaxed);
        self.set_lag_secs(lag_secs);
        let published = self.published.load(Ordering::Relaxed);
        if let Ok(mut window) = self.rate.lock() {
            let elapsed = window.since.elapsed().as_secs_f64();
            if elapsed > 0.0 {
                window.rate_per_sec =
                    published.saturating_sub(window.published_then) as f64 / elapsed;
            }
            window.since = Instant::now();
            window.published_then = published;
        }
    }

    /// A copy of every value.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            published_total: get(&self.published),
            duplicates_total: get(&self.duplicates),
            failed_total: get(&self.failed),
            batches_total: get(&self.batches),
            busy_total: get(&self.busy),
            unavailable_total: get(&self.unavailable),
            errors_total: get(&self.errors),
            cleaned_total: get(&self.cleaned),
            held_back_total: get(&self.held_back),
            pending_rows: get(&self.pending),
            failed_rows: get(&self.failed_rows),
            lag_secs: get(&self.lag_ms) as f64 / 1000.0,
            publish_rate_per_sec: self.rate.lock().map(|w| w.rate_per_sec).unwrap_or(0.0),
        }
    }

    /// The metrics in Prometheus text format (names prefixed `weir_outbox_`).
    pub fn render_prometheus(&self) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: f64| {
            // Writing to a String cannot fail.
            let _ = write!(
                out,
                "# HELP weir_outbox_{name} {help}\n# TYPE weir_outbox_{name} {kind}\nweir_outbox_{name} {value}\n"
            );
        };
        line(
            "published_total",
            "counter",
            "Rows confirmed by Weir.",
            s.published_total as f64,
        );
        line(
            "duplicates_total",
            "counter",
            "Rows Weir already had (dedup).",
            s.duplicates_total as f64,
        );
        line(
            "failed_total",
            "counter",
            "Rows refused for good and marked failed.",
            s.failed_total as f64,
        );
        line(
            "batches_total",
            "counter",
            "Batches claimed.",
            s.batches_total as f64,
        );
        line(
            "busy_total",
            "counter",
            "Busy answers from Weir.",
            s.busy_total as f64,
        );
        line(
            "unavailable_total",
            "counter",
            "Publishes that could not reach Weir.",
            s.unavailable_total as f64,
        );
        line(
            "errors_total",
            "counter",
            "Database errors.",
            s.errors_total as f64,
        );
        line(
            "cleaned_total",
            "counter",
            "Sent rows deleted after retention.",
            s.cleaned_total as f64,
        );
        line(
            "held_back_total",
            "counter",
            "Rows held back to keep per-key order.",
            s.held_back_total as f64,
        );
        line(
            "pending_rows",
            "gauge",
            "Unsent rows.",
            s.pending_rows as f64,
        );
        line(
            "failed_rows",
            "gauge",
            "Rows marked failed.",
            s.failed_rows as f64,
        );
        line(
            "lag_seconds",
            "gauge",
            "Age of the oldest unsent row.",
            s.lag_secs,
        );
        line(
            "publish_rate",
            "gauge",
            "Rows published per second.",
            s.publish_rate_per_sec,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_and_text() {
        let m = RelayMetrics::default();
        m.record_batch(10, 2, 1, 0);
        m.record_busy();
        m.record_stats(5, 1, 1.5);
        let s = m.snapshot();
        assert_eq!(
            (s.published_total, s.duplicates_total, s.failed_total),
            (10, 2, 1)
        );
        assert_eq!((s.pending_rows, s.busy_total), (5, 1));
        assert!((s.lag_secs - 1.5).abs() < 0.01);
        assert!(s.publish_rate_per_sec > 0.0);
        let text = m.render_prometheus();
        assert!(text.contains("weir_outbox_pending_rows 5\n"), "{text}");
        assert!(text.contains("weir_outbox_lag_seconds 1.5\n"), "{text}");
    }
}
