//! Workflows: a **chain** (each task receives the previous one's result), a **group** (tasks in
//! parallel; its result is the array of their results) and a **chord** (a group, then a callback
//! that receives the array of the group's results).
//!
//! Member ids are deterministic (`<workflow>.<index>`, `<workflow>.callback`) and submissions are
//! idempotent by id, so advancing a workflow again after a crash is harmless: the next step is
//! submitted first, then the workflow record that lists it is journaled.

use serde_json::Value;
use weir_store::StoreError;

use crate::codec::{put_opt_str, put_opt_u64, put_str, put_varint, Reader};
use crate::model::TaskSpec;

/// Most tasks in one workflow.
pub const MAX_WORKFLOW_TASKS: usize = 1000;

/// The shape of a workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkflowKind {
    /// One after another; each gets the previous result.
    Chain,
    /// All at once.
    Group,
    /// A group, then a callback with all the group's results.
    Chord,
}

impl WorkflowKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowKind::Chain => "chain",
            WorkflowKind::Group => "group",
            WorkflowKind::Chord => "chord",
        }
    }
}

/// Where a workflow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkflowState {
    /// Some step is not final yet.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A step ended dead or cancelled; later steps were not started.
    Failed,
}

impl WorkflowState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Running => "running",
            WorkflowState::Succeeded => "succeeded",
            WorkflowState::Failed => "failed",
        }
    }
}

/// A workflow's durable record.
#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    /// The workflow id.
    pub id: String,
    /// Its shape.
    pub kind: WorkflowKind,
    /// Ids of the tasks submitted so far, in order (a chord's callback last).
    pub members: Vec<String>,
    /// Chain steps not submitted yet.
    pub pending: Vec<TaskSpec>,
    /// A chord's callback (until submitted).
    pub callback: Option<TaskSpec>,
    /// A chord's group size (the callback is member `group_size` once submitted).
    pub group_size: usize,
    /// Where it is.
    pub state: WorkflowState,
    /// The final result: a chain's last result, a group's array, a chord's callback result.
    pub result: Option<Value>,
    /// When it was created.
    pub created_ms: u64,
    /// Final workflows are forgotten after this time.
    pub expires_ms: Option<u64>,
}

impl Workflow {
    /// The id of member `index`.
    pub fn member_id(wf: &str, index: usize) -> String {
        format!("{wf}.{index}")
    }

    /// The id of a chord's callback.
    pub fn callback_id(wf: &str) -> String {
        format!("{wf}.callback")
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        put_str(out, &self.id);
        out.push(match self.kind {
            WorkflowKind::Chain => 0,
            WorkflowKind::Group => 1,
            WorkflowKind::Chord => 2,
        });
        put_varint(out, self.members.len() as u64);
        for m in &self.members {
            put_str(out, m);
        }
        put_varint(out, self.pending.len() as u64);
        for p in &self.pending {
            p.encode(out);
        }
        match &self.callback {
            None => out.push(0),
            Some(c) => {
                out.push(1);
                c.encode(out);
            }
        }
        put_varint(out, self.group_size as u64);
        out.push(match self.state {
            WorkflowState::Running => 0,
            WorkflowState::Succeeded => 1,
            WorkflowState::Failed => 2,
        });
        put_opt_str(out, self.result.as_ref().map(Value::to_string).as_deref());
        put_varint(out, self.created_ms);
        put_opt_u64(out, self.expires_ms);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Workflow, StoreError> {
        if r.u8()? != 1 {
            return Err(r.error("unknown workflow record version"));
        }
        let id = r.string()?;
        let kind = match r.u8()? {
            0 => WorkflowKind::Chain,
            1 => WorkflowKind::Group,
            2 => WorkflowKind::Chord,
            t => return Err(r.error(format!("bad workflow kind {t}"))),
        };
        let bound = |n: u64, r: &Reader<'_>| {
            if n > MAX_WORKFLOW_TASKS as u64 + 1 {
                Err(r.error(format!("{n} workflow entries exceed the bound")))
            } else {
                Ok(n)
            }
        };
        let n = bound(r.varint()?, r)?;
        let mut members = Vec::new();
        for _ in 0..n {
            members.push(r.string()?);
        }
        let n = bound(r.varint()?, r)?;
        let mut pending = Vec::new();
        for _ in 0..n {
            pending.push(TaskSpec::decode(r)?);
        }
        let callback = match r.u8()? {
            0 => None,
            _ => Some(TaskSpec::decode(r)?),
        };
        let group_size = usize::try_from(bound(r.varint()?, r)?).unwrap_or(0);
        let state = match r.u8()? {
            0 => WorkflowState::Running,
            1 => WorkflowState::Succeeded,
            2 => WorkflowState::Failed,
            t => return Err(r.error(format!("bad workflow state {t}"))),
        };
        let result = r
            .opt_string()?
            .map(|s| serde_json::from_str(&s).map_err(|e| r.error(format!("bad result: {e}"))))
            .transpose()?;
        Ok(Workflow {
            id,
            kind,
            members,
            pending,
            callback,
            group_size,
            state,
            result,
            created_ms: r.varint()?,
            expires_ms: r.opt_u64()?,
        })
    }
}

/// The arguments of a chain step: the previous result when the step has none of its own, else
/// `{"previous": <result>, "args": <its own args>}`.
pub fn chain_args(own: &Value, previous: Option<&Value>) -> Value {
    let previous = previous.cloned().unwrap_or(Value::Null);
    if own.is_null() {
        previous
    } else {
        serde_json::json!({ "previous": previous, "args": own })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_round_trips_and_chain_args() {
        let w = Workflow {
            id: "wf".into(),
            kind: WorkflowKind::Chord,
            members: vec!["wf.0".into(), "wf.1".into()],
            pending: vec![TaskSpec::new("q", "b", Value::Null)],
            callback: Some(TaskSpec::new("q", "sum", Value::Null)),
            group_size: 2,
            state: WorkflowState::Running,
            result: Some(serde_json::json!([1, 2])),
            created_ms: 3,
            expires_ms: Some(9),
        };
        let mut out = Vec::new();
        w.encode(&mut out);
        assert_eq!(Workflow::decode(&mut Reader::new("w", &out)).unwrap(), w);
        assert_eq!(
            chain_args(&Value::Null, Some(&serde_json::json!(4))),
            serde_json::json!(4)
        );
        assert_eq!(
            chain_args(&serde_json::json!({"x": 1}), Some(&serde_json::json!(4))),
            serde_json::json!({"previous": 4, "args": {"x": 1}})
        );
    }
}
