//! Leases, receipts, nack backoff and dead-lettering.

mod common;

use common::{block, bodies, Harness};
use weir_broker::{QueueConfig, DEAD_REASON_HEADER, ORIGINAL_QUEUE_HEADER};

fn cfg() -> QueueConfig {
    QueueConfig {
        lease_ms: 1000,
        max_attempts: 3,
        backoff_base_ms: 100,
        backoff_max_ms: 1000,
        ..QueueConfig::default()
    }
}

#[test]
fn expired_lease_redelivers_with_a_higher_attempt() {
    let h = Harness::new();
    h.queue("q", cfg());
    h.publish("q", &["a"]);
    let first = h.receive("q", 1);
    assert_eq!(first[0].attempt, 1);
    assert_eq!(first[0].lease_deadline_ms, common::T0 + 1000);
    assert!(
        h.receive("q", 1).is_empty(),
        "leased messages are invisible"
    );
    assert_eq!(
        h.broker.next_due_ms("q").expect("due"),
        Some(common::T0 + 1000)
    );
    h.advance(999);
    assert!(h.receive("q", 1).is_empty());
    h.advance(1);
    let second = h.receive("q", 1);
    assert_eq!(bodies(&second), vec!["a"]);
    assert_eq!(second[0].attempt, 2);
    assert_ne!(first[0].receipt, second[0].receipt);
    // The first delivery's receipt is stale.
    assert_eq!(h.ack("q", &first), (0, vec![first[0].receipt.clone()]));
    assert_eq!(h.ack("q", &second), (1, vec![]));
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!((s.expired_leases_total, s.redelivered_total), (1, 1));
}

#[test]
fn expired_receipts_are_invalid_even_before_redelivery() {
    let h = Harness::new();
    h.queue("q", cfg());
    h.publish("q", &["a", "b", "c"]);
    let d = h.receive("q", 3);
    h.advance(1000);
    let r = vec![d[0].receipt.clone()];
    let ack = h.broker.ack("q", &r).expect("ack");
    assert_eq!((ack.done, ack.invalid.clone()), (0, r.clone()));
    let nack = h
        .broker
        .nack("q", std::slice::from_ref(&d[1].receipt), None)
        .expect("nack");
    assert_eq!(nack.done, 0);
    let ext = h
        .broker
        .extend("q", std::slice::from_ref(&d[2].receipt), 5000)
        .expect("extend");
    assert_eq!(ext.done, 0);
    let garbage = vec!["nonsense".to_string(), String::new(), "1-2-3".into()];
    assert_eq!(h.broker.ack("q", &garbage).expect("ack").invalid, garbage);
    // All three come back.
    assert_eq!(h.receive("q", 10).len(), 3);
}

#[test]
fn extend_keeps_the_lease() {
    let h = Harness::new();
    h.queue("q", cfg());
    h.publish("q", &["a"]);
    let d = h.receive("q", 1);
    h.advance(900);
    let ext = h
        .broker
        .extend("q", std::slice::from_ref(&d[0].receipt), 2000)
        .expect("extend");
    assert_eq!(ext.done, 1);
    h.advance(1500);
    assert!(h.receive("q", 1).is_empty(), "still leased");
    assert_eq!(h.ack("q", &d).0, 1);
}

#[test]
fn nack_applies_full_jitter_backoff() {
    let h = Harness::new();
    h.queue(
        "q",
        QueueConfig {
            max_attempts: 20,
            ..cfg()
        },
    );
    h.publish("q", &["a"]);
    for attempt in 1..=6u32 {
        let d = h.receive("q", 1);
        assert_eq!(d.len(), 1, "attempt {attempt}");
        assert_eq!(d[0].attempt, attempt);
        let out = h
            .broker
            .nack("q", std::slice::from_ref(&d[0].receipt), None)
            .expect("nack");
        assert_eq!(out.done, 1);
        block(out.durable);
        let bound = (100u64 << (attempt - 1)).min(1000);
        let now = h.clock_now();
        // No due time means a zero delay: ready at once.
        if let Some(due) = h.broker.next_due_ms("q").expect("due") {
            assert!(
                due >= now && due - now <= bound,
                "delay {} > {bound}",
                due - now
            );
            h.clock.set(due);
        }
    }
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!(s.nacked_total, 6);
}

#[test]
fn nack_with_an_explicit_delay() {
    let h = Harness::new();
    h.queue("q", cfg());
    h.publish("q", &["a"]);
    let d = h.receive("q", 1);
    let out = h
        .broker
        .nack("q", std::slice::from_ref(&d[0].receipt), Some(0))
        .expect("nack");
    assert_eq!(out.done, 1);
    let d = h.receive("q", 1);
    assert_eq!(d[0].attempt, 2);
    h.broker
        .nack("q", std::slice::from_ref(&d[0].receipt), Some(5000))
        .expect("nack");
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!((s.delayed, s.ready), (1, 0));
    h.advance(4999);
    assert!(h.receive("q", 1).is_empty());
    h.advance(1);
    assert_eq!(h.receive("q", 1).len(), 1);
}

#[test]
fn exhausted_messages_move_to_the_dlq_with_reasons() {
    let h = Harness::new();
    h.queue("q", cfg());
    let mut m = weir_broker::NewMessage::new("poison");
    m.headers.insert("trace".into(), "t1".into());
    m.id = Some("m-1".into());
    h.publish_one("q", m);
    h.publish("q", &["sleepy"]);
    for _ in 0..3 {
        let d = h.receive("q", 2);
        for x in &d {
            if x.body == "poison" {
                h.broker
                    .nack("q", std::slice::from_ref(&x.receipt), Some(0))
                    .expect("nack");
            }
        }
        // "sleepy" is never acked: its leases expire.
        h.advance(1000);
    }
    h.broker.tick();
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!((s.total, s.dead_lettered_total), (0, 2));
    let dead = h.receive("q.dlq", 10);
    assert_eq!(dead.len(), 2);
    let poison = dead.iter().find(|d| d.body == "poison").expect("poison");
    assert_eq!(poison.id, "m-1");
    assert_eq!(poison.headers.get("trace").map(String::as_str), Some("t1"));
    assert_eq!(
        poison.headers.get(DEAD_REASON_HEADER).map(String::as_str),
        Some("max_attempts")
    );
    assert_eq!(
        poison
            .headers
            .get(ORIGINAL_QUEUE_HEADER)
            .map(String::as_str),
        Some("q")
    );
    let sleepy = dead.iter().find(|d| d.body == "sleepy").expect("sleepy");
    assert_eq!(
        sleepy.headers.get(DEAD_REASON_HEADER).map(String::as_str),
        Some("lease_expired")
    );
    // A DLQ has no DLQ: its messages come back however often they fail.
    for _ in 0..10 {
        h.advance(30_000);
        assert_eq!(h.receive("q.dlq", 10).len(), 2);
    }
    assert!(h.broker.queue_stats("q.dlq.dlq").is_err());
}

#[test]
fn a_named_dead_letter_queue_is_used() {
    let h = Harness::new();
    h.queue(
        "q",
        QueueConfig {
            max_attempts: 1,
            dead_letter_queue: Some("graveyard".into()),
            ..cfg()
        },
    );
    h.publish("q", &["a"]);
    let d = h.receive("q", 1);
    h.broker
        .nack("q", std::slice::from_ref(&d[0].receipt), None)
        .expect("nack");
    assert_eq!(bodies(&h.receive("graveyard", 1)), vec!["a"]);
    assert!(h.broker.queue_stats("q.dlq").is_err());
}
