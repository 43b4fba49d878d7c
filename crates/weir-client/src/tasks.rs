//! Task calls of [`Client`] (protocol version 3): submit (idempotent by a client-chosen id), get
//! (optionally waiting for a final state) and cancel. Arguments and results are
//! [`serde_json::Value`]s here and JSON documents on the wire, so this crate needs nothing of
//! `weir-tasks`. Workers use the plain queue calls (receive, then post a result over HTTP) or
//! `weir_tasks::worker`.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use weir_proto::frame::{Payload, TaskInfo, TaskSubmit};
use weir_proto::limits::MAX_WAIT_MS;

use crate::client::{millis, unexpected};
use crate::{Client, ClientError, TaskAttempt, TaskState};

/// A task to submit, built fluently.
///
/// ```
/// use std::time::Duration;
/// use serde_json::json;
/// use weir_client::TaskRequest;
///
/// let t = TaskRequest::new("images", "resize", json!({"id": 7, "width": 640}))
///     .id("resize-7")
///     .timeout(Duration::from_secs(60))
///     .max_attempts(3);
/// assert_eq!(t.name(), "resize");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRequest {
    queue: String,
    name: String,
    args: Value,
    id: Option<String>,
    delay: Duration,
    max_attempts: Option<u32>,
    timeout: Option<Duration>,
    backoff: Option<Duration>,
    unique_key: Option<String>,
}

impl TaskRequest {
    /// A task `name` (1–256 bytes) with `args` for the workers of `queue`.
    pub fn new(queue: impl Into<String>, name: impl Into<String>, args: Value) -> TaskRequest {
        TaskRequest {
            queue: queue.into(),
            name: name.into(),
            args,
            id: None,
            delay: Duration::ZERO,
            max_attempts: None,
            timeout: None,
            backoff: None,
            unique_key: None,
        }
    }

    /// Sets the task id (1–128 bytes): submitting the same id again creates nothing and
    /// answers the task as it is. Without it the server makes one.
    pub fn id(mut self, id: impl Into<String>) -> TaskRequest {
        self.id = Some(id.into());
        self
    }

    /// Delays the first attempt (≤ 15 days).
    pub fn delay(mut self, delay: Duration) -> TaskRequest {
        self.delay = delay;
        self
    }

    /// Most attempts (default and cap: the queue's `max_attempts`).
    pub fn max_attempts(mut self, n: u32) -> TaskRequest {
        self.max_attempts = Some(n);
        self
    }

    /// The lease of each attempt (100 ms – 12 h).
    pub fn timeout(mut self, timeout: Duration) -> TaskRequest {
        self.timeout = Some(timeout);
        self
    }

    /// Retry *n* waits `backoff·2^(n-1)` (default: the queue's backoff).
    pub fn backoff(mut self, backoff: Duration) -> TaskRequest {
        self.backoff = Some(backoff);
        self
    }

    /// While a task with this key (1–128 bytes) is not final, another is refused (`conflict`).
    pub fn unique_key(mut self, key: impl Into<String>) -> TaskRequest {
        self.unique_key = Some(key.into());
        self
    }

    /// The task name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn into_wire(self) -> Result<TaskSubmit, ClientError> {
        let args = serde_json::to_vec(&self.args)
            .map_err(|e| ClientError::Protocol(format!("task args as JSON: {e}")))?;
        Ok(TaskSubmit {
            id: self.id,
            queue: self.queue,
            name: self.name,
            args: Bytes::from(args),
            delay_ms: millis(self.delay),
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout.map(millis),
            backoff_ms: self.backoff.map(millis),
            unique_key: self.unique_key,
        })
    }
}

/// The answer to [`Client::submit_task`], once the task's record and its message are durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSubmitted {
    /// The task id (the one given, or the server's).
    pub id: String,
    /// Its state now.
    pub state: TaskState,
    /// False when the id was known: nothing new was submitted.
    pub created: bool,
}

/// A task's record, with its arguments and result as JSON values.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
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
    /// The arguments.
    pub args: Value,
    /// The result a worker posted, once succeeded.
    pub result: Option<Value>,
    /// The last error, once dead.
    pub error: Option<String>,
    /// When it was submitted, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When it last changed.
    pub updated_at_ms: u64,
    /// The workflow it belongs to, if any.
    pub workflow: Option<String>,
    /// Its unique key, if any.
    pub unique_key: Option<String>,
    /// Its attempts, oldest first.
    pub history: Vec<TaskAttempt>,
}

fn json(what: &str, b: &[u8]) -> Result<Value, ClientError> {
    serde_json::from_slice(b)
        .map_err(|e| ClientError::Protocol(format!("the task's {what} is not JSON: {e}")))
}

impl TryFrom<TaskInfo> for Task {
    type Error = ClientError;

    fn try_from(t: TaskInfo) -> Result<Task, ClientError> {
        Ok(Task {
            args: json("args", &t.args)?,
            result: t.result.as_deref().map(|r| json("result", r)).transpose()?,
            id: t.id,
            queue: t.queue,
            name: t.name,
            state: t.state,
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            error: t.error,
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
            workflow: t.workflow,
            unique_key: t.unique_key,
            history: t.history,
        })
    }
}

impl Client {
    /// Submits a task and returns once its record and its message are durable. Idempotent by
    /// id: the same id again creates nothing (`created == false`).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), weir_client::ClientError> {
    /// use std::time::Duration;
    /// use serde_json::json;
    /// use weir_client::{Client, TaskRequest};
    ///
    /// let client = Client::connect("127.0.0.1:7400").await?;
    /// let t = TaskRequest::new("images", "resize", json!({"id": 7})).id("resize-7");
    /// client.submit_task(t).await?;
    /// let done = client.get_task("resize-7", Duration::from_secs(20)).await?;
    /// println!("{}: {:?}", done.state.as_str(), done.result);
    /// # Ok(()) }
    /// ```
    pub async fn submit_task(&self, task: TaskRequest) -> Result<TaskSubmitted, ClientError> {
        let payload = Payload::SubmitTask(Box::new(task.into_wire()?));
        match self.connection().request(payload).await? {
            Payload::TaskSubmitted { id, state, created } => {
                Ok(TaskSubmitted { id, state, created })
            }
            other => Err(unexpected("TaskSubmitted", &other)),
        }
    }

    /// The task `id`, waiting up to `wait` (≤ 20 s; zero: not at all) for a final state. Final
    /// tasks are kept for the server's result TTL (24 h by default), then forgotten.
    pub async fn get_task(&self, id: &str, wait: Duration) -> Result<Task, ClientError> {
        let payload = Payload::GetTask {
            id: id.to_string(),
            wait_ms: millis(wait).min(MAX_WAIT_MS),
        };
        self.task(payload).await
    }

    /// Cancels a queued or retrying task; a running or final one fails with
    /// [`ErrorCode::Conflict`](crate::ErrorCode).
    pub async fn cancel_task(&self, id: &str) -> Result<Task, ClientError> {
        self.task(Payload::CancelTask { id: id.to_string() }).await
    }

    async fn task(&self, payload: Payload) -> Result<Task, ClientError> {
        match self.connection().request(payload).await? {
            Payload::TaskInfo(t) => Task::try_from(*t),
            other => Err(unexpected("TaskInfo", &other)),
        }
    }
}
