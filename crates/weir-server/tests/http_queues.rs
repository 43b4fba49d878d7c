//! The queue API of DESIGN §4 over real HTTP against a real server on real files.

mod common;

use std::time::Duration;

use common::{bodies, receipts, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn round_trip_publish_receive_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    s.create_queue("orders", json!({})).await;
    let out = s
        .publish(
            "orders",
            json!([{ "body": "one", "id": "m-1", "headers": { "h": "v" } }, { "body": "two" }]),
        )
        .await;
    assert_eq!(
        out["messages"][0],
        json!({ "id": "m-1", "duplicate": false })
    );
    assert_eq!(out["messages"][1]["duplicate"], json!(false));
    assert!(out["messages"][1]["id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));

    let got = s.receive("orders", json!({ "max": 10 })).await;
    assert_eq!(bodies(&got), vec!["one", "two"]);
    assert_eq!(got[0]["id"], "m-1");
    assert_eq!(got[0]["headers"], json!({ "h": "v" }));
    assert_eq!(got[0]["attempt"], 1);
    assert_eq!(got[0]["body_base64"], "b25l");
    assert!(got[0]["enqueued_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let stats = s.stats("orders").await;
    assert_eq!(
        (stats["ready"].as_u64(), stats["in_flight"].as_u64()),
        (Some(0), Some(2))
    );

    let acked = s.ack("orders", receipts(&got)).await;
    assert_eq!(acked, json!({ "acked": 2, "invalid": [] }));
    let again = s.ack("orders", receipts(&got)).await;
    assert_eq!(again["acked"], 0);
    assert_eq!(again["invalid"].as_array().map(Vec::len), Some(2));
    let stats = s.stats("orders").await;
    assert_eq!(stats["total"], 0);
    assert!(s.receive("orders", json!({})).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn config_round_trips_and_put_is_201_then_200() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    let (status, body, _) = s
        .call(
            Method::PUT,
            "/v1/queues/jobs",
            Some(json!({ "max_attempts": 3, "lease_ms": 5000 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["max_attempts"], 3);
    assert_eq!(body["lease_ms"], 5000);
    assert_eq!(body["max_depth"], 1_000_000);
    let (status, body, _) = s
        .call(
            Method::PUT,
            "/v1/queues/jobs",
            Some(json!({ "max_depth": 10 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["max_depth"], 10);
    assert_eq!(body["max_attempts"], 3, "absent fields keep their value");
    let (status, _, _) = s.call(Method::PUT, "/v1/queues/plain", None).await;
    assert_eq!(status, StatusCode::CREATED, "a body is optional");
    let list = s.ok(Method::GET, "/v1/queues", None).await;
    let names: Vec<&str> = list["queues"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    for expected in ["jobs", "jobs.dlq", "plain", "plain.dlq"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let (status, _, _) = s.call(Method::DELETE, "/v1/queues/plain", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body, _) = s.call(Method::GET, "/v1/queues/plain", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    s.stop().await;
}

#[tokio::test]
async fn lease_expiry_redelivers_with_attempt_count_and_old_receipt_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    s.create_queue("q", json!({})).await;
    s.publish("q", json!([{ "body": "x" }])).await;
    let first = s.receive("q", json!({ "lease_ms": 200 })).await;
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Expired: invalid even before redelivery.
    let ext = s
        .ok(
            Method::POST,
            "/v1/queues/q/extend",
            Some(json!({ "receipts": receipts(&first), "lease_ms": 1000 })),
        )
        .await;
    assert_eq!(ext["extended"], 0);
    let second = s.receive("q", json!({ "wait_ms": 2000 })).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["attempt"], 2);
    assert_eq!(second[0]["id"], first[0]["id"]);
    let stale = s.ack("q", receipts(&first)).await;
    assert_eq!(stale["acked"], 0, "the first delivery's receipt is stale");
    let ok = s.ack("q", receipts(&second)).await;
    assert_eq!(ok["acked"], 1);
    s.stop().await;
}

#[tokio::test]
async fn nack_backoff_then_dead_letter_after_max_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    s.create_queue(
        "work",
        json!({ "max_attempts": 2, "backoff_base_ms": 100, "backoff_max_ms": 200 }),
    )
    .await;
    s.publish(
        "work",
        json!([{ "body": "poison", "headers": { "k": "v" } }]),
    )
    .await;
    let d1 = s.receive("work", json!({})).await;
    let n = s
        .ok(
            Method::POST,
            "/v1/queues/work/nack",
            Some(json!({ "receipts": receipts(&d1) })),
        )
        .await;
    assert_eq!(n["nacked"], 1);
    let d2 = s.receive("work", json!({ "wait_ms": 3000 })).await;
    assert_eq!(d2.len(), 1, "redelivered after the backoff");
    assert_eq!(d2[0]["attempt"], 2);
    s.ok(
        Method::POST,
        "/v1/queues/work/nack",
        Some(json!({ "receipts": receipts(&d2), "delay_ms": 0 })),
    )
    .await;
    let dead = s.receive("work.dlq", json!({ "wait_ms": 3000 })).await;
    assert_eq!(bodies(&dead), vec!["poison"]);
    assert_eq!(dead[0]["headers"]["k"], "v");
    assert!(dead[0]["headers"]
        .as_object()
        .is_some_and(|h| h.keys().any(|k| k.contains("reason"))));
    assert!(s
        .receive("work", json!({ "wait_ms": 300 }))
        .await
        .is_empty());
    s.stop().await;
}

#[tokio::test]
async fn dedup_priorities_and_ordered_by_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    s.create_queue("d", json!({})).await;
    let out = s
        .publish(
            "d",
            json!([{ "body": "a", "id": "same" }, { "body": "b", "id": "same" }]),
        )
        .await;
    assert_eq!(
        out["messages"][1],
        json!({ "id": "same", "duplicate": true })
    );
    let out = s.publish("d", json!([{ "body": "c", "id": "same" }])).await;
    assert_eq!(out["messages"][0]["duplicate"], true);
    assert_eq!(s.stats("d").await["total"], 1);

    s.create_queue("p", json!({})).await;
    s.publish(
        "p",
        json!([{ "body": "low1" }, { "body": "high", "priority": 9 }, { "body": "low2" }, { "body": "mid", "priority": 5 }]),
    )
    .await;
    let got = s.receive("p", json!({ "max": 10 })).await;
    assert_eq!(bodies(&got), vec!["high", "mid", "low1", "low2"]);

    s.create_queue("k", json!({ "ordered_by_key": true })).await;
    s.publish(
        "k",
        json!([{ "body": "a1", "key": "A" }, { "body": "a2", "key": "A" }, { "body": "b1", "key": "B" }]),
    )
    .await;
    let got = s.receive("k", json!({ "max": 10 })).await;
    assert_eq!(bodies(&got), vec!["a1", "b1"], "one per key in flight");
    s.ack("k", receipts(&got[..1])).await;
    let got2 = s.receive("k", json!({ "max": 10 })).await;
    assert_eq!(bodies(&got2), vec!["a2"]);
    s.stop().await;
}

#[tokio::test]
async fn busy_refuses_the_whole_batch_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    s.create_queue("small", json!({ "max_depth": 3 })).await;
    s.publish("small", json!([{ "body": "1" }, { "body": "2" }]))
        .await;
    let (status, body, headers) = s
        .call(
            Method::POST,
            "/v1/queues/small/messages",
            Some(json!({ "messages": [{ "body": "3" }, { "body": "4" }] })),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "busy");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
    assert_eq!(
        s.stats("small").await["total"],
        2,
        "nothing of the refused batch stored"
    );
    let got = s.receive("small", json!({ "max": 10 })).await;
    assert_eq!(
        bodies(&got),
        vec!["1", "2"],
        "what was accepted is still served"
    );
    s.stop().await;
}

#[tokio::test]
async fn delayed_message_survives_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    s.create_queue("later", json!({})).await;
    s.publish(
        "later",
        json!([{ "body": "soon", "delay_ms": 1500 }, { "body": "now" }]),
    )
    .await;
    let got = s.receive("later", json!({ "max": 10 })).await;
    assert_eq!(bodies(&got), vec!["now"]);
    assert_eq!(s.stats("later").await["delayed"], 1);
    s.ack("later", receipts(&got)).await;
    s.stop().await;

    let s = TestServer::start(dir.path()).await;
    assert!(
        s.receive("later", json!({})).await.is_empty(),
        "still delayed"
    );
    let got = s.receive("later", json!({ "wait_ms": 5000 })).await;
    assert_eq!(bodies(&got), vec!["soon"]);
    s.ack("later", receipts(&got)).await;
    s.stop().await;

    let s = TestServer::start(dir.path()).await;
    assert_eq!(
        s.stats("later").await["total"],
        0,
        "acks survive the restart"
    );
    s.stop().await;
}

#[tokio::test]
async fn binary_bodies_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    s.create_queue("bin", json!({})).await;
    // 0xff 0x00 0xfe: not UTF-8.
    s.publish("bin", json!([{ "body_base64": "/wD+" }])).await;
    let got = s.receive("bin", json!({})).await;
    assert_eq!(got[0]["body_base64"], "/wD+");
    assert!(
        got[0].get("body").is_none(),
        "no text body for non-UTF-8 bytes"
    );
    s.stop().await;
}
