//! Schedules: a [`Timing`] (cron or fixed interval) and a [`ScheduleTarget`] (a task or a plain
//! message), fired by the [`Scheduler`] exactly once per tick, across restarts.
//!
//! # Exactly once per tick
//! Firing tick `T` of schedule `S` publishes with the deterministic id `schedule:S:T` (a task
//! target submits a task with that id), awaits its durability, and only then journals "`S` fired
//! `T`" (durable). A crash between the two re-fires `T` on restart with the same id: the broker's
//! dedup window (or, for a task, the task record) makes that second publish a no-op. A crash
//! before the publish is durable fires `T` on restart as a missed tick, under the misfire policy.
//!
//! # Misfires
//! When the scheduler looks (every server tick), the due tick is the latest one at or before
//! now. Older ticks since the last fired one were missed (the server was down or paused) and are
//! never fired one by one: [`MisfirePolicy::Skip`] fires the latest tick only when it is no more
//! than [`MISFIRE_GRACE_MS`] late; [`MisfirePolicy::FireOnce`] fires it however late. Pausing
//! and resuming skip the ticks in between.

mod scheduler;
mod store;
mod timing;

use std::collections::BTreeMap;

use bytes::Bytes;

pub use scheduler::Scheduler;
pub use timing::{Timing, MAX_EVERY_MS, MIN_EVERY_MS};

use crate::model::TaskSpec;

/// A tick later than this (relative to now) is a misfire under [`MisfirePolicy::Skip`].
pub const MISFIRE_GRACE_MS: u64 = 60_000;
/// Most schedules.
pub const MAX_SCHEDULES: usize = 100_000;

/// What to do about ticks missed while the server was down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MisfirePolicy {
    /// Fire the latest due tick only if it is at most [`MISFIRE_GRACE_MS`] late (default).
    #[default]
    Skip,
    /// Fire the latest due tick once, however late; older missed ticks are not fired.
    FireOnce,
}

impl MisfirePolicy {
    /// The wire name (`skip`, `fire_once`).
    pub fn as_str(self) -> &'static str {
        match self {
            MisfirePolicy::Skip => "skip",
            MisfirePolicy::FireOnce => "fire_once",
        }
    }
}

/// What a schedule enqueues at each tick.
#[derive(Clone, Debug, PartialEq)]
pub enum ScheduleTarget {
    /// A task (its id is the tick's deterministic id).
    Task(TaskSpec),
    /// A plain message on a queue (its id is the tick's deterministic id).
    Message {
        /// The queue.
        queue: String,
        /// The body.
        body: Bytes,
        /// Optional key.
        key: Option<Bytes>,
        /// Headers.
        headers: BTreeMap<String, String>,
    },
}

impl ScheduleTarget {
    /// The queue it publishes to.
    pub fn queue(&self) -> &str {
        match self {
            ScheduleTarget::Task(t) => &t.queue,
            ScheduleTarget::Message { queue, .. } => queue,
        }
    }
}

/// What a client sets.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleSpec {
    /// When.
    pub timing: Timing,
    /// What.
    pub target: ScheduleTarget,
    /// Missed ticks.
    pub misfire: MisfirePolicy,
}

/// A stored schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// Its name (`[A-Za-z0-9_.-]{1,128}`).
    pub name: String,
    /// Timing, target, misfire policy.
    pub spec: ScheduleSpec,
    /// Whether firing is paused.
    pub paused: bool,
    /// Fixed intervals count from here (creation or last change of the spec).
    pub anchor_ms: u64,
    /// Ticks at or before this are never fired (creation, change or resume).
    pub since_ms: u64,
    /// The last tick fired (or skipped as a misfire).
    pub last_tick_ms: Option<u64>,
    /// How many ticks were fired.
    pub fired_total: u64,
    /// When it was created.
    pub created_ms: u64,
}

/// The deterministic message (and task) id of tick `tick_ms` of schedule `name`, ≤ 128 bytes.
pub fn tick_id(name: &str, tick_ms: u64) -> String {
    let id = format!("schedule:{name}:{tick_ms}");
    if id.len() <= weir_proto::limits::MAX_MESSAGE_ID_BYTES {
        return id;
    }
    // FNV-1a 64 of the name: long names still get a short, stable id.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("schedule:{h:016x}:{tick_ms}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_ids_fit() {
        assert_eq!(tick_id("a", 5), "schedule:a:5");
        let long = "x".repeat(128);
        let id = tick_id(&long, u64::MAX);
        assert!(id.len() <= 128);
        assert_eq!(id, tick_id(&long, u64::MAX));
        assert_ne!(id, tick_id(&"y".repeat(128), u64::MAX));
    }
}
