//! The task record, its states and attempt history, and their binary encoding for the journal.
//!
//! Arguments and results are JSON values (the task body format is part of the public contract,
//! DESIGN §4); everything else is encoded with the crate's own varint codec.

use serde_json::Value;
use weir_store::StoreError;

use crate::codec::{put_opt_str, put_opt_u64, put_str, put_varint, Reader};

/// Most attempts kept in a task's history (the oldest are dropped beyond it).
pub const MAX_ATTEMPT_HISTORY: usize = 100;
/// Longest task name, in bytes.
pub const MAX_TASK_NAME_BYTES: usize = 256;
/// Longest error message kept per attempt, in bytes (longer ones are cut).
pub const MAX_ERROR_BYTES: usize = 4096;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Published, waiting for a worker.
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
    /// Whether no further change can happen.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled
        )
    }

    /// The wire name (`queued`, `running`, ...).
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

    fn tag(self) -> u8 {
        match self {
            TaskState::Queued => 0,
            TaskState::Running => 1,
            TaskState::Retrying => 2,
            TaskState::Succeeded => 3,
            TaskState::Dead => 4,
            TaskState::Cancelled => 5,
        }
    }

    fn from_tag(t: u8) -> Option<TaskState> {
        Some(match t {
            0 => TaskState::Queued,
            1 => TaskState::Running,
            2 => TaskState::Retrying,
            3 => TaskState::Succeeded,
            4 => TaskState::Dead,
            5 => TaskState::Cancelled,
            _ => return None,
        })
    }
}

/// One delivery of a task to a worker.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// 1 on the first delivery (the broker's count).
    pub number: u32,
    /// When the worker got it (ms since the epoch).
    pub started_ms: u64,
    /// When it ended (result posted or lease expired).
    pub finished_ms: Option<u64>,
    /// The worker's self-chosen name, when it gave one.
    pub worker: Option<String>,
    /// Why it failed (`None` while running or on success).
    pub error: Option<String>,
}

/// What to run: a queue, a task name and JSON arguments (used by submissions, workflows and
/// schedules).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    /// The queue the task's message goes to (must exist).
    pub queue: String,
    /// The task name (a worker's handler is chosen by it).
    pub name: String,
    /// The arguments (`null` when none).
    pub args: Value,
    /// Most deliveries; `None` means the queue's `max_attempts` (never more than it).
    pub max_attempts: Option<u32>,
    /// The lease per attempt; `None` means the queue's (or the receiver's) lease.
    pub timeout_ms: Option<u64>,
    /// First retry delay; doubles per attempt. `None` means the queue's backoff.
    pub backoff_ms: Option<u64>,
    /// A key that refuses a second task while one with it is queued, running or retrying.
    pub unique_key: Option<String>,
}

impl TaskSpec {
    /// A spec with defaults for everything but queue, name and args.
    pub fn new(queue: impl Into<String>, name: impl Into<String>, args: Value) -> TaskSpec {
        TaskSpec {
            queue: queue.into(),
            name: name.into(),
            args,
            max_attempts: None,
            timeout_ms: None,
            backoff_ms: None,
            unique_key: None,
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_str(out, &self.queue);
        put_str(out, &self.name);
        put_str(out, &self.args.to_string());
        put_opt_u64(out, self.max_attempts.map(u64::from));
        put_opt_u64(out, self.timeout_ms);
        put_opt_u64(out, self.backoff_ms);
        put_opt_str(out, self.unique_key.as_deref());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<TaskSpec, StoreError> {
        let queue = r.string()?;
        let name = r.string()?;
        let args = json(r)?;
        let max_attempts = r
            .opt_u64()?
            .map(|v| u32::try_from(v).map_err(|_| r.error("max_attempts too large")))
            .transpose()?;
        Ok(TaskSpec {
            queue,
            name,
            args,
            max_attempts,
            timeout_ms: r.opt_u64()?,
            backoff_ms: r.opt_u64()?,
            unique_key: r.opt_string()?,
        })
    }
}

fn json(r: &mut Reader<'_>) -> Result<Value, StoreError> {
    let b = r.bytes()?;
    serde_json::from_slice(b).map_err(|e| r.error(format!("bad JSON: {e}")))
}

/// A tracked task: what to run, where it is, what happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// The task id (= its message id).
    pub id: String,
    /// What to run; `max_attempts` is resolved against the queue at submission.
    pub spec: TaskSpec,
    /// The current state.
    pub state: TaskState,
    /// Effective most deliveries (the task's, capped by the queue's).
    pub max_attempts: u32,
    /// When it was submitted.
    pub created_ms: u64,
    /// When its state last changed.
    pub updated_ms: u64,
    /// Whether its message's publish is known durable (else it is re-published on recovery).
    pub published: bool,
    /// The result of a successful attempt.
    pub result: Option<Value>,
    /// The last error.
    pub error: Option<String>,
    /// Attempts, oldest first (at most [`MAX_ATTEMPT_HISTORY`]).
    pub attempts: Vec<Attempt>,
    /// The workflow it belongs to, if any.
    pub workflow: Option<String>,
    /// Final tasks are forgotten after this time.
    pub expires_ms: Option<u64>,
    /// When its first delivery may happen (submission time plus its delay and any rate-limit
    /// wait). A re-publish after a crash keeps what is left of the delay rather than none.
    pub ready_ms: u64,
}

impl Task {
    /// Deliveries so far (the highest attempt number seen).
    pub fn attempt_count(&self) -> u32 {
        self.attempts.last().map_or(0, |a| a.number)
    }

