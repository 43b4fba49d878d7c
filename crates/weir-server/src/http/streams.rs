//! Handlers for `/v1/streams/...` (DESIGN §4) and consumer groups:
//! - `PUT|GET|DELETE /v1/streams/{s}`, `GET /v1/streams`
//! - `POST /v1/streams/{s}/records`, `GET /v1/streams/{s}/partitions/{p}/records` (long poll)
//! - `GET /v1/streams/{s}/groups`, `GET|DELETE /v1/streams/{s}/groups/{g}` (members, lag)
//! - `PUT|DELETE /v1/streams/{s}/groups/{g}/members/{m}` (join / leave),
//!   `POST .../members/{m}/heartbeat`
//! - `GET|POST /v1/streams/{s}/groups/{g}/offsets` (lag / commit)

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use weir_broker::{ReadFrom, StreamConfig, MAX_READ_RECORDS};
use weir_proto::limits::MAX_WAIT_MS;
use weir_proto::ErrorCode;

use super::consume::{check_batch_len, check_range};
use super::error::ApiError;
use super::extract::{JsonBody, Name, Names};
use super::stream_wire::{
    assignment_json, group_json, record_json, stream_json, AppendBody, CommitBody, JoinBody,
    Names3, ReadQuery, StreamConfigBody, StreamPartition,
};
use super::AppState;

/// Records a read returns when `max` is absent.
const DEFAULT_READ_MAX: u64 = 100;

async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, weir_broker::BrokerError> + Send + 'static,
) -> Result<T, ApiError> {
    // Creating and deleting write and fsync metadata: keep that off the async workers.
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("{what} panicked: {e}")))??)
}

fn created_status(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// `PUT /v1/streams/{s}`: create (201) or update retention (200); another partition count is 409.
pub async fn put_stream(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<StreamConfigBody>,
) -> Result<Response, ApiError> {
    let mut config = match state.broker.stream_stats(&name) {
        Ok(s) => s.config,
        Err(e) if e.code() == ErrorCode::NotFound => StreamConfig::default(),
        Err(e) => return Err(e.into()),
    };
    if let Some(p) = body.partitions {
        config.partitions = p;
    }
    if body.retention_ms.is_some() {
        config.retention_ms = body.retention_ms;
    }
    if body.retention_bytes.is_some() {
        config.retention_bytes = body.retention_bytes;
    }
    let broker = state.broker.clone();
    let (stats, created) =
        blocking("create_stream", move || broker.create_stream(&name, config)).await?;
    Ok((created_status(created), Json(stream_json(&stats))).into_response())
}

/// `GET /v1/streams/{s}`.
pub async fn get_stream(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(stream_json(&state.broker.stream_stats(&name)?)))
}

/// `GET /v1/streams`.
pub async fn list_streams(State(state): State<AppState>) -> Json<Value> {
    let streams: Vec<Value> = state
        .broker
        .list_streams()
        .iter()
        .map(stream_json)
        .collect();
    Json(json!({ "streams": streams }))
}

