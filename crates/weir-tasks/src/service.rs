//! [`TaskService`]: submission, status, cancel, waiting, rate limits and unique keys. Deliveries,
//! results and the periodic reconciliation are in `delivery.rs`; workflows in `flows.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::watch;
use weir_broker::{Broker, Clock, NewMessage};
use weir_proto::limits::{MAX_DELAY_MS, MAX_LEASE_MS, MAX_MESSAGE_ID_BYTES, MIN_LEASE_MS};
use weir_store::{Journal, Store, StoreName};

use crate::limits::{Buckets, RateLimit};
use crate::model::{Task, TaskSpec, TaskState, MAX_TASK_NAME_BYTES};
use crate::persist::{Durable, Entry};
use crate::workflow::Workflow;
use crate::TaskError;

/// Settings of a [`TaskService`].
#[derive(Clone, Debug)]
pub struct TaskOptions {
    /// How long a final task (and its result or error) is kept, in milliseconds.
    pub result_ttl_ms: u64,
    /// Most tasks tracked at once (final ones included until their TTL); beyond it submissions
    /// are refused with busy.
    pub max_tasks: usize,
    /// Snapshot the journal once this many bytes were appended since the last snapshot.
    pub snapshot_every_bytes: u64,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            result_ttl_ms: 24 * 3600 * 1000,
            max_tasks: 1_000_000,
            snapshot_every_bytes: 4 * 1024 * 1024,
        }
    }
}

/// A submission: a spec plus an optional client-chosen id (idempotency) and delay.
#[derive(Clone, Debug)]
pub struct Submit {
    /// What to run.
    pub spec: TaskSpec,
    /// The task id; a second submission with the same id returns the first task. Server-made
    /// when `None`.
    pub id: Option<String>,
    /// Deliver no sooner than this many milliseconds from now.
    pub delay_ms: u64,
}

/// What a submission did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The task id.
    pub id: String,
    /// Its state now.
    pub state: TaskState,
    /// `false` when the id was already known (nothing new was submitted).
    pub created: bool,
}

/// An in-memory lease of a running task (leases do not survive a restart, as in the broker).
#[derive(Clone, Debug)]
pub(crate) struct Lease {
    pub(crate) receipt: String,
    pub(crate) deadline_ms: u64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) d: Durable,
    /// unique key → id of the non-final task holding it.
    pub(crate) unique: HashMap<String, String>,
    pub(crate) leases: HashMap<String, Lease>,
    pub(crate) buckets: Buckets,
    /// Tasks whose first publish a `submit` is carrying out right now: `tick` must not re-publish
    /// them (its publish would land first, and the submit's own would then be refused as a
    /// duplicate and the task forgotten).
    pub(crate) publishing: HashSet<String>,
    /// Tasks whose final state is set in memory but not yet durable and settled (journal entry
    /// awaited, message acked, buried or dead-lettered): a waiter does not return them as final
    /// before that.
    pub(crate) settling: HashSet<String>,
    /// Random per service instance: generated ids differ between servers of one process and
    /// across restarts (see [`TaskService::fresh_id`]).
    pub(crate) nonce: u32,
}

/// Sequence of generated ids, shared by every service of the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Removes an id from one of [`Inner`]'s in-flight sets when dropped (so a cancelled future
/// cannot leave it behind).
pub(crate) struct InFlight<'a> {
    svc: &'a TaskService,
    id: String,
    set: fn(&mut Inner) -> &mut HashSet<String>,
}

impl<'a> InFlight<'a> {
    /// Marks `id` in the set `set` of `inner` (the caller holds the lock).
    pub(crate) fn enter(
        svc: &'a TaskService,
        inner: &mut Inner,
        id: &str,
        set: fn(&mut Inner) -> &mut HashSet<String>,
    ) -> InFlight<'a> {
        set(inner).insert(id.to_string());
        InFlight {
            svc,
            id: id.to_string(),
            set,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut inner = self.svc.inner.lock();
        (self.set)(&mut inner).remove(&self.id);
    }
}

pub(crate) fn publishing(i: &mut Inner) -> &mut HashSet<String> {
    &mut i.publishing
}

pub(crate) fn settling(i: &mut Inner) -> &mut HashSet<String> {
    &mut i.settling
}

/// Tasks as a state machine over the broker (DESIGN §1 "task"): each task is a message on its
/// queue whose id is the task id and whose body is `{"id","name","args","attempt"}`, plus a
/// record in this service's journal (`tasks/state`) with its state, attempts and result.
///
/// No sockets and no HTTP; `Send + Sync`, share it as `Arc<TaskService>`.
#[derive(Debug)]
pub struct TaskService {
    pub(crate) broker: Arc<Broker>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) options: TaskOptions,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) changed: watch::Sender<u64>,
}

