//! Tokens and per-queue permissions over real HTTP; refusing exposed listeners without auth.

mod common;

use std::sync::Arc;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;
use weir_server::auth::AuthConfig;
use weir_server::ServerConfig;

const ADMIN: &str = "admin-token-0123456789";
const PRODUCER: &str = "producer-token-0123456789";
const CONSUMER: &str = "consumer-token-0123456789";

fn auth() -> Arc<AuthConfig> {
    let config: AuthConfig = serde_json::from_value(json!({ "tokens": [
        { "name": "admin", "token": ADMIN, "grants": [{ "resources": ["*"], "actions": ["admin"] }] },
        { "name": "producer", "token": PRODUCER, "grants": [{ "resources": ["orders*"], "actions": ["publish"] }] },
        { "name": "consumer", "token": CONSUMER, "grants": [{ "resources": ["orders"], "actions": ["consume"] }] }
    ] }))
    .expect("valid token file");
    config.validate().expect("valid");
    Arc::new(config)
}

async fn status(
    s: &TestServer,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: serde_json::Value,
) -> StatusCode {
    let mut req = s
        .http
        .request(method, format!("{}{path}", s.base))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("send").status()
}

#[tokio::test]
async fn tokens_gate_each_action_per_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        auth: Some(auth()),
        ..ServerConfig::ephemeral(dir.path())
    };
    let s = TestServer::start_with(config).await;
    let publish = json!({ "messages": [{ "body": "x" }] });

    assert_eq!(
        status(&s, None, Method::GET, "/healthz", json!(null)).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&s, None, Method::PUT, "/v1/queues/orders", json!({})).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(
            &s,
            Some("wrong-token-0123456789"),
            Method::PUT,
            "/v1/queues/orders",
            json!({})
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(
            &s,
            Some(PRODUCER),
            Method::PUT,
            "/v1/queues/orders",
            json!({})
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&s, Some(ADMIN), Method::PUT, "/v1/queues/orders", json!({})).await,
        StatusCode::CREATED
    );
    assert_eq!(
        status(&s, Some(ADMIN), Method::PUT, "/v1/queues/other", json!({})).await,
        StatusCode::CREATED
    );

    assert_eq!(
        status(
            &s,
            Some(PRODUCER),
            Method::POST,
            "/v1/queues/orders/messages",
            publish.clone()
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        status(
            &s,
            Some(PRODUCER),
            Method::POST,
            "/v1/queues/other/messages",
            publish.clone()
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(
            &s,
            Some(CONSUMER),
            Method::POST,
            "/v1/queues/orders/messages",
            publish.clone()
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(
            &s,
            Some(PRODUCER),
            Method::POST,
            "/v1/queues/orders/receive",
            json!({})
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(
            &s,
            Some(CONSUMER),
            Method::POST,
            "/v1/queues/other/receive",
            json!({})
        )
        .await,
        StatusCode::FORBIDDEN
    );

    let resp = s
        .http
        .post(format!("{}/v1/queues/orders/receive", s.base))
        .bearer_auth(CONSUMER)
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    let got: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(got["messages"][0]["body"], "x");
    let receipt = got["messages"][0]["receipt"].clone();
    assert_eq!(
        status(
            &s,
            Some(CONSUMER),
            Method::POST,
            "/v1/queues/orders/ack",
            json!({ "receipts": [receipt] })
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        status(
            &s,
            Some(CONSUMER),
            Method::DELETE,
            "/v1/queues/orders",
            json!(null)
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(
            &s,
            Some(CONSUMER),
            Method::GET,
            "/v1/queues/orders",
            json!(null)
        )
        .await,
        StatusCode::OK
    );
    let (code, body, _) = s.call(Method::GET, "/metrics", None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    s.stop().await;
}

#[tokio::test]
async fn non_loopback_listener_without_auth_is_refused_unless_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig::ephemeral(dir.path());
    config.http_addr = "0.0.0.0:0".parse().expect("addr");
    let err = weir_server::start(config.clone())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("without authentication"), "{err}");
    config.insecure = true;
    let server = weir_server::start(config.clone())
        .await
        .expect("insecure allows it");
    server.shutdown().await;
    config.insecure = false;
    config.auth = Some(auth());
    let server = weir_server::start(config).await.expect("auth allows it");
    server.shutdown().await;
}

#[test]
fn weak_or_repeated_tokens_are_refused() {
    let short: AuthConfig = serde_json::from_value(json!({ "tokens": [
        { "name": "a", "token": "short", "grants": [] }
    ] }))
    .expect("parses");
    assert!(short.validate().is_err());
    let repeated: AuthConfig = serde_json::from_value(json!({ "tokens": [
        { "name": "a", "token": "0123456789abcdef", "grants": [] },
        { "name": "b", "token": "0123456789abcdef", "grants": [] }
    ] }))
    .expect("parses");
    assert!(repeated.validate().is_err());
}
