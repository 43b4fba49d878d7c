//! Back pressure (all-or-nothing busy) and the 70 % warnings.

mod common;

use bytes::Bytes;
use common::Harness;
use weir_broker::{BrokerError, BrokerEvent, NewMessage, QueueConfig};

fn batch(n: usize, size: usize) -> Vec<NewMessage> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    (0..n)
        .map(|_| NewMessage {
            id: Some(format!(
                "id-{}",
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )),
            body: Bytes::from(vec![b'x'; size]),
            ..NewMessage::default()
        })
        .collect()
}

#[test]
fn depth_bound_refuses_the_whole_batch() {
    let h = Harness::new();
    h.queue(
        "q",
        QueueConfig {
            max_depth: 10,
            ..QueueConfig::default()
        },
    );
    common::block(h.broker.publish("q", batch(8, 1)).expect("fits").durable);
    let e = h.broker.publish("q", batch(3, 2)).expect_err("busy");
    let BrokerError::Busy { retry_after_ms, .. } = &e else {
        panic!("{e:?}")
    };
    assert!((1000..=60_000).contains(retry_after_ms));
    assert_eq!(e.code(), weir_proto::ErrorCode::Busy);
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!((s.total, s.refused_total), (8, 3));
    // Nothing of the refused batch was stored or remembered for dedup.
    let out = h.broker.publish("q", batch(2, 2)).expect("fits now");
    assert!(out.messages.iter().all(|p| !p.duplicate));
    common::block(out.durable);
    assert_eq!(h.broker.queue_stats("q").expect("stats").total, 10);
}

#[test]
fn bytes_bound_refuses_the_whole_batch() {
    let h = Harness::new();
    h.queue(
        "q",
        QueueConfig {
            max_bytes: 1000,
            ..QueueConfig::default()
        },
    );
    common::block(h.broker.publish("q", batch(9, 100)).expect("fits").durable);
    assert!(matches!(
        h.broker.publish("q", batch(2, 100)),
        Err(BrokerError::Busy { .. })
    ));
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!((s.total, s.bytes), (9, 900));
    // Draining makes room.
    let d = h.receive("q", 5);
    h.ack("q", &d);
    common::block(h.broker.publish("q", batch(2, 100)).expect("fits").durable);
}

#[test]
fn warnings_fire_above_seventy_percent_and_clear_below() {
    let h = Harness::new();
    h.queue(
        "q",
        QueueConfig {
            max_depth: 10,
            ..QueueConfig::default()
        },
    );
    h.publish("q", &["1", "2", "3", "4", "5", "6"]);
    assert!(h.broker.events().is_empty());
    h.publish("q", &["7"]);
    let ev = h.broker.events();
    assert_eq!(
        ev,
        vec![BrokerEvent::BoundWarning {
            queue: "q".into(),
            bound: "max_depth",
            above: true,
            value: 7,
            limit: 10
        }]
    );
    assert!(h.broker.queue_stats("q").expect("stats").above_warning);
    let d = h.receive("q", 3);
    h.ack("q", &d);
    h.broker.tick();
    let ev = h.broker.events();
    assert!(matches!(
        ev.as_slice(),
        [BrokerEvent::BoundWarning { above: false, .. }]
    ));
    assert!(!h.broker.queue_stats("q").expect("stats").above_warning);
}

#[test]
fn latency_bound_uses_the_drain_rate() {
    let h = Harness::new();
    h.queue(
        "q",
        QueueConfig {
            max_latency_ms: Some(5_000),
            ..QueueConfig::default()
        },
    );
    let bodies: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    h.publish("q", &refs);
    // Drain 2 messages a second for a few seconds: the rate settles around 2/s.
    for _ in 0..5 {
        let d = h.receive("q", 2);
        h.ack("q", &d);
        h.advance(1000);
        h.broker.tick();
    }
    // 90 messages at 2/s is 45 s > 5 s: refused with a hint.
    let e = h.broker.publish("q", batch(1, 1)).expect_err("too slow");
    assert!(
        matches!(e, BrokerError::Busy { retry_after_ms, .. } if (1000..=60_000).contains(&retry_after_ms))
    );
}
