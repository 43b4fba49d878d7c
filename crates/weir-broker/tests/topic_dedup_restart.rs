//! A topic remembers client ids for the whole dedup window, also after its acknowledged records
//! were reclaimed and the broker restarted: the shared log is not reclaimed past a record whose
//! id is still inside its window (topics rebuild their dedup table from the log).

mod common;

use common::{block, Harness};
use weir_broker::{NewMessage, QueueConfig, SubscriptionStart, TopicConfig};

const WINDOW_MS: u64 = 60_000;

fn publish_ids(h: &Harness, ids: impl Iterator<Item = String>) -> Vec<bool> {
    let messages = ids
        .map(|id| NewMessage {
            id: Some(id),
            ..NewMessage::new("body")
        })
        .collect();
    let out = h.broker.publish_topic("t", messages).expect("publish");
    block(out.durable);
    out.messages.iter().map(|p| p.duplicate).collect()
}

fn drain(h: &Harness) {
    loop {
        let got = h
            .broker
            .receive_subscription("t", "s", 1000, None)
            .expect("receive");
        if got.is_empty() {
            return;
        }
        let receipts: Vec<String> = got.iter().map(|d| d.receipt.clone()).collect();
        let out = h.broker.ack_subscription("t", "s", &receipts).expect("ack");
        block(out.durable);
    }
}

#[test]
fn ids_survive_reclaim_and_restart_inside_the_window_and_not_after() {
    let mut h = Harness::new();
    let config = TopicConfig {
        dedup_window_ms: WINDOW_MS,
    };
    h.broker.create_topic("t", config).expect("topic");
    h.broker
        .create_subscription("t", "s", QueueConfig::default(), SubscriptionStart::Now)
        .expect("subscription");
    // The memory store's "segments" hold 1024 records: publish several segments' worth with ids.
    for batch in 0..5 {
        let dup = publish_ids(&h, (0..1000).map(|i| format!("id-{batch}-{i}")));
        assert!(dup.iter().all(|d| !d));
    }
    drain(&h);
    // Several ticks: a subscription applies its low-water mark once its acks are durable.
    for _ in 0..3 {
        h.advance(1_000);
        h.broker.tick();
    }
    let stats = h.broker.topic_stats("t").expect("stats");
    assert_eq!(
        stats.start_offset, 0,
        "records with live ids are not reclaimed"
    );

    h.restart();
    let dup = publish_ids(
        &h,
        ["id-0-0".to_string(), "id-4-999".to_string()].into_iter(),
    );
    assert_eq!(
        dup,
        vec![true, true],
        "ids inside the window are remembered after a restart"
    );

    // Past the window the ids are forgotten and the space is given back.
    h.advance(WINDOW_MS + 1);
    drain(&h);
    for _ in 0..3 {
        h.advance(WINDOW_MS / 4);
        h.broker.tick();
    }
    let stats = h.broker.topic_stats("t").expect("stats");
    assert!(
        stats.start_offset > 0,
        "reclaimed once the window passed: {stats:?}"
    );
    let dup = publish_ids(&h, ["id-0-1".to_string()].into_iter());
    assert_eq!(dup, vec![false]);
}
