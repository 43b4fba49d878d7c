//! JSON shapes of the stream and consumer-group API and their conversion to broker types.
//! Request types deny unknown fields; paths are validated names (and a partition number).

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use weir_broker::{
    GroupAssignment, GroupStatus, NewRecord, PartitionLag, StreamRecord, StreamStats,
};

use super::error::ApiError;
use super::wire::put_body;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn checked(raw: String) -> Result<String, ApiError> {
    weir_proto::validate_name(&raw)
        .map_err(|e| ApiError::bad_request(format!("invalid name {raw:?}: {e}")))?;
    Ok(raw)
}

/// `/v1/streams/{s}/partitions/{p}/...`: a validated stream name and a partition number.
#[derive(Debug)]
pub struct StreamPartition(pub String, pub u32);

impl<S: Send + Sync> FromRequestParts<S> for StreamPartition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((s, p)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))?;
        let p = p
            .parse::<u32>()
            .map_err(|_| ApiError::bad_request(format!("partition {p:?} is not a number")))?;
        Ok(StreamPartition(checked(s)?, p))
    }
}

/// `/v1/streams/{s}/groups/{g}/members/{m}`: three validated names.
#[derive(Debug)]
pub struct Names3(pub String, pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for Names3 {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((a, b, c)) = Path::<(String, String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))?;
        Ok(Names3(checked(a)?, checked(b)?, checked(c)?))
    }
}

/// `PUT /v1/streams/{s}` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfigBody {
    /// Partition count (fixed once created).
    pub partitions: Option<u32>,
    /// Retention by age, in milliseconds.
    pub retention_ms: Option<u64>,
    /// Retention by size per partition, in bytes.
    pub retention_bytes: Option<u64>,
}

/// One record of `POST /v1/streams/{s}/records`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordIn {
    body: Option<String>,
    body_base64: Option<String>,
    key: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl RecordIn {
    /// Converts to the broker's type; `index` names the record in errors.
    pub fn into_record(self, index: usize) -> Result<NewRecord, ApiError> {
        let body = match (self.body, self.body_base64) {
            (Some(text), None) => Bytes::from(text),
            (None, Some(b64)) => Bytes::from(B64.decode(b64.as_bytes()).map_err(|e| {
                ApiError::bad_request(format!("records[{index}].body_base64 is not base64: {e}"))
            })?),
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(format!(
                    "records[{index}] has both body and body_base64; send one"
                )))
            }
            (None, None) => {
                return Err(ApiError::bad_request(format!(
                    "records[{index}] needs body or body_base64"
                )))
            }
        };
        Ok(NewRecord {
            key: self.key.map(Bytes::from),
            headers: self.headers,
            body,
        })
    }
}

/// `POST /v1/streams/{s}/records` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// The batch.
    pub records: Vec<RecordIn>,
}

/// Query of `GET /v1/streams/{s}/partitions/{p}/records`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// Start at this offset.
    pub offset: Option<u64>,
    /// Start at the first record at or after this time.
    pub timestamp_ms: Option<u64>,
    /// Most records (1–1000, default 100).
    pub max: Option<u64>,
    /// Wait up to this long for a first record (0–20000 ms, default 0).
    pub wait_ms: Option<u64>,
}

/// `PUT /v1/streams/{s}/groups/{g}/members/{m}` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    /// The session ends when no heartbeat came for this long.
    pub session_timeout_ms: Option<u64>,
}

/// One committed offset.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetIn {
    /// The partition.
    pub partition: u32,
    /// The next offset to process.
    pub offset: u64,
}

/// `POST /v1/streams/{s}/groups/{g}/offsets` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    /// Offsets to commit.
    pub offsets: Vec<OffsetIn>,
    /// The committing member: it must own every partition (else 409).
    pub member: Option<String>,
    /// The generation the member's assignment came from: stale is 409.
    pub generation: Option<u64>,
}

/// A stream as JSON.
pub fn stream_json(s: &StreamStats) -> Value {
    let partitions: Vec<Value> = s
        .partitions
        .iter()
        .map(|p| {
            json!({ "partition": p.partition, "start_offset": p.start_offset,
                    "end_offset": p.end_offset, "disk_bytes": p.bytes, "segments": p.segments })
        })
        .collect();
    json!({
        "name": s.name,
        "partitions": s.config.partitions,
        "retention_ms": s.config.retention_ms,
        "retention_bytes": s.config.retention_bytes,
        "partition_stats": partitions,
        "groups": s.groups,
    })
}

/// A record as JSON (DESIGN §4).
pub fn record_json(r: &StreamRecord) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("offset".into(), r.offset.into());
    obj.insert("timestamp_ms".into(), r.timestamp_ms.into());
    if let Some(k) = &r.key {
        obj.insert("key".into(), String::from_utf8_lossy(k).into_owned().into());
    }
    put_body(&mut obj, &r.body);
    obj.insert(
        "headers".into(),
        serde_json::to_value(&r.headers).unwrap_or_default(),
    );
    Value::Object(obj)
}

/// A member's assignment as JSON.
pub fn assignment_json(a: &GroupAssignment) -> Value {
    let committed: Vec<Value> = a
        .committed
        .iter()
        .map(|(p, o)| json!({ "partition": p, "offset": o }))
        .collect();
    json!({
        "generation": a.generation,
        "partitions": a.partitions,
        "committed": committed,
        "members": a.members,
        "session_timeout_ms": a.session_timeout_ms,
    })
}

fn lag_json(p: &PartitionLag) -> Value {
    json!({ "partition": p.partition, "owner": p.owner, "committed": p.committed,
            "end_offset": p.end_offset, "lag": p.lag })
}

/// A group's status as JSON.
pub fn group_json(g: &GroupStatus) -> Value {
    let members: Vec<Value> = g
        .members
        .iter()
        .map(
            |m| json!({ "id": m.id, "partitions": m.partitions, "expires_at_ms": m.expires_at_ms }),
        )
        .collect();
    let partitions: Vec<Value> = g.partitions.iter().map(lag_json).collect();
    json!({
        "name": g.name,
        "generation": g.generation,
        "members": members,
        "partitions": partitions,
        "lag": g.partitions.iter().map(|p| p.lag).sum::<u64>(),
    })
}
