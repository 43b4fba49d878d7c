//! Bad input gets a precise error and changes nothing (DESIGN §2.5), over real HTTP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;
use weir_server::ServerConfig;

/// Sends a raw request line (so no client library normalises `..`) and returns the status code.
fn raw_status(addr: std::net::SocketAddr, method: &str, target: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok());
    status.unwrap_or_else(|| panic!("no status line in {response:?}"))
}

#[tokio::test]
async fn bad_names_are_400_and_create_nothing_outside_the_data_dir() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    let s = TestServer::start(&data).await;
    let addr = s.server().http_addr();
    let targets = [
        "/v1/queues/..",
        "/v1/queues/.hidden",
        "/v1/queues/%2e%2e",
        "/v1/queues/a%2Fb",
        "/v1/queues/a%2F..%2F..%2Fescape",
        "/v1/queues/a%00b",
        "/v1/queues/a/b",
        "/v1/queues/a%20b",
    ];
    for target in targets {
        let status = tokio::task::spawn_blocking(move || raw_status(addr, "PUT", target))
            .await
            .expect("join");
        assert_eq!(status, 400, "PUT {target}");
    }
    let long = format!("/v1/queues/{}", "x".repeat(129));
    let (status, body, _) = s.call(Method::PUT, &long, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
    let entries: Vec<_> = std::fs::read_dir(root.path())
        .expect("read root")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        entries,
        vec![std::ffi::OsString::from("data")],
        "nothing created beside the data dir"
    );
    let list = s.ok(Method::GET, "/v1/queues", None).await;
    assert_eq!(list["queues"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn unknown_queue_is_404_and_not_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/queues/nope/messages",
            json!({ "messages": [{ "body": "x" }] }),
        ),
        (Method::POST, "/v1/queues/nope/receive", json!({})),
        (
            Method::POST,
            "/v1/queues/nope/ack",
            json!({ "receipts": ["r"] }),
        ),
        (Method::GET, "/v1/queues/nope", json!(null)),
        (Method::DELETE, "/v1/queues/nope", json!(null)),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (status, out, _) = s.call(method.clone(), path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {out}");
        assert_eq!(out["error"]["code"], "not_found");
        assert!(
            out["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("nope")),
            "{out}"
        );
    }
    let list = s.ok(Method::GET, "/v1/queues", None).await;
    assert_eq!(list["queues"], json!([]), "no auto-create");
    s.stop().await;
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_400_not_422() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    s.create_queue("q", json!({})).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("/v1/queues/q/messages", b"{not json".to_vec()),
        ("/v1/queues/q/messages", br#"{"messages": "nope"}"#.to_vec()),
        (
            "/v1/queues/q/messages",
            br#"{"messages": [{"body": 5}]}"#.to_vec(),
        ),
        (
            "/v1/queues/q/messages",
            br#"{"messages": [{"body": "x", "priority": 10}]}"#.to_vec(),
        ),
        (
            "/v1/queues/q/messages",
            br#"{"messages": [{"body": "x", "priority": -1}]}"#.to_vec(),
        ),
        (
            "/v1/queues/q/messages",
            br#"{"messages": [{"body": "x", "delay_ms": 1e99}]}"#.to_vec(),
        ),
        (
            "/v1/queues/q/messages",
            br#"{"messages": [{"body": "x", "dealy_ms": 5}]}"#.to_vec(),
        ),
        (
            "/v1/queues/q/messages",
            br#"{"messages": [{"body": "x", "body_base64": "eA=="}]}"#.to_vec(),
        ),
        (
            "/v1/queues/q/messages",
            br#"{"messages": [{"body_base64": "***"}]}"#.to_vec(),
        ),
        ("/v1/queues/q/messages", br#"{"messages": [{}]}"#.to_vec()),
        ("/v1/queues/q/messages", br#"{"messages": []}"#.to_vec()),
        (
            "/v1/queues/q/messages",
            format!(
                r#"{{"messages": [{{"body": "x", "id": "{}"}}]}}"#,
                "i".repeat(129)
            )
            .into_bytes(),
        ),
        ("/v1/queues/q/receive", br#"{"max": 0}"#.to_vec()),
        ("/v1/queues/q/receive", br#"{"max": 1001}"#.to_vec()),
        ("/v1/queues/q/receive", br#"{"wait_ms": 20001}"#.to_vec()),
        ("/v1/queues/q/receive", br#"{"lease_ms": -5}"#.to_vec()),
        ("/v1/queues/q/receive", br#"[1, 2]"#.to_vec()),
        ("/v1/queues/q/ack", br#"{"receipts": [1]}"#.to_vec()),
        ("/v1/queues/q/ack", br#"{}"#.to_vec()),
        ("/v1/queues/q/extend", br#"{"receipts": []}"#.to_vec()),
        ("/v1/queues/q", br#"{"max_depth": "big"}"#.to_vec()),
    ];
    for (path, body) in cases {
        let method = if path == "/v1/queues/q" {
            Method::PUT
        } else {
            Method::POST
        };
        let shown = String::from_utf8_lossy(&body).into_owned();
        let (status, out) = s.raw(method, path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {shown}: {out}");
        assert_eq!(out["error"]["code"], "bad_request", "{out}");
        assert!(out["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let stats = s.stats("q").await;
    assert_eq!(stats["total"], 0, "no bad request stored anything");
    assert_eq!(stats["max_depth"], 1_000_000, "the bad PUT changed nothing");
    s.stop().await;
}

#[tokio::test]
async fn oversize_body_and_request_are_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        max_http_body_bytes: 4 * 1024 * 1024,
        ..ServerConfig::ephemeral(dir.path())
    };
    let s = TestServer::start_with(config).await;
    s.create_queue("q", json!({})).await;
    let big = "x".repeat(1024 * 1024 + 1);
    let (status, out, _) = s
        .call(
            Method::POST,
            "/v1/queues/q/messages",
            Some(json!({ "messages": [{ "body": "ok" }, { "body": big }] })),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{out}");
    assert_eq!(out["error"]["code"], "too_large");
    let huge = "y".repeat(5 * 1024 * 1024);
    let (status, out, _) = s
        .call(
            Method::POST,
            "/v1/queues/q/messages",
            Some(json!({ "messages": [{ "body": huge }] })),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{out}");
    let batch: Vec<_> = (0..1001)
        .map(|i| json!({ "body": i.to_string() }))
        .collect();
    let (status, _, _) = s
        .call(
            Method::POST,
            "/v1/queues/q/messages",
            Some(json!({ "messages": batch })),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        s.stats("q").await["total"],
        0,
        "nothing of any refused batch stored"
    );
    let exact = "z".repeat(1024 * 1024);
    s.publish("q", json!([{ "body": exact }])).await;
    assert_eq!(
        s.stats("q").await["total"],
        1,
        "a body at the limit is fine"
    );
    s.stop().await;
}

#[tokio::test]
async fn health_metrics_and_openapi_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    s.create_queue("m", json!({})).await;
    s.publish("m", json!([{ "body": "x" }])).await;
    let (status, _, _) = s.call(Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(text.contains("weir_queue_depth{queue=\"m\"} 1"), "{text}");
    assert!(
        text.contains("weir_published_total{queue=\"m\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("weir_publish_confirm_seconds_count 1"),
        "{text}"
    );
    let doc = s.ok(Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/queues/{name}/messages"]["post"].is_object());
    let (status, out, _) = s.call(Method::GET, "/v1/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(out["error"]["code"], "not_found");
    s.stop().await;
}
