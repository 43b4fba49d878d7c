//! The tasks journal (`tasks/state`): entries that put or remove a task, a workflow or a rate
//! limit, and a snapshot holding all of them. Recovery replays the snapshot, then the entries.

use std::collections::HashMap;

use bytes::Bytes;
use weir_store::{JournalContents, StoreError};

use crate::codec::{put_str, put_varint, Reader};
use crate::limits::RateLimit;
use crate::model::Task;
use crate::workflow::Workflow;

/// One journal entry.
#[derive(Debug)]
pub(crate) enum Entry<'a> {
    PutTask(&'a Task),
    RemoveTask(&'a str),
    PutWorkflow(&'a Workflow),
    RemoveWorkflow(&'a str),
    PutLimit(&'a str, Option<RateLimit>),
}

impl Entry<'_> {
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            Entry::PutTask(t) => {
                out.push(1);
                t.encode(&mut out);
            }
            Entry::RemoveTask(id) => {
                out.push(2);
                put_str(&mut out, id);
            }
            Entry::PutWorkflow(w) => {
                out.push(3);
                w.encode(&mut out);
            }
            Entry::RemoveWorkflow(id) => {
                out.push(4);
                put_str(&mut out, id);
            }
            Entry::PutLimit(name, limit) => {
                out.push(5);
                put_str(&mut out, name);
                match limit {
                    None => out.push(0),
                    Some(l) => {
                        out.push(1);
                        put_varint(&mut out, l.interval_ms);
                        put_varint(&mut out, u64::from(l.burst));
                    }
                }
            }
        }
        Bytes::from(out)
    }
}

/// The durable part of the task service's state.
#[derive(Debug, Default)]
pub(crate) struct Durable {
    pub(crate) tasks: HashMap<String, Task>,
    pub(crate) workflows: HashMap<String, Workflow>,
    pub(crate) limits: HashMap<String, RateLimit>,
}

impl Durable {
    fn apply(&mut self, r: &mut Reader<'_>) -> Result<(), StoreError> {
        match r.u8()? {
            1 => {
                let t = Task::decode(r)?;
                self.tasks.insert(t.id.clone(), t);
            }
            2 => {
                self.tasks.remove(&r.string()?);
            }
            3 => {
                let w = Workflow::decode(r)?;
                self.workflows.insert(w.id.clone(), w);
            }
            4 => {
                self.workflows.remove(&r.string()?);
            }
            5 => {
                let name = r.string()?;
                if r.u8()? == 0 {
                    self.limits.remove(&name);
                } else {
                    let interval_ms = r.varint()?;
                    let burst = r.varint_u32()?;
                    self.limits.insert(name, RateLimit { interval_ms, burst });
                }
            }
            t => return Err(r.error(format!("unknown tasks journal entry {t}"))),
        }
        Ok(())
    }

    /// Rebuilds the state from a journal's snapshot and entries.
    pub(crate) fn recover(contents: &JournalContents) -> Result<Durable, StoreError> {
        let mut d = Durable::default();
        if let Some(snap) = &contents.snapshot {
            let mut r = Reader::new("tasks snapshot", snap);
            while !r.is_empty() {
                // Each snapshot entry carries its length (for tools that skip); apply reads it all.
                r.varint()?;
                d.apply(&mut r)?;
            }
        }
        for e in &contents.entries {
            let mut r = Reader::new("tasks journal entry", e);
            d.apply(&mut r)?;
            if !r.is_empty() {
                return Err(r.error("trailing bytes after an entry"));
            }
        }
        Ok(d)
    }

    /// The snapshot: every task, workflow and limit as a put entry.
    pub(crate) fn snapshot(&self) -> Bytes {
        let mut out = Vec::new();
        let mut push = |e: Entry<'_>| {
            let b = e.encode();
            put_varint(&mut out, b.len() as u64);
            out.extend_from_slice(&b);
        };
        for t in self.tasks.values() {
            push(Entry::PutTask(t));
        }
        for w in self.workflows.values() {
            push(Entry::PutWorkflow(w));
        }
        for (n, l) in &self.limits {
            push(Entry::PutLimit(n, Some(*l)));
        }
        Bytes::from(out)
    }
}
