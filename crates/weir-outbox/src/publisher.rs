//! Publishing outbox rows to Weir over its HTTP API, and the retry back-off the relay applies when
//! Weir is busy or down.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::enqueue::{Destination, OutboxRow};

/// Most messages in one publish request (Weir's batch limit).
pub const MAX_MESSAGES_PER_REQUEST: usize = 1000;
/// Most body bytes in one publish request; a batch above it is split (base64 adds a third).
pub const MAX_BYTES_PER_REQUEST: usize = 8 * 1024 * 1024;

/// Why a publish did not get confirmed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Weir answered 503 busy: none of the batch was stored.
    #[error("weir is busy (retry after {retry_after:?})")]
    Busy {
        /// The `Retry-After` Weir sent.
        retry_after: Option<Duration>,
    },
    /// Weir could not be reached, or the answer was cut.
    #[error("weir is unreachable: {0}")]
    Unavailable(String),
    /// The destination queue or topic does not exist (Weir does not create on publish).
    #[error("destination {0} does not exist in weir")]
    NotFound(String),
    /// Weir refused the batch for good (400 bad request, 413 too large): the same rows would be
    /// refused again.
    #[error("weir refused the batch ({status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Weir's error message.
        message: String,
    },
    /// Any other answer (401, 403, 5xx, a body that does not parse); retried.
    #[error("unexpected answer from weir ({status}): {message}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        message: String,
    },
}

impl PublishError {
    /// Whether retrying the same batch later can succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, PublishError::Rejected { .. })
    }

    /// The least time to wait before retrying, when Weir said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PublishError::Busy { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Weir's confirmation of one message.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    /// The message id.
    pub id: String,
    /// True when Weir had already stored this id within its dedup window.
    pub duplicate: bool,
}

#[derive(Serialize)]
struct PublishRequest<'a> {
    messages: Vec<WireMessage<'a>>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    id: String,
    body_base64: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: &'a BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PublishResponse {
    messages: Vec<Confirmation>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

/// The message id a row is published under: `prefix` + the row id.
pub fn message_id(prefix: &str, row_id: i64) -> String {
    format!("{prefix}{row_id}")
}

/// An HTTP client for Weir's publish endpoint.
#[derive(Clone, Debug)]
pub struct Publisher {
    client: reqwest::Client,
    base_url: String,
}

impl Publisher {
    /// A publisher for the Weir at `base_url` (e.g. `http://127.0.0.1:7480`); each request gives
    /// up after `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Publisher, PublishError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // The server closes a keep-alive connection idle for its header-read timeout (10 s by
            // default); dropping ours sooner avoids publishing down one it is closing.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| PublishError::Unavailable(format!("building the HTTP client: {e}")))?;
        Ok(Publisher {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Publishes `rows` (in this order, one request) to `destination` with ids `prefix` + row id,
    /// and returns Weir's confirmations once the rows are durable.
    pub async fn publish(
        &self,
        destination: &Destination,
        rows: &[OutboxRow],
        id_prefix: &str,
    ) -> Result<Vec<Confirmation>, PublishError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let request = PublishRequest {
            messages: rows
                .iter()
                .map(|row| WireMessage {
                    id: message_id(id_prefix, row.id),
                    body_base64: b64.encode(&row.body),
                    key: row.key.as_deref(),
                    headers: &row.headers,
                })
                .collect(),
        };
        let url = format!("{}{}", self.base_url, destination.publish_path());
        let response = self
            .client
            .post(&url)
            .json(&request)
            .send()
            .await
            .map_err(|e| PublishError::Unavailable(format!("POST {url}: {e}")))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| PublishError::Unavailable(format!("reading the answer of {url}: {e}")))?;
        let error_message = || {
            serde_json::from_slice::<ErrorResponse>(&bytes)
                .map(|e| e.error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned())
        };
        match status {
            200 | 201 => {
                let parsed: PublishResponse =
                    serde_json::from_slice(&bytes).map_err(|e| PublishError::Unexpected {
                        status,
                        message: format!("publish answer does not parse: {e}"),
                    })?;
                if parsed.messages.len() != rows.len() {
                    return Err(PublishError::Unexpected {
                        status,
                        message: format!(
                            "{} confirmations for {} messages",
                            parsed.messages.len(),
                            rows.len()
                        ),
                    });
                }
                Ok(parsed.messages)
            }
            503 => Err(PublishError::Busy { retry_after }),
            404 => Err(PublishError::NotFound(format!("{destination:?}"))),
            400 | 413 => Err(PublishError::Rejected {
                status,
                message: error_message(),
            }),
            _ => Err(PublishError::Unexpected {
                status,
                message: error_message(),
            }),
        }
    }
}

/// Exponential back-off with full jitter: the n-th retry waits a random time in
/// `[0, min(max, base·2ⁿ)]`, and never less than the server's `Retry-After`.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A back-off starting at `base` and capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The delay before the next retry.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        let cap = self.base.saturating_mul(factor).min(self.max);
        let jitter_ms = rand::thread_rng().gen_range(0..=cap.as_millis() as u64);
        let delay = Duration::from_millis(jitter_ms);
        match retry_after {
            Some(at_least) => delay.max(at_least),
            None => delay,
        }
    }

    /// Forgets past failures (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many retries in a row so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_respects_retry_after() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for _ in 0..50 {
            assert!(b.next_delay(None) <= Duration::from_secs(2));
        }
        assert!(b.next_delay(Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay(None) <= Duration::from_millis(100));
    }

    #[test]
    fn ids_are_prefixed_row_ids() {
        assert_eq!(message_id("", 42), "42");
        assert_eq!(message_id("orders-db:", 7), "orders-db:7");
    }

    #[tokio::test]
    async fn unreachable_weir_is_transient() {
        // Port 9 (discard) on loopback: nothing listens, so the connect is refused.
        let p = Publisher::new("http://127.0.0.1:9", Duration::from_secs(2)).unwrap();
        let row = OutboxRow {
            id: 1,
            destination: "q".into(),
            key: None,
            headers: BTreeMap::new(),
            body: b"x".to_vec(),
            created_at_ms: 0,
        };
        let err = p
            .publish(&Destination::Queue("q".into()), &[row], "")
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(matches!(err, PublishError::Unavailable(_)), "{err}");
    }
}
