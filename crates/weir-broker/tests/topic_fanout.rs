//! Topics: fan-out to every subscription over one shared log, start positions, back pressure,
//! dead letters, dedup, restart and reclamation of the shared log.

mod common;

use common::{block, bodies, Harness};
use weir_broker::{
    BrokerError, BrokerOptions, NewMessage, QueueConfig, SubscriptionStart, TopicConfig,
};

fn publish(h: &Harness, t: &str, bodies: &[&str]) {
    let out = h
        .broker
        .publish_topic(
            t,
            bodies
                .iter()
                .map(|b| NewMessage::new(b.to_string()))
                .collect(),
        )
        .expect("publish");
    block(out.durable);
}

fn sub(h: &Harness, t: &str, s: &str, config: QueueConfig, start: SubscriptionStart) {
    h.broker
        .create_subscription(t, s, config, start)
        .expect("subscription");
}

fn receive(h: &Harness, t: &str, s: &str, max: usize) -> Vec<weir_broker::Delivery> {
    h.broker
        .receive_subscription(t, s, max, None)
        .expect("receive")
}

fn ack(h: &Harness, t: &str, s: &str, d: &[weir_broker::Delivery]) -> usize {
    let receipts: Vec<String> = d.iter().map(|d| d.receipt.clone()).collect();
    let out = h.broker.ack_subscription(t, s, &receipts).expect("ack");
    block(out.durable);
    out.done
}

#[test]
fn every_subscription_gets_every_message_and_acks_are_independent() {
    let h = Harness::new();
    h.broker
        .create_topic("t", TopicConfig::default())
        .expect("topic");
    for s in ["a", "b"] {
        sub(&h, "t", s, QueueConfig::default(), SubscriptionStart::Now);
    }
    publish(&h, "t", &["1", "2", "3"]);
    let a = receive(&h, "t", "a", 10);
    assert_eq!(bodies(&a), vec!["1", "2", "3"]);
    assert_eq!(ack(&h, "t", "a", &a), 3);
    let b = receive(&h, "t", "b", 10);
    assert_eq!(bodies(&b), vec!["1", "2", "3"]);
    // A receipt of one subscription means nothing to another.
    let out = h
        .broker
        .ack_subscription("t", "a", &[b[0].receipt.clone()])
        .expect("ack");
    assert_eq!(out.done, 0);
    let stats = h.broker.topic_stats("t").expect("stats");
    assert_eq!(stats.published_total, 3);
    let totals: Vec<(String, u64)> = stats
        .subscriptions
        .iter()
        .map(|s| (s.name.clone(), s.total))
        .collect();
    assert_eq!(totals, vec![("a".into(), 0), ("b".into(), 3)]);
    assert_eq!(stats.slowest.as_deref(), Some("b"));
    assert!(matches!(
        h.broker.receive_subscription("t", "nope", 1, None),
        Err(BrokerError::NotFound { .. })
    ));
    assert!(matches!(
        h.broker.publish_topic("nope", vec![NewMessage::new("x")]),
        Err(BrokerError::NotFound { .. })
    ));
}

#[test]
fn a_new_subscription_starts_now_or_at_the_oldest_retained() {
    let mut h = Harness::new();
    h.broker
        .create_topic("t", TopicConfig::default())
        .expect("topic");
    sub(
        &h,
        "t",
        "first",
        QueueConfig::default(),
        SubscriptionStart::Now,
    );
    publish(&h, "t", &["old1", "old2"]);
    sub(
        &h,
        "t",
        "late",
        QueueConfig::default(),
        SubscriptionStart::Now,
    );
    sub(
        &h,
        "t",
        "replay",
        QueueConfig::default(),
        SubscriptionStart::Oldest,
    );
    publish(&h, "t", &["new"]);
    assert_eq!(bodies(&receive(&h, "t", "late", 10)), vec!["new"]);
    assert_eq!(
        bodies(&receive(&h, "t", "replay", 10)),
        vec!["old1", "old2", "new"]
    );
    // Start offsets survive a restart; leases do not.
    h.restart();
    assert_eq!(bodies(&receive(&h, "t", "late", 10)), vec!["new"]);
    assert_eq!(
        bodies(&receive(&h, "t", "first", 10)),
        vec!["old1", "old2", "new"]
    );
    // Updating a subscription keeps its position.
    let (_, created) = h
        .broker
        .create_subscription(
            "t",
            "late",
            QueueConfig {
                max_attempts: 2,
                ..QueueConfig::default()
            },
            SubscriptionStart::Oldest,
        )
        .expect("update");
    assert!(!created);
    let s = h.broker.subscription_stats("t", "late").expect("stats");
    assert_eq!((s.total, s.config.max_attempts), (1, 2));
}

#[test]
fn acks_survive_a_restart_per_subscription() {
    let mut h = Harness::new();
    h.broker
        .create_topic("t", TopicConfig::default())
        .expect("topic");
    sub(&h, "t", "a", QueueConfig::default(), SubscriptionStart::Now);
    sub(&h, "t", "b", QueueConfig::default(), SubscriptionStart::Now);
    publish(&h, "t", &["x", "y"]);
    let a = receive(&h, "t", "a", 1);
    ack(&h, "t", "a", &a);
    h.broker.tick();
    h.restart();
    assert_eq!(bodies(&receive(&h, "t", "a", 10)), vec!["y"]);
    assert_eq!(bodies(&receive(&h, "t", "b", 10)), vec!["x", "y"]);
    // A deleted subscription is gone after a restart too.
    h.broker.delete_subscription("t", "b").expect("delete");
    h.restart();
    assert!(h.broker.subscription_stats("t", "b").is_err());
    h.broker.delete_topic("t").expect("delete topic");
    h.restart();
    assert!(h.broker.list_topics().is_empty());
}

