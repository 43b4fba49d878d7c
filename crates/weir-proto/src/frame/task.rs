//! Task wire forms (protocol version 3) with their codecs: a submission, the submitted answer,
//! a task's record and its attempts. Arguments and results travel as JSON documents (UTF-8 bytes),
//! so any language can produce and read them; this crate does not parse them (the server does).

use bytes::Bytes;

use super::wire::{DecodeError, DecodeReason, EncodeError, Reader, Writer};
use crate::limits::{
    MAX_DELAY_MS, MAX_LEASE_MS, MAX_MESSAGE_ID_BYTES, MAX_TASK_HISTORY, MAX_TASK_JSON_BYTES,
    MAX_TASK_NAME_BYTES, MAX_TASK_TEXT_BYTES, MIN_LEASE_MS,
};

type Enc = Result<(), EncodeError>;

/// Where a task is in its life (`u8` on the wire, in this order from 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Published, waiting for a worker.
    #[default]
    Queued,
    /// Delivered to a worker whose lease has not ended.
    Running,
    /// An attempt failed or timed out; waiting for its next delivery.
    Retrying,
    /// Final: a worker posted a result.
    Succeeded,
    /// Final: every attempt failed; the message is in the dead-letter queue.
    Dead,
    /// Final: cancelled before a worker took it.
    Cancelled,
}

impl TaskState {
    /// Every state, in wire order.
    pub const ALL: [TaskState; 6] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Retrying,
        TaskState::Succeeded,
        TaskState::Dead,
        TaskState::Cancelled,
    ];

    /// Whether no further change can happen.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled
        )
    }

    /// The name the HTTP API uses (`queued`, `running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Retrying => "retrying",
            TaskState::Succeeded => "succeeded",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
        }
    }

    fn wire(self) -> u8 {
        match self {
            TaskState::Queued => 0,
            TaskState::Running => 1,
            TaskState::Retrying => 2,
            TaskState::Succeeded => 3,
            TaskState::Dead => 4,
            TaskState::Cancelled => 5,
        }
    }
}

/// A task submission (`SubmitTask`). Submitting the same `id` again is answered with the task
/// as it is (`created = false`) and changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskSubmit {
    /// The task id (1–128 bytes); the server makes one when absent.
    pub id: Option<String>,
    /// The queue the task's message goes to.
    pub queue: String,
    /// The task name (1–256 bytes), which workers dispatch on.
    pub name: String,
    /// The arguments: one JSON document (UTF-8, ≤ 8 MiB), e.g. `null` or `{"x":1}`.
    pub args: Bytes,
    /// Delay before the first attempt may start, in milliseconds (≤ 15 days).
    pub delay_ms: u64,
    /// Most attempts (default and cap: the queue's).
    pub max_attempts: Option<u32>,
    /// The lease of each attempt, in milliseconds (100 ms – 12 h).
    pub timeout_ms: Option<u64>,
    /// Retry *n* waits `backoff_ms·2^(n-1)`; without it the queue's backoff applies.
    pub backoff_ms: Option<u64>,
    /// While a task with this key (1–128 bytes) is not final, another is refused (`conflict`).
    pub unique_key: Option<String>,
}

/// One attempt of a task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskAttempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// When it finished, if it did.
    pub finished_at_ms: Option<u64>,
    /// The worker that took it, if it said (≤ 4096 bytes).
    pub worker: Option<String>,
    /// Why it failed, if it did (≤ 4096 bytes).
    pub error: Option<String>,
}

/// A task's record: the answer to `GetTask` and `CancelTask`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: TaskState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Most attempts.
    pub max_attempts: u32,
    /// The arguments (a JSON document).
    pub args: Bytes,
    /// The result a worker posted (a JSON document), once succeeded.
    pub result: Option<Bytes>,
    /// The last error, once dead (≤ 4096 bytes).
    pub error: Option<String>,
    /// When it was submitted, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When it last changed.
    pub updated_at_ms: u64,
    /// The workflow it belongs to, if any (≤ 4096 bytes).
    pub workflow: Option<String>,
    /// Its unique key, if any.
    pub unique_key: Option<String>,
    /// Its attempts, oldest first (at most 100, the most recent).
    pub history: Vec<TaskAttempt>,
}

/// The task id field: 1–128 bytes of UTF-8.
pub(super) fn decode_task_id(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    r.str16("task id", 1, MAX_MESSAGE_ID_BYTES)
}

pub(super) fn encode_state(s: TaskState, w: &mut Writer<'_>) {
    w.u8(s.wire());
}

pub(super) fn decode_state(r: &mut Reader<'_>) -> Result<TaskState, DecodeError> {
    let at = r.offset();
    let have = r.remaining();
    let raw = r.u8("task state")?;
    TaskState::ALL
        .get(usize::from(raw))
        .copied()
        .ok_or_else(|| {
            DecodeError::new(
                at,
                1,
                have,
                DecodeReason::OutOfRange {
                    what: "task state",
                    value: u64::from(raw),
                    min: 0,
                    max: TaskState::ALL.len() as u64 - 1,
                },
            )
        })
}

