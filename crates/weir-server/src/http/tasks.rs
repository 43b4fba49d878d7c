//! Handlers for `/v1/tasks/...`, `/v1/task-queues/{q}/receive`, `/v1/rate-limits/...` and
//! `/v1/workflows/...` over [`weir_tasks::TaskService`] (DESIGN §4 fixes submit, status and
//! result; the rest is Weir's extension, documented in `docs/tasks.md` and the OpenAPI document).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use weir_proto::limits::{MAX_LEASE_MS, MAX_RECEIVE_MESSAGES, MAX_WAIT_MS, MIN_LEASE_MS};
use weir_proto::ErrorCode;
use weir_tasks::{
    RateLimit, Submit, Task, TaskDelivery, TaskError, TaskOutcome, TaskSpec, Workflow, WorkflowSpec,
};

use super::error::ApiError;
use super::extract::{JsonBody, Name};
use super::wire::rfc3339_ms;
use super::AppState;

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> ApiError {
        let code = e.code();
        if code == ErrorCode::Internal {
            tracing::error!(error = %e, "task request failed");
        }
        ApiError {
            code,
            retry_after_ms: e.retry_after_ms(),
            message: e.to_string(),
        }
    }
}

/// A task to run, as sent in `POST /v1/tasks`, workflows and schedules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpecBody {
    queue: String,
    name: String,
    #[serde(default)]
    args: Value,
    max_attempts: Option<u32>,
    timeout_ms: Option<u64>,
    backoff_ms: Option<u64>,
    unique_key: Option<String>,
}

impl TaskSpecBody {
    /// The task service's spec.
    pub fn into_spec(self) -> TaskSpec {
        TaskSpec {
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            backoff_ms: self.backoff_ms,
            unique_key: self.unique_key,
            ..TaskSpec::new(self.queue, self.name, self.args)
        }
    }
}

/// `POST /v1/tasks` body (DESIGN §4, plus `backoff_ms` and `unique_key`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    id: Option<String>,
    #[serde(default)]
    delay_ms: u64,
    queue: String,
    name: String,
    #[serde(default)]
    args: Value,
    max_attempts: Option<u32>,
    timeout_ms: Option<u64>,
    backoff_ms: Option<u64>,
    unique_key: Option<String>,
}

/// A task as JSON: DESIGN §4's fields first, then the attempt history.
pub fn task_json(t: &Task) -> Value {
    let history: Vec<Value> = t
        .attempts
        .iter()
        .map(|a| {
            let mut v = json!({ "attempt": a.number, "started_at": rfc3339_ms(a.started_ms) });
            if let Some(obj) = v.as_object_mut() {
                if let Some(f) = a.finished_ms {
                    obj.insert("finished_at".into(), rfc3339_ms(f).into());
                }
                if let Some(w) = &a.worker {
                    obj.insert("worker".into(), w.clone().into());
                }
                if let Some(e) = &a.error {
                    obj.insert("error".into(), e.clone().into());
                }
            }
            v
        })
        .collect();
    let mut v = json!({
        "id": t.id,
        "queue": t.spec.queue,
        "name": t.spec.name,
        "state": t.state.as_str(),
        "attempts": t.attempt_count(),
        "max_attempts": t.max_attempts,
        "args": t.spec.args,
        "created_at": rfc3339_ms(t.created_ms),
        "updated_at": rfc3339_ms(t.updated_ms),
        "history": history,
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(r) = &t.result {
            obj.insert("result".into(), r.clone());
        }
        if let Some(e) = &t.error {
            obj.insert("error".into(), e.clone().into());
        }
        if let Some(w) = &t.workflow {
            obj.insert("workflow".into(), w.clone().into());
        }
        if let Some(k) = &t.spec.unique_key {
            obj.insert("unique_key".into(), k.clone().into());
        }
    }
    v
}

/// `POST /v1/tasks`: 201 when created, 200 when the id was known (nothing new submitted).
pub async fn submit(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SubmitBody>,
) -> Result<Response, ApiError> {
    let spec = TaskSpecBody {
        queue: body.queue,
        name: body.name,
        args: body.args,
        max_attempts: body.max_attempts,
        timeout_ms: body.timeout_ms,
        backoff_ms: body.backoff_ms,
        unique_key: body.unique_key,
    }
    .into_spec();
    let out = state
        .tasks
        .submit(Submit {
            spec,
            id: body.id,
            delay_ms: body.delay_ms,
        })
        .await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({ "id": out.id, "state": out.state.as_str(), "created": out.created });
    Ok((status, Json(body)).into_response())
}

/// `?wait_ms=` of the status calls.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    wait_ms: Option<u64>,
}

