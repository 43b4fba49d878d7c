//! JSON shapes of the queue API (DESIGN §4) and their conversion to and from broker types.
//!
//! Every request type denies unknown fields, so a typo such as `"dealy_ms"` is a 400 naming the
//! field instead of a silently ignored option.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use weir_broker::{Delivery, NewMessage, QueueConfig, QueueStats};

use super::error::ApiError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `PUT /v1/queues/{q}` body: every field optional; absent fields keep their current (or default)
/// value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfigBody {
    max_depth: Option<u64>,
    max_bytes: Option<u64>,
    max_latency_ms: Option<u64>,
    lease_ms: Option<u64>,
    max_attempts: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    dead_letter_queue: Option<String>,
    dedup_window_ms: Option<u64>,
    ordered_by_key: Option<bool>,
}

impl QueueConfigBody {
    /// Applies the given fields on top of `base`.
    pub fn apply(self, mut base: QueueConfig) -> QueueConfig {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { base.$field = v; } )* };
        }
        set!(
            max_depth,
            max_bytes,
            lease_ms,
            max_attempts,
            backoff_base_ms,
            backoff_max_ms,
            dedup_window_ms,
            ordered_by_key
        );
        if self.max_latency_ms.is_some() {
            base.max_latency_ms = self.max_latency_ms;
        }
        if self.dead_letter_queue.is_some() {
            base.dead_letter_queue = self.dead_letter_queue;
        }
        base
    }
}

/// A queue's configuration as JSON.
pub fn config_json(c: &QueueConfig) -> serde_json::Value {
    serde_json::json!({
        "max_depth": c.max_depth,
        "max_bytes": c.max_bytes,
        "max_latency_ms": c.max_latency_ms,
        "lease_ms": c.lease_ms,
        "max_attempts": c.max_attempts,
        "backoff_base_ms": c.backoff_base_ms,
        "backoff_max_ms": c.backoff_max_ms,
        "dead_letter_queue": c.dead_letter_queue,
        "dedup_window_ms": c.dedup_window_ms,
        "ordered_by_key": c.ordered_by_key,
    })
}

/// `GET /v1/queues/{q}`: counts first (DESIGN §4), then the config keys, then counters.
pub fn stats_json(s: &QueueStats) -> serde_json::Value {
    let mut v = serde_json::json!({
        "name": s.name,
        "ready": s.ready,
        "in_flight": s.in_flight,
        "delayed": s.delayed,
        "total": s.total,
        "bytes": s.bytes,
        "disk_bytes": s.disk_bytes,
        "above_warning": s.above_warning,
        "counters": {
            "published": s.published_total,
            "delivered": s.delivered_total,
            "acked": s.acked_total,
            "nacked": s.nacked_total,
            "redelivered": s.redelivered_total,
            "expired_leases": s.expired_leases_total,
            "dead_lettered": s.dead_lettered_total,
            "refused": s.refused_total,
            "duplicates": s.duplicates_total,
        },
    });
    if let (Some(obj), serde_json::Value::Object(cfg)) = (v.as_object_mut(), config_json(&s.config))
    {
        obj.extend(cfg);
    }
    v
}

/// One message in a publish request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageIn {
    body: Option<String>,
    body_base64: Option<String>,
    id: Option<String>,
    key: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    priority: u8,
}

impl MessageIn {
    /// Converts to the broker's type; `index` names the message in errors.
    pub fn into_new_message(self, index: usize) -> Result<NewMessage, ApiError> {
        let body = match (self.body, self.body_base64) {
            (Some(text), None) => Bytes::from(text),
            (None, Some(b64)) => Bytes::from(B64.decode(b64.as_bytes()).map_err(|e| {
                ApiError::bad_request(format!("messages[{index}].body_base64 is not base64: {e}"))
            })?),
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(format!(
                    "messages[{index}] has both body and body_base64; send one"
                )))
            }
            (None, None) => {
                return Err(ApiError::bad_request(format!(
                    "messages[{index}] needs body or body_base64"
                )))
            }
        };
        Ok(NewMessage {
            id: self.id,
            key: self.key.map(Bytes::from),
            headers: self.headers,
            body,
            priority: self.priority,
            delay_ms: self.delay_ms,
        })
    }
}

/// `POST /v1/queues/{q}/messages` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// The batch.
    pub messages: Vec<MessageIn>,
}

/// One entry of the publish response.
#[derive(Debug, Serialize)]
pub struct PublishedOut {
    /// The message id (client's or server-made).
    pub id: String,
    /// Whether the id was seen within the dedup window (nothing stored again).
    pub duplicate: bool,
}

/// `POST /v1/queues/{q}/receive` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveBody {
    /// How many messages at most (1–1000, default 1).
    pub max: Option<u64>,
    /// How long to wait for the first message (0–20000 ms, default 0).
    pub wait_ms: Option<u64>,
    /// Lease for these deliveries (default: the queue's `lease_ms`).
    pub lease_ms: Option<u64>,
}

/// `ack` and `extend` / `nack` bodies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptsBody {
    /// Receipts from `receive`.
    pub receipts: Vec<String>,
    /// For nack: redeliver after this long instead of the queue's backoff.
    pub delay_ms: Option<u64>,
    /// For extend: the new lease, from now.
    pub lease_ms: Option<u64>,
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Adds `body_base64` always and `body` when the bytes are UTF-8 (DESIGN §4).
pub fn put_body(obj: &mut serde_json::Map<String, serde_json::Value>, bytes: &[u8]) {
    obj.insert("body_base64".into(), B64.encode(bytes).into());
    if let Ok(text) = std::str::from_utf8(bytes) {
        obj.insert("body".into(), text.into());
    }
}

/// A delivery as JSON.
pub fn delivery_json(d: &Delivery) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    obj.insert("id".into(), d.id.clone().into());
    obj.insert("receipt".into(), d.receipt.clone().into());
    put_body(&mut obj, &d.body);
    if let Some(key) = &d.key {
        obj.insert(
            "key".into(),
            String::from_utf8_lossy(key).into_owned().into(),
        );
    }
    obj.insert(
        "headers".into(),
        serde_json::to_value(&d.headers).unwrap_or_default(),
    );
    obj.insert("attempt".into(), d.attempt.into());
    obj.insert("priority".into(), d.priority.into());
    obj.insert("enqueued_at".into(), rfc3339_ms(d.enqueued_at_ms).into());
    obj.insert("enqueued_at_ms".into(), d.enqueued_at_ms.into());
    serde_json::Value::Object(obj)
}
