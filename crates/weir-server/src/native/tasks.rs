//! Task requests (protocol version 3) over [`weir_tasks::TaskService`], as `http/tasks.rs`
//! drives it: submit (idempotent by id), get (optionally waiting for a final state) and cancel.
//! Arguments and results cross the wire as JSON documents; they are parsed and written here.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use weir_proto::frame::{Payload, TaskAttempt, TaskInfo, TaskState, TaskSubmit};
use weir_proto::limits::{
    MAX_TASK_HISTORY, MAX_TASK_JSON_BYTES, MAX_TASK_NAME_BYTES, MAX_TASK_TEXT_BYTES,
};
use weir_proto::ErrorCode;
use weir_tasks::{Submit, Task, TaskSpec};

use super::conn::Shared;
use super::handler::Failure;

// Every name the task service accepts fits the wire, and every history it keeps.
const _: () = assert!(weir_tasks::MAX_TASK_NAME_BYTES == MAX_TASK_NAME_BYTES);
const _: () = assert!(weir_tasks::MAX_ATTEMPT_HISTORY <= MAX_TASK_HISTORY);
const _: () = assert!(weir_tasks::MAX_ERROR_BYTES <= MAX_TASK_TEXT_BYTES);

/// Answers a task request.
pub(super) async fn answer(shared: &Shared, request: Payload) -> Result<Payload, Failure> {
    let tasks = &shared.tasks;
    match request {
        Payload::SubmitTask(s) => submit(shared, *s).await,
        Payload::GetTask { id, wait_ms } => {
            let got = if wait_ms == 0 {
                tasks.get(&id)
            } else {
                tasks.wait(&id, Duration::from_millis(wait_ms)).await
            };
            got.map_err(Failure::from).and_then(|t| task_info(&t))
        }
        Payload::CancelTask { id } => tasks
            .cancel(&id)
            .await
            .map_err(Failure::from)
            .and_then(|t| task_info(&t)),
        other => Err(Failure::misrouted(&other)),
    }
}

async fn submit(shared: &Shared, s: TaskSubmit) -> Result<Payload, Failure> {
    let args: Value = serde_json::from_slice(&s.args)
        .map_err(|e| Failure::bad_request(format!("args is not a JSON document: {e}")))?;
    let spec = TaskSpec {
        max_attempts: s.max_attempts,
        timeout_ms: s.timeout_ms,
        backoff_ms: s.backoff_ms,
        unique_key: s.unique_key,
        ..TaskSpec::new(s.queue, s.name, args)
    };
    let out = shared
        .tasks
        .submit(Submit {
            spec,
            id: s.id,
            delay_ms: s.delay_ms,
        })
        .await?;
    Ok(Payload::TaskSubmitted {
        id: out.id,
        state: state(out.state),
        created: out.created,
    })
}

fn state(s: weir_tasks::TaskState) -> TaskState {
    match s {
        weir_tasks::TaskState::Queued => TaskState::Queued,
        weir_tasks::TaskState::Running => TaskState::Running,
        weir_tasks::TaskState::Retrying => TaskState::Retrying,
        weir_tasks::TaskState::Succeeded => TaskState::Succeeded,
        weir_tasks::TaskState::Dead => TaskState::Dead,
        weir_tasks::TaskState::Cancelled => TaskState::Cancelled,
    }
}

/// `v` as a JSON document within the wire's bound; a larger one is refused (`too_large`: read
/// the task over HTTP).
fn json(what: &str, v: &Value) -> Result<Bytes, Failure> {
    let bytes = serde_json::to_vec(v)
        .map_err(|e| Failure::Other(ErrorCode::Internal, format!("{what} as JSON: {e}")))?;
    if bytes.len() > MAX_TASK_JSON_BYTES {
        return Err(Failure::Other(
            ErrorCode::TooLarge,
            format!(
                "the task's {what} takes {} bytes of JSON, over the native protocol's limit of \
                 {MAX_TASK_JSON_BYTES}; read it over HTTP",
                bytes.len()
            ),
        ));
    }
    Ok(Bytes::from(bytes))
}

/// `s` cut to the wire's bound for free text, on a character boundary.
fn text(s: &str) -> String {
    let mut cut = s.len().min(MAX_TASK_TEXT_BYTES);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_string()
}

/// A task's record as the wire carries it.
fn task_info(t: &Task) -> Result<Payload, Failure> {
    let skip = t.attempts.len().saturating_sub(MAX_TASK_HISTORY);
    let history = t
        .attempts
        .iter()
        .skip(skip)
        .map(|a| TaskAttempt {
            number: a.number,
            started_at_ms: a.started_ms,
            finished_at_ms: a.finished_ms,
            worker: a.worker.as_deref().map(text),
            error: a.error.as_deref().map(text),
        })
        .collect();
    Ok(Payload::TaskInfo(Box::new(TaskInfo {
        id: t.id.clone(),
        queue: t.spec.queue.clone(),
        name: t.spec.name.clone(),
        state: state(t.state),
        attempts: t.attempt_count(),
        max_attempts: t.max_attempts,
        args: json("args", &t.spec.args)?,
        result: t.result.as_ref().map(|r| json("result", r)).transpose()?,
        error: t.error.as_deref().map(text),
        created_at_ms: t.created_ms,
        updated_at_ms: t.updated_ms,
        workflow: t.workflow.as_deref().filter(|w| !w.is_empty()).map(text),
        unique_key: t.spec.unique_key.clone(),
        history,
    })))
}