fn json(what: &'static str, r: &mut Reader<'_>) -> Result<Bytes, DecodeError> {
    Ok(Bytes::copy_from_slice(r.bytes32(
        what,
        1,
        MAX_TASK_JSON_BYTES,
    )?))
}

fn opt_json(what: &'static str, r: &mut Reader<'_>) -> Result<Option<Bytes>, DecodeError> {
    if r.bool(what)? {
        Ok(Some(json(what, r)?))
    } else {
        Ok(None)
    }
}

fn encode_opt_json(what: &'static str, v: Option<&Bytes>, w: &mut Writer<'_>) -> Enc {
    match v {
        Some(b) => {
            w.bool(true);
            w.bytes32(what, b)
        }
        None => {
            w.bool(false);
            Ok(())
        }
    }
}

pub(super) fn encode_submit(s: &TaskSubmit, w: &mut Writer<'_>) -> Enc {
    w.opt_str("task id", s.id.as_deref())?;
    w.bytes16("queue", s.queue.as_bytes())?;
    w.bytes16("task name", s.name.as_bytes())?;
    w.bytes32("args", &s.args)?;
    w.u64(s.delay_ms);
    w.opt_u64(s.max_attempts.map(u64::from));
    w.opt_u64(s.timeout_ms);
    w.opt_u64(s.backoff_ms);
    w.opt_str("unique_key", s.unique_key.as_deref())
}

pub(super) fn decode_submit(r: &mut Reader<'_>) -> Result<TaskSubmit, DecodeError> {
    Ok(TaskSubmit {
        id: r.opt_str16("task id", 1, MAX_MESSAGE_ID_BYTES)?,
        queue: r.name("queue")?,
        name: r.str16("task name", 1, MAX_TASK_NAME_BYTES)?,
        args: json("args", r)?,
        delay_ms: r.u64_in("delay_ms", 0, MAX_DELAY_MS)?,
        max_attempts: r
            .opt_u64_in("max_attempts", 1, u64::from(u32::MAX))?
            // In range 1..=u32::MAX, checked just above.
            .map(|v| v as u32),
        timeout_ms: r.opt_u64_in("timeout_ms", MIN_LEASE_MS, MAX_LEASE_MS)?,
        backoff_ms: r.opt_u64_in("backoff_ms", 0, MAX_DELAY_MS)?,
        unique_key: r.opt_str16("unique_key", 1, MAX_MESSAGE_ID_BYTES)?,
    })
}

pub(super) fn encode_task_info(t: &TaskInfo, w: &mut Writer<'_>) -> Enc {
    w.bytes16("task id", t.id.as_bytes())?;
    w.bytes16("queue", t.queue.as_bytes())?;
    w.bytes16("task name", t.name.as_bytes())?;
    encode_state(t.state, w);
    w.u32(t.attempts);
    w.u32(t.max_attempts);
    w.bytes32("args", &t.args)?;
    encode_opt_json("result", t.result.as_ref(), w)?;
    w.opt_str("error", t.error.as_deref())?;
    w.u64(t.created_at_ms);
    w.u64(t.updated_at_ms);
    w.opt_str("workflow", t.workflow.as_deref())?;
    w.opt_str("unique_key", t.unique_key.as_deref())?;
    w.count32("history", t.history.len())?;
    for a in &t.history {
        w.u32(a.number);
        w.u64(a.started_at_ms);
        w.opt_u64(a.finished_at_ms);
        w.opt_str("worker", a.worker.as_deref())?;
        w.opt_str("attempt error", a.error.as_deref())?;
    }
    Ok(())
}

pub(super) fn decode_task_info(r: &mut Reader<'_>) -> Result<TaskInfo, DecodeError> {
    let id = decode_task_id(r)?;
    let queue = r.name("queue")?;
    let name = r.str16("task name", 1, MAX_TASK_NAME_BYTES)?;
    let state = decode_state(r)?;
    let attempts = r.u32("attempts")?;
    let max_attempts = r.u32("max_attempts")?;
    let args = json("args", r)?;
    let result = opt_json("result", r)?;
    let error = r.opt_str16("error", 0, MAX_TASK_TEXT_BYTES)?;
    let created_at_ms = r.u64("created_at_ms")?;
    let updated_at_ms = r.u64("updated_at_ms")?;
    let workflow = r.opt_str16("workflow", 1, MAX_TASK_TEXT_BYTES)?;
    let unique_key = r.opt_str16("unique_key", 1, MAX_MESSAGE_ID_BYTES)?;
    let n = r.count32("history", MAX_TASK_HISTORY)?;
    let mut history = Vec::with_capacity(n);
    for _ in 0..n {
        history.push(TaskAttempt {
            number: r.u32("attempt number")?,
            started_at_ms: r.u64("started_at_ms")?,
            finished_at_ms: r.opt_u64_in("finished_at_ms", 0, u64::MAX)?,
            worker: r.opt_str16("worker", 0, MAX_TASK_TEXT_BYTES)?,
            error: r.opt_str16("attempt error", 0, MAX_TASK_TEXT_BYTES)?,
        });
    }
    Ok(TaskInfo {
        id,
        queue,
        name,
        state,
        attempts,
        max_attempts,
        args,
        result,
        error,
        created_at_ms,
        updated_at_ms,
        workflow,
        unique_key,
        history,
    })
}