fn wait_of(q: &WaitQuery) -> Result<Duration, ApiError> {
    let ms = q.wait_ms.unwrap_or(0);
    if ms > MAX_WAIT_MS {
        return Err(ApiError::bad_request(format!(
            "wait_ms is {ms}; it must be at most {MAX_WAIT_MS}"
        )));
    }
    Ok(Duration::from_millis(ms))
}

fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(format!("invalid query: {e}"))
}

fn task_id(raw: String) -> Result<String, ApiError> {
    if raw.is_empty() || raw.len() > weir_proto::limits::MAX_MESSAGE_ID_BYTES {
        return Err(ApiError::bad_request("a task id is 1..=128 bytes"));
    }
    Ok(raw)
}

/// `GET /v1/tasks/{id}?wait_ms=W`: waits up to W ms for a final state.
pub async fn get_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let id = task_id(id)?;
    let wait = wait_of(&q)?;
    let t = if wait.is_zero() {
        state.tasks.get(&id)?
    } else {
        state.tasks.wait(&id, wait).await?
    };
    Ok(Json(task_json(&t)))
}

/// `POST /v1/tasks/{id}/cancel`: a queued or retrying task becomes `cancelled`; 409 otherwise.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = state.tasks.cancel(&task_id(id)?).await?;
    Ok(Json(task_json(&t)))
}

/// `POST /v1/tasks/{id}/result` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultBody {
    receipt: String,
    ok: bool,
    result: Option<Value>,
    error: Option<String>,
    worker: Option<String>,
    attempt: Option<u32>,
}

/// `POST /v1/tasks/{id}/result`: acks (ok), nacks with backoff, or dead-letters the message.
pub async fn post_result(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ResultBody>,
) -> Result<Json<Value>, ApiError> {
    let t = state
        .tasks
        .post_result(
            &task_id(id)?,
            TaskOutcome {
                receipt: body.receipt,
                ok: body.ok,
                result: body.result,
                error: body.error,
                worker: body.worker,
                attempt: body.attempt,
            },
        )
        .await?;
    Ok(Json(task_json(&t)))
}

/// `POST /v1/tasks/{id}/heartbeat` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    receipt: String,
    lease_ms: u64,
}

/// `POST /v1/tasks/{id}/heartbeat`: extends the running attempt's lease; 409 when it expired.
pub async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<HeartbeatBody>,
) -> Result<Json<Value>, ApiError> {
    if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&body.lease_ms) {
        return Err(ApiError::bad_request(format!(
            "lease_ms must be within {MIN_LEASE_MS}..={MAX_LEASE_MS}"
        )));
    }
    let deadline = state
        .tasks
        .heartbeat(&task_id(id)?, &body.receipt, body.lease_ms)
        .await?;
    Ok(Json(
        json!({ "lease_deadline": rfc3339_ms(deadline), "lease_deadline_ms": deadline }),
    ))
}

/// `POST /v1/task-queues/{q}/receive` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskReceiveBody {
    max: Option<u64>,
    wait_ms: Option<u64>,
    lease_ms: Option<u64>,
    worker: Option<String>,
}

fn delivery_json(d: &TaskDelivery) -> Value {
    json!({
        "id": d.id, "name": d.name, "args": d.args, "attempt": d.attempt, "receipt": d.receipt,
        "lease_deadline": rfc3339_ms(d.lease_deadline_ms), "lease_deadline_ms": d.lease_deadline_ms,
    })
}

