//! Shared helpers: a real server on ephemeral ports over a temporary data directory, and a JSON
//! HTTP client.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use weir_server::{RunningServer, ServerConfig};

/// A running server and its data directory.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub base: String,
    pub http: reqwest::Client,
}

impl TestServer {
    pub async fn start(dir: &Path) -> TestServer {
        TestServer::start_with(ServerConfig::ephemeral(dir)).await
    }

    pub async fn start_with(config: ServerConfig) -> TestServer {
        let server = weir_server::start(config).await.expect("server starts");
        let base = format!("http://{}", server.http_addr());
        TestServer {
            server: Some(server),
            base,
            http: reqwest::Client::new(),
        }
    }

    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("running")
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// Sends JSON (or nothing) and returns status, JSON body (Null when empty) and headers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body read");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json, headers)
    }

    /// Sends a raw body.
    pub async fn raw(&self, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body read");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, json, _) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {json}");
        json
    }

    pub async fn create_queue(&self, name: &str, config: Value) {
        let (status, json, _) = self
            .call(Method::PUT, &format!("/v1/queues/{name}"), Some(config))
            .await;
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{status} {json}"
        );
    }

    pub async fn publish(&self, queue: &str, messages: Value) -> Value {
        self.ok(
            Method::POST,
            &format!("/v1/queues/{queue}/messages"),
            Some(serde_json::json!({ "messages": messages })),
        )
        .await
    }

    pub async fn receive(&self, queue: &str, body: Value) -> Vec<Value> {
        let out = self
            .ok(
                Method::POST,
                &format!("/v1/queues/{queue}/receive"),
                Some(body),
            )
            .await;
        out["messages"].as_array().cloned().expect("messages array")
    }

    pub async fn ack(&self, queue: &str, receipts: Vec<Value>) -> Value {
        self.ok(
            Method::POST,
            &format!("/v1/queues/{queue}/ack"),
            Some(serde_json::json!({ "receipts": receipts })),
        )
        .await
    }

    pub async fn stats(&self, queue: &str) -> Value {
        self.ok(Method::GET, &format!("/v1/queues/{queue}"), None)
            .await
    }
}

/// The `body` texts of deliveries, in order.
pub fn bodies(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["body"].as_str().expect("utf-8 body").to_string())
        .collect()
}

/// The receipts of deliveries.
pub fn receipts(messages: &[Value]) -> Vec<Value> {
    messages.iter().map(|m| m["receipt"].clone()).collect()
}
