//! Conversions between the wire types of `weir_proto::frame` and the broker's types.

use weir_broker::{NewMessage, QueueConfig, QueueStats};
use weir_proto::frame::{Delivery, OutMessage, QueueInfo, QueueOptions};

/// A wire message as the broker takes it.
pub(super) fn message(m: OutMessage) -> NewMessage {
    NewMessage {
        id: m.id,
        key: m.key,
        headers: m.headers,
        body: m.body,
        priority: m.priority,
        delay_ms: m.delay_ms,
    }
}

/// A broker delivery as the wire carries it.
pub(super) fn delivery(d: weir_broker::Delivery) -> Delivery {
    Delivery {
        id: d.id,
        receipt: d.receipt,
        key: d.key,
        headers: d.headers,
        body: d.body,
        attempt: d.attempt,
        enqueued_at_ms: d.enqueued_at_ms,
        priority: d.priority,
    }
}

/// `base` with every option that is set applied (PUT semantics: absent keeps the base value).
pub(super) fn apply_options(mut base: QueueConfig, o: QueueOptions) -> QueueConfig {
    if let Some(v) = o.max_depth {
        base.max_depth = v;
    }
    if let Some(v) = o.max_bytes {
        base.max_bytes = v;
    }
    if let Some(v) = o.max_latency_ms {
        base.max_latency_ms = Some(v);
    }
    if let Some(v) = o.lease_ms {
        base.lease_ms = v;
    }
    if let Some(v) = o.max_attempts {
        base.max_attempts = v;
    }
    if let Some(v) = o.backoff_base_ms {
        base.backoff_base_ms = v;
    }
    if let Some(v) = o.backoff_max_ms {
        base.backoff_max_ms = v;
    }
    if let Some(v) = o.dead_letter_queue {
        base.dead_letter_queue = Some(v);
    }
    if let Some(v) = o.dedup_window_ms {
        base.dedup_window_ms = v;
    }
    if let Some(v) = o.ordered_by_key {
        base.ordered_by_key = v;
    }
    base
}

/// A queue's settings with every field present.
fn options(name: &str, c: &QueueConfig) -> QueueOptions {
    QueueOptions {
        max_depth: Some(c.max_depth),
        max_bytes: Some(c.max_bytes),
        max_latency_ms: c.max_latency_ms,
        lease_ms: Some(c.lease_ms),
        max_attempts: Some(c.max_attempts),
        backoff_base_ms: Some(c.backoff_base_ms),
        backoff_max_ms: Some(c.backoff_max_ms),
        dead_letter_queue: Some(c.dead_letter_name(name)),
        dedup_window_ms: Some(c.dedup_window_ms),
        ordered_by_key: Some(c.ordered_by_key),
    }
}

/// A queue's counters and settings as the wire carries them.
pub(super) fn info(s: QueueStats, created: bool) -> QueueInfo {
    let dlq_base = s.name.clone();
    info_as(s, &dlq_base, created)
}

/// A topic subscription's counters and settings (named after the subscription; its default
/// dead-letter queue is `<topic>.<subscription>.dlq`).
pub(super) fn subscription_info(topic: &str, s: QueueStats, created: bool) -> QueueInfo {
    let dlq_base = format!("{topic}.{}", s.name);
    info_as(s, &dlq_base, created)
}

/// `s` on the wire, its default dead-letter queue named after `dlq_base`.
fn info_as(s: QueueStats, dlq_base: &str, created: bool) -> QueueInfo {
    QueueInfo {
        config: options(dlq_base, &s.config),
        name: s.name,
        created,
        ready: s.ready,
        in_flight: s.in_flight,
        delayed: s.delayed,
        total: s.total,
        bytes: s.bytes,
        published_total: s.published_total,
        delivered_total: s.delivered_total,
        acked_total: s.acked_total,
        nacked_total: s.nacked_total,
        dead_lettered_total: s.dead_lettered_total,
        refused_total: s.refused_total,
        duplicates_total: s.duplicates_total,
        redelivered_total: s.redelivered_total,
        expired_leases_total: s.expired_leases_total,
        disk_bytes: s.disk_bytes,
    }
}
