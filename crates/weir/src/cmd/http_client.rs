//! A small HTTP/JSON client for the CLI, with errors a person can act on and retries on `busy`.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Most attempts for a request answered `busy`.
const MAX_BUSY_ATTEMPTS: u32 = 10;

/// The API of one server.
#[derive(Debug)]
pub(crate) struct Api {
    base: String,
    addr: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Api {
    pub(crate) fn new(addr: &str, token: Option<String>) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            base: format!("http://{addr}"),
            addr: addr.to_string(),
            token,
            client,
        })
    }

    /// Sends a request; retries `busy` with exponential backoff and full jitter, never sooner than
    /// the server's `Retry-After`. Returns the JSON body (or `Null` for 204).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .client
                .request(method.clone(), format!("{}{path}", self.base));
            if let Some(b) = body {
                req = req.json(b);
            }
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| {
                if e.is_connect() {
                    anyhow!(
                        "connection refused at {} — is `weir serve` running? ({e})",
                        self.addr
                    )
                } else {
                    anyhow!("request to {} failed: {e}", self.addr)
                }
            })?;
            let status = resp.status();
            let retry_after_s = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if status == StatusCode::NO_CONTENT {
                return Ok(Value::Null);
            }
            let text = resp.text().await.context("reading the response")?;
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if status.is_success() {
                return Ok(json);
            }
            let code = json["error"]["code"].as_str().unwrap_or("unknown");
            let message = json["error"]["message"].as_str().unwrap_or("");
            if status == StatusCode::SERVICE_UNAVAILABLE && attempt < MAX_BUSY_ATTEMPTS {
                let floor_ms = retry_after_s.unwrap_or(1) * 1000;
                let cap_ms = (100u64 << attempt.min(10)).min(30_000);
                let wait = floor_ms + rand::thread_rng().gen_range(0..=cap_ms);
                eprintln!("weir: server busy ({message}); retrying in {wait} ms");
                tokio::time::sleep(Duration::from_millis(wait)).await;
                continue;
            }
            bail!("{method} {path}: {} {code}: {message}", status.as_u16());
        }
    }
}