/// `DELETE /v1/streams/{s}`: 204.
pub async fn delete_stream(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<StatusCode, ApiError> {
    let broker = state.broker.clone();
    blocking("delete_stream", move || broker.delete_stream(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/streams/{s}/records`: `{"records": [{"partition", "offset"}]}` once durable.
pub async fn append(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<AppendBody>,
) -> Result<Json<Value>, ApiError> {
    check_batch_len(body.records.len(), "records", "record")?;
    let records = body
        .records
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.into_record(i))
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = state.broker.append_stream(&name, records)?;
    outcome.durable.await?;
    let out: Vec<Value> = outcome
        .positions
        .iter()
        .map(|(p, o)| json!({ "partition": p, "offset": o }))
        .collect();
    Ok(Json(json!({ "records": out })))
}

/// `GET /v1/streams/{s}/partitions/{p}/records?offset=N|timestamp_ms=T&max=M&wait_ms=W`: a
/// tailing read; with nothing to read it waits up to `wait_ms` for the next record.
pub async fn read(
    State(state): State<AppState>,
    StreamPartition(name, partition): StreamPartition,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let from = match (q.offset, q.timestamp_ms) {
        (Some(o), None) => ReadFrom::Offset(o),
        (None, Some(t)) => ReadFrom::Timestamp(t),
        (None, None) => ReadFrom::Offset(0),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give offset or timestamp_ms, not both",
            ))
        }
    };
    let max = check_range(
        "max",
        q.max.unwrap_or(DEFAULT_READ_MAX),
        1,
        MAX_READ_RECORDS as u64,
    )?;
    let wait_ms = check_range("wait_ms", q.wait_ms.unwrap_or(0), 0, MAX_WAIT_MS)?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let mut batch = state
        .broker
        .read_stream(&name, partition, from, max as usize)?;
    while batch.records.is_empty() && tokio::time::Instant::now() < deadline {
        let next = batch.next_offset;
        let arrived = state.broker.wait_stream(&name, partition, next)?;
        tokio::select! {
            r = arrived => r?,
            _ = tokio::time::sleep_until(deadline) => break,
        }
        batch = state
            .broker
            .read_stream(&name, partition, ReadFrom::Offset(next), max as usize)?;
    }
    let records: Vec<Value> = batch.records.iter().map(record_json).collect();
    Ok(Json(
        json!({ "records": records, "next_offset": batch.next_offset }),
    ))
}

/// `GET /v1/streams/{s}/groups`: group names.
pub async fn list_groups(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "groups": state.broker.stream_stats(&name)?.groups }),
    ))
}

/// `GET /v1/streams/{s}/groups/{g}` (and `GET .../offsets`): members, owners, committed
/// offsets and lag per partition.
pub async fn get_group(
    State(state): State<AppState>,
    Names(stream, group): Names,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(group_json(
        &state.broker.group_status(&stream, &group)?,
    )))
}

/// `DELETE /v1/streams/{s}/groups/{g}`: forgets the group and its offsets; 204.
pub async fn delete_group(
    State(state): State<AppState>,
    Names(stream, group): Names,
) -> Result<StatusCode, ApiError> {
    let broker = state.broker.clone();
    blocking("delete_group", move || broker.delete_group(&stream, &group)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/streams/{s}/groups/{g}/members/{m}`: join (201) or refresh (200); the member's
/// partitions and their committed offsets.
pub async fn join(
    State(state): State<AppState>,
    Names3(stream, group, member): Names3,
    JsonBody(body): JsonBody<JoinBody>,
) -> Result<Response, ApiError> {
    let (a, joined) = state
        .broker
        .join_group(&stream, &group, &member, body.session_timeout_ms)?;
    Ok((created_status(joined), Json(assignment_json(&a))).into_response())
}

/// `POST /v1/streams/{s}/groups/{g}/members/{m}/heartbeat`: the current assignment; 404 once
/// the session ended (join again).
pub async fn heartbeat(
    State(state): State<AppState>,
    Names3(stream, group, member): Names3,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(assignment_json(
        &state.broker.heartbeat(&stream, &group, &member)?,
    )))
}

/// `DELETE /v1/streams/{s}/groups/{g}/members/{m}`: leave; 204.
pub async fn leave(
    State(state): State<AppState>,
    Names3(stream, group, member): Names3,
) -> Result<StatusCode, ApiError> {
    state.broker.leave_group(&stream, &group, &member)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/streams/{s}/groups/{g}/offsets`: commits once durable; 409 when `member` does not
/// own a partition or `generation` is stale.
pub async fn commit(
    State(state): State<AppState>,
    Names(stream, group): Names,
    JsonBody(body): JsonBody<CommitBody>,
) -> Result<Json<Value>, ApiError> {
    if let Some(m) = &body.member {
        weir_proto::validate_name(m)
            .map_err(|e| ApiError::bad_request(format!("invalid member {m:?}: {e}")))?;
    }
    let offsets: Vec<(u32, u64)> = body
        .offsets
        .iter()
        .map(|o| (o.partition, o.offset))
        .collect();
    let member = body.member.as_deref().map(|m| (m, body.generation));
    let durable = state
        .broker
        .commit_offsets(&stream, &group, member, &offsets)?;
    durable.await?;
    Ok(Json(json!({ "committed": offsets.len() })))
}