#[test]
fn a_full_subscription_refuses_the_whole_batch_for_everyone() {
    let h = Harness::new();
    h.broker
        .create_topic("t", TopicConfig::default())
        .expect("topic");
    sub(
        &h,
        "t",
        "fast",
        QueueConfig::default(),
        SubscriptionStart::Now,
    );
    let small = QueueConfig {
        max_depth: 2,
        ..QueueConfig::default()
    };
    sub(&h, "t", "slow", small, SubscriptionStart::Now);
    publish(&h, "t", &["1", "2"]);
    let err = h
        .broker
        .publish_topic("t", vec![NewMessage::new("3")])
        .expect_err("busy");
    assert!(matches!(err, BrokerError::Busy { .. }), "{err}");
    assert!(err.to_string().contains("t.slow"), "{err}");
    let stats = h.broker.topic_stats("t").expect("stats");
    assert_eq!(stats.published_total, 2);
    assert_eq!(stats.refused_total, 1);
    assert_eq!(stats.slowest.as_deref(), Some("slow"));
    assert_eq!(bodies(&receive(&h, "t", "fast", 10)), vec!["1", "2"]);
    let d = receive(&h, "t", "slow", 1);
    ack(&h, "t", "slow", &d);
    publish(&h, "t", &["3"]);
}

#[test]
fn exhausted_messages_go_to_the_subscription_dead_letter_queue() {
    let h = Harness::new();
    h.broker
        .create_topic("t", TopicConfig::default())
        .expect("topic");
    let once = QueueConfig {
        max_attempts: 1,
        ..QueueConfig::default()
    };
    sub(&h, "t", "s", once, SubscriptionStart::Now);
    publish(&h, "t", &["poison"]);
    let d = receive(&h, "t", "s", 1);
    let out = h
        .broker
        .nack_subscription("t", "s", &[d[0].receipt.clone()], None)
        .expect("nack");
    block(out.durable);
    h.broker.tick();
    let dead = h.receive("t.s.dlq", 1);
    assert_eq!(bodies(&dead), vec!["poison"]);
    assert_eq!(
        dead[0].headers.get(weir_broker::ORIGINAL_QUEUE_HEADER),
        Some(&"t.s".to_string())
    );
}

#[test]
fn duplicates_reach_no_subscription() {
    let h = Harness::new();
    h.broker
        .create_topic("t", TopicConfig::default())
        .expect("topic");
    sub(&h, "t", "a", QueueConfig::default(), SubscriptionStart::Now);
    let m = NewMessage {
        id: Some("same".into()),
        ..NewMessage::new("x")
    };
    for dup in [false, true] {
        let out = h.broker.publish_topic("t", vec![m.clone()]).expect("pub");
        assert_eq!(out.messages[0].duplicate, dup);
        block(out.durable);
    }
    assert_eq!(receive(&h, "t", "a", 10).len(), 1);
}

#[test]
fn bodies_are_stored_once_and_the_shared_log_is_reclaimed_at_the_slowest() {
    let h = Harness::with_options(BrokerOptions {
        rng_seed: Some(7),
        ..BrokerOptions::default()
    });
    h.broker
        .create_topic("t", TopicConfig::default())
        .expect("topic");
    for s in ["a", "b", "c", "d"] {
        sub(&h, "t", s, QueueConfig::default(), SubscriptionStart::Now);
    }
    let body = "x".repeat(1000);
    let n = 3000;
    for _ in 0..n / 100 {
        let out = h
            .broker
            .publish_topic(
                "t",
                (0..100).map(|_| NewMessage::new(body.clone())).collect(),
            )
            .expect("publish");
        block(out.durable);
    }
    let published = (n * body.len()) as u64;
    let stats = h.broker.topic_stats("t").expect("stats");
    // The memory store counts payload bytes (body + key + headers, incl. the broker envelope).
    let ratio = stats.disk_bytes as f64 / published as f64;
    assert!(
        (1.0..1.1).contains(&ratio),
        "log bytes per body byte {ratio}"
    );
    // Three subscriptions consume everything; the fourth nothing: nothing is reclaimed.
    for s in ["a", "b", "c"] {
        loop {
            let d = receive(&h, "t", s, 1000);
            if d.is_empty() {
                break;
            }
            ack(&h, "t", s, &d);
        }
    }
    h.broker.tick();
    h.broker.tick();
    assert_eq!(h.broker.topic_stats("t").expect("stats").start_offset, 0);
    loop {
        let d = receive(&h, "t", "d", 1000);
        if d.is_empty() {
            break;
        }
        ack(&h, "t", "d", &d);
    }
    h.broker.tick();
    h.broker.tick();
    let stats = h.broker.topic_stats("t").expect("stats");
    // Whole 1024-record segments of the memory store below the last one are gone.
    assert_eq!(stats.start_offset, 2048);
}
