//! [`Message`]: what a producer sends.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use weir_proto::frame::OutMessage;

use crate::client::millis;

/// A message to publish, built fluently.
///
/// ```
/// use std::time::Duration;
/// use weir_client::Message;
///
/// let m = Message::new("charge card 42")
///     .id("order-42")
///     .key("customer-7")
///     .header("content-type", "text/plain")
///     .priority(5)
///     .delay(Duration::from_secs(10));
/// assert_eq!(m.body_len(), 14);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    inner: OutMessage,
}

impl Message {
    /// A message with this body, priority 0, no delay, no id (the server makes one).
    pub fn new(body: impl Into<Bytes>) -> Message {
        Message {
            inner: OutMessage {
                body: body.into(),
                ..OutMessage::default()
            },
        }
    }

    /// Sets the idempotency id (≤ 128 bytes): a repeat within the dedup window is not stored twice.
    pub fn id(mut self, id: impl Into<String>) -> Message {
        self.inner.id = Some(id.into());
        self
    }

    /// Sets the ordering key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Message {
        self.inner.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Message {
        self.inner.headers.insert(name.into(), value.into());
        self
    }

    /// Replaces every header.
    pub fn headers(mut self, headers: BTreeMap<String, String>) -> Message {
        self.inner.headers = headers;
        self
    }

    /// Sets the priority (0–9, 9 most urgent).
    pub fn priority(mut self, priority: u8) -> Message {
        self.inner.priority = priority;
        self
    }

    /// Delays delivery.
    pub fn delay(mut self, delay: Duration) -> Message {
        self.inner.delay_ms = millis(delay);
        self
    }

    /// The body's size in bytes.
    pub fn body_len(&self) -> usize {
        self.inner.body.len()
    }

    /// Bytes the message takes on the wire.
    pub fn encoded_len(&self) -> usize {
        self.inner.encoded_len()
    }

    pub(crate) fn into_wire(self) -> OutMessage {
        self.inner
    }
}

impl From<OutMessage> for Message {
    fn from(inner: OutMessage) -> Message {
        Message { inner }
    }
}
