//! Handlers for `/v1/schedules/...` over [`weir_tasks::Scheduler`] (DESIGN §4: `PUT` with
//! `cron` or `every_ms` and a `task` or `message` target; list, get, pause, resume and delete
//! are Weir's extension).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use weir_tasks::{MisfirePolicy, Schedule, ScheduleSpec, ScheduleTarget, Timing};

use super::error::ApiError;
use super::extract::{JsonBody, Name};
use super::tasks::TaskSpecBody;
use super::wire::{put_body, rfc3339_ms};
use super::AppState;

/// A message target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageTargetBody {
    queue: String,
    body: Option<String>,
    body_base64: Option<String>,
    key: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// `PUT /v1/schedules/{name}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    cron: Option<String>,
    every_ms: Option<u64>,
    timezone: Option<String>,
    misfire: Option<String>,
    task: Option<TaskSpecBody>,
    message: Option<MessageTargetBody>,
}

impl ScheduleBody {
    fn into_spec(self) -> Result<ScheduleSpec, ApiError> {
        let timing = match (self.cron, self.every_ms) {
            (Some(expr), None) => Timing::Cron {
                expr,
                timezone: self.timezone.unwrap_or_else(|| "UTC".into()),
            },
            (None, Some(every_ms)) if self.timezone.is_none() => Timing::Every { every_ms },
            (None, Some(_)) => {
                return Err(ApiError::bad_request("timezone applies to cron only"));
            }
            _ => {
                return Err(ApiError::bad_request(
                    "a schedule has exactly one of cron, every_ms",
                ))
            }
        };
        let target = match (self.task, self.message) {
            (Some(t), None) => ScheduleTarget::Task(t.into_spec()),
            (None, Some(m)) => {
                let body = match (m.body, m.body_base64) {
                    (Some(text), None) => Bytes::from(text),
                    (None, Some(b64)) => Bytes::from(
                        base64::engine::general_purpose::STANDARD
                            .decode(b64.as_bytes())
                            .map_err(|e| {
                                ApiError::bad_request(format!(
                                    "message.body_base64 is not base64: {e}"
                                ))
                            })?,
                    ),
                    _ => {
                        return Err(ApiError::bad_request(
                            "message needs exactly one of body, body_base64",
                        ))
                    }
                };
                ScheduleTarget::Message {
                    queue: m.queue,
                    body,
                    key: m.key.map(Bytes::from),
                    headers: m.headers,
                }
            }
            _ => {
                return Err(ApiError::bad_request(
                    "a schedule has exactly one of task, message",
                ))
            }
        };
        let misfire = match self.misfire.as_deref() {
            None | Some("skip") => MisfirePolicy::Skip,
            Some("fire_once") => MisfirePolicy::FireOnce,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "misfire is \"skip\" or \"fire_once\", not {other:?}"
                )))
            }
        };
        Ok(ScheduleSpec {
            timing,
            target,
            misfire,
        })
    }
}

/// A schedule as JSON.
pub fn schedule_json(s: &Schedule, next_ms: Option<u64>) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("name".into(), s.name.clone().into());
    match &s.spec.timing {
        Timing::Cron { expr, timezone } => {
            obj.insert("cron".into(), expr.clone().into());
            obj.insert("timezone".into(), timezone.clone().into());
        }
        Timing::Every { every_ms } => {
            obj.insert("every_ms".into(), (*every_ms).into());
        }
    }
    match &s.spec.target {
        ScheduleTarget::Task(t) => {
            obj.insert(
                "task".into(),
                json!({ "queue": t.queue, "name": t.name, "args": t.args }),
            );
        }
        ScheduleTarget::Message {
            queue,
            body,
            key,
            headers,
        } => {
            let mut m = serde_json::Map::new();
            m.insert("queue".into(), queue.clone().into());
            put_body(&mut m, body);
            if let Some(k) = key {
                m.insert("key".into(), String::from_utf8_lossy(k).into_owned().into());
            }
            m.insert("headers".into(), json!(headers));
            obj.insert("message".into(), Value::Object(m));
        }
    }
    obj.insert("misfire".into(), s.spec.misfire.as_str().into());
    obj.insert("paused".into(), s.paused.into());
    obj.insert(
        "next_fire_at".into(),
        next_ms.map(rfc3339_ms).map_or(Value::Null, Value::from),
    );
    if let Some(t) = s.last_tick_ms {
        obj.insert("last_tick_at".into(), rfc3339_ms(t).into());
    }
    obj.insert("fired".into(), s.fired_total.into());
    obj.insert("created_at".into(), rfc3339_ms(s.created_ms).into());
    Value::Object(obj)
}

/// `PUT /v1/schedules/{name}`: 201 created, 200 replaced; with `next_fire_at`.
pub async fn put_schedule(
    State(state): State<AppState>,
    Name(name): Name,
    JsonBody(body): JsonBody<ScheduleBody>,
) -> Result<Response, ApiError> {
    let spec = body.into_spec()?;
    let (s, created, next) = state.scheduler.put(&name, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(schedule_json(&s, next))).into_response())
}

/// `GET /v1/schedules/{name}`.
pub async fn get_schedule(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<Json<Value>, ApiError> {
    let (s, next) = state.scheduler.get(&name)?;
    Ok(Json(schedule_json(&s, next)))
}

/// `GET /v1/schedules`.
pub async fn list_schedules(State(state): State<AppState>) -> Json<Value> {
    let all: Vec<Value> = state
        .scheduler
        .list()
        .iter()
        .map(|(s, n)| schedule_json(s, *n))
        .collect();
    Json(json!({ "schedules": all }))
}

/// `DELETE /v1/schedules/{name}`: 204.
pub async fn delete_schedule(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<StatusCode, ApiError> {
    state.scheduler.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/schedules/{name}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<Json<Value>, ApiError> {
    let s = state.scheduler.pause(&name).await?;
    Ok(Json(schedule_json(&s, None)))
}

/// `POST /v1/schedules/{name}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    Name(name): Name,
) -> Result<Json<Value>, ApiError> {
    let s = state.scheduler.resume(&name).await?;
    let next = state.scheduler.next_fire_ms(&name);
    Ok(Json(schedule_json(&s, next)))
}
