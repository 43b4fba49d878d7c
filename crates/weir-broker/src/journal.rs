//! The encoding of a queue's state journal (`queues/<q>/state`): small entries, and snapshots of
//! the in-memory index.
//!
//! ```text
//! entry    := tag u8, count varint, items
//!   1 Remove    item := offset varint                      (acked, purged, dead-lettered)
//!   2 Attempts  item := offset varint, attempt varint      (a delivery; not awaited)
//!   3 Requeue   item := offset varint, attempt varint, ready_at_ms varint   (nack)
//! snapshot := version u8 = 1, covered varint,
//!             dedup count varint, (hash 16 bytes LE, expires_ms varint)*,
//!             entry count varint, (offset delta varint, ready_at_ms varint, size varint,
//!                                  key_hash varint, attempt varint, priority u8)*
//! ```
//! `covered` is the message-log offset up to which the snapshot describes the queue: recovery
//! scans the message log from there. Offsets in a snapshot are ascending, delta-encoded.

use bytes::Bytes;
use weir_store::StoreError;

use crate::codec::{put_varint, Reader};

/// One state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StateEntry {
    /// Messages gone for good.
    Remove(Vec<u64>),
    /// Delivery attempt counts.
    Attempts(Vec<(u64, u16)>),
    /// Nacked: attempt count and when the message is ready again.
    Requeue(Vec<(u64, u16, u64)>),
}

impl StateEntry {
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            StateEntry::Remove(v) => {
                out.push(1);
                put_varint(&mut out, v.len() as u64);
                for o in v {
                    put_varint(&mut out, *o);
                }
            }
            StateEntry::Attempts(v) => {
                out.push(2);
                put_varint(&mut out, v.len() as u64);
                for (o, a) in v {
                    put_varint(&mut out, *o);
                    put_varint(&mut out, u64::from(*a));
                }
            }
            StateEntry::Requeue(v) => {
                out.push(3);
                put_varint(&mut out, v.len() as u64);
                for (o, a, r) in v {
                    put_varint(&mut out, *o);
                    put_varint(&mut out, u64::from(*a));
                    put_varint(&mut out, *r);
                }
            }
        }
        Bytes::from(out)
    }

    pub(crate) fn decode(b: &[u8]) -> Result<StateEntry, StoreError> {
        let mut r = Reader::new("queue state journal entry", b);
        let tag = r.u8()?;
        let n = r.varint()?;
        // Every item takes at least one byte: a count beyond the input is corrupt.
        if n > b.len() as u64 {
            return Err(r.error(format!("count {n} exceeds the entry's size")));
        }
        let attempt = |r: &mut Reader<'_>| -> Result<u16, StoreError> {
            let a = r.varint()?;
            u16::try_from(a).map_err(|_| r.error(format!("attempt {a} out of range")))
        };
        let out = match tag {
            1 => StateEntry::Remove((0..n).map(|_| r.varint()).collect::<Result<_, _>>()?),
            2 => StateEntry::Attempts(
                (0..n)
                    .map(|_| Ok((r.varint()?, attempt(&mut r)?)))
                    .collect::<Result<_, StoreError>>()?,
            ),
            3 => StateEntry::Requeue(
                (0..n)
                    .map(|_| Ok((r.varint()?, attempt(&mut r)?, r.varint()?)))
                    .collect::<Result<_, StoreError>>()?,
            ),
            t => return Err(r.error(format!("unknown entry tag {t}"))),
        };
        r.finish()?;
        Ok(out)
    }
}

/// One message as a snapshot keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SnapEntry {
    pub(crate) offset: u64,
    pub(crate) ready_at_ms: u64,
    pub(crate) size: u32,
    pub(crate) key_hash: u32,
    pub(crate) attempt: u16,
    pub(crate) priority: u8,
}

/// A decoded snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) covered: u64,
    pub(crate) dedup: Vec<(u128, u64)>,
    pub(crate) entries: Vec<SnapEntry>,
}

const SNAPSHOT_VERSION: u8 = 1;

