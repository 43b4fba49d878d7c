//! Running workflows on the task service: starting a chain, group or chord, and advancing it when
//! one of its tasks reaches a final state (see `workflow.rs` for the shapes and ids).

use serde_json::Value;

use crate::model::{TaskSpec, TaskState};
use crate::persist::Entry;
use crate::service::Submit;
use crate::workflow::{chain_args, Workflow, WorkflowKind, WorkflowState, MAX_WORKFLOW_TASKS};
use crate::{Task, TaskError, TaskService};

/// What to start.
#[derive(Clone, Debug)]
pub enum WorkflowSpec {
    /// Run the tasks one after another; each receives the previous result.
    Chain(Vec<TaskSpec>),
    /// Run the tasks in parallel.
    Group(Vec<TaskSpec>),
    /// Run `group` in parallel, then `callback` with the array of their results.
    Chord {
        /// The parallel part.
        group: Vec<TaskSpec>,
        /// Receives the array of results.
        callback: TaskSpec,
    },
}

/// What the next step of a workflow is.
enum Step {
    Submit(String, TaskSpec),
    Finish(WorkflowState, Option<Value>),
    Wait,
}

impl TaskService {
    /// Starts a workflow; idempotent by `id` (a second call returns the first workflow).
    pub async fn start_workflow(
        &self,
        id: Option<String>,
        spec: WorkflowSpec,
    ) -> Result<Workflow, TaskError> {
        let now = self.now_ms();
        let (kind, mut specs, callback) = match spec {
            WorkflowSpec::Chain(s) => (WorkflowKind::Chain, s, None),
            WorkflowSpec::Group(s) => (WorkflowKind::Group, s, None),
            WorkflowSpec::Chord { group, callback } => (WorkflowKind::Chord, group, Some(callback)),
        };
        if specs.is_empty() || specs.len() > MAX_WORKFLOW_TASKS {
            return Err(TaskError::InvalidArgument(format!(
                "a workflow holds 1..={MAX_WORKFLOW_TASKS} tasks"
            )));
        }
        if specs
            .iter()
            .chain(callback.iter())
            .any(|s| s.unique_key.is_some())
        {
            return Err(TaskError::InvalidArgument(
                "workflow tasks cannot have unique keys".into(),
            ));
        }
        let id = match id {
            Some(id) if id.is_empty() || id.len() > 100 => {
                return Err(TaskError::InvalidArgument(
                    "a workflow id is 1..=100 bytes".into(),
                ))
            }
            Some(id) => {
                if let Ok(w) = self.workflow(&id) {
                    return Ok(w);
                }
                id
            }
            None => {
                let inner = self.inner.lock();
                self.fresh_id(&inner, "wf", now)
            }
        };
        let first: Vec<(String, TaskSpec)> = match kind {
            WorkflowKind::Chain => vec![(Workflow::member_id(&id, 0), specs.remove(0))],
            _ => specs
                .drain(..)
                .enumerate()
                .map(|(i, s)| (Workflow::member_id(&id, i), s))
                .collect(),
        };
        let wf = Workflow {
            id: id.clone(),
            kind,
            members: first.iter().map(|(i, _)| i.clone()).collect(),
            pending: specs,
            group_size: first.len(),
            callback,
            state: WorkflowState::Running,
            result: None,
            created_ms: now,
            expires_ms: None,
        };
        // Every task is checked before any is submitted (bad input changes nothing).
        for (i, spec) in first
            .iter()
            .map(|(i, s)| (i, s))
            .chain(wf.pending.iter().map(|s| (&id, s)))
            .chain(wf.callback.iter().map(|s| (&id, s)))
        {
            self.check(&Submit {
                spec: spec.clone(),
                id: Some(i.clone()),
                delay_ms: 0,
            })?;
        }
        // The first tasks are submitted before the workflow record is journaled (as `advance`
        // does for later steps): were it the other way round, a failed submission (or a crash
        // in between) would leave a running workflow waiting forever for a task that was never
        // submitted. Submission is idempotent by the deterministic member ids, so a retried
        // start completes the first one.
        for (task_id, spec) in first {
            let s = Submit {
                spec,
                id: Some(task_id),
                delay_ms: 0,
            };
            self.submit_in(s, Some(&id)).await?;
        }
        let durable = {
            let mut inner = self.inner.lock();
            if let Some(w) = inner.d.workflows.get(&id) {
                return Ok(w.clone());
            }
            inner.d.workflows.insert(id.clone(), wf.clone());
            self.journal(&[Entry::PutWorkflow(&wf)])?
        };
        durable.await?;
        // A member may have finished before the record existed: advance now, not at the next
        // tick.
        if let Err(e) = self.advance(&id).await {
            tracing::warn!(workflow = %id, error = %e, "advancing a workflow failed; tick retries");
        }
        self.workflow(&id)
    }

