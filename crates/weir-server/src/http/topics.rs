//! Handlers for `/v1/topics/...` (DESIGN §4): a topic stores each message once; every
//! subscription is a full queue over it, addressed as `/v1/topics/{t}/subscriptions/{s}`.
//! Bodies and answers of publish, receive, ack, nack and extend are those of a queue.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use weir_broker::{Delivery, QueueConfig, SubscriptionStart, TopicConfig, TopicStats};
use weir_proto::limits::{
    MAX_BATCH_MESSAGES, MAX_LEASE_MS, MAX_RECEIVE_MESSAGES, MAX_WAIT_MS, MIN_LEASE_MS,
};
use weir_proto::ErrorCode;

use super::error::ApiError;
use super::extract::{JsonBody, Name, Names};
use super::wire::{
    config_json, delivery_json, stats_json, PublishBody, PublishedOut, QueueConfigBody,
    ReceiptsBody, ReceiveBody,
};
use super::AppState;

/// `PUT /v1/topics/{t}` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfigBody {
    /// Dedup window of client-supplied ids, in milliseconds.
    pub dedup_window_ms: Option<u64>,
}

/// A topic as JSON: its config, counters, log bounds and every subscription's stats.
pub fn topic_json(t: &TopicStats) -> Value {
    let subs: Vec<Value> = t.subscriptions.iter().map(stats_json).collect();
    json!({
        "name": t.name,
        "dedup_window_ms": t.config.dedup_window_ms,
        "published": t.published_total,
        "duplicates": t.duplicates_total,
        "refused": t.refused_total,
        "disk_bytes": t.disk_bytes,
        "start_offset": t.start_offset,
        "next_offset": t.next_offset,
        "slowest_subscription": t.slowest,
        "subscriptions": subs,
    })
}

fn created_status(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, weir_broker::BrokerError> + Send + 'static,
) -> Result<T, ApiError> {
    // Creating and deleting write and fsync metadata: keep that off the async workers.
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("{what} panicked: {e}")))??)
}

/// `PUT /v1/topics/{t}`: create (201) or update (200).
pub async fn put_topic(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<TopicConfigBody>,
) -> Result<Response, ApiError> {
    let mut config = match state.broker.topic_stats(&name) {
        Ok(t) => t.config,
        Err(e) if e.code() == ErrorCode::NotFound => TopicConfig::default(),
        Err(e) => return Err(e.into()),
    };
    if let Some(w) = body.dedup_window_ms {
        config.dedup_window_ms = w;
    }
    let broker = state.broker.clone();
    let (stats, created) =
        blocking("create_topic", move || broker.create_topic(&name, config)).await?;
    Ok((created_status(created), Json(topic_json(&stats))).into_response())
}

/// `GET /v1/topics/{t}`.
pub async fn get_topic(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(topic_json(&state.broker.topic_stats(&name)?)))
}

/// `GET /v1/topics`.
pub async fn list_topics(State(state): State<AppState>) -> Json<Value> {
    let topics: Vec<Value> = state.broker.list_topics().iter().map(topic_json).collect();
    Json(json!({ "topics": topics }))
}

