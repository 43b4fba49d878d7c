//! Deliveries and outcomes: [`TaskService::receive`] (task-aware receive: marks tasks running and
//! records the attempt), heartbeats, [`TaskService::post_result`], and
//! [`TaskService::tick`] (lease expiry, TTL, re-publishing after a crash, snapshots).
//!
//! # How the service learns what the broker did
//! Workers may use the plain queue API (`POST /v1/queues/{q}/receive`) or the task-aware
//! receive. The service observes:
//! - deliveries through [`TaskService::receive`] (state `running`, the attempt, its lease);
//! - results through [`TaskService::post_result`], which acks (success), nacks with the task's
//!   backoff (failure with attempts left), or *buries* the message (failure on the last attempt:
//!   a copy goes to the dead-letter queue, then the original is acked) — so the task is `dead` at
//!   once and its message is in the DLQ;
//! - lease expiry in [`TaskService::tick`], for leases it handed out: the attempt is marked
//!   timed out and the task is `retrying`, or `dead` when it was the last attempt (the broker
//!   dead-letters it itself when the queue's `max_attempts` is reached; when the task's own
//!   limit is lower, the message is buried when it next surfaces).
//!
//! A delivery of a task that is already final (cancelled, dead, or succeeded with a late result)
//! is acked (or buried) unseen.

use std::collections::BTreeMap;

use serde_json::Value;
use weir_broker::{Delivery, NewMessage, DEAD_REASON_HEADER, ORIGINAL_QUEUE_HEADER};

use crate::model::{truncate, Attempt, Task, TaskState, MAX_ERROR_BYTES};
use crate::persist::Entry;
use crate::service::{settling, task_body, InFlight, Lease};
use crate::{TaskError, TaskService};

/// A task handed to a worker.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskDelivery {
    /// The task id.
    pub id: String,
    /// The task name.
    pub name: String,
    /// Its arguments.
    pub args: Value,
    /// 1 on the first delivery.
    pub attempt: u32,
    /// The receipt for the result, heartbeats and extend.
    pub receipt: String,
    /// When the lease ends (ms since the epoch); extend it with heartbeats.
    pub lease_deadline_ms: u64,
}

/// A worker's report on one attempt.
#[derive(Clone, Debug, Default)]
pub struct TaskOutcome {
    /// The delivery's receipt.
    pub receipt: String,
    /// Whether the attempt succeeded.
    pub ok: bool,
    /// The result (on success).
    pub result: Option<Value>,
    /// The error (on failure).
    pub error: Option<String>,
    /// The worker's name, for the attempt history.
    pub worker: Option<String>,
    /// The delivery's attempt number, when the worker used the plain queue API.
    pub attempt: Option<u32>,
}

enum Action {
    Ack(String),
    Nack(String, Option<u64>),
    Bury(String),
}

impl TaskService {
    /// Leases up to `max` tasks of `queue` (never waits) for `worker`, marking them running.
    pub async fn receive(
        &self,
        queue: &str,
        max: usize,
        lease_ms: Option<u64>,
        worker: Option<&str>,
    ) -> Result<Vec<TaskDelivery>, TaskError> {
        let deliveries = self.broker.receive(queue, max, lease_ms)?;
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now_ms();
        let mut out = Vec::new();
        let mut actions = Vec::new();
        let mut extend = Vec::new();
        let mut settle = Vec::new();
        let durable = {
            let mut inner = self.inner.lock();
            let mut changed = Vec::new();
            for d in deliveries {
                let Some(t) = inner.d.tasks.get_mut(&d.id) else {
                    out.push(foreign(d));
                    continue;
                };
                if t.state.is_final() {
                    actions.push(if t.state == TaskState::Dead {
                        Action::Bury(d.receipt)
                    } else {
                        Action::Ack(d.receipt)
                    });
                    continue;
                }
                if d.attempt > t.max_attempts {
                    t.state = TaskState::Dead;
                    t.updated_ms = now;
                    t.error
                        .get_or_insert_with(|| format!("{} attempts exhausted", t.max_attempts));
                    t.expires_ms = Some(now.saturating_add(self.options.result_ttl_ms));
                    actions.push(Action::Bury(d.receipt));
                    changed.push(t.clone());
                    continue;
                }
                t.state = TaskState::Running;
                t.updated_ms = now;
                t.push_attempt(Attempt {
                    number: d.attempt,
                    started_ms: now,
                    finished_ms: None,
                    worker: worker.map(str::to_string),
                    error: None,
                });
                let mut deadline = d.lease_deadline_ms;
                if let Some(timeout) = t.spec.timeout_ms {
                    if Some(timeout) != lease_ms {
                        extend.push((d.receipt.clone(), timeout));
                        deadline = now.saturating_add(timeout);
                    }
                }
                changed.push(t.clone());
                out.push(TaskDelivery {
                    id: d.id.clone(),
                    name: t.spec.name.clone(),
                    args: t.spec.args.clone(),
                    attempt: d.attempt,
                    receipt: d.receipt.clone(),
                    lease_deadline_ms: deadline,
                });
                inner.leases.insert(
                    d.id,
                    Lease {
                        receipt: d.receipt,
                        deadline_ms: deadline,
                    },
                );
            }
            for t in &changed {
                if t.state.is_final() {
                    release_unique(&mut inner.unique, t);
                    settle.push(InFlight::enter(self, &mut inner, &t.id, settling));
                }
            }
            let entries: Vec<Entry<'_>> = changed.iter().map(Entry::PutTask).collect();
            self.journal(&entries)?
        };
        for (receipt, timeout) in extend {
            let o = self.broker.extend(queue, &[receipt], timeout)?;
            o.durable.await?;
        }
        durable.await?;
        for a in actions {
            self.act(queue, None, a).await;
        }
        drop(settle);
        self.notify();
        Ok(out)
    }

