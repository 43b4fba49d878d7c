//! Round trip, leases, receipts, priorities, FIFO, purge and delete.

mod common;

use common::{block, bodies, Harness};
use weir_broker::{BrokerError, NewMessage, QueueConfig};

#[test]
fn round_trip() {
    let h = Harness::new();
    h.queue("q", QueueConfig::default());
    let ids = h.publish("q", &["a", "b"]);
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    let d = h.receive("q", 10);
    assert_eq!(bodies(&d), vec!["a", "b"]);
    assert_eq!(d[0].id, ids[0]);
    assert_eq!(d[0].attempt, 1);
    assert_eq!(d[0].enqueued_at_ms, common::T0);
    assert!(d
        .iter()
        .all(|d| d.receipt.len() <= 64 && d.receipt.is_ascii()));
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!((s.ready, s.in_flight, s.total), (0, 2, 2));
    assert_eq!(h.ack("q", &d), (2, vec![]));
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!((s.ready, s.in_flight, s.total, s.acked_total), (0, 0, 0, 2));
    assert!(h.receive("q", 10).is_empty());
}

#[test]
fn unknown_queue_is_not_found() {
    let h = Harness::new();
    let e = h
        .broker
        .publish("nope", vec![NewMessage::new("x")])
        .expect_err("missing");
    assert!(matches!(e, BrokerError::NotFound { .. }));
    assert!(matches!(
        h.broker.receive("../x", 1, None),
        Err(BrokerError::InvalidName(_))
    ));
}

#[test]
fn dlq_is_created_with_the_queue() {
    let h = Harness::new();
    let (_, created) = h
        .broker
        .create_queue("q", QueueConfig::default())
        .expect("create");
    assert!(created);
    let names: Vec<String> = h.broker.list_queues().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["q", "q.dlq"]);
    let (_, created) = h
        .broker
        .create_queue("q", QueueConfig::default())
        .expect("update");
    assert!(!created);
    let _ = block;
}