    /// Called when a task reached a final state: advances its workflow.
    pub(crate) async fn on_final(&self, task: &Task) {
        if let Some(wf) = &task.workflow {
            if let Err(e) = self.advance(wf).await {
                tracing::warn!(workflow = %wf, error = %e, "advancing a workflow failed; tick retries");
            }
        }
    }

    /// Advances every running workflow (after a crash, or when an advance failed).
    pub(crate) async fn advance_all(&self) {
        let ids: Vec<String> = self
            .inner
            .lock()
            .d
            .workflows
            .values()
            .filter(|w| w.state == WorkflowState::Running)
            .map(|w| w.id.clone())
            .collect();
        for id in ids {
            if let Err(e) = self.advance(&id).await {
                tracing::warn!(workflow = %id, error = %e, "advancing a workflow failed");
            }
        }
    }

    fn next_step(&self, wf: &Workflow) -> Step {
        let inner = self.inner.lock();
        let state = |id: &String| inner.d.tasks.get(id).map(|t| (t.state, t.result.clone()));
        let states: Vec<Option<(TaskState, Option<Value>)>> =
            wf.members.iter().map(state).collect();
        let failed = states.iter().any(|s| {
            s.as_ref()
                .is_some_and(|(st, _)| matches!(st, TaskState::Dead | TaskState::Cancelled))
        });
        if failed {
            return Step::Finish(WorkflowState::Failed, None);
        }
        let all_ok = states.iter().all(|s| {
            s.as_ref()
                .is_some_and(|(st, _)| *st == TaskState::Succeeded)
        });
        if !all_ok {
            return Step::Wait;
        }
        let results: Vec<Value> = states
            .into_iter()
            .map(|s| s.and_then(|(_, r)| r).unwrap_or(Value::Null))
            .collect();
        match wf.kind {
            WorkflowKind::Chain => match wf.pending.first() {
                Some(next) => {
                    let mut spec = next.clone();
                    spec.args = chain_args(&next.args, results.last());
                    Step::Submit(Workflow::member_id(&wf.id, wf.members.len()), spec)
                }
                None => Step::Finish(WorkflowState::Succeeded, results.last().cloned()),
            },
            WorkflowKind::Group => Step::Finish(WorkflowState::Succeeded, Some(results.into())),
            WorkflowKind::Chord => match &wf.callback {
                Some(cb) if wf.members.len() == wf.group_size => {
                    let mut spec = cb.clone();
                    spec.args = Value::Array(results);
                    Step::Submit(Workflow::callback_id(&wf.id), spec)
                }
                _ => Step::Finish(WorkflowState::Succeeded, results.last().cloned()),
            },
        }
    }

    /// Takes the workflow's next step, if one is due. Submission first (idempotent by id), then
    /// the workflow record.
    async fn advance(&self, id: &str) -> Result<(), TaskError> {
        for _ in 0..=MAX_WORKFLOW_TASKS {
            let Ok(wf) = self.workflow(id) else {
                // Not journaled yet (its first tasks are submitted first; `start_workflow`
                // advances it once it is) or forgotten after its TTL.
                return Ok(());
            };
            if wf.state != WorkflowState::Running {
                return Ok(());
            }
            match self.next_step(&wf) {
                Step::Wait => return Ok(()),
                Step::Submit(task_id, spec) => {
                    let s = Submit {
                        spec,
                        id: Some(task_id.clone()),
                        delay_ms: 0,
                    };
                    self.submit_in(s, Some(id)).await?;
                    let durable = {
                        let mut inner = self.inner.lock();
                        let Some(w) = inner.d.workflows.get_mut(id) else {
                            return Ok(());
                        };
                        if w.members.contains(&task_id) {
                            return Ok(());
                        }
                        w.members.push(task_id);
                        if w.kind == WorkflowKind::Chain && !w.pending.is_empty() {
                            w.pending.remove(0);
                        }
                        let w = w.clone();
                        self.journal(&[Entry::PutWorkflow(&w)])?
                    };
                    durable.await?;
                }
                Step::Finish(state, result) => {
                    let now = self.now_ms();
                    let durable = {
                        let mut inner = self.inner.lock();
                        let Some(w) = inner.d.workflows.get_mut(id) else {
                            return Ok(());
                        };
                        w.state = state;
                        w.result = result;
                        w.expires_ms = Some(now.saturating_add(self.options.result_ttl_ms));
                        let w = w.clone();
                        self.journal(&[Entry::PutWorkflow(&w)])?
                    };
                    durable.await?;
                    self.notify();
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for the workflow to finish; returns it as it is then.
    pub async fn wait_workflow(
        &self,
        id: &str,
        timeout: std::time::Duration,
    ) -> Result<Workflow, TaskError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            let w = self.workflow(id)?;
            if w.state != WorkflowState::Running || tokio::time::Instant::now() >= deadline {
                return Ok(w);
            }
            tokio::select! {
                r = rx.changed() => { if r.is_err() { return Ok(w); } }
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}
