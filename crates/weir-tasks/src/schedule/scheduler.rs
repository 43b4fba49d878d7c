//! [`Scheduler`]: stores schedules durably and fires due ticks (see the module docs for the
//! exactly-once protocol and the misfire policy).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use weir_broker::{Broker, Clock, NewMessage};
use weir_store::{Journal, Store, StoreName};

use super::store::{self, Entry};
use super::timing::Compiled;
use super::MISFIRE_GRACE_MS;
use super::{tick_id, MisfirePolicy, Schedule, ScheduleSpec, ScheduleTarget, MAX_SCHEDULES};
use crate::service::Submit;
use crate::{TaskError, TaskService};

/// Snapshot the schedules journal after this many bytes of entries.
const SNAPSHOT_EVERY_BYTES: u64 = 1024 * 1024;

#[derive(Debug)]
struct Inner {
    schedules: HashMap<String, Schedule>,
    compiled: HashMap<String, Compiled>,
}

/// Durable schedules over the broker and the task service. `Send + Sync`.
#[derive(Debug)]
pub struct Scheduler {
    broker: Arc<Broker>,
    tasks: Arc<TaskService>,
    clock: Arc<dyn Clock>,
    journal: Arc<dyn Journal>,
    inner: Mutex<Inner>,
    /// Serialises ticks (a tick awaits publishes between reading and journaling).
    ticking: tokio::sync::Mutex<()>,
}

/// What one fire decision is.
struct Due {
    name: String,
    tick_ms: u64,
    fire: bool,
    target: ScheduleTarget,
}