/// `POST /v1/task-queues/{q}/receive`: the task-aware receive (marks tasks running, records the
/// attempt and the worker); long-polls up to `wait_ms` for the first task.
pub async fn receive(
    State(state): State<AppState>,
    Name(queue): Name,
    JsonBody(body): JsonBody<TaskReceiveBody>,
) -> Result<Json<Value>, ApiError> {
    let max = body.max.unwrap_or(1);
    if !(1..=MAX_RECEIVE_MESSAGES as u64).contains(&max) {
        return Err(ApiError::bad_request(format!(
            "max must be within 1..={MAX_RECEIVE_MESSAGES}"
        )));
    }
    let wait_ms = body.wait_ms.unwrap_or(0);
    if wait_ms > MAX_WAIT_MS {
        return Err(ApiError::bad_request(format!(
            "wait_ms must be at most {MAX_WAIT_MS}"
        )));
    }
    if let Some(l) = body.lease_ms {
        if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&l) {
            return Err(ApiError::bad_request(format!(
                "lease_ms must be within {MIN_LEASE_MS}..={MAX_LEASE_MS}"
            )));
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let mut watch = state.broker.watch_queue(&queue)?;
    let got = loop {
        watch.borrow_and_update();
        let got = state
            .tasks
            .receive(&queue, max as usize, body.lease_ms, body.worker.as_deref())
            .await?;
        let now = tokio::time::Instant::now();
        if !got.is_empty() || now >= deadline {
            break got;
        }
        let mut wake = deadline;
        if let Some(due_ms) = state.broker.next_due_ms(&queue)? {
            let in_ms = due_ms.saturating_sub(state.clock_ms());
            wake = wake.min(now + Duration::from_millis(in_ms.max(1)));
        }
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    return Err(ApiError::new(ErrorCode::NotFound, format!("queue {queue} was deleted")));
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    };
    let tasks: Vec<Value> = got.iter().map(delivery_json).collect();
    Ok(Json(json!({ "tasks": tasks })))
}

/// `PUT /v1/rate-limits/{task_name}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    per_second: f64,
    burst: Option<u32>,
}

fn limit_json(name: &str, l: &RateLimit) -> Value {
    json!({ "name": name, "per_second": l.rate_per_second(), "burst": l.burst })
}

/// `PUT /v1/rate-limits/{task_name}`: tasks of that name start at most `per_second` a second
/// (bursts of `burst`, default 1), across every worker.
pub async fn put_rate_limit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RateLimitBody>,
) -> Result<Json<Value>, ApiError> {
    let burst = body.burst.unwrap_or(1);
    let limit = RateLimit::per_second(body.per_second, burst).ok_or_else(|| {
        ApiError::bad_request("per_second must be within (0, 1000] and burst at least 1")
    })?;
    state.tasks.set_rate_limit(&name, Some(limit)).await?;
    Ok(Json(limit_json(&name, &limit)))
}