    /// Extends a running task's lease to `lease_ms` from now (a heartbeat). Conflict when the
    /// receipt is unknown or expired.
    pub async fn heartbeat(
        &self,
        id: &str,
        receipt: &str,
        lease_ms: u64,
    ) -> Result<u64, TaskError> {
        let queue = self.get(id)?.spec.queue;
        let o = self
            .broker
            .extend(&queue, &[receipt.to_string()], lease_ms)?;
        o.durable.await?;
        if o.done == 0 {
            return Err(TaskError::Conflict(format!(
                "receipt for task {id:?} is unknown or its lease expired"
            )));
        }
        let deadline = self.now_ms().saturating_add(lease_ms);
        let mut inner = self.inner.lock();
        // The attempt may have ended meanwhile (a result, or `tick` expired the lease): then
        // the lease is not renewed here, or `tick` would time out a finished attempt later.
        let running = inner
            .d
            .tasks
            .get(id)
            .is_some_and(|t| t.state == TaskState::Running);
        if !running {
            return Err(TaskError::Conflict(format!(
                "task {id:?} is no longer running under this receipt"
            )));
        }
        inner.leases.insert(
            id.to_string(),
            Lease {
                receipt: receipt.to_string(),
                deadline_ms: deadline,
            },
        );
        Ok(deadline)
    }