    pub(crate) fn push_attempt(&mut self, a: Attempt) {
        if self.attempts.len() >= MAX_ATTEMPT_HISTORY {
            self.attempts.remove(0);
        }
        self.attempts.push(a);
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(2); // version (2 added `ready_ms` at the end)
        put_str(out, &self.id);
        self.spec.encode(out);
        out.push(self.state.tag());
        put_varint(out, u64::from(self.max_attempts));
        put_varint(out, self.created_ms);
        put_varint(out, self.updated_ms);
        out.push(u8::from(self.published));
        put_opt_str(out, self.result.as_ref().map(Value::to_string).as_deref());
        put_opt_str(out, self.error.as_deref());
        put_varint(out, self.attempts.len() as u64);
        for a in &self.attempts {
            put_varint(out, u64::from(a.number));
            put_varint(out, a.started_ms);
            put_opt_u64(out, a.finished_ms);
            put_opt_str(out, a.worker.as_deref());
            put_opt_str(out, a.error.as_deref());
        }
        put_opt_str(out, self.workflow.as_deref());
        put_opt_u64(out, self.expires_ms);
        put_varint(out, self.ready_ms);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Task, StoreError> {
        let version = r.u8()?;
        if version != 1 && version != 2 {
            return Err(r.error(format!("unknown task record version {version}")));
        }
        let id = r.string()?;
        let spec = TaskSpec::decode(r)?;
        let tag = r.u8()?;
        let state = TaskState::from_tag(tag).ok_or_else(|| r.error(format!("bad state {tag}")))?;
        let max_attempts = r.varint_u32()?;
        let created_ms = r.varint()?;
        let updated_ms = r.varint()?;
        let published = r.u8()? != 0;
        let result = r
            .opt_string()?
            .map(|s| serde_json::from_str(&s).map_err(|e| r.error(format!("bad result: {e}"))))
            .transpose()?;
        let error = r.opt_string()?;
        let n = r.varint()?;
        if n > MAX_ATTEMPT_HISTORY as u64 {
            return Err(r.error(format!("{n} attempts exceed the history bound")));
        }
        let mut attempts = Vec::new();
        for _ in 0..n {
            attempts.push(Attempt {
                number: r.varint_u32()?,
                started_ms: r.varint()?,
                finished_ms: r.opt_u64()?,
                worker: r.opt_string()?,
                error: r.opt_string()?,
            });
        }
        let workflow = r.opt_string()?;
        let expires_ms = r.opt_u64()?;
        // Version 1 records did not keep the delay: due at once, as they always were.
        let ready_ms = if version >= 2 {
            r.varint()?
        } else {
            created_ms
        };
        Ok(Task {
            id,
            spec,
            state,
            max_attempts,
            created_ms,
            updated_ms,
            published,
            result,
            error,
            attempts,
            workflow,
            expires_ms,
            ready_ms,
        })
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_round_trips() {
        let mut t = Task {
            id: "t1".into(),
            spec: TaskSpec {
                max_attempts: Some(3),
                unique_key: Some("k".into()),
                ..TaskSpec::new("q", "resize", serde_json::json!({"w": 10}))
            },
            state: TaskState::Retrying,
            max_attempts: 3,
            created_ms: 5,
            updated_ms: 9,
            published: true,
            result: Some(serde_json::json!([1, "a"])),
            error: Some("boom".into()),
            attempts: Vec::new(),
            workflow: Some("wf".into()),
            expires_ms: None,
            ready_ms: 42,
        };
        t.push_attempt(Attempt {
            number: 1,
            started_ms: 6,
            finished_ms: Some(7),
            worker: Some("w1".into()),
            error: Some("boom".into()),
        });
        let mut out = Vec::new();
        t.encode(&mut out);
        let back = Task::decode(&mut Reader::new("t", &out)).unwrap();
        assert_eq!(back, t);

        // A version-1 record (written before `ready_ms` existed) reads as due at creation.
        let mut v1 = out.clone();
        v1[0] = 1;
        v1.pop(); // `ready_ms` = 42 is one varint byte at the end
        let old = Task::decode(&mut Reader::new("t", &v1)).unwrap();
        assert_eq!(old.ready_ms, t.created_ms);
        assert_eq!(
            Task {
                ready_ms: 42,
                ..old
            },
            t
        );
        assert_eq!(truncate("héllo".into(), 2), "h");
    }
}
