//! Prometheus metrics: per-queue, per-subscription, per-topic and per-stream gauges and counters
//! read from the broker at scrape time ([`pubsub`] for topics and streams), and latency histograms
//! observed by the server (publish→confirm, publish→deliver), and the storage's fsync latencies.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_broker::{Broker, QueueStats};
use weir_store::{Store, SyncLatency, SYNC_BUCKETS_US};

mod pubsub;

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
        let buckets = BUCKETS_S
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| (*bound, n.load(Ordering::Relaxed)));
        let count = self.count.load(Ordering::Relaxed);
        let sum_us = self.sum_us.load(Ordering::Relaxed);
        render_histogram(out, name, help, buckets, count, sum_us);
    }
}

/// Writes a Prometheus histogram from per-bucket counts (upper bound in seconds, count in that
/// bucket alone), the total count and the sum in µs.
fn render_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    buckets: impl Iterator<Item = (f64, u64)>,
    count: u64,
    sum_us: u64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, n) in buckets {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let sum = sum_us as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
}

/// Server-observed metrics, shared by the HTTP and native fronts.
#[derive(Debug, Default)]
pub struct Metrics {
    confirm: Histogram,
    delivery_age: Histogram,
    /// The store whose fsync latencies are exported (none: not exported).
    store: Option<Arc<dyn Store>>,
}

impl Metrics {
    /// Metrics that also export `store`'s fsync latencies (`weir_fdatasync_seconds`).
    pub fn with_store(store: Arc<dyn Store>) -> Metrics {
        Metrics {
            store: Some(store),
            ..Metrics::default()
        }
    }

    /// Records the time from receiving a publish to confirming it (durable).
    pub fn observe_confirm(&self, elapsed: Duration) {
        self.confirm.observe_us(elapsed.as_micros() as u64);
    }

    /// Records a delivered message's age (delivery time minus enqueue time).
    pub fn observe_delivery_age_ms(&self, age_ms: u64) {
        self.delivery_age.observe_us(age_ms.saturating_mul(1000));
    }

    /// Renders everything in the Prometheus text format: queues, topics (with their
    /// subscriptions), streams (with their partitions and consumer groups), the histograms.
    pub fn render(&self, broker: &Broker) -> String {
        let mut out = String::new();
        let quarantined = broker.quarantined();
        let _ = writeln!(
            out,
            "# HELP weir_queues_quarantined Queues refused at start because their storage is damaged.\n# TYPE weir_queues_quarantined gauge\nweir_queues_quarantined {}",
            quarantined.len()
        );
        let queues = broker.list_queues();
        let rows: Vec<(String, &QueueStats)> = queues
            .iter()
            .map(|q| (format!("queue=\"{}\"", q.name), q))
            .collect();
        render_queue_family(&mut out, "weir_queue", "weir", &rows);
        pubsub::render_topics(&mut out, &broker.list_topics());
        pubsub::render_streams(&mut out, broker);
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
        if let Some(l) = self.store.as_ref().and_then(|s| s.sync_latency()) {
            render_sync_latency(&mut out, &l);
        }
        out
    }
}

/// The storage's data fsyncs as a Prometheus histogram: every confirmed write waited for one.
fn render_sync_latency(out: &mut String, l: &SyncLatency) {
    let buckets = SYNC_BUCKETS_US
        .iter()
        .zip(&l.buckets)
        .map(|(bound_us, n)| (*bound_us as f64 / 1e6, *n));
    render_histogram(
        out,
        "weir_fdatasync_seconds",
        "Duration of the data fsyncs (fdatasync) of the storage's logs and journals.",
        buckets,
        l.count,
        l.sum_us,
    );
}

type Field = fn(&QueueStats) -> u64;

/// Gauges of a queue-like thing: (name suffix, help, field).
const QUEUE_GAUGES: [(&str, &str, Field); 6] = [
    ("ready", "Messages ready for delivery.", |s| s.ready),
    ("in_flight", "Messages leased to consumers.", |s| {
        s.in_flight
    }),
    (
        "delayed",
        "Messages waiting for their delay or backoff.",
        |s| s.delayed,
    ),
    (
        "depth",
        "All messages held (ready + in flight + delayed).",
        |s| s.total,
    ),
    ("bytes", "Body bytes held.", |s| s.bytes),
    ("disk_bytes", "Bytes the files occupy.", |s| s.disk_bytes),
];

/// Counters of a queue-like thing: (name suffix, help, field).
const QUEUE_COUNTERS: [(&str, &str, Field); 9] = [
    ("published_total", "Messages accepted.", |s| {
        s.published_total
    }),
    ("delivered_total", "Deliveries made.", |s| s.delivered_total),
    ("acked_total", "Messages acknowledged.", |s| s.acked_total),
    ("nacked_total", "Negative acknowledgements.", |s| {
        s.nacked_total
    }),
    ("redelivered_total", "Deliveries after the first.", |s| {
        s.redelivered_total
    }),
    ("expired_leases_total", "Leases that ran out.", |s| {
        s.expired_leases_total
    }),
    (
        "dead_lettered_total",
        "Messages moved to a dead-letter queue.",
        |s| s.dead_lettered_total,
    ),
    ("refused_total", "Publishes refused as busy.", |s| {
        s.refused_total
    }),
    (
        "duplicates_total",
        "Publishes recognised as duplicates.",
        |s| s.duplicates_total,
    ),
];

/// Renders the gauges (`<gauge_prefix>_ready`, ...), counters (`<counter_prefix>_acked_total`,
/// ...) and the 70 % warning of queue-like rows, each row with its label set (e.g.
/// `queue="q"`, or `topic="t",subscription="s"`).
pub(crate) fn render_queue_family(
    out: &mut String,
    gauge_prefix: &str,
    counter_prefix: &str,
    rows: &[(String, &QueueStats)],
) {
    for (suffix, help, field) in QUEUE_GAUGES {
        let name = format!("{gauge_prefix}_{suffix}");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, q) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {}", field(q));
        }
    }
    for (suffix, help, field) in QUEUE_COUNTERS {
        let name = format!("{counter_prefix}_{suffix}");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, q) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {}", field(q));
        }
    }
    let name = format!("{gauge_prefix}_above_warning");
    let _ = writeln!(
        out,
        "# HELP {name} 1 while above 70% of a bound.\n# TYPE {name} gauge"
    );
    for (labels, q) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {}", u8::from(q.above_warning));
    }
}
