//! Priorities, FIFO, ordered_by_key and delayed delivery.

mod common;

use bytes::Bytes;
use common::{bodies, Harness};
use weir_broker::{NewMessage, QueueConfig};

fn msg(body: &str, priority: u8, key: Option<&str>, delay_ms: u64) -> NewMessage {
    NewMessage {
        body: Bytes::from(body.to_string()),
        priority,
        key: key.map(|k| Bytes::from(k.to_string())),
        delay_ms,
        ..NewMessage::default()
    }
}

#[test]
fn higher_priority_first_then_fifo() {
    let h = Harness::new();
    h.queue("q", QueueConfig::default());
    let batch = vec![
        msg("low1", 0, None, 0),
        msg("high1", 9, None, 0),
        msg("mid1", 5, None, 0),
        msg("low2", 0, None, 0),
        msg("high2", 9, None, 0),
        msg("mid2", 5, None, 0),
    ];
    let out = h.broker.publish("q", batch).expect("publish");
    common::block(out.durable);
    assert_eq!(bodies(&h.receive("q", 3)), vec!["high1", "high2", "mid1"]);
    assert_eq!(bodies(&h.receive("q", 10)), vec!["mid2", "low1", "low2"]);
}

#[test]
fn fifo_within_a_priority_across_many_publishes() {
    let h = Harness::new();
    h.queue("q", QueueConfig::default());
    let names: Vec<String> = (0..200).map(|i| format!("m{i:03}")).collect();
    for n in &names {
        h.publish("q", &[n.as_str()]);
    }
    let mut got = Vec::new();
    loop {
        let d = h.receive("q", 7);
        if d.is_empty() {
            break;
        }
        got.extend(bodies(&d));
        h.ack("q", &d);
    }
    assert_eq!(got, names);
}

#[test]
fn ordered_by_key_allows_one_in_flight_per_key() {
    let h = Harness::new();
    h.queue(
        "q",
        QueueConfig {
            ordered_by_key: true,
            lease_ms: 1000,
            ..QueueConfig::default()
        },
    );
    let batch = vec![
        msg("a1", 0, Some("a"), 0),
        msg("a2", 0, Some("a"), 0),
        msg("b1", 0, Some("b"), 0),
        msg("a3", 9, Some("a"), 0),
        msg("free", 0, None, 0),
        msg("b2", 0, Some("b"), 0),
    ];
    common::block(h.broker.publish("q", batch).expect("publish").durable);
    let d = h.receive("q", 10);
    assert_eq!(bodies(&d), vec!["a1", "b1", "free"]);
    assert!(
        h.receive("q", 10).is_empty(),
        "a2 and b2 wait for their keys"
    );
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!((s.ready, s.in_flight), (3, 3));
    // Acking a1 releases a2 (not a3, despite its priority); b1's lease expiry re-offers b1.
    h.ack("q", &d[..1]);
    let a2 = h.receive("q", 10);
    assert_eq!(bodies(&a2), vec!["a2"]);
    h.ack("q", &a2);
    h.advance(1000);
    let d = h.receive("q", 10);
    assert_eq!(bodies(&d), vec!["a3", "b1", "free"]);
    assert_eq!(d[1].attempt, 2);
    h.ack("q", &d);
    assert_eq!(bodies(&h.receive("q", 10)), vec!["b2"]);
}

#[test]
fn ordered_key_advances_after_dead_lettering() {
    let h = Harness::new();
    h.queue(
        "q",
        QueueConfig {
            ordered_by_key: true,
            max_attempts: 1,
            ..QueueConfig::default()
        },
    );
    let batch = vec![msg("k1", 0, Some("k"), 0), msg("k2", 0, Some("k"), 0)];
    common::block(h.broker.publish("q", batch).expect("publish").durable);
    let d = h.receive("q", 10);
    assert_eq!(bodies(&d), vec!["k1"]);
    h.broker
        .nack("q", std::slice::from_ref(&d[0].receipt), None)
        .expect("nack");
    assert_eq!(bodies(&h.receive("q", 10)), vec!["k2"]);
    assert_eq!(bodies(&h.receive("q.dlq", 10)), vec!["k1"]);
}

#[test]
fn delayed_messages_wait_then_keep_priority_order() {
    let h = Harness::new();
    h.queue("q", QueueConfig::default());
    let batch = vec![
        msg("later", 0, None, 5000),
        msg("now", 0, None, 0),
        msg("later-urgent", 9, None, 5000),
    ];
    common::block(h.broker.publish("q", batch).expect("publish").durable);
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!((s.ready, s.delayed), (1, 2));
    assert_eq!(
        h.broker.next_due_ms("q").expect("due"),
        Some(common::T0 + 5000)
    );
    assert_eq!(bodies(&h.receive("q", 10)), vec!["now"]);
    h.advance(4999);
    assert!(h.receive("q", 10).is_empty());
    h.advance(1);
    let report = h.broker.tick();
    assert_eq!(report.promoted, 2);
    assert_eq!(bodies(&h.receive("q", 10)), vec!["later-urgent", "later"]);
}

#[test]
fn tick_wakes_watchers_when_delays_pass() {
    let h = Harness::new();
    h.queue("q", QueueConfig::default());
    let mut rx = h.broker.watch_queue("q").expect("watch");
    let before = *rx.borrow_and_update();
    h.publish_one("q", msg("x", 0, None, 100));
    assert!(
        rx.has_changed().expect("open"),
        "publish durability bumps the watch"
    );
    rx.borrow_and_update();
    h.advance(100);
    h.broker.tick();
    assert!(rx.has_changed().expect("open"));
    assert_ne!(*rx.borrow_and_update(), before);
}
