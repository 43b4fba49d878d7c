//! The CLI's HTTP/JSON calls: [`weir_tasks::cli::Api`] (address, token, request) with errors a
//! person can act on and retries on `busy`.

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
    inner: weir_tasks::cli::Api,
}

impl Api {
    /// `addr` is `host:port` or a URL; `token` a bearer token when auth is on.
    pub(crate) fn new(addr: &str, token: Option<String>) -> anyhow::Result<Api> {
        let inner = weir_tasks::cli::Api::new(addr, token).context("building the HTTP client")?;
        Ok(Api { inner })
    }

    /// The same server for `weir task` and `weir schedule` (no retries on `busy`).
    pub(crate) fn tasks(&self) -> &weir_tasks::cli::Api {
        &self.inner
    }

    /// Sends a request; retries `busy` with exponential backoff and full jitter, never sooner than
    /// the server's `Retry-After`. Returns the JSON body (or `Null` for 204).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let addr = self.inner.addr();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self
                .inner
                .send(method.clone(), path, body)
                .await
                .map_err(|e| {
                    if e.is_connect() {
                        anyhow!("connection refused at {addr} — is `weir serve` running? ({e})")
                    } else {
                        anyhow!("request to {addr} failed: {e}")
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
