//! Prometheus metrics: per-queue gauges and counters read from the broker at scrape time, and
//! latency histograms observed by the server (publish→confirm, publish→deliver).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use weir_broker::QueueStats;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// A fixed-bucket histogram with atomic counters (no lock on the hot path).
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe_us(&self, us: u64) {
        let seconds = us as f64 / 1e6;
        if let Some(i) = BUCKETS_S.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS_S.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Server-observed metrics, shared by the HTTP and native fronts.
#[derive(Debug, Default)]
pub struct Metrics {
    confirm: Histogram,
    delivery_age: Histogram,
}

impl Metrics {
    /// Records the time from receiving a publish to confirming it (durable).
    pub fn observe_confirm(&self, elapsed: Duration) {
        self.confirm.observe_us(elapsed.as_micros() as u64);
    }

    /// Records a delivered message's age (delivery time minus enqueue time).
    pub fn observe_delivery_age_ms(&self, age_ms: u64) {
        self.delivery_age.observe_us(age_ms.saturating_mul(1000));
    }

    /// Renders everything in the Prometheus text format.
    pub fn render(&self, queues: &[QueueStats], quarantined: &[(String, String)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP weir_queues_quarantined Queues refused at start because their storage is damaged.\n# TYPE weir_queues_quarantined gauge\nweir_queues_quarantined {}",
            quarantined.len()
        );
        type Field = fn(&QueueStats) -> u64;
        let gauges: [(&str, &str, Field); 6] = [
            ("weir_queue_ready", "Messages ready for delivery.", |s| {
                s.ready
            }),
            (
                "weir_queue_in_flight",
                "Messages leased to consumers.",
                |s| s.in_flight,
            ),
            (
                "weir_queue_delayed",
                "Messages waiting for their delay or backoff.",
                |s| s.delayed,
            ),
            (
                "weir_queue_depth",
                "All messages held (ready + in flight + delayed).",
                |s| s.total,
            ),
            ("weir_queue_bytes", "Body bytes held.", |s| s.bytes),
            (
                "weir_queue_disk_bytes",
                "Bytes the queue's files occupy.",
                |s| s.disk_bytes,
            ),
        ];
        for (name, help, field) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for q in queues {
                let _ = writeln!(out, "{name}{{queue=\"{}\"}} {}", q.name, field(q));
            }
        }
        let counters: [(&str, &str, Field); 9] = [
            ("weir_published_total", "Messages accepted.", |s| {
                s.published_total
            }),
            ("weir_delivered_total", "Deliveries made.", |s| {
                s.delivered_total
            }),
            ("weir_acked_total", "Messages acknowledged.", |s| {
                s.acked_total
            }),
            ("weir_nacked_total", "Negative acknowledgements.", |s| {
                s.nacked_total
            }),
            (
                "weir_redelivered_total",
                "Deliveries after the first.",
                |s| s.redelivered_total,
            ),
            ("weir_expired_leases_total", "Leases that ran out.", |s| {
                s.expired_leases_total
            }),
            (
                "weir_dead_lettered_total",
                "Messages moved to a dead-letter queue.",
                |s| s.dead_lettered_total,
            ),
            ("weir_refused_total", "Publishes refused as busy.", |s| {
                s.refused_total
            }),
            (
                "weir_duplicates_total",
                "Publishes recognised as duplicates.",
                |s| s.duplicates_total,
            ),
        ];
        for (name, help, field) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for q in queues {
                let _ = writeln!(out, "{name}{{queue=\"{}\"}} {}", q.name, field(q));
            }
        }
        let _ = writeln!(
            out,
            "# HELP weir_queue_above_warning 1 while a queue is above 70% of a bound.\n# TYPE weir_queue_above_warning gauge"
        );
        for q in queues {
            let _ = writeln!(
                out,
                "weir_queue_above_warning{{queue=\"{}\"}} {}",
                q.name,
                u8::from(q.above_warning)
            );
        }
        self.confirm.render(
            &mut out,
            "weir_publish_confirm_seconds",
            "Time from receiving a publish to confirming it durable.",
        );
        self.delivery_age.render(
            &mut out,
            "weir_delivery_latency_seconds",
            "End-to-end latency: delivery time minus enqueue time.",
        );
        out
    }
}
