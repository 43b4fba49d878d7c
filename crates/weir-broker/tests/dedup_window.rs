//! Deduplication of client-supplied ids.

mod common;

use bytes::Bytes;
use common::Harness;
use weir_broker::{NewMessage, QueueConfig};

fn with_id(id: &str, body: &str) -> NewMessage {
    NewMessage {
        id: Some(id.to_string()),
        body: Bytes::from(body.to_string()),
        ..NewMessage::default()
    }
}

#[test]
fn duplicates_within_the_window_are_not_stored() {
    let mut h = Harness::new();
    h.queue(
        "q",
        QueueConfig {
            dedup_window_ms: 10_000,
            ..QueueConfig::default()
        },
    );
    let out = h
        .broker
        .publish(
            "q",
            vec![with_id("a", "1"), with_id("a", "2"), with_id("b", "3")],
        )
        .expect("publish");
    let dups: Vec<bool> = out.messages.iter().map(|p| p.duplicate).collect();
    assert_eq!(dups, vec![false, true, false]);
    assert_eq!(out.messages[1].id, "a");
    common::block(out.durable);
    assert!(h.publish_one("q", with_id("a", "4")).duplicate);
    // Still a duplicate after it was consumed and acked, and after a restart.
    let d = h.receive("q", 10);
    assert_eq!(d.len(), 2);
    h.ack("q", &d);
    h.advance(5_000);
    h.restart();
    assert!(h.publish_one("q", with_id("a", "5")).duplicate);
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!(s.total, 0);
    // Once the window passed the id is new again.
    h.advance(5_000);
    assert!(!h.publish_one("q", with_id("a", "6")).duplicate);
    let d = h.receive("q", 10);
    assert_eq!(d[0].body, "6");
}

#[test]
fn dedup_table_survives_snapshots() {
    let mut h = Harness::with_options(weir_broker::BrokerOptions {
        snapshot_every_bytes: 0,
        rng_seed: Some(9),
        ..weir_broker::BrokerOptions::default()
    });
    h.queue("q", QueueConfig::default());
    h.publish_one("q", with_id("x", "1"));
    let d = h.receive("q", 1);
    h.ack("q", &d);
    assert!(h.broker.tick().snapshots >= 1);
    h.restart();
    assert!(h.publish_one("q", with_id("x", "2")).duplicate);
}
