//! Handlers for `/v1/queues/...` (DESIGN §4).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use weir_broker::QueueConfig;
use weir_proto::limits::{
    MAX_BATCH_MESSAGES, MAX_LEASE_MS, MAX_RECEIVE_MESSAGES, MAX_WAIT_MS, MIN_LEASE_MS,
};
use weir_proto::ErrorCode;

use super::error::ApiError;
use super::extract::{JsonBody, Name};
use super::wire::{
    config_json, delivery_json, stats_json, PublishBody, PublishedOut, QueueConfigBody,
    ReceiptsBody, ReceiveBody,
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
    if body.messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages must hold at least one message",
        ));
    }
    if body.messages.len() > MAX_BATCH_MESSAGES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "batch of {} messages exceeds the limit of {MAX_BATCH_MESSAGES}",
                body.messages.len()
            ),
        ));
    }
    let messages = body
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| m.into_new_message(i))
        .collect::<Result<Vec<_>, _>>()?;
    let started = std::time::Instant::now();
    let outcome = state.broker.publish(&name, messages)?;
    outcome.durable.await?;
    state.metrics.observe_confirm(started.elapsed());
    let out: Vec<PublishedOut> = outcome
        .messages
        .into_iter()
        .map(|p| PublishedOut {
            id: p.id,
            duplicate: p.duplicate,
        })
        .collect();
    Ok(Json(json!({ "messages": out })))
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<u64, ApiError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_request(format!(
            "{field} is {value}; it must be between {min} and {max}"
        )))
    }
}

/// `POST /v1/queues/{q}/receive`: long-polls up to `wait_ms` for the first message.
pub async fn receive(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<ReceiveBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let max = check_range("max", body.max.unwrap_or(1), 1, MAX_RECEIVE_MESSAGES as u64)? as usize;
    let wait_ms = check_range("wait_ms", body.wait_ms.unwrap_or(0), 0, MAX_WAIT_MS)?;
    let lease_ms = body
        .lease_ms
        .map(|l| check_range("lease_ms", l, MIN_LEASE_MS, MAX_LEASE_MS))
        .transpose()?;
    let deliveries = receive_waiting(&state, &name, max, wait_ms, lease_ms).await?;
    let now = state.clock_ms();
    for d in &deliveries {
        state
            .metrics
            .observe_delivery_age_ms(now.saturating_sub(d.enqueued_at_ms));
    }
    let out: Vec<_> = deliveries.iter().map(delivery_json).collect();
    Ok(Json(json!({ "messages": out })))
}

/// Receives, waiting on the queue's watch channel and its next due time until `wait_ms` passes.
pub async fn receive_waiting(
    state: &AppState,
    name: &str,
    max: usize,
    wait_ms: u64,
    lease_ms: Option<u64>,
) -> Result<Vec<weir_broker::Delivery>, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let mut watch = state.broker.watch_queue(name)?;
    loop {
        watch.borrow_and_update();
        let got = state.broker.receive(name, max, lease_ms)?;
        let now = tokio::time::Instant::now();
        if !got.is_empty() || now >= deadline {
            return Ok(got);
        }
        let mut wake = deadline;
        if let Some(due_ms) = state.broker.next_due_ms(name)? {
            let in_ms = due_ms.saturating_sub(state.clock_ms());
            wake = wake.min(now + Duration::from_millis(in_ms.max(1)));
        }
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    return Err(ApiError::new(ErrorCode::NotFound, format!("queue {name} was deleted")));
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

fn check_receipts(receipts: &[String]) -> Result<(), ApiError> {
    if receipts.len() > MAX_BATCH_MESSAGES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "{} receipts exceed the limit of {MAX_BATCH_MESSAGES}",
                receipts.len()
            ),
        ));
    }
    Ok(())
}

/// `POST /v1/queues/{q}/ack`.
pub async fn ack(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<ReceiptsBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_receipts(&body.receipts)?;
    if body.delay_ms.is_some() || body.lease_ms.is_some() {
        return Err(ApiError::bad_request("ack takes only receipts"));
    }
    let outcome = state.broker.ack(&name, &body.receipts)?;
    outcome.durable.await?;
    Ok(Json(
        json!({ "acked": outcome.done, "invalid": outcome.invalid }),
    ))
}

/// `POST /v1/queues/{q}/nack`.
pub async fn nack(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<ReceiptsBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_receipts(&body.receipts)?;
    if body.lease_ms.is_some() {
        return Err(ApiError::bad_request("nack takes receipts and delay_ms"));
    }
    let outcome = state.broker.nack(&name, &body.receipts, body.delay_ms)?;
    outcome.durable.await?;
    Ok(Json(
        json!({ "nacked": outcome.done, "invalid": outcome.invalid }),
    ))
}

/// `POST /v1/queues/{q}/extend`.
pub async fn extend(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<ReceiptsBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_receipts(&body.receipts)?;
    if body.delay_ms.is_some() {
        return Err(ApiError::bad_request("extend takes receipts and lease_ms"));
    }
    let lease_ms = body
        .lease_ms
        .ok_or_else(|| ApiError::bad_request("extend needs lease_ms"))?;
    let lease_ms = check_range("lease_ms", lease_ms, MIN_LEASE_MS, MAX_LEASE_MS)?;
    let outcome = state.broker.extend(&name, &body.receipts, lease_ms)?;
    outcome.durable.await?;
    Ok(Json(
        json!({ "extended": outcome.done, "invalid": outcome.invalid }),
    ))
}
