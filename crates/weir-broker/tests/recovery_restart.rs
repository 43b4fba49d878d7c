//! Restarts over the same store: what survives, what comes back, what never comes back.

mod common;

use bytes::Bytes;
use common::{bodies, Harness};
use weir_broker::{BrokerOptions, NewMessage, QueueConfig};

#[test]
fn acked_stay_gone_in_flight_become_ready_with_their_attempts() {
    let mut h = Harness::new();
    h.queue("q", QueueConfig::default());
    h.publish("q", &["a", "b", "c", "d"]);
    let d = h.receive("q", 3);
    h.ack("q", &d[..1]); // a acked; b, c in flight
    h.restart();
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!((s.total, s.ready, s.in_flight), (3, 3, 0));
    let again = h.receive("q", 10);
    assert_eq!(bodies(&again), vec!["b", "c", "d"]);
    assert_eq!(
        again.iter().map(|d| d.attempt).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    // Receipts from before the restart are stale.
    assert_eq!(h.ack("q", &d[1..]).0, 0);
    assert_eq!(h.ack("q", &again).0, 3);
    h.restart();
    assert!(h.receive("q", 10).is_empty());
}

#[test]
fn delays_and_nack_backoff_survive_a_restart() {
    let mut h = Harness::new();
    h.queue("q", QueueConfig::default());
    h.publish_one(
        "q",
        NewMessage {
            body: Bytes::from_static(b"later"),
            delay_ms: 10_000,
            ..NewMessage::default()
        },
    );
    h.publish("q", &["nacked"]);
    let d = h.receive("q", 1);
    assert_eq!(bodies(&d), vec!["nacked"]);
    h.broker
        .nack("q", std::slice::from_ref(&d[0].receipt), Some(20_000))
        .expect("nack");
    h.restart();
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!((s.delayed, s.ready), (2, 0));
    h.advance(10_000);
    assert_eq!(bodies(&h.receive("q", 10)), vec!["later"]);
    h.advance(10_000);
    let d = h.receive("q", 10);
    assert_eq!(bodies(&d), vec!["nacked"]);
    assert_eq!(d[0].attempt, 2);
}

#[test]
fn last_attempt_in_flight_at_restart_is_dead_lettered() {
    let mut h = Harness::new();
    h.queue(
        "q",
        QueueConfig {
            max_attempts: 1,
            ..QueueConfig::default()
        },
    );
    h.publish("q", &["x"]);
    assert_eq!(h.receive("q", 1).len(), 1);
    h.restart();
    h.broker.tick();
    assert!(h.receive("q", 1).is_empty());
    let dead = h.receive("q.dlq", 1);
    assert_eq!(bodies(&dead), vec!["x"]);
    assert_eq!(
        dead[0]
            .headers
            .get(weir_broker::DEAD_REASON_HEADER)
            .map(String::as_str),
        Some("lease_expired")
    );
}

#[test]
fn configs_and_deletes_survive_a_restart() {
    let mut h = Harness::new();
    let cfg = QueueConfig {
        max_depth: 77,
        ordered_by_key: true,
        ..QueueConfig::default()
    };
    h.queue("keep", cfg.clone());
    h.queue("gone", QueueConfig::default());
    h.publish("gone", &["x"]);
    h.broker.delete_queue("gone").expect("delete");
    h.restart();
    assert_eq!(h.broker.queue_stats("keep").expect("stats").config, cfg);
    assert!(h.broker.queue_stats("gone").is_err());
    h.queue("gone", QueueConfig::default());
    assert!(
        h.receive("gone", 10).is_empty(),
        "a recreated queue starts empty"
    );
}

#[test]
fn snapshots_bound_the_journal_and_recover_exactly() {
    let mut h = Harness::with_options(BrokerOptions {
        snapshot_every_bytes: 64,
        rng_seed: Some(1),
        ..BrokerOptions::default()
    });
    h.queue("q", QueueConfig::default());
    let names: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    h.publish("q", &refs);
    let mut snapshots = 0;
    let mut acked = 0;
    for round in 0..20 {
        let d = h.receive("q", 10);
        h.ack("q", &d[..5]);
        acked += 5;
        h.broker
            .nack("q", std::slice::from_ref(&d[5].receipt), Some(1000))
            .expect("nack");
        snapshots += h.broker.tick().snapshots;
        if round % 7 == 3 {
            h.restart();
        }
    }
    assert!(snapshots > 0);
    h.restart();
    h.advance(60_000);
    let mut seen = 0;
    loop {
        let d = h.receive("q", 100);
        if d.is_empty() {
            break;
        }
        seen += d.len();
        h.ack("q", &d);
    }
    assert_eq!(seen, 300 - acked);
}

#[test]
fn acknowledged_segments_are_reclaimed() {
    let mut h = Harness::with_options(BrokerOptions {
        snapshot_every_bytes: 1 << 20,
        rng_seed: Some(3),
        ..BrokerOptions::default()
    });
    h.queue("q", QueueConfig::default());
    let body = "x".repeat(100);
    let bodies_: Vec<&str> = (0..1000).map(|_| body.as_str()).collect();
    for _ in 0..3 {
        h.publish("q", &bodies_);
    }
    let before = h.broker.queue_stats("q").expect("stats").disk_bytes;
    let mut left = 3000;
    while left > 500 {
        let d = h.receive("q", 500);
        h.ack("q", &d);
        left -= d.len();
    }
    let mut reclaimed = 0;
    for _ in 0..3 {
        reclaimed += h.broker.tick().reclaimed_bytes;
    }
    assert!(reclaimed > 0, "nothing reclaimed");
    let after = h.broker.queue_stats("q").expect("stats").disk_bytes;
    assert!(after < before);
    h.restart();
    let mut rest = 0;
    loop {
        let d = h.receive("q", 1000);
        if d.is_empty() {
            break;
        }
        rest += d.len();
        h.ack("q", &d);
    }
    assert_eq!(rest, 500);
}
