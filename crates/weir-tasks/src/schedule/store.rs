//! The schedules journal (`schedules/state`): put, delete and fired entries, and a snapshot of
//! every schedule.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use weir_store::{JournalContents, StoreError};

use super::{MisfirePolicy, Schedule, ScheduleSpec, ScheduleTarget, Timing};
use crate::codec::{put_bytes, put_opt_str, put_opt_u64, put_str, put_varint, Reader};
use crate::model::TaskSpec;

pub(crate) enum Entry<'a> {
    Put(&'a Schedule),
    Delete(&'a str),
    /// The last tick handled and the fired count after it.
    Fired(&'a str, u64, u64),
}

fn encode_schedule(s: &Schedule, out: &mut Vec<u8>) {
    out.push(1);
    put_str(out, &s.name);
    match &s.spec.timing {
        Timing::Cron { expr, timezone } => {
            out.push(0);
            put_str(out, expr);
            put_str(out, timezone);
        }
        Timing::Every { every_ms } => {
            out.push(1);
            put_varint(out, *every_ms);
        }
    }
    match &s.spec.target {
        ScheduleTarget::Task(t) => {
            out.push(0);
            t.encode(out);
        }
        ScheduleTarget::Message {
            queue,
            body,
            key,
            headers,
        } => {
            out.push(1);
            put_str(out, queue);
            put_bytes(out, body);
            match key {
                None => out.push(0),
                Some(k) => {
                    out.push(1);
                    put_bytes(out, k);
                }
            }
            put_varint(out, headers.len() as u64);
            for (k, v) in headers {
                put_str(out, k);
                put_str(out, v);
            }
        }
    }
    out.push(match s.spec.misfire {
        MisfirePolicy::Skip => 0,
        MisfirePolicy::FireOnce => 1,
    });
    out.push(u8::from(s.paused));
    put_varint(out, s.anchor_ms);
    put_varint(out, s.since_ms);
    put_opt_u64(out, s.last_tick_ms);
    put_varint(out, s.fired_total);
    put_varint(out, s.created_ms);
    put_opt_str(out, None); // reserved
}

fn decode_schedule(r: &mut Reader<'_>) -> Result<Schedule, StoreError> {
    if r.u8()? != 1 {
        return Err(r.error("unknown schedule record version"));
    }
    let name = r.string()?;
    let timing = match r.u8()? {
        0 => Timing::Cron {
            expr: r.string()?,
            timezone: r.string()?,
        },
        1 => Timing::Every {
            every_ms: r.varint()?,
        },
        t => return Err(r.error(format!("bad timing tag {t}"))),
    };
    let target = match r.u8()? {
        0 => ScheduleTarget::Task(TaskSpec::decode(r)?),
        1 => {
            let queue = r.string()?;
            let body = Bytes::copy_from_slice(r.bytes()?);
            let key = match r.u8()? {
                0 => None,
                _ => Some(Bytes::copy_from_slice(r.bytes()?)),
            };
            let n = r.varint()?;
            if n > weir_proto::limits::MAX_HEADERS as u64 {
                return Err(r.error(format!("{n} headers exceed the limit")));
            }
            let mut headers = BTreeMap::new();
            for _ in 0..n {
                headers.insert(r.string()?, r.string()?);
            }
            ScheduleTarget::Message {
                queue,
                body,
                key,
                headers,
            }
        }
        t => return Err(r.error(format!("bad target tag {t}"))),
    };
    let misfire = match r.u8()? {
        0 => MisfirePolicy::Skip,
        _ => MisfirePolicy::FireOnce,
    };
    let s = Schedule {
        name,
        spec: ScheduleSpec {
            timing,
            target,
            misfire,
        },
        paused: r.u8()? != 0,
        anchor_ms: r.varint()?,
        since_ms: r.varint()?,
        last_tick_ms: r.opt_u64()?,
        fired_total: r.varint()?,
        created_ms: r.varint()?,
    };
    r.opt_string()?;
    Ok(s)
}

impl Entry<'_> {
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            Entry::Put(s) => {
                out.push(1);
                encode_schedule(s, &mut out);
            }
            Entry::Delete(n) => {
                out.push(2);
                put_str(&mut out, n);
            }
            Entry::Fired(n, tick, total) => {
                out.push(3);
                put_str(&mut out, n);
                put_varint(&mut out, *tick);
                put_varint(&mut out, *total);
            }
        }
        Bytes::from(out)
    }
}

fn apply(map: &mut HashMap<String, Schedule>, r: &mut Reader<'_>) -> Result<(), StoreError> {
    match r.u8()? {
        1 => {
            let s = decode_schedule(r)?;
            map.insert(s.name.clone(), s);
        }
        2 => {
            map.remove(&r.string()?);
        }
        3 => {
            let name = r.string()?;
            let tick = r.varint()?;
            let total = r.varint()?;
            if let Some(s) = map.get_mut(&name) {
                s.last_tick_ms = Some(tick);
                s.fired_total = total;
            }
        }
        t => return Err(r.error(format!("unknown schedules journal entry {t}"))),
    }
    Ok(())
}

/// Rebuilds every schedule from the journal.
pub(crate) fn recover(c: &JournalContents) -> Result<HashMap<String, Schedule>, StoreError> {
    let mut map = HashMap::new();
    if let Some(snap) = &c.snapshot {
        let mut r = Reader::new("schedules snapshot", snap);
        while !r.is_empty() {
            apply(&mut map, &mut r)?;
        }
    }
    for e in &c.entries {
        let mut r = Reader::new("schedules journal entry", e);
        apply(&mut map, &mut r)?;
        if !r.is_empty() {
            return Err(r.error("trailing bytes after an entry"));
        }
    }
    Ok(map)
}

/// Every schedule as put entries.
pub(crate) fn snapshot(map: &HashMap<String, Schedule>) -> Bytes {
    let mut out = Vec::new();
    for s in map.values() {
        out.extend_from_slice(&Entry::Put(s).encode());
    }
    Bytes::from(out)
}
