//! What an application writes into its outbox, and the checks shared by the PostgreSQL and SQLite
//! `enqueue` helpers ([`crate::pg::enqueue`], [`crate::sqlite::enqueue`]).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Largest body the helpers accept (Weir's default largest body, 1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest message key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most headers on one message.
pub const MAX_HEADERS: usize = 64;

/// One event to publish: its key (ordering), headers and body. The destination is given to
/// `enqueue` beside it; the message id is the outbox row's id, assigned by the database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// Ordering / partitioning key: rows with the same key reach Weir in row-id order.
    pub key: Option<String>,
    /// String headers.
    pub headers: BTreeMap<String, String>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Message {
    /// A message with this body, no key and no headers.
    pub fn new(body: impl Into<Vec<u8>>) -> Message {
        Message {
            key: None,
            headers: BTreeMap::new(),
            body: body.into(),
        }
    }

    /// Sets the ordering key.
    pub fn key(mut self, key: impl Into<String>) -> Message {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Message {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The headers as the JSON object text stored in the `headers` column.
    pub(crate) fn headers_json(&self) -> String {
        // A map of strings always serialises.
        serde_json::to_string(&self.headers).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Checks limits so a row that Weir would refuse for good is refused at enqueue time instead.
    pub(crate) fn validate(&self, destination: &str) -> Result<()> {
        Destination::parse(destination)?;
        if self.body.len() > MAX_BODY_BYTES {
            return Err(Error::invalid(
                "message",
                format!(
                    "body is {} bytes, more than {MAX_BODY_BYTES}",
                    self.body.len()
                ),
            ));
        }
        if let Some(key) = &self.key {
            if key.is_empty() || key.len() > MAX_KEY_BYTES {
                return Err(Error::invalid(
                    "message",
                    format!("key must be 1..={MAX_KEY_BYTES} bytes"),
                ));
            }
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(Error::invalid(
                "message",
                format!("{} headers, more than {MAX_HEADERS}", self.headers.len()),
            ));
        }
        Ok(())
    }
}

/// Where a row goes: `name` or `queue:name` is a queue, `topic:name` a topic. Weir's names are
/// `[A-Za-z0-9_.-]{1,128}` not starting with `.`, so the `:` prefix is unambiguous.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A queue.
    Queue(String),
    /// A topic (every subscription gets a copy).
    Topic(String),
}

impl Destination {
    /// Parses a destination column value.
    pub fn parse(text: &str) -> Result<Destination> {
        let (topic, name) = if let Some(name) = text.strip_prefix("topic:") {
            (true, name)
        } else if let Some(name) = text.strip_prefix("queue:") {
            (false, name)
        } else {
            (false, text)
        };
        let valid = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err(Error::invalid(
                "destination",
                format!("{text:?}: want `name`, `queue:name` or `topic:name` with name in [A-Za-z0-9_.-]{{1,128}}"),
            ));
        }
        let name = name.to_owned();
        Ok(if topic {
            Destination::Topic(name)
        } else {
            Destination::Queue(name)
        })
    }

    /// The HTTP path that publishes to this destination.
    pub fn publish_path(&self) -> String {
        match self {
            Destination::Queue(q) => format!("/v1/queues/{q}/messages"),
            Destination::Topic(t) => format!("/v1/topics/{t}/messages"),
        }
    }
}

/// One unsent outbox row as the relay reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxRow {
    /// The row id; the message id is this, optionally prefixed.
    pub id: i64,
    /// The destination column, as stored.
    pub destination: String,
    /// The ordering key.
    pub key: Option<String>,
    /// Headers (JSON object text in the table).
    pub headers: BTreeMap<String, String>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// When the row was written, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

pub(crate) fn parse_headers(text: &str) -> BTreeMap<String, String> {
    match serde_json::from_str::<BTreeMap<String, serde_json::Value>>(text) {
        Ok(map) => map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
        Err(e) => {
            tracing::warn!("outbox row has headers that are not a JSON object ({e}); sending none");
            BTreeMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        assert_eq!(
            Destination::parse("payments").unwrap(),
            Destination::Queue("payments".into())
        );
        assert_eq!(
            Destination::parse("queue:a.b-c_d").unwrap(),
            Destination::Queue("a.b-c_d".into())
        );
        assert_eq!(
            Destination::parse("topic:orders").unwrap(),
            Destination::Topic("orders".into())
        );
        for bad in ["", "topic:", ".hidden", "a b", "a/b", &"x".repeat(129)] {
            assert!(Destination::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Destination::parse("topic:t").unwrap().publish_path(),
            "/v1/topics/t/messages"
        );
    }

    #[test]
    fn message_limits() {
        assert!(Message::new("x").validate("q").is_ok());
        assert!(Message::new(vec![0; MAX_BODY_BYTES + 1])
            .validate("q")
            .is_err());
        assert!(Message::new("x").key("").validate("q").is_err());
        assert!(Message::new("x").validate("bad name").is_err());
    }

    #[test]
    fn headers_round_trip() {
        let m = Message::new("x").header("a", "1").header("b", "two");
        assert_eq!(parse_headers(&m.headers_json()), m.headers);
        assert_eq!(parse_headers("{\"n\": 5}")["n"], "5");
        assert!(parse_headers("nope").is_empty());
    }
}
