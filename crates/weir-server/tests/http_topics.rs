//! Topics over real HTTP against a real server on real files: fan-out, start positions, back
//! pressure, restart, and bytes written to disk per published byte with 4 subscriptions.

mod common;

use std::path::Path;

use common::{bodies, receipts, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn put(s: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, json, _) = s.call(Method::PUT, path, Some(body)).await;
    (status, json)
}

async fn publish(s: &TestServer, topic: &str, messages: Value) -> Value {
    s.ok(
        Method::POST,
        &format!("/v1/topics/{topic}/messages"),
        Some(json!({ "messages": messages })),
    )
    .await
}

async fn receive(s: &TestServer, topic: &str, sub: &str, body: Value) -> Vec<Value> {
    let out = s
        .ok(
            Method::POST,
            &format!("/v1/topics/{topic}/subscriptions/{sub}/receive"),
            Some(body),
        )
        .await;
    out["messages"].as_array().cloned().expect("messages")
}

async fn ack(s: &TestServer, topic: &str, sub: &str, msgs: &[Value]) -> Value {
    s.ok(
        Method::POST,
        &format!("/v1/topics/{topic}/subscriptions/{sub}/ack"),
        Some(json!({ "receipts": receipts(msgs) })),
    )
    .await
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

#[tokio::test]
async fn every_subscription_gets_a_copy_and_stats_show_who_is_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    let (status, body) = put(&s, "/v1/topics/events", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = put(&s, "/v1/topics/events", json!({ "dedup_window_ms": 1000 })).await;
    assert_eq!(status, StatusCode::OK);
    for sub in ["billing", "audit"] {
        let (status, body) = put(
            &s,
            &format!("/v1/topics/events/subscriptions/{sub}"),
            json!({ "max_attempts": 3 }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["max_attempts"], 3);
    }
    let out = publish(
        &s,
        "events",
        json!([{ "body": "a", "id": "e1" }, { "body": "b" }]),
    )
    .await;
    assert_eq!(
        out["messages"][0],
        json!({ "id": "e1", "duplicate": false })
    );
    let got = receive(&s, "events", "billing", json!({ "max": 10 })).await;
    assert_eq!(bodies(&got), vec!["a", "b"]);
    assert_eq!(ack(&s, "events", "billing", &got).await["acked"], 2);
    let topic = s.ok(Method::GET, "/v1/topics/events", None).await;
    assert_eq!(topic["published"], 2);
    assert_eq!(topic["slowest_subscription"], "audit");
    let subs = s
        .ok(Method::GET, "/v1/topics/events/subscriptions", None)
        .await;
    let totals: Vec<(String, u64)> = subs["subscriptions"]
        .as_array()
        .expect("array")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or("").to_string(),
                v["total"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(totals, vec![("audit".into(), 2), ("billing".into(), 0)]);
    // Long poll wakes on publish.
    let waiter = {
        let base = s.base.clone();
        let http = s.http.clone();
        tokio::spawn(async move {
            http.post(format!(
                "{base}/v1/topics/events/subscriptions/billing/receive"
            ))
            .json(&json!({ "wait_ms": 5000 }))
            .send()
            .await
            .expect("sent")
            .json::<Value>()
            .await
            .expect("json")
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    publish(&s, "events", json!([{ "body": "c" }])).await;
    let woke = waiter.await.expect("join");
    assert_eq!(woke["messages"][0]["body"], "c");
    // Errors in the queue style.
    let (status, _, _) = s
        .call(
            Method::POST,
            "/v1/topics/nope/messages",
            Some(json!({ "messages": [{ "body": "x" }] })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = put(
        &s,
        "/v1/topics/events/subscriptions/x",
        json!({ "start": "later" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = put(
        &s,
        "/v1/topics/events/subscriptions/x",
        json!({ "lease_mss": 1 }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = s
        .call(
            Method::DELETE,
            "/v1/topics/events/subscriptions/audit",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = s
        .call(
            Method::POST,
            "/v1/topics/events/subscriptions/audit/receive",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn a_full_subscription_makes_publishes_busy_and_restart_keeps_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    put(&s, "/v1/topics/t", json!({})).await;
    put(
        &s,
        "/v1/topics/t/subscriptions/slow",
        json!({ "max_depth": 2 }),
    )
    .await;
    publish(&s, "t", json!([{ "body": "1" }, { "body": "2" }])).await;
    put(
        &s,
        "/v1/topics/t/subscriptions/replay",
        json!({ "start": "oldest" }),
    )
    .await;
    put(
        &s,
        "/v1/topics/t/subscriptions/late",
        json!({ "start": "now" }),
    )
    .await;
    let (status, body, headers) = s
        .call(
            Method::POST,
            "/v1/topics/t/messages",
            Some(json!({ "messages": [{ "body": "3" }] })),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "busy");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("slow")));
    assert!(headers.get("retry-after").is_some());
    let got = receive(&s, "t", "slow", json!({ "max": 1 })).await;
    ack(&s, "t", "slow", &got).await;
    publish(&s, "t", json!([{ "body": "3" }])).await;
    s.stop().await;

    let s = TestServer::start(dir.path()).await;
    assert_eq!(
        bodies(&receive(&s, "t", "replay", json!({ "max": 10 })).await),
        vec!["1", "2", "3"]
    );
    assert_eq!(
        bodies(&receive(&s, "t", "late", json!({ "max": 10 })).await),
        vec!["3"]
    );
    assert_eq!(
        bodies(&receive(&s, "t", "slow", json!({ "max": 10 })).await),
        vec!["2", "3"]
    );
    s.stop().await;
}

#[tokio::test]
async fn four_subscriptions_write_each_body_to_disk_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    put(&s, "/v1/topics/fan", json!({})).await;
    for sub in ["a", "b", "c", "d"] {
        put(
            &s,
            &format!("/v1/topics/fan/subscriptions/{sub}"),
            json!({}),
        )
        .await;
    }
    let before = dir_bytes(dir.path());
    let body = "x".repeat(4096);
    let batches = 25;
    let per_batch = 40;
    for _ in 0..batches {
        let msgs: Vec<Value> = (0..per_batch).map(|_| json!({ "body": body })).collect();
        publish(&s, "fan", Value::Array(msgs)).await;
    }
    let published = (batches * per_batch * body.len()) as u64;
    let written = dir_bytes(dir.path()) - before;
    let ratio = written as f64 / published as f64;
    eprintln!("bytes on disk per published body byte, 4 subscriptions: {ratio:.3} ({written} / {published})");
    assert!(
        ratio < 1.1,
        "bodies must be stored once, not per subscription: {ratio}"
    );
    assert!(ratio >= 1.0, "{ratio}");
    // Every subscription still gets every message.
    for sub in ["a", "b", "c", "d"] {
        let stats = s
            .ok(
                Method::GET,
                &format!("/v1/topics/fan/subscriptions/{sub}"),
                None,
            )
            .await;
        assert_eq!(stats["total"], (batches * per_batch) as u64);
    }
    s.stop().await;
}