/// The body of a task's message (DESIGN §4).
pub fn task_body(id: &str, name: &str, args: &Value, attempt: u32) -> Bytes {
    let v = serde_json::json!({ "id": id, "name": name, "args": args, "attempt": attempt });
    Bytes::from(v.to_string())
}

impl TaskService {
    /// Opens the service over `store` (journal `tasks/state`), recovering every task.
    pub fn open(
        broker: Arc<Broker>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        options: TaskOptions,
    ) -> Result<TaskService, TaskError> {
        let journal = store.open_journal(
            &StoreName::parse("tasks/state")?,
            weir_store::FsyncPolicy::Always,
        )?;
        let mut d = Durable::recover(&journal.recovered())?;
        let now = clock.now_ms();
        let mut unique = HashMap::new();
        for t in d.tasks.values_mut() {
            if t.state == TaskState::Running {
                // Leases do not survive a restart: the broker makes the message ready again.
                t.state = TaskState::Retrying;
                if let Some(a) = t.attempts.last_mut() {
                    a.finished_ms.get_or_insert(now);
                    a.error
                        .get_or_insert_with(|| "interrupted: the server restarted".into());
                }
            }
            if let (false, Some(k)) = (t.state.is_final(), &t.spec.unique_key) {
                unique.insert(k.clone(), t.id.clone());
            }
        }
        let (changed, _) = watch::channel(0);
        Ok(TaskService {
            broker,
            clock,
            journal,
            options,
            inner: Mutex::new(Inner {
                d,
                unique,
                leases: HashMap::new(),
                buckets: Buckets::default(),
                publishing: HashSet::new(),
                settling: HashSet::new(),
                nonce: random_u32(now),
            }),
            changed,
        })
    }