    /// Records a worker's outcome for task `id`: success acks the message (`succeeded`); failure
    /// nacks it with the task's backoff (`retrying`) or, on the last attempt, buries it (`dead`).
    /// A result for a task that is already final changes nothing (the receipt is acked).
    pub async fn post_result(&self, id: &str, o: TaskOutcome) -> Result<Task, TaskError> {
        let now = self.now_ms();
        let (task, action, durable, settle) = {
            let mut inner = self.inner.lock();
            let lease = inner.leases.get(id).cloned();
            let t = inner
                .d
                .tasks
                .get_mut(id)
                .ok_or_else(|| TaskError::not_found("task", id))?;
            if t.state.is_final() {
                (t.clone(), Action::Ack(o.receipt.clone()), None, None)
            } else {
                let leased_here = lease.as_ref().is_some_and(|l| l.receipt == o.receipt)
                    && t.state == TaskState::Running;
                if !leased_here {
                    let number = o.attempt.unwrap_or(t.attempt_count() + 1);
                    t.push_attempt(Attempt {
                        number,
                        started_ms: now,
                        finished_ms: None,
                        worker: o.worker.clone(),
                        error: None,
                    });
                }
                // A non-empty history is guaranteed by the push above or by the running lease.
                let number = t.attempt_count();
                if let Some(a) = t.attempts.last_mut() {
                    a.finished_ms = Some(now);
                    if a.worker.is_none() {
                        a.worker.clone_from(&o.worker);
                    }
                    if !o.ok {
                        a.error = Some(truncate(
                            o.error.clone().unwrap_or_else(|| "failed".into()),
                            MAX_ERROR_BYTES,
                        ));
                    }
                }
                t.updated_ms = now;
                let action = if o.ok {
                    t.state = TaskState::Succeeded;
                    t.result = Some(o.result.clone().unwrap_or(Value::Null));
                    t.error = None;
                    Action::Ack(o.receipt.clone())
                } else {
                    t.error = t.attempts.last().and_then(|a| a.error.clone());
                    if number >= t.max_attempts {
                        t.state = TaskState::Dead;
                        Action::Bury(o.receipt.clone())
                    } else {
                        t.state = TaskState::Retrying;
                        let delay = t.spec.backoff_ms.map(|b| {
                            let shift = number.saturating_sub(1).min(20);
                            b.saturating_mul(1 << shift)
                                .min(weir_proto::limits::MAX_DELAY_MS)
                        });
                        Action::Nack(o.receipt.clone(), delay)
                    }
                };
                if t.state.is_final() {
                    t.expires_ms = Some(now.saturating_add(self.options.result_ttl_ms));
                }
                let t = t.clone();
                inner.leases.remove(id);
                if t.state.is_final() {
                    release_unique(&mut inner.unique, &t);
                }
                let durable = self.journal(&[Entry::PutTask(&t)])?;
                // After the last `?`: the guard locks `inner` when dropped.
                let settle = t
                    .state
                    .is_final()
                    .then(|| InFlight::enter(self, &mut inner, id, settling));
                (t, action, Some(durable), settle)
            }
        };
        let Some(durable) = durable else {
            // Already final: settle the message, change nothing.
            self.act(&task.spec.queue, None, action).await;
            return Ok(task);
        };
        durable.await?;
        self.act(&task.spec.queue, Some(&task), action).await;
        drop(settle);
        self.notify();
        if task.state.is_final() {
            self.on_final(&task).await;
        }
        Ok(task)
    }

    /// Carries out an ack, nack or burial; failures are logged (the lease then expires and the
    /// message resurfaces, where it is handled again).
    async fn act(&self, queue: &str, task: Option<&Task>, action: Action) {
        let result = match action {
            Action::Ack(r) => self.ack(queue, r).await,
            Action::Nack(r, delay) => match self.broker.nack(queue, &[r], delay) {
                Ok(o) => o.durable.await.map_err(TaskError::from),
                Err(e) => Err(e.into()),
            },
            Action::Bury(r) => self.bury(queue, task, r).await,
        };
        if let Err(e) = result {
            tracing::warn!(queue, error = %e, "settling a task's message failed; it will resurface");
        }
    }

    async fn ack(&self, queue: &str, receipt: String) -> Result<(), TaskError> {
        let o = self.broker.ack(queue, &[receipt])?;
        Ok(o.durable.await?)
    }

