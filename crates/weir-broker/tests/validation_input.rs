//! Bad input gets a precise error and changes nothing.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::Harness;
use weir_broker::{BrokerError, BrokerOptions, NewMessage, QueueConfig};
use weir_proto::ErrorCode;

#[test]
fn invalid_messages_refuse_the_batch() {
    let h = Harness::with_options(BrokerOptions {
        max_body_bytes: 100,
        rng_seed: Some(5),
        ..BrokerOptions::default()
    });
    h.queue("q", QueueConfig::default());
    let good = NewMessage::new("ok");
    let mut many_headers = BTreeMap::new();
    for i in 0..65 {
        many_headers.insert(format!("h{i}"), String::new());
    }
    let bad = [
        (
            NewMessage {
                id: Some("x".repeat(129)),
                ..good.clone()
            },
            ErrorCode::BadRequest,
        ),
        (
            NewMessage {
                id: Some(String::new()),
                ..good.clone()
            },
            ErrorCode::BadRequest,
        ),
        (
            NewMessage {
                priority: 10,
                ..good.clone()
            },
            ErrorCode::BadRequest,
        ),
        (
            NewMessage {
                delay_ms: u64::MAX,
                ..good.clone()
            },
            ErrorCode::BadRequest,
        ),
        (
            NewMessage {
                key: Some(Bytes::from(vec![0; 1025])),
                ..good.clone()
            },
            ErrorCode::BadRequest,
        ),
        (
            NewMessage {
                headers: many_headers,
                ..good.clone()
            },
            ErrorCode::BadRequest,
        ),
        (
            NewMessage {
                body: Bytes::from(vec![0; 101]),
                ..good.clone()
            },
            ErrorCode::TooLarge,
        ),
    ];
    for (m, code) in bad {
        let e = h
            .broker
            .publish("q", vec![good.clone(), m])
            .expect_err("refused");
        assert_eq!(e.code(), code, "{e}");
    }
    let e = h
        .broker
        .publish("q", vec![good.clone(); 1001])
        .expect_err("batch too big");
    assert_eq!(e.code(), ErrorCode::TooLarge);
    assert_eq!(h.broker.queue_stats("q").expect("stats").total, 0);
}

#[test]
fn invalid_receive_and_receipt_arguments() {
    let h = Harness::new();
    h.queue("q", QueueConfig::default());
    h.publish("q", &["a"]);
    for (max, lease) in [(0, None), (1001, None), (1, Some(1)), (1, Some(u64::MAX))] {
        assert!(matches!(
            h.broker.receive("q", max, lease),
            Err(BrokerError::InvalidArgument(_))
        ));
    }
    let d = h.receive("q", 1);
    assert!(h
        .broker
        .extend("q", std::slice::from_ref(&d[0].receipt), 1)
        .is_err());
    assert!(h
        .broker
        .nack("q", std::slice::from_ref(&d[0].receipt), Some(u64::MAX))
        .is_err());
    let many = vec![d[0].receipt.clone(); 1001];
    assert_eq!(
        h.broker.ack("q", &many).expect_err("too many").code(),
        ErrorCode::TooLarge
    );
    // The delivery is untouched by all of that.
    assert_eq!(h.ack("q", &d).0, 1);
}

#[test]
fn invalid_configs_and_names() {
    let h = Harness::new();
    for name in ["", ".x", "a/b", "../etc"] {
        assert_eq!(
            h.broker
                .create_queue(name, QueueConfig::default())
                .expect_err("name")
                .code(),
            ErrorCode::BadRequest
        );
    }
    let e = h
        .broker
        .create_queue(
            "q",
            QueueConfig {
                lease_ms: 0,
                ..QueueConfig::default()
            },
        )
        .expect_err("config");
    assert_eq!(e.code(), ErrorCode::BadRequest);
    let e = h
        .broker
        .create_queue(
            "q",
            QueueConfig {
                dead_letter_queue: Some("q".into()),
                ..QueueConfig::default()
            },
        )
        .expect_err("self dlq");
    assert_eq!(e.code(), ErrorCode::BadRequest);
    assert!(h.broker.list_queues().is_empty());
}

#[test]
fn purge_removes_waiting_messages_not_leased_ones() {
    let h = Harness::new();
    h.queue("q", QueueConfig::default());
    h.publish("q", &["a", "b", "c"]);
    h.publish_one(
        "q",
        NewMessage {
            delay_ms: 1000,
            ..NewMessage::new("d")
        },
    );
    let d = h.receive("q", 1);
    assert_eq!(h.broker.purge_queue("q").expect("purge"), 3);
    let s = h.broker.queue_stats("q").expect("stats");
    assert_eq!((s.total, s.in_flight), (1, 1));
    assert_eq!(h.ack("q", &d).0, 1);
    h.broker.delete_queue("q").expect("delete");
    assert_eq!(
        h.broker
            .publish("q", vec![NewMessage::new("x")])
            .expect_err("gone")
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        h.broker.delete_queue("q").expect_err("gone").code(),
        ErrorCode::NotFound
    );
}