/// Encodes a snapshot; `entries` must be in ascending offset order.
pub(crate) fn encode_snapshot(
    covered: u64,
    dedup: impl ExactSizeIterator<Item = (u128, u64)>,
    entries: &[SnapEntry],
) -> Bytes {
    let mut out = Vec::with_capacity(16 + dedup.len() * 24 + entries.len() * 12);
    out.push(SNAPSHOT_VERSION);
    put_varint(&mut out, covered);
    put_varint(&mut out, dedup.len() as u64);
    for (h, e) in dedup {
        out.extend_from_slice(&h.to_le_bytes());
        put_varint(&mut out, e);
    }
    put_varint(&mut out, entries.len() as u64);
    let mut prev = 0u64;
    for e in entries {
        debug_assert!(e.offset >= prev, "snapshot entries out of order");
        put_varint(&mut out, e.offset - prev);
        prev = e.offset;
        put_varint(&mut out, e.ready_at_ms);
        put_varint(&mut out, u64::from(e.size));
        put_varint(&mut out, u64::from(e.key_hash));
        put_varint(&mut out, u64::from(e.attempt));
        out.push(e.priority);
    }
    Bytes::from(out)
}

pub(crate) fn decode_snapshot(b: &[u8]) -> Result<Snapshot, StoreError> {
    let mut r = Reader::new("queue state snapshot", b);
    let version = r.u8()?;
    if version != SNAPSHOT_VERSION {
        return Err(r.error(format!("unknown snapshot version {version}")));
    }
    let covered = r.varint()?;
    let n = r.varint()?;
    if n > b.len() as u64 {
        return Err(r.error("dedup count exceeds the snapshot's size"));
    }
    let mut dedup = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let mut h = [0u8; 16];
        for byte in &mut h {
            *byte = r.u8()?;
        }
        dedup.push((u128::from_le_bytes(h), r.varint()?));
    }
    let n = r.varint()?;
    if n > b.len() as u64 {
        return Err(r.error("entry count exceeds the snapshot's size"));
    }
    let mut entries = Vec::with_capacity(n as usize);
    let mut offset = 0u64;
    for _ in 0..n {
        offset = offset
            .checked_add(r.varint()?)
            .ok_or_else(|| r.error("offset overflows"))?;
        let ready_at_ms = r.varint()?;
        let size = r.varint_u32()?;
        let key_hash = r.varint_u32()?;
        let attempt = r.varint()?;
        let attempt = u16::try_from(attempt)
            .map_err(|_| r.error(format!("attempt {attempt} out of range")))?;
        let priority = r.u8()?;
        entries.push(SnapEntry {
            offset,
            ready_at_ms,
            size,
            key_hash,
            attempt,
            priority,
        });
    }
    r.finish()?;
    Ok(Snapshot {
        covered,
        dedup,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        for e in [
            StateEntry::Remove(vec![1, 2, 300]),
            StateEntry::Attempts(vec![(5, 1), (6, 65535)]),
            StateEntry::Requeue(vec![(7, 2, 123_456_789)]),
            StateEntry::Remove(vec![]),
        ] {
            assert_eq!(StateEntry::decode(&e.encode()).expect("decode"), e);
        }
        assert!(StateEntry::decode(&[9, 0]).is_err());
        assert!(StateEntry::decode(&[1, 200]).is_err());
        assert!(StateEntry::decode(&[]).is_err());
    }

    #[test]
    fn snapshot_round_trips_and_refuses_garbage() {
        let entries = vec![
            SnapEntry {
                offset: 3,
                ready_at_ms: 10,
                size: 5,
                key_hash: 0,
                attempt: 0,
                priority: 9,
            },
            SnapEntry {
                offset: 70,
                ready_at_ms: 0,
                size: 0,
                key_hash: u32::MAX,
                attempt: 4,
                priority: 0,
            },
        ];
        let dedup = vec![(u128::MAX, 77u64)];
        let b = encode_snapshot(71, dedup.clone().into_iter(), &entries);
        let s = decode_snapshot(&b).expect("decode");
        assert_eq!(
            s,
            Snapshot {
                covered: 71,
                dedup,
                entries
            }
        );
        for cut in 0..b.len() {
            assert!(decode_snapshot(&b[..cut]).is_err());
        }
    }
}