    /// A new id `<prefix>-<now>-<seq>-<nonce>` that no tracked task or workflow has. The
    /// sequence is process-wide (several services run in one process, e.g. in tests) and the
    /// nonce random per service, so neither another server nor a restart within the same
    /// millisecond (or a clock that went back) produces an id whose message is still in the
    /// broker's dedup window.
    pub(crate) fn fresh_id(&self, inner: &Inner, prefix: &str, now: u64) -> String {
        loop {
            let seq = NEXT_ID.fetch_add(1, Ordering::Relaxed) + 1;
            let id = format!("{prefix}-{now:x}-{seq:x}-{:08x}", inner.nonce);
            if !inner.d.tasks.contains_key(&id) && !inner.d.workflows.contains_key(&id) {
                return id;
            }
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Journals entries (under the caller's lock, so the order matches the state's).
    pub(crate) fn journal(&self, entries: &[Entry<'_>]) -> Result<weir_store::Durable, TaskError> {
        let bytes: Vec<Bytes> = entries.iter().map(Entry::encode).collect();
        Ok(self.journal.append(&bytes)?)
    }

    pub(crate) fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn validate(spec: &TaskSpec, s: &Submit) -> Result<(), TaskError> {
        let bad = |m: String| Err(TaskError::InvalidArgument(m));
        weir_proto::validate_name(&spec.queue)
            .map_err(|e| TaskError::InvalidArgument(format!("queue {:?}: {e}", spec.queue)))?;
        if spec.name.is_empty() || spec.name.len() > MAX_TASK_NAME_BYTES {
            return bad(format!(
                "name must be 1..={MAX_TASK_NAME_BYTES} bytes, got {}",
                spec.name.len()
            ));
        }
        if let Some(id) = &s.id {
            if id.is_empty() || id.len() > MAX_MESSAGE_ID_BYTES {
                return bad(format!("id must be 1..={MAX_MESSAGE_ID_BYTES} bytes"));
            }
        }
        if s.delay_ms > MAX_DELAY_MS {
            return bad(format!("delay_ms must be at most {MAX_DELAY_MS}"));
        }
        if let Some(t) = spec.timeout_ms {
            if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&t) {
                return bad(format!(
                    "timeout_ms must be within {MIN_LEASE_MS}..={MAX_LEASE_MS}"
                ));
            }
        }
        if spec.max_attempts == Some(0) {
            return bad("max_attempts must be at least 1".into());
        }
        if spec.backoff_ms.is_some_and(|b| b > MAX_DELAY_MS) {
            return bad(format!("backoff_ms must be at most {MAX_DELAY_MS}"));
        }
        if spec
            .unique_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > MAX_MESSAGE_ID_BYTES)
        {
            return bad(format!(
                "unique_key must be 1..={MAX_MESSAGE_ID_BYTES} bytes"
            ));
        }
        Ok(())
    }

    /// Submits a task: its record is journaled (durable) first, then its message is published
    /// (durable) with id = task id; returns once both are durable. Idempotent by id.
    pub async fn submit(&self, s: Submit) -> Result<Submitted, TaskError> {
        self.submit_in(s, None).await
    }

    /// Checks a submission without changing anything; returns the queue's `max_attempts`.
    pub(crate) fn check(&self, s: &Submit) -> Result<u32, TaskError> {
        Self::validate(&s.spec, s)?;
        Ok(self.broker.queue_stats(&s.spec.queue)?.config.max_attempts)
    }

    pub(crate) async fn submit_in(
        &self,
        s: Submit,
        workflow: Option<&str>,
    ) -> Result<Submitted, TaskError> {
        let spec = &s.spec;
        let queue_max = self.check(&s)?;
        let now = self.now_ms();
        let (task, durable, rate_delay_ms, in_flight) = {
            let mut inner = self.inner.lock();
            if let Some(t) = s.id.as_ref().and_then(|id| inner.d.tasks.get(id)) {
                return Ok(Submitted {
                    id: t.id.clone(),
                    state: t.state,
                    created: false,
                });
            }
            if let Some(holder) = spec.unique_key.as_ref().and_then(|k| inner.unique.get(k)) {
                return Err(TaskError::Conflict(format!(
                    "unique key {:?} is held by task {holder:?}, which is not finished",
                    spec.unique_key.as_deref().unwrap_or_default()
                )));
            }
            if inner.d.tasks.len() >= self.options.max_tasks {
                return Err(TaskError::Busy(format!(
                    "{} tasks are tracked (the limit)",
                    self.options.max_tasks
                )));
            }
            let id = match &s.id {
                Some(id) => id.clone(),
                None => self.fresh_id(&inner, "t", now),
            };
            let rate_delay_ms = match inner.d.limits.get(&spec.name).copied() {
                Some(l) => inner.buckets.take(&spec.name, &l, now + s.delay_ms),
                None => 0,
            };
            let task = Task {
                id: id.clone(),
                spec: spec.clone(),
                state: TaskState::Queued,
                max_attempts: spec.max_attempts.unwrap_or(queue_max).min(queue_max),
                created_ms: now,
                updated_ms: now,
                published: false,
                result: None,
                error: None,
                attempts: Vec::new(),
                workflow: workflow.map(str::to_string),
                expires_ms: None,
                ready_ms: now.saturating_add(s.delay_ms).saturating_add(rate_delay_ms),
            };
            let durable = self.journal(&[Entry::PutTask(&task)])?;
            if let Some(k) = &spec.unique_key {
                inner.unique.insert(k.clone(), id.clone());
            }
            // Until this submit has published (or given up), `tick` leaves the task alone.
            let in_flight = InFlight::enter(self, &mut inner, &id, publishing);
            inner.d.tasks.insert(id, task.clone());
            (task, durable, rate_delay_ms, in_flight)
        };
        let published = match durable.await {
            Ok(()) => self.publish(&task, s.delay_ms + rate_delay_ms, false).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = published {
            self.forget(&task.id);
            return Err(e);
        }
        drop(in_flight);
        self.notify();
        Ok(Submitted {
            id: task.id,
            state: TaskState::Queued,
            created: true,
        })
    }

    /// Publishes a task's message and marks it published. A duplicate is an error unless
    /// `republish` (recovery, where a duplicate means the first publish did land).
    pub(crate) async fn publish(
        &self,
        task: &Task,
        delay_ms: u64,
        republish: bool,
    ) -> Result<(), TaskError> {
        let msg = NewMessage {
            id: Some(task.id.clone()),
            delay_ms: delay_ms.min(MAX_DELAY_MS),
            ..NewMessage::new(task_body(&task.id, &task.spec.name, &task.spec.args, 1))
        };
        let outcome = self.broker.publish(&task.spec.queue, vec![msg])?;
        outcome.durable.await?;
        if !republish && outcome.messages.first().is_some_and(|p| p.duplicate) {
            return Err(TaskError::Conflict(format!(
                "a message with id {:?} was published on {:?} within its dedup window",
                task.id, task.spec.queue
            )));
        }
        let mut inner = self.inner.lock();
        if let Some(t) = inner.d.tasks.get_mut(&task.id) {
            t.published = true;
            let t = t.clone();
            // Not awaited: a lost flag only means a re-publish on recovery, which dedup absorbs.
            drop(self.journal(&[Entry::PutTask(&t)])?);
        }
        Ok(())
    }

    fn forget(&self, id: &str) {
        let mut inner = self.inner.lock();
        if let Some(t) = inner.d.tasks.remove(id) {
            if let Some(k) = &t.spec.unique_key {
                inner.unique.remove(k);
            }
            if let Err(e) = self.journal(&[Entry::RemoveTask(id)]) {
                tracing::warn!(task = id, error = %e, "journaling a task's removal failed");
            }
        }
    }

    /// The task `id`.
    pub fn get(&self, id: &str) -> Result<Task, TaskError> {
        self.inner
            .lock()
            .d
            .tasks
            .get(id)
            .cloned()
            .ok_or_else(|| TaskError::not_found("task", id))
    }

    /// Waits up to `timeout` for the task to reach a final state; returns it as it is then.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Task, TaskError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            let (t, settled) = {
                let inner = self.inner.lock();
                let t = inner
                    .d
                    .tasks
                    .get(id)
                    .cloned()
                    .ok_or_else(|| TaskError::not_found("task", id))?;
                (t, !inner.settling.contains(id))
            };
            // Final only once durable and settled: a waiter woken by some other change must not
            // return a final state whose journal entry or ack is still on its way.
            if (t.state.is_final() && settled) || tokio::time::Instant::now() >= deadline {
                return Ok(t);
            }
            tokio::select! {
                r = rx.changed() => { if r.is_err() { return Ok(t); } }
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Cancels a task that no worker holds (queued or retrying). Its message stays on the queue
    /// until it is next delivered through [`TaskService::receive`], which acks it unseen; a
    /// worker on the plain queue API gets a `cancelled` state when it posts a result.
    pub async fn cancel(&self, id: &str) -> Result<Task, TaskError> {
        let now = self.now_ms();
        let (task, durable, settling) = {
            let mut inner = self.inner.lock();
            let t = inner
                .d
                .tasks
                .get_mut(id)
                .ok_or_else(|| TaskError::not_found("task", id))?;
            match t.state {
                TaskState::Cancelled => return Ok(t.clone()),
                TaskState::Queued | TaskState::Retrying => {}
                s => {
                    return Err(TaskError::Conflict(format!(
                        "task {id:?} is {}; only a queued or retrying task can be cancelled",
                        s.as_str()
                    )))
                }
            }
            t.state = TaskState::Cancelled;
            t.updated_ms = now;
            t.expires_ms = Some(now.saturating_add(self.options.result_ttl_ms));
            let t = t.clone();
            if let Some(k) = &t.spec.unique_key {
                inner.unique.remove(k);
            }
            let durable = self.journal(&[Entry::PutTask(&t)])?;
            (t, durable, InFlight::enter(self, &mut inner, id, settling))
        };
        durable.await?;
        drop(settling);
        self.notify();
        self.on_final(&task).await;
        Ok(task)
    }

    /// Sets (or with `None` removes) the rate limit of task name `name`. Durable on return.
    pub async fn set_rate_limit(
        &self,
        name: &str,
        limit: Option<RateLimit>,
    ) -> Result<(), TaskError> {
        if name.is_empty() || name.len() > MAX_TASK_NAME_BYTES {
            return Err(TaskError::InvalidArgument(format!(
                "task name must be 1..={MAX_TASK_NAME_BYTES} bytes"
            )));
        }
        let durable = {
            let mut inner = self.inner.lock();
            match limit {
                Some(l) => inner.d.limits.insert(name.to_string(), l),
                None => inner.d.limits.remove(name),
            };
            inner.buckets.reset(name);
            self.journal(&[Entry::PutLimit(name, limit)])?
        };
        Ok(durable.await?)
    }

    /// Every rate limit, by task name.
    pub fn rate_limits(&self) -> Vec<(String, RateLimit)> {
        let mut out: Vec<_> = self
            .inner
            .lock()
            .d
            .limits
            .iter()
            .map(|(n, l)| (n.clone(), *l))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The workflow `id`.
    pub fn workflow(&self, id: &str) -> Result<Workflow, TaskError> {
        self.inner
            .lock()
            .d
            .workflows
            .get(id)
            .cloned()
            .ok_or_else(|| TaskError::not_found("workflow", id))
    }

    /// How many tasks are tracked.
    pub fn task_count(&self) -> usize {
        self.inner.lock().d.tasks.len()
    }
}

/// A random number without a random-number crate: std's `RandomState` is seeded randomly per
/// process and differs per instance.
fn random_u32(salt: u64) -> u32 {
    use std::hash::BuildHasher as _;
    let h = std::collections::hash_map::RandomState::new().hash_one((salt, std::process::id()));
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_broker::{BrokerOptions, ManualClock, QueueConfig};
    use weir_store::memory::MemoryStore;

    fn service() -> (Arc<Broker>, TaskService) {
        let store = Arc::new(MemoryStore::new()) as Arc<dyn Store>;
        let clock = Arc::new(ManualClock::new(1_700_000_000_000)) as Arc<dyn Clock>;
        let broker =
            Arc::new(Broker::open(store.clone(), clock.clone(), BrokerOptions::default()).unwrap());
        broker.create_queue("jobs", QueueConfig::default()).unwrap();
        let tasks = TaskService::open(broker.clone(), store, clock, TaskOptions::default());
        (broker, tasks.unwrap())
    }

    fn record(id: &str) -> Task {
        Task {
            id: id.into(),
            spec: TaskSpec::new("jobs", "n", Value::Null),
            state: TaskState::Queued,
            max_attempts: 5,
            created_ms: 0,
            updated_ms: 0,
            published: false,
            result: None,
            error: None,
            attempts: Vec::new(),
            workflow: None,
            expires_ms: None,
            ready_ms: 0,
        }
    }

    /// The flaky 409 of `POST /v1/tasks`: a tick between a submit's journal write and its
    /// publish re-published the task (without its delay), so the submit's own publish was a
    /// duplicate, the submit failed with a conflict and forgot a task whose message was queued.
    #[tokio::test]
    async fn tick_leaves_a_task_that_a_submit_is_publishing_alone() {
        let (broker, tasks) = service();
        let t = record("t1");
        let guard = {
            let mut inner = tasks.inner.lock();
            inner.d.tasks.insert(t.id.clone(), t.clone());
            InFlight::enter(&tasks, &mut inner, &t.id, publishing)
        };
        tasks.tick().await;
        assert_eq!(broker.queue_stats("jobs").unwrap().total, 0);
        tasks.publish(&t, 60_000, false).await.unwrap();
        drop(guard);
        assert!(tasks.inner.lock().publishing.is_empty());
        assert!(tasks.get("t1").unwrap().published);
        tasks.tick().await;
        assert_eq!(broker.queue_stats("jobs").unwrap().total, 1);

        // Left unpublished with nobody publishing it (a crash, a dropped submit): re-published.
        tasks.inner.lock().d.tasks.insert("t2".into(), record("t2"));
        tasks.tick().await;
        assert_eq!(broker.queue_stats("jobs").unwrap().total, 2);
        assert!(tasks.get("t2").unwrap().published);
    }

    /// A crash between journaling a delayed task and publishing its message: the recovery
    /// re-publish keeps what is left of the delay instead of delivering the task at once.
    #[tokio::test]
    async fn a_republished_task_keeps_the_rest_of_its_delay() {
        let (broker, tasks) = service();
        let now = tasks.now_ms();
        let mut due_later = record("later");
        due_later.ready_ms = now + 60_000;
        let mut overdue = record("overdue");
        overdue.ready_ms = now - 5_000;
        {
            let mut inner = tasks.inner.lock();
            inner.d.tasks.insert(due_later.id.clone(), due_later);
            inner.d.tasks.insert(overdue.id.clone(), overdue);
        }
        tasks.tick().await;
        let stats = broker.queue_stats("jobs").unwrap();
        assert_eq!((stats.ready, stats.delayed), (1, 1));
        let got = broker.receive("jobs", 10, None).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "overdue");
    }

    /// A waiter does not return a final state before it is durable and its message settled.
    #[tokio::test]
    async fn wait_returns_a_final_state_only_once_settled() {
        let (_, tasks) = service();
        let mut t = record("t1");
        t.state = TaskState::Succeeded;
        let guard = {
            let mut inner = tasks.inner.lock();
            inner.d.tasks.insert(t.id.clone(), t);
            InFlight::enter(&tasks, &mut inner, "t1", settling)
        };
        let waiting = tasks.wait("t1", Duration::from_secs(10));
        tokio::pin!(waiting);
        tasks.notify();
        assert!(futures::poll!(&mut waiting).is_pending());
        drop(guard);
        tasks.notify();
        let got = waiting.await.unwrap();
        assert_eq!(got.state, TaskState::Succeeded);
    }

    #[test]
    fn generated_ids_differ_between_services_at_the_same_millisecond() {
        let (_, a) = service();
        let (_, b) = service();
        let ia = a.fresh_id(&a.inner.lock(), "t", 5);
        let ib = b.fresh_id(&b.inner.lock(), "t", 5);
        assert_ne!(ia, ib);
        assert_ne!(a.inner.lock().nonce, b.inner.lock().nonce);
    }
}