/// `DELETE /v1/topics/{t}`: 204.
pub async fn delete_topic(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<StatusCode, ApiError> {
    let broker = state.broker.clone();
    blocking("delete_topic", move || broker.delete_topic(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/topics/{t}/subscriptions`: every subscription's backlog, the slowest named.
pub async fn list_subscriptions(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<Json<Value>, ApiError> {
    let t = state.broker.topic_stats(&name)?;
    let subs: Vec<Value> = t.subscriptions.iter().map(stats_json).collect();
    Ok(Json(
        json!({ "subscriptions": subs, "slowest_subscription": t.slowest }),
    ))
}

/// `PUT /v1/topics/{t}/subscriptions/{s}`: a queue's config plus `"start": "now" | "oldest"`
/// (default `now`; only meaningful on creation). 201 created, 200 updated.
pub async fn put_subscription(
    State(state): State<AppState>,
    Names(topic, sub): Names,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let Value::Object(mut fields) = body else {
        return Err(ApiError::bad_request(
            "the subscription config must be a JSON object",
        ));
    };
    let start = match fields.remove("start") {
        None => SubscriptionStart::Now,
        Some(Value::String(s)) if s == "now" => SubscriptionStart::Now,
        Some(Value::String(s)) if s == "oldest" => SubscriptionStart::Oldest,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "start must be \"now\" or \"oldest\", got {other}"
            )))
        }
    };
    let config_body: QueueConfigBody = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let base = match state.broker.subscription_stats(&topic, &sub) {
        Ok(s) => s.config,
        Err(e) if e.code() == ErrorCode::NotFound => QueueConfig::default(),
        Err(e) => return Err(e.into()),
    };
    let config = config_body.apply(base);
    let broker = state.broker.clone();
    let (stats, created) = blocking("create_subscription", move || {
        broker.create_subscription(&topic, &sub, config, start)
    })
    .await?;
    let mut out = config_json(&stats.config);
    if let Some(obj) = out.as_object_mut() {
        obj.insert("name".into(), stats.name.into());
    }
    Ok((created_status(created), Json(out)).into_response())
}

/// `GET /v1/topics/{t}/subscriptions/{s}`: the subscription's queue stats (`total` is its
/// backlog).
pub async fn get_subscription(
    State(state): State<AppState>,
    Names(topic, sub): Names,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(stats_json(
        &state.broker.subscription_stats(&topic, &sub)?,
    )))
}

/// `DELETE /v1/topics/{t}/subscriptions/{s}`: 204.
pub async fn delete_subscription(
    State(state): State<AppState>,
    Names(topic, sub): Names,
) -> Result<StatusCode, ApiError> {
    let broker = state.broker.clone();
    blocking("delete_subscription", move || {
        broker.delete_subscription(&topic, &sub)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/topics/{t}/messages`: 200 once durable; 503 when any subscription is full.
pub async fn publish(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Json<Value>, ApiError> {
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
    let outcome = state.broker.publish_topic(&name, messages)?;
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

/// Receives from a subscription, waiting on its watch channel and next due time until `wait_ms`.
async fn receive_waiting(
    state: &AppState,
    topic: &str,
    sub: &str,
    max: usize,
    wait_ms: u64,
    lease_ms: Option<u64>,
) -> Result<Vec<Delivery>, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let mut watch = state.broker.watch_subscription(topic, sub)?;
    loop {
        watch.borrow_and_update();
        let got = state
            .broker
            .receive_subscription(topic, sub, max, lease_ms)?;
        let now = tokio::time::Instant::now();
        if !got.is_empty() || now >= deadline {
            return Ok(got);
        }
        let mut wake = deadline;
        if let Some(due_ms) = state.broker.subscription_next_due_ms(topic, sub)? {
            let in_ms = due_ms.saturating_sub(state.clock_ms());
            wake = wake.min(now + Duration::from_millis(in_ms.max(1)));
        }
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    return Err(ApiError::new(
                        ErrorCode::NotFound,
                        format!("subscription {topic}/{sub} was deleted"),
                    ));
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// `POST /v1/topics/{t}/subscriptions/{s}/receive`: as a queue's.
pub async fn receive(
    State(state): State<AppState>,
    Names(topic, sub): Names,
    JsonBody(body): JsonBody<ReceiveBody>,
) -> Result<Json<Value>, ApiError> {
    let max = check_range("max", body.max.unwrap_or(1), 1, MAX_RECEIVE_MESSAGES as u64)? as usize;
    let wait_ms = check_range("wait_ms", body.wait_ms.unwrap_or(0), 0, MAX_WAIT_MS)?;
    let lease_ms = body
        .lease_ms
        .map(|l| check_range("lease_ms", l, MIN_LEASE_MS, MAX_LEASE_MS))
        .transpose()?;
    let deliveries = receive_waiting(&state, &topic, &sub, max, wait_ms, lease_ms).await?;
    let out: Vec<Value> = deliveries.iter().map(delivery_json).collect();
    Ok(Json(json!({ "messages": out })))
}

/// `POST /v1/topics/{t}/subscriptions/{s}/ack`.
pub async fn ack(
    State(state): State<AppState>,
    Names(topic, sub): Names,
    JsonBody(body): JsonBody<ReceiptsBody>,
) -> Result<Json<Value>, ApiError> {
    check_receipts(&body.receipts)?;
    if body.delay_ms.is_some() || body.lease_ms.is_some() {
        return Err(ApiError::bad_request("ack takes only receipts"));
    }
    let outcome = state
        .broker
        .ack_subscription(&topic, &sub, &body.receipts)?;
    outcome.durable.await?;
    Ok(Json(
        json!({ "acked": outcome.done, "invalid": outcome.invalid }),
    ))
}

/// `POST /v1/topics/{t}/subscriptions/{s}/nack`.
pub async fn nack(
    State(state): State<AppState>,
    Names(topic, sub): Names,
    JsonBody(body): JsonBody<ReceiptsBody>,
) -> Result<Json<Value>, ApiError> {
    check_receipts(&body.receipts)?;
    if body.lease_ms.is_some() {
        return Err(ApiError::bad_request("nack takes receipts and delay_ms"));
    }
    let outcome = state
        .broker
        .nack_subscription(&topic, &sub, &body.receipts, body.delay_ms)?;
    outcome.durable.await?;
    Ok(Json(
        json!({ "nacked": outcome.done, "invalid": outcome.invalid }),
    ))
}

/// `POST /v1/topics/{t}/subscriptions/{s}/extend`.
pub async fn extend(
    State(state): State<AppState>,
    Names(topic, sub): Names,
    JsonBody(body): JsonBody<ReceiptsBody>,
) -> Result<Json<Value>, ApiError> {
    check_receipts(&body.receipts)?;
    if body.delay_ms.is_some() {
        return Err(ApiError::bad_request("extend takes receipts and lease_ms"));
    }
    let lease_ms = body
        .lease_ms
        .ok_or_else(|| ApiError::bad_request("extend needs lease_ms"))?;
    let lease_ms = check_range("lease_ms", lease_ms, MIN_LEASE_MS, MAX_LEASE_MS)?;
    let outcome = state
        .broker
        .extend_subscription(&topic, &sub, &body.receipts, lease_ms)?;
    outcome.durable.await?;
    Ok(Json(
        json!({ "extended": outcome.done, "invalid": outcome.invalid }),
    ))
}
