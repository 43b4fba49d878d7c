//! The broker's envelope inside a message-log [`Record`].
//!
//! ```text
//! Record.timestamp_ms  enqueued_at (broker clock)
//! Record.key           the message key
//! Record.headers[0]    name "~weir", value: version u8 = 1 | flags u8 (bit 0: id from client)
//!                      | priority u8 | ready_at_ms varint | id (varint length + UTF-8)
//! Record.headers[1..]  the user headers, name → UTF-8 value, in name order
//! Record.body          the user body, untouched (deliveries share its buffer: zero-copy)
//! ```

use std::collections::BTreeMap;

use bytes::Bytes;
use weir_store::{Header, Record, StoreError, StoredRecord};

use crate::codec::{put_bytes, put_varint, Reader};

/// Name of the envelope header (always the first header of a message record).
pub(crate) const ENVELOPE_HEADER: &str = "~weir";
const VERSION: u8 = 1;
const FLAG_CLIENT_ID: u8 = 1;

/// The broker's fields of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) id: String,
    pub(crate) client_id: bool,
    pub(crate) priority: u8,
    pub(crate) ready_at_ms: u64,
}

/// A message decoded from a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) envelope: Envelope,
    pub(crate) enqueued_at_ms: u64,
    pub(crate) key: Option<Bytes>,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Bytes,
}

/// Builds the record for a new message and the decoded form a queue keeps in its tail cache (the
/// two share the key and body `Bytes`).
pub(crate) fn encode_keeping(
    envelope: Envelope,
    enqueued_at_ms: u64,
    key: Option<Bytes>,
    headers: BTreeMap<String, String>,
    body: Bytes,
) -> (Record, Message) {
    let record = encode(
        &envelope,
        enqueued_at_ms,
        key.clone(),
        &headers,
        body.clone(),
    );
    let message = Message {
        envelope,
        enqueued_at_ms,
        key,
        headers,
        body,
    };
    (record, message)
}

/// Builds the record for a message.
pub(crate) fn encode(
    envelope: &Envelope,
    enqueued_at_ms: u64,
    key: Option<Bytes>,
    headers: &BTreeMap<String, String>,
    body: Bytes,
) -> Record {
    let mut value = Vec::with_capacity(16 + envelope.id.len());
    value.push(VERSION);
    value.push(if envelope.client_id {
        FLAG_CLIENT_ID
    } else {
        0
    });
    value.push(envelope.priority);
    put_varint(&mut value, envelope.ready_at_ms);
    put_bytes(&mut value, envelope.id.as_bytes());
    let mut out = Vec::with_capacity(1 + headers.len());
    out.push(Header {
        name: ENVELOPE_HEADER.to_string(),
        value: Bytes::from(value),
    });
    out.extend(headers.iter().map(|(k, v)| Header {
        name: k.clone(),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }));
    Record {
        timestamp_ms: enqueued_at_ms,
        key,
        headers: out,
        body,
    }
}

/// Decodes only the envelope (recovery scans need no more).
pub(crate) fn decode_envelope(record: &StoredRecord) -> Result<Envelope, StoreError> {
    let header = record
        .record
        .headers
        .first()
        .filter(|h| h.name == ENVELOPE_HEADER)
        .ok_or_else(|| StoreError::Corrupt {
            file: "message envelope".into(),
            position: record.offset,
            reason: "the first header is not the broker envelope".into(),
        })?;
    let mut r = Reader::new("message envelope", &header.value);
    let version = r.u8()?;
    if version != VERSION {
        return Err(r.error(format!("unknown envelope version {version}")));
    }
    let flags = r.u8()?;
    let priority = r.u8()?;
    let ready_at_ms = r.varint()?;
    let id = r.string()?;
    r.finish()?;
    Ok(Envelope {
        id,
        client_id: flags & FLAG_CLIENT_ID != 0,
        priority,
        ready_at_ms,
    })
}

/// Decodes a whole message; the body is shared, not copied.
pub(crate) fn decode(record: StoredRecord) -> Result<Message, StoreError> {
    let envelope = decode_envelope(&record)?;
    let headers = record
        .record
        .headers
        .iter()
        .skip(1)
        .map(|h| {
            (
                h.name.clone(),
                String::from_utf8_lossy(&h.value).into_owned(),
            )
        })
        .collect();
    Ok(Message {
        envelope,
        enqueued_at_ms: record.record.timestamp_ms,
        key: record.record.key,
        headers,
        body: record.record.body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_the_body_buffer() {
        let env = Envelope {
            id: "abc".into(),
            client_id: true,
            priority: 7,
            ready_at_ms: 12345,
        };
        let mut headers = BTreeMap::new();
        headers.insert("h".to_string(), "v".to_string());
        let body = Bytes::from_static(b"payload");
        let rec = encode(
            &env,
            99,
            Some(Bytes::from_static(b"k")),
            &headers,
            body.clone(),
        );
        let m = decode(StoredRecord {
            offset: 4,
            span: 1,
            record: rec,
        })
        .expect("decode");
        assert_eq!(m.envelope, env);
        assert_eq!(m.enqueued_at_ms, 99);
        assert_eq!(m.headers, headers);
        assert_eq!(m.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(m.body.as_ptr(), body.as_ptr());
    }

    #[test]
    fn foreign_records_are_corrupt_not_panics() {
        let rec = StoredRecord {
            offset: 0,
            span: 1,
            record: Record::default(),
        };
        assert!(decode_envelope(&rec).is_err());
        let rec = StoredRecord {
            offset: 0,
            span: 1,
            record: Record {
                headers: vec![Header {
                    name: ENVELOPE_HEADER.into(),
                    value: Bytes::from_static(&[1, 0]),
                }],
                ..Record::default()
            },
        };
        assert!(decode_envelope(&rec).is_err());
    }
}