impl Scheduler {
    /// Opens the scheduler over `store` (journal `schedules/state`), recovering every schedule.
    pub fn open(
        broker: Arc<Broker>,
        tasks: Arc<TaskService>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Scheduler, TaskError> {
        let journal = store.open_journal(
            &StoreName::parse("schedules/state")?,
            weir_store::FsyncPolicy::Always,
        )?;
        let schedules = store::recover(&journal.recovered())?;
        let mut compiled = HashMap::new();
        for s in schedules.values() {
            match s.spec.timing.compile(s.anchor_ms) {
                Ok(c) => {
                    compiled.insert(s.name.clone(), c);
                }
                Err(e) => {
                    tracing::warn!(schedule = %s.name, error = %e, "schedule no longer valid")
                }
            }
        }
        Ok(Scheduler {
            broker,
            tasks,
            clock,
            journal,
            inner: Mutex::new(Inner {
                schedules,
                compiled,
            }),
            ticking: tokio::sync::Mutex::new(()),
        })
    }

    /// Creates or replaces schedule `name`. Returns it, whether it was created, and its next
    /// fire time. Durable on return. A changed spec re-anchors intervals and fires no tick at or
    /// before now.
    pub async fn put(
        &self,
        name: &str,
        spec: ScheduleSpec,
    ) -> Result<(Schedule, bool, Option<u64>), TaskError> {
        weir_proto::validate_name(name)
            .map_err(|e| TaskError::InvalidArgument(format!("schedule name {name:?}: {e}")))?;
        weir_proto::validate_name(spec.target.queue()).map_err(|e| {
            TaskError::InvalidArgument(format!("queue {:?}: {e}", spec.target.queue()))
        })?;
        self.broker.queue_stats(spec.target.queue())?;
        let now = self.clock.now_ms();
        let compiled = spec.timing.compile(now)?;
        let (s, created, durable) = {
            let mut inner = self.inner.lock();
            let old = inner.schedules.get(name).cloned();
            if old.is_none() && inner.schedules.len() >= MAX_SCHEDULES {
                return Err(TaskError::Busy(format!(
                    "{MAX_SCHEDULES} schedules exist (the limit)"
                )));
            }
            let s = match old.clone() {
                Some(o) if o.spec == spec => o,
                Some(o) => Schedule {
                    spec,
                    anchor_ms: now,
                    since_ms: now,
                    ..o
                },
                None => Schedule {
                    name: name.to_string(),
                    spec,
                    paused: false,
                    anchor_ms: now,
                    since_ms: now,
                    last_tick_ms: None,
                    fired_total: 0,
                    created_ms: now,
                },
            };
            let c = if old.as_ref().is_some_and(|o| o.anchor_ms == s.anchor_ms) {
                inner.compiled.get(name).cloned().unwrap_or(compiled)
            } else {
                compiled
            };
            let durable = self.journal.append(&[Entry::Put(&s).encode()])?;
            inner.schedules.insert(name.to_string(), s.clone());
            inner.compiled.insert(name.to_string(), c);
            (s, old.is_none(), durable)
        };
        durable.await?;
        let next = self.next_fire_ms(&s.name);
        Ok((s, created, next))
    }

    /// The schedule `name` and its next fire time.
    pub fn get(&self, name: &str) -> Result<(Schedule, Option<u64>), TaskError> {
        let s = self
            .inner
            .lock()
            .schedules
            .get(name)
            .cloned()
            .ok_or_else(|| TaskError::not_found("schedule", name))?;
        let next = self.next_fire_ms(name);
        Ok((s, next))
    }

    /// Every schedule with its next fire time, by name.
    pub fn list(&self) -> Vec<(Schedule, Option<u64>)> {
        let mut names: Vec<String> = self.inner.lock().schedules.keys().cloned().collect();
        names.sort();
        names.iter().filter_map(|n| self.get(n).ok()).collect()
    }

    /// The next tick that would fire (`None` while paused or when the timing has no future tick).
    pub fn next_fire_ms(&self, name: &str) -> Option<u64> {
        let inner = self.inner.lock();
        let s = inner.schedules.get(name)?;
        if s.paused {
            return None;
        }
        let base = s.last_tick_ms.unwrap_or(0).max(s.since_ms);
        let now = self.clock.now_ms();
        inner
            .compiled
            .get(name)?
            .next_after(base.max(now.saturating_sub(1)))
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<Schedule, TaskError> {
        let now = self.clock.now_ms();
        let (s, durable) = {
            let mut inner = self.inner.lock();
            let s = inner
                .schedules
                .get_mut(name)
                .ok_or_else(|| TaskError::not_found("schedule", name))?;
            if s.paused == paused {
                return Ok(s.clone());
            }
            s.paused = paused;
            if !paused {
                // Ticks that fell in the pause are not fired.
                s.since_ms = now;
            }
            let s = s.clone();
            let durable = self.journal.append(&[Entry::Put(&s).encode()])?;
            (s, durable)
        };
        durable.await?;
        Ok(s)
    }

    /// Stops firing `name` until resumed.
    pub async fn pause(&self, name: &str) -> Result<Schedule, TaskError> {
        self.set_paused(name, true).await
    }

    /// Resumes `name`; ticks that fell in the pause are not fired.
    pub async fn resume(&self, name: &str) -> Result<Schedule, TaskError> {
        self.set_paused(name, false).await
    }

    /// Deletes `name`.
    pub async fn delete(&self, name: &str) -> Result<(), TaskError> {
        let durable = {
            let mut inner = self.inner.lock();
            if inner.schedules.remove(name).is_none() {
                return Err(TaskError::not_found("schedule", name));
            }
            inner.compiled.remove(name);
            self.journal.append(&[Entry::Delete(name).encode()])?
        };
        Ok(durable.await?)
    }

    fn due(&self, now: u64) -> Vec<Due> {
        let inner = self.inner.lock();
        let mut out = Vec::new();
        for s in inner.schedules.values() {
            if s.paused {
                continue;
            }
            let Some(c) = inner.compiled.get(&s.name) else {
                continue;
            };
            let base = s.last_tick_ms.unwrap_or(0).max(s.since_ms);
            let Some(latest) = c.latest_at_or_before(now).filter(|l| *l > base) else {
                continue;
            };
            let fire = match s.spec.misfire {
                MisfirePolicy::FireOnce => true,
                MisfirePolicy::Skip => now - latest <= MISFIRE_GRACE_MS,
            };
            out.push(Due {
                name: s.name.clone(),
                tick_ms: latest,
                fire,
                target: s.spec.target.clone(),
            });
        }
        out.sort_by(|a, b| (a.tick_ms, &a.name).cmp(&(b.tick_ms, &b.name)));
        out
    }

    /// Fires every due tick: publish (durable) first, then journal the tick (durable). Returns
    /// how many ticks fired. Call it often (the server does every 50 ms).
    pub async fn tick(&self) -> usize {
        let _one = self.ticking.lock().await;
        let now = self.clock.now_ms();
        let mut fired = 0;
        for d in self.due(now) {
            if d.fire {
                if let Err(e) = self.fire(&d).await {
                    tracing::warn!(schedule = %d.name, tick_ms = d.tick_ms, error = %e, "firing a schedule failed; will retry");
                    continue;
                }
                fired += 1;
            }
            let durable = {
                let mut inner = self.inner.lock();
                let Some(s) = inner.schedules.get_mut(&d.name) else {
                    continue;
                };
                s.last_tick_ms = Some(d.tick_ms);
                s.fired_total += u64::from(d.fire);
                self.journal
                    .append(&[Entry::Fired(&d.name, d.tick_ms, s.fired_total).encode()])
            };
            match durable {
                Ok(dur) => {
                    if let Err(e) = dur.await {
                        tracing::warn!(schedule = %d.name, error = %e, "journaling a fired tick failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(schedule = %d.name, error = %e, "journaling a fired tick failed")
                }
            }
        }
        if self.journal.bytes_since_snapshot() >= SNAPSHOT_EVERY_BYTES {
            let inner = self.inner.lock();
            if let Err(e) = self.journal.snapshot(store::snapshot(&inner.schedules)) {
                tracing::warn!(error = %e, "schedules snapshot failed");
            }
        }
        fired
    }

    async fn fire(&self, d: &Due) -> Result<(), TaskError> {
        let id = tick_id(&d.name, d.tick_ms);
        match &d.target {
            ScheduleTarget::Task(spec) => {
                let s = Submit {
                    spec: spec.clone(),
                    id: Some(id),
                    delay_ms: 0,
                };
                match self.tasks.submit(s).await {
                    Ok(_) => Ok(()),
                    // The tick's message is already in the dedup window: it was fired.
                    Err(TaskError::Conflict(m)) if m.contains("dedup window") => Ok(()),
                    Err(e) => Err(e),
                }
            }
            ScheduleTarget::Message {
                queue,
                body,
                key,
                headers,
            } => {
                let msg = NewMessage {
                    id: Some(id),
                    key: key.clone(),
                    headers: headers.clone(),
                    ..NewMessage::new(body.clone())
                };
                let o = self.broker.publish(queue, vec![msg])?;
                Ok(o.durable.await?)
            }
        }
    }
}
