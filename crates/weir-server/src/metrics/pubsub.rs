//! Topic and stream metrics: per topic (messages stored once, refusals, disk), per subscription
//! (the same gauges and counters as a queue), per stream partition (offsets, disk) and per
//! consumer group (members, generation, lag per partition).

use std::fmt::Write as _;

use weir_broker::{Broker, QueueStats, StreamStats, TopicStats};

use super::render_queue_family;

/// Renders one metric family's header and its rows (`labels`, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, rows: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Topic families, then every subscription as a queue family (`weir_subscription_*`, labelled
/// `topic` and `subscription`).
pub(super) fn render_topics(out: &mut String, topics: &[TopicStats]) {
    type TopicField = fn(&TopicStats) -> u64;
    let families: [(&str, &str, &str, TopicField); 6] = [
        (
            "weir_topic_published_total",
            "counter",
            "Messages stored (once each, whatever the subscription count).",
            |t| t.published_total,
        ),
        (
            "weir_topic_duplicates_total",
            "counter",
            "Publishes recognised as duplicates.",
            |t| t.duplicates_total,
        ),
        (
            "weir_topic_refused_total",
            "counter",
            "Messages refused as busy (the fullest subscription is at a bound).",
            |t| t.refused_total,
        ),
        (
            "weir_topic_disk_bytes",
            "gauge",
            "Bytes the topic's shared message log occupies.",
            |t| t.disk_bytes,
        ),
        (
            "weir_topic_retained_messages",
            "gauge",
            "Messages the shared log still holds (some subscription may need them).",
            |t| t.next_offset.saturating_sub(t.start_offset),
        ),
        (
            "weir_topic_subscriptions",
            "gauge",
            "Subscriptions of the topic.",
            |t| t.subscriptions.len() as u64,
        ),
    ];
    for (name, kind, help, field) in families {
        let rows: Vec<(String, u64)> = topics
            .iter()
            .map(|t| (format!("topic=\"{}\"", t.name), field(t)))
            .collect();
        family(out, name, kind, help, &rows);
    }
    let slowest: Vec<(String, u64)> = topics
        .iter()
        .flat_map(|t| {
            t.subscriptions.iter().map(move |s| {
                let labels = format!("topic=\"{}\",subscription=\"{}\"", t.name, s.name);
                (
                    labels,
                    u64::from(t.slowest.as_deref() == Some(s.name.as_str())),
                )
            })
        })
        .collect();
    family(
        out,
        "weir_subscription_slowest",
        "gauge",
        "1 for the subscription holding the most messages of its topic (it refuses publishes first).",
        &slowest,
    );
    let subscriptions: Vec<(String, &QueueStats)> = topics
        .iter()
        .flat_map(|t| {
            t.subscriptions.iter().map(move |s| {
                let labels = format!("topic=\"{}\",subscription=\"{}\"", t.name, s.name);
                (labels, s)
            })
        })
        .collect();
    render_queue_family(
        out,
        "weir_subscription",
        "weir_subscription",
        &subscriptions,
    );
}

/// Stream partition families and consumer-group families.
pub(super) fn render_streams(out: &mut String, broker: &Broker) {
    let streams = broker.list_streams();
    type PartitionField = fn(&weir_broker::PartitionStats) -> u64;
    let families: [(&str, &str, PartitionField); 4] = [
        (
            "weir_stream_end_offset",
            "One past the partition's last durable record (records appended so far).",
            |p| p.end_offset,
        ),
        (
            "weir_stream_start_offset",
            "The lowest offset the partition retains.",
            |p| p.start_offset,
        ),
        (
            "weir_stream_disk_bytes",
            "Bytes the partition's segments occupy.",
            |p| p.bytes,
        ),
        (
            "weir_stream_segments",
            "Segments of the partition on disk.",
            |p| p.segments,
        ),
    ];
    for (name, help, field) in families {
        let rows: Vec<(String, u64)> = streams
            .iter()
            .flat_map(|s| {
                s.partitions.iter().map(move |p| {
                    let labels = format!("stream=\"{}\",partition=\"{}\"", s.name, p.partition);
                    (labels, field(p))
                })
            })
            .collect();
        family(out, name, "gauge", help, &rows);
    }
    render_groups(out, broker, &streams);
}

fn render_groups(out: &mut String, broker: &Broker, streams: &[StreamStats]) {
    let mut members = Vec::new();
    let mut generations = Vec::new();
    let mut lags = Vec::new();
    for s in streams {
        for g in &s.groups {
            // A group deleted between the listing and here is simply not reported.
            let Ok(status) = broker.group_status(&s.name, g) else {
                continue;
            };
            let labels = format!("stream=\"{}\",group=\"{}\"", s.name, g);
            members.push((labels.clone(), status.members.len() as u64));
            generations.push((labels.clone(), status.generation));
            for p in &status.partitions {
                lags.push((format!("{labels},partition=\"{}\"", p.partition), p.lag));
            }
        }
    }
    family(
        out,
        "weir_stream_group_members",
        "gauge",
        "Live members of the consumer group.",
        &members,
    );
    family(
        out,
        "weir_stream_group_generation",
        "gauge",
        "The group's generation (it grows on every rebalance).",
        &generations,
    );
    family(
        out,
        "weir_stream_group_lag",
        "gauge",
        "Records of the partition the group has not committed yet.",
        &lags,
    );
}