/// `DELETE /v1/rate-limits/{task_name}`: 204.
pub async fn delete_rate_limit(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.tasks.set_rate_limit(&name, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/rate-limits`.
pub async fn list_rate_limits(State(state): State<AppState>) -> Json<Value> {
    let all: Vec<Value> = state
        .tasks
        .rate_limits()
        .iter()
        .map(|(n, l)| limit_json(n, l))
        .collect();
    Json(json!({ "rate_limits": all }))
}

/// `POST /v1/workflows` body: exactly one of `chain`, `group`, `chord`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowBody {
    id: Option<String>,
    chain: Option<Vec<TaskSpecBody>>,
    group: Option<Vec<TaskSpecBody>>,
    chord: Option<ChordBody>,
}

/// A chord: a group and a callback.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChordBody {
    group: Vec<TaskSpecBody>,
    callback: TaskSpecBody,
}

fn specs(v: Vec<TaskSpecBody>) -> Vec<TaskSpec> {
    v.into_iter().map(TaskSpecBody::into_spec).collect()
}

/// A workflow as JSON, with its tasks' states.
pub fn workflow_json(state: &AppState, w: &Workflow) -> Value {
    let tasks: Vec<Value> = w
        .members
        .iter()
        .map(|id| match state.tasks.get(id) {
            Ok(t) => json!({ "id": id, "name": t.spec.name, "state": t.state.as_str() }),
            Err(_) => json!({ "id": id }),
        })
        .collect();
    let mut v = json!({
        "id": w.id, "kind": w.kind.as_str(), "state": w.state.as_str(), "tasks": tasks,
        "created_at": rfc3339_ms(w.created_ms),
    });
    if let (Some(obj), Some(r)) = (v.as_object_mut(), &w.result) {
        obj.insert("result".into(), r.clone());
    }
    v
}

/// `POST /v1/workflows`: starts a chain, group or chord; 201 (idempotent by `id`).
pub async fn start_workflow(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<WorkflowBody>,
) -> Result<Response, ApiError> {
    let spec = match (body.chain, body.group, body.chord) {
        (Some(c), None, None) => WorkflowSpec::Chain(specs(c)),
        (None, Some(g), None) => WorkflowSpec::Group(specs(g)),
        (None, None, Some(c)) => WorkflowSpec::Chord {
            group: specs(c.group),
            callback: c.callback.into_spec(),
        },
        _ => {
            return Err(ApiError::bad_request(
                "a workflow has exactly one of chain, group, chord",
            ))
        }
    };
    let w = state.tasks.start_workflow(body.id, spec).await?;
    Ok((StatusCode::CREATED, Json(workflow_json(&state, &w))).into_response())
}

/// `GET /v1/workflows/{id}?wait_ms=W`: waits up to W ms for it to finish.
pub async fn get_workflow(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let wait = wait_of(&q)?;
    let w = if wait.is_zero() {
        state.tasks.workflow(&id)?
    } else {
        state.tasks.wait_workflow(&id, wait).await?
    };
    Ok(Json(workflow_json(&state, &w)))
}

/// The OpenAPI paths of tasks, workflows, rate limits and schedules (merged into
/// `/v1/openapi.json`).
pub fn openapi_paths() -> Value {
    let err = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let ok = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": { "type": "object" } } } });
    let p = |n: &str| json!({ "name": n, "in": "path", "required": true, "schema": { "type": "string" } });
    let wait = json!({ "name": "wait_ms", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 0, "maximum": 20000 } });
    let spec = json!({ "type": "object", "required": ["queue", "name"], "properties": {
        "queue": { "type": "string" }, "name": { "type": "string" }, "args": {},
        "max_attempts": { "type": "integer", "minimum": 1 }, "timeout_ms": { "type": "integer" },
        "backoff_ms": { "type": "integer" }, "unique_key": { "type": "string" } } });
    let body = |schema: Value| json!({ "required": true, "content": { "application/json": { "schema": schema } } });
    json!({
        "/v1/tasks": { "post": { "summary": "Submit a task (idempotent by id). Its message: id = task id, body {id,name,args,attempt}.",
            "requestBody": body(json!({ "allOf": [spec, { "type": "object", "properties": { "id": { "type": "string", "maxLength": 128 }, "delay_ms": { "type": "integer" } } }] })),
            "responses": { "201": ok("{id, state, created: true}"), "200": ok("Known id: {id, state, created: false}"),
                "400": err("Bad input."), "404": err("Unknown queue."), "409": err("Unique key held."), "503": err("Busy.") } } },
        "/v1/tasks/{id}": { "get": { "summary": "A task: {id, queue, name, state, attempts, result?, error?, history, ...}; wait_ms waits for a final state.",
            "parameters": [p("id"), wait], "responses": { "200": ok("The task."), "404": err("Unknown task.") } } },
        "/v1/tasks/{id}/result": { "post": { "summary": "Post an attempt's outcome: ok acks; a failure retries with backoff or, on the last attempt, dead-letters.",
            "parameters": [p("id")],
            "requestBody": body(json!({ "type": "object", "required": ["receipt", "ok"], "properties": {
                "receipt": { "type": "string" }, "ok": { "type": "boolean" }, "result": {}, "error": { "type": "string" },
                "worker": { "type": "string" }, "attempt": { "type": "integer" } } })),
            "responses": { "200": ok("The task after the outcome."), "404": err("Unknown task.") } } },
        "/v1/tasks/{id}/cancel": { "post": { "summary": "Cancel a queued or retrying task.", "parameters": [p("id")],
            "responses": { "200": ok("The cancelled task."), "404": err("Unknown task."), "409": err("Running or finished.") } } },
        "/v1/tasks/{id}/heartbeat": { "post": { "summary": "Extend the running attempt's lease.", "parameters": [p("id")],
            "requestBody": body(json!({ "type": "object", "required": ["receipt", "lease_ms"], "properties": { "receipt": { "type": "string" }, "lease_ms": { "type": "integer" } } })),
            "responses": { "200": ok("{lease_deadline, lease_deadline_ms}"), "409": err("Lease expired.") } } },
        "/v1/tasks/queues/{name}/receive": { "post": { "summary": "Task-aware receive: marks tasks running and records the attempt and worker.",
            "parameters": [p("name")],
            "requestBody": body(json!({ "type": "object", "properties": { "max": { "type": "integer" }, "wait_ms": { "type": "integer" }, "lease_ms": { "type": "integer" }, "worker": { "type": "string" } } })),
            "responses": { "200": ok("{tasks: [{id, name, args, attempt, receipt, lease_deadline}]}"), "404": err("Unknown queue.") } } },
        "/v1/rate-limits": { "get": { "summary": "Rate limits by task name.", "responses": { "200": ok("{rate_limits: [...]}") } } },
        "/v1/rate-limits/{name}": {
            "put": { "summary": "Limit tasks of this name to per_second starts (bursts of burst), across all workers.", "parameters": [p("name")],
                "requestBody": body(json!({ "type": "object", "required": ["per_second"], "properties": { "per_second": { "type": "number" }, "burst": { "type": "integer" } } })),
                "responses": { "200": ok("The limit."), "400": err("Bad input.") } },
            "delete": { "summary": "Remove the limit.", "parameters": [p("name")], "responses": { "204": { "description": "Removed." } } } },
        "/v1/workflows": { "post": { "summary": "Start a chain (each gets the previous result), group, or chord (callback gets all group results).",
            "requestBody": body(json!({ "type": "object", "properties": { "id": { "type": "string" },
                "chain": { "type": "array", "items": spec }, "group": { "type": "array", "items": spec },
                "chord": { "type": "object", "properties": { "group": { "type": "array", "items": spec }, "callback": spec } } } })),
            "responses": { "201": ok("The workflow."), "400": err("Bad input.") } } },
        "/v1/workflows/{id}": { "get": { "summary": "A workflow: {id, kind, state, tasks, result?}; wait_ms waits for it to finish.",
            "parameters": [p("id"), wait], "responses": { "200": ok("The workflow."), "404": err("Unknown workflow.") } } },
        "/v1/schedules": { "get": { "summary": "Schedules with next_fire_at.", "responses": { "200": ok("{schedules: [...]}") } } },
        "/v1/schedules/{name}": {
            "put": { "summary": "Create (201) or replace (200) a schedule: cron (5 or 6 fields, timezone) or every_ms; a task or message target; misfire skip|fire_once.",
                "parameters": [p("name")],
                "requestBody": body(json!({ "type": "object", "properties": { "cron": { "type": "string" }, "every_ms": { "type": "integer", "minimum": 1000 },
                    "timezone": { "type": "string", "default": "UTC" }, "misfire": { "type": "string", "enum": ["skip", "fire_once"] },
                    "task": spec, "message": { "type": "object", "required": ["queue"], "properties": { "queue": { "type": "string" },
                        "body": { "type": "string" }, "body_base64": { "type": "string" }, "key": { "type": "string" }, "headers": { "type": "object" } } } } })),
                "responses": { "201": ok("Created, with next_fire_at (RFC 3339)."), "200": ok("Replaced."), "400": err("Bad input."), "404": err("Unknown queue.") } },
            "get": { "summary": "A schedule.", "parameters": [p("name")], "responses": { "200": ok("The schedule."), "404": err("Unknown schedule.") } },
            "delete": { "summary": "Delete a schedule.", "parameters": [p("name")], "responses": { "204": { "description": "Deleted." }, "404": err("Unknown schedule.") } } },
        "/v1/schedules/{name}/pause": { "post": { "summary": "Pause.", "parameters": [p("name")], "responses": { "200": ok("The schedule.") } } },
        "/v1/schedules/{name}/resume": { "post": { "summary": "Resume (ticks in the pause are not fired).", "parameters": [p("name")], "responses": { "200": ok("The schedule.") } } }
    })
}
