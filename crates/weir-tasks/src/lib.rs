//! Weir's tasks and schedules, layered above the broker.
//!
//! - [`TaskService`]: named jobs with JSON arguments, tracked by id through
//!   `queued → running → succeeded`, or `retrying → … → dead`, or `cancelled`; per-task retries
//!   with backoff, a timeout (the lease) extended by heartbeats, the attempt history, results
//!   kept for a TTL, unique keys, rate limits per task name, and workflows (chain, group,
//!   chord).
//! - [`Scheduler`]: cron expressions (optional seconds, IANA time zones, DST-correct) and fixed
//!   intervals that enqueue a task or a message exactly once per tick, across restarts.
//!
//! Both are state machines over an `Arc<weir_broker::Broker>`, an `Arc<dyn weir_store::Store>`
//! (their own journals `tasks/state` and `schedules/state`, with snapshots) and an
//! `Arc<dyn Clock>`: no sockets, no HTTP. JSON appears only as the opaque task arguments and
//! results and in the task message body, whose format is part of the public contract (DESIGN
//! §4). With the `worker` feature, [`worker`] is the Rust worker runtime (over HTTP); with the
//! `cli` feature, [`cli`] has the `weir task` / `weir schedule` subcommands.

mod codec;
mod delivery;
mod error;
mod flows;
mod limits;
mod model;
mod persist;
pub mod schedule;
mod service;
mod workflow;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "worker")]
pub mod worker;

pub use delivery::{TaskDelivery, TaskOutcome};
pub use error::TaskError;
pub use flows::WorkflowSpec;
pub use limits::RateLimit;
pub use model::{
    Attempt, Task, TaskSpec, TaskState, MAX_ATTEMPT_HISTORY, MAX_ERROR_BYTES, MAX_TASK_NAME_BYTES,
};
pub use schedule::{MisfirePolicy, Schedule, ScheduleSpec, ScheduleTarget, Scheduler, Timing};
pub use service::{task_body, Submit, Submitted, TaskOptions, TaskService};
pub use workflow::{chain_args, Workflow, WorkflowKind, WorkflowState, MAX_WORKFLOW_TASKS};

/// Shared across tokio tasks.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TaskService>();
    assert_send_sync::<Scheduler>();
};
