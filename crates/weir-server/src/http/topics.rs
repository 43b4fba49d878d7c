//! Handlers for `/v1/topics/...` (DESIGN §4): a topic stores each message once; every
//! subscription is a full queue over it, addressed as `/v1/topics/{t}/subscriptions/{s}`.
//! Bodies and answers of publish, receive, ack, nack and extend are those of a queue.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use weir_broker::{QueueConfig, SubscriptionStart, TopicConfig, TopicStats};
use weir_proto::ErrorCode;

use super::consume::{self, Settle, Source};
use super::error::ApiError;
use super::extract::{JsonBody, Name, Names};
use super::wire::{
    config_json, stats_json, PublishBody, QueueConfigBody, ReceiptsBody, ReceiveBody,
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
    let messages = consume::messages(body)?;
    let started = Instant::now();
    let outcome = state.broker.publish_topic(&name, messages)?;
    Ok(Json(consume::confirm(&state, started, outcome).await?))
}

/// `POST /v1/topics/{t}/subscriptions/{s}/receive`: as a queue's.
pub async fn receive(
    State(state): State<AppState>,
    Names(topic, sub): Names,
    JsonBody(body): JsonBody<ReceiveBody>,
) -> Result<Json<Value>, ApiError> {
    let source = Source::Subscription(&topic, &sub);
    Ok(Json(consume::receive(&state, source, body).await?))
}

/// `POST /v1/topics/{t}/subscriptions/{s}/ack`.
pub async fn ack(
    State(state): State<AppState>,
    Names(topic, sub): Names,
    JsonBody(body): JsonBody<ReceiptsBody>,
) -> Result<Json<Value>, ApiError> {
    let source = Source::Subscription(&topic, &sub);
    Ok(Json(
        consume::settle(&state, source, Settle::Ack, body).await?,
    ))
}

/// `POST /v1/topics/{t}/subscriptions/{s}/nack`.
pub async fn nack(
    State(state): State<AppState>,
    Names(topic, sub): Names,
    JsonBody(body): JsonBody<ReceiptsBody>,
) -> Result<Json<Value>, ApiError> {
    let source = Source::Subscription(&topic, &sub);
    Ok(Json(
        consume::settle(&state, source, Settle::Nack, body).await?,
    ))
}

/// `POST /v1/topics/{t}/subscriptions/{s}/extend`.
pub async fn extend(
    State(state): State<AppState>,
    Names(topic, sub): Names,
    JsonBody(body): JsonBody<ReceiptsBody>,
) -> Result<Json<Value>, ApiError> {
    let source = Source::Subscription(&topic, &sub);
    Ok(Json(
        consume::settle(&state, source, Settle::Extend, body).await?,
    ))
}