    /// Copies the task's message to the queue's dead-letter queue, then acks the original.
    async fn bury(
        &self,
        queue: &str,
        task: Option<&Task>,
        receipt: String,
    ) -> Result<(), TaskError> {
        if let Some(t) = task {
            let dlq = self
                .broker
                .queue_stats(queue)?
                .config
                .dead_letter_name(queue);
            let mut headers = BTreeMap::new();
            headers.insert(DEAD_REASON_HEADER.to_string(), "max_attempts".to_string());
            headers.insert(ORIGINAL_QUEUE_HEADER.to_string(), queue.to_string());
            let msg = NewMessage {
                id: Some(t.id.clone()),
                headers,
                ..NewMessage::new(task_body(
                    &t.id,
                    &t.spec.name,
                    &t.spec.args,
                    t.attempt_count(),
                ))
            };
            match self.broker.publish(&dlq, vec![msg]) {
                Ok(o) => o.durable.await?,
                // A dead-letter queue deleted by hand: the task is still dead; drop the copy.
                Err(e) if e.code() == weir_proto::ErrorCode::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.ack(queue, receipt).await
    }

    /// Periodic work: expire the leases this service handed out, forget final tasks past their
    /// TTL, re-publish tasks whose publish a crash interrupted, advance workflows, snapshot.
    pub async fn tick(&self) {
        let now = self.now_ms();
        let mut finals = Vec::new();
        let mut unpublished = Vec::new();
        let mut settle = Vec::new();
        let durable = {
            let mut inner = self.inner.lock();
            let expired: Vec<String> = inner
                .leases
                .iter()
                .filter(|(_, l)| l.deadline_ms <= now)
                .map(|(id, _)| id.clone())
                .collect();
            let mut changed = Vec::new();
            for id in expired {
                inner.leases.remove(&id);
                let Some(t) = inner.d.tasks.get_mut(&id) else {
                    continue;
                };
                if t.state != TaskState::Running {
                    continue;
                }
                let number = t.attempt_count();
                if let Some(a) = t.attempts.last_mut() {
                    a.finished_ms = Some(now);
                    a.error = Some("timed out: the lease expired".into());
                }
                t.error = Some("timed out: the lease expired".into());
                t.updated_ms = now;
                if number >= t.max_attempts {
                    t.state = TaskState::Dead;
                    t.expires_ms = Some(now.saturating_add(self.options.result_ttl_ms));
                    finals.push(t.clone());
                } else {
                    t.state = TaskState::Retrying;
                }
                changed.push(t.clone());
            }
            for t in &finals {
                release_unique(&mut inner.unique, t);
                settle.push(InFlight::enter(self, &mut inner, &t.id, settling));
            }
            let gone: Vec<String> = inner
                .d
                .tasks
                .values()
                .filter(|t| t.state.is_final() && t.expires_ms.is_some_and(|e| e <= now))
                .map(|t| t.id.clone())
                .collect();
            let gone_wf: Vec<String> = inner
                .d
                .workflows
                .values()
                .filter(|w| w.expires_ms.is_some_and(|e| e <= now))
                .map(|w| w.id.clone())
                .collect();
            for id in &gone {
                inner.d.tasks.remove(id);
            }
            for id in &gone_wf {
                inner.d.workflows.remove(id);
            }
            // Not the ones a submit is publishing right now: only those a crash (or a cancelled
            // submit) left unpublished.
            unpublished.extend(
                inner
                    .d
                    .tasks
                    .values()
                    .filter(|t| {
                        !t.published && !t.state.is_final() && !inner.publishing.contains(&t.id)
                    })
                    .cloned(),
            );
            let mut entries: Vec<Entry<'_>> = changed.iter().map(Entry::PutTask).collect();
            entries.extend(gone.iter().map(|id| Entry::RemoveTask(id)));
            entries.extend(gone_wf.iter().map(|id| Entry::RemoveWorkflow(id)));
            if entries.is_empty() {
                None
            } else {
                match self.journal(&entries) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        tracing::warn!(error = %e, "journaling task expiry failed");
                        None
                    }
                }
            }
        };
        let journaled = durable.is_some();
        if let Some(d) = durable {
            if let Err(e) = d.await {
                tracing::warn!(error = %e, "journaling task expiry failed");
            }
        }
        if journaled || !settle.is_empty() {
            drop(settle);
            self.notify();
        }
        for t in unpublished {
            // What is left of its delay (and rate-limit wait): a crash must not make it early.
            let delay_ms = t.ready_ms.saturating_sub(self.now_ms());
            if let Err(e) = self.publish(&t, delay_ms, true).await {
                tracing::warn!(task = %t.id, error = %e, "re-publishing a task failed; will retry");
            }
        }
        for t in &finals {
            self.on_final(t).await;
        }
        self.advance_all().await;
        self.maybe_snapshot();
    }

    fn maybe_snapshot(&self) {
        if self.journal.bytes_since_snapshot() < self.options.snapshot_every_bytes {
            return;
        }
        let inner = self.inner.lock();
        // Under the lock, so no entry is appended between the state read and the snapshot.
        if let Err(e) = self.journal.snapshot(inner.d.snapshot()) {
            tracing::warn!(error = %e, "tasks snapshot failed");
        }
    }
}

fn release_unique(unique: &mut std::collections::HashMap<String, String>, t: &Task) {
    if let Some(k) = &t.spec.unique_key {
        if unique.get(k) == Some(&t.id) {
            unique.remove(k);
        }
    }
}

/// A message on a task queue that this service does not track: handed out as parsed as
/// possible.
fn foreign(d: Delivery) -> TaskDelivery {
    let body: Value = serde_json::from_slice(&d.body).unwrap_or(Value::Null);
    TaskDelivery {
        name: body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        args: body.get("args").cloned().unwrap_or(Value::Null),
        id: d.id,
        attempt: d.attempt,
        receipt: d.receipt,
        lease_deadline_ms: d.lease_deadline_ms,
    }
}
