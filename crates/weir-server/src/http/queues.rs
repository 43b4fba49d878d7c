//! Handlers for `/v1/queues/...` (DESIGN §4).

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use weir_broker::QueueConfig;
use weir_proto::ErrorCode;

use super::consume::{self, Settle, Source};
use super::error::ApiError;
use super::extract::{JsonBody, Name};
use super::wire::{
    config_json, stats_json, PublishBody, QueueConfigBody, ReceiptsBody, ReceiveBody,
};
use super::AppState;

/// `PUT /v1/queues/{q}`: create (201) or update (200).
pub async fn put_queue(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<QueueConfigBody>,
) -> Result<Response, ApiError> {
    let base = match state.broker.queue_stats(&name) {
        Ok(stats) => stats.config,
        Err(e) if e.code() == ErrorCode::NotFound => QueueConfig::default(),
        Err(e) => return Err(e.into()),
    };
    let config = body.apply(base);
    let broker = state.broker.clone();
    // Creating a queue writes and fsyncs its config: keep that off the async workers.
    let (stats, created) = tokio::task::spawn_blocking(move || broker.create_queue(&name, config))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("create_queue panicked: {e}")))??;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut out = config_json(&stats.config);
    if let Some(obj) = out.as_object_mut() {
        obj.insert("name".into(), stats.name.into());
    }
    Ok((status, Json(out)).into_response())
}

/// `GET /v1/queues/{q}`.
pub async fn get_queue(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(stats_json(&state.broker.queue_stats(&name)?)))
}

/// `GET /v1/queues`.
pub async fn list_queues(State(state): State<AppState>) -> Json<serde_json::Value> {
    let queues: Vec<_> = state.broker.list_queues().iter().map(stats_json).collect();
    // Queues whose storage was found damaged at start: listed with the damage, never served.
    let quarantined: Vec<_> = state
        .broker
        .quarantined()
        .into_iter()
        .map(|(name, damage)| json!({ "name": name, "damage": damage }))
        .collect();
    Json(json!({ "queues": queues, "quarantined": quarantined }))
}

/// `DELETE /v1/queues/{q}`: 204.
pub async fn delete_queue(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<StatusCode, ApiError> {
    let broker = state.broker.clone();
    tokio::task::spawn_blocking(move || broker.delete_queue(&name))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("delete_queue panicked: {e}")))??;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/queues/{q}/purge`: drops ready and delayed messages (an extension).
pub async fn purge_queue(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<Json<serde_json::Value>, ApiError> {
    let purged = state.broker.purge_queue(&name)?;
    Ok(Json(json!({ "purged": purged })))
}

/// `POST /v1/queues/{q}/messages`: 200 once durable.
pub async fn publish(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let messages = consume::messages(body)?;
    let started = Instant::now();
    let outcome = state.broker.publish(&name, messages)?;
    Ok(Json(consume::confirm(&state, started, outcome).await?))
}

/// `POST /v1/queues/{q}/receive`: long-polls up to `wait_ms` for the first message.
pub async fn receive(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<ReceiveBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        consume::receive(&state, Source::Queue(&name), body).await?,
    ))
}

/// `POST /v1/queues/{q}/ack`.
pub async fn ack(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<ReceiptsBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let out = consume::settle(&state, Source::Queue(&name), Settle::Ack, body).await?;
    Ok(Json(out))
}

/// `POST /v1/queues/{q}/nack`.
pub async fn nack(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<ReceiptsBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let out = consume::settle(&state, Source::Queue(&name), Settle::Nack, body).await?;
    Ok(Json(out))
}

/// `POST /v1/queues/{q}/extend`.
pub async fn extend(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<ReceiptsBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let out = consume::settle(&state, Source::Queue(&name), Settle::Extend, body).await?;
    Ok(Json(out))
}
