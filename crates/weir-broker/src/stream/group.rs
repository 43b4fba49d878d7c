//! Consumer groups of one stream: members, heartbeats, partition assignment, committed offsets.
//!
//! Membership lives in memory (a restart ends every session; members rejoin, as after a network
//! partition). Committed offsets are durable, in the journal `streams/<s>/groups`:
//! ```text
//! entry    := 1 Commit group, count varint, (partition varint, offset varint)*
//!           | 2 Delete group
//! snapshot := version u8 = 1, count varint, (group, count varint, (partition, offset)*)*
//! ```
//! Assignment is a pure function of the live members: sorted by id, partition `p` goes to member
//! `p % n`. A member is dead once `session_timeout_ms` passed since its last join or heartbeat;
//! every group call and every broker tick expire dead members first, so no partition stays
//! unowned longer than the session timeout (plus one tick) while any member lives. Each change of
//! membership bumps the group's `generation`; members learn their new partitions from their next
//! heartbeat. Delivery is at least once: a partition's new owner starts at the committed offset.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use weir_store::{Durable, Journal, StoreError};

use crate::codec::{put_bytes, put_varint, Reader};
use crate::BrokerError;

/// Most consumer groups per stream.
pub const MAX_GROUPS: usize = 1024;
/// Most members per group.
pub const MAX_MEMBERS: usize = 1024;
/// Default session timeout, in milliseconds.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 10_000;
/// Shortest session timeout.
pub const MIN_SESSION_TIMEOUT_MS: u64 = 100;
/// Longest session timeout.
pub const MAX_SESSION_TIMEOUT_MS: u64 = 300_000;

/// What a member owns after a join or heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupAssignment {
    /// The group's generation (bumped on every membership change).
    pub generation: u64,
    /// The partitions this member owns, ascending.
    pub partitions: Vec<u32>,
    /// The committed offset of each owned partition (`None`: nothing committed yet).
    pub committed: Vec<(u32, Option<u64>)>,
    /// Live members of the group.
    pub members: usize,
    /// This member's session timeout.
    pub session_timeout_ms: u64,
}

/// A live member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member id.
    pub id: String,
    /// Its partitions.
    pub partitions: Vec<u32>,
    /// When its session ends unless it heartbeats, ms since the epoch.
    pub expires_at_ms: u64,
}

/// One partition's owner, committed offset and lag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: u32,
    /// The live member owning it (`None` only while the group has no member).
    pub owner: Option<String>,
    /// The committed offset (the next record to process), if any.
    pub committed: Option<u64>,
    /// One past the partition's last readable record.
    pub end_offset: u64,
    /// Records not yet committed: `end_offset - max(committed, start_offset)`.
    pub lag: u64,
}

/// A group's members, generation and per-partition lag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    /// The group name.
    pub name: String,
    /// The generation.
    pub generation: u64,
    /// Live members, by id.
    pub members: Vec<MemberStatus>,
    /// Every partition.
    pub partitions: Vec<PartitionLag>,
}

#[derive(Clone, Debug)]
struct Member {
    last_seen_ms: u64,
    session_timeout_ms: u64,
}

#[derive(Clone, Debug, Default)]
struct Group {
    members: BTreeMap<String, Member>,
    generation: u64,
    committed: BTreeMap<u32, u64>,
}

impl Group {
    fn owner_index(&self, partition: u32) -> Option<usize> {
        let n = self.members.len();
        (n > 0).then(|| partition as usize % n)
    }

    fn owner(&self, partition: u32) -> Option<&String> {
        self.owner_index(partition)
            .and_then(|i| self.members.keys().nth(i))
    }

    fn owned(&self, member: &str, partitions: u32) -> Vec<u32> {
        let Some(i) = self.members.keys().position(|m| m == member) else {
            return Vec::new();
        };
        let n = self.members.len();
        (0..partitions).filter(|p| *p as usize % n == i).collect()
    }
}

/// Every consumer group of one stream, with the journal of committed offsets.
#[derive(Debug)]
pub(crate) struct Groups {
    journal: Arc<dyn Journal>,
    groups: BTreeMap<String, Group>,
}

fn encode_commit(group: &str, offsets: &[(u32, u64)]) -> Bytes {
    let mut out = vec![1];
    put_bytes(&mut out, group.as_bytes());
    put_varint(&mut out, offsets.len() as u64);
    for (p, o) in offsets {
        put_varint(&mut out, u64::from(*p));
        put_varint(&mut out, *o);
    }
    Bytes::from(out)
}

fn read_offsets(r: &mut Reader<'_>, into: &mut BTreeMap<u32, u64>) -> Result<(), StoreError> {
    for _ in 0..r.varint()? {
        let p = r.varint_u32()?;
        into.insert(p, r.varint()?);
    }
    Ok(())
}

impl Groups {
    /// Replays the journal: committed offsets of every group, no members.
    pub(crate) fn open(journal: Arc<dyn Journal>) -> Result<Groups, StoreError> {
        let contents = journal.recovered();
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        if let Some(s) = &contents.snapshot {
            let mut r = Reader::new("group snapshot", s);
            let version = r.u8()?;
            if version != 1 {
                return Err(r.error(format!("unknown group snapshot version {version}")));
            }
            for _ in 0..r.varint()? {
                let name = r.string()?;
                read_offsets(&mut r, &mut groups.entry(name).or_default().committed)?;
            }
            r.finish()?;
        }
        for e in &contents.entries {
            let mut r = Reader::new("group journal entry", e);
            match r.u8()? {
                1 => {
                    let name = r.string()?;
                    read_offsets(&mut r, &mut groups.entry(name).or_default().committed)?;
                }
                2 => {
                    groups.remove(&r.string()?);
                }
                t => return Err(r.error(format!("unknown group entry tag {t}"))),
            }
            r.finish()?;
        }
        Ok(Groups { journal, groups })
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// Ends the sessions of members silent for longer than their timeout; returns how many.
    pub(crate) fn expire(&mut self, now_ms: u64) -> usize {
        let mut n = 0;
        for g in self.groups.values_mut() {
            let before = g.members.len();
            g.members
                .retain(|_, m| now_ms.saturating_sub(m.last_seen_ms) <= m.session_timeout_ms);
            if g.members.len() != before {
                g.generation += 1;
                n += before - g.members.len();
            }
        }
        n
    }

    fn assignment(&self, group: &str, member: &str, partitions: u32) -> GroupAssignment {
        let g = self.groups.get(group);
        let owned = g.map(|g| g.owned(member, partitions)).unwrap_or_default();
        GroupAssignment {
            generation: g.map_or(0, |g| g.generation),
            committed: owned
                .iter()
                .map(|p| (*p, g.and_then(|g| g.committed.get(p).copied())))
                .collect(),
            partitions: owned,
            members: g.map_or(0, |g| g.members.len()),
            session_timeout_ms: g
                .and_then(|g| g.members.get(member))
                .map_or(0, |m| m.session_timeout_ms),
        }
    }

    /// Joins (or re-joins, refreshing the session) and returns the member's assignment.
    pub(crate) fn join(
        &mut self,
        group: &str,
        member: &str,
        session_timeout_ms: u64,
        partitions: u32,
        now_ms: u64,
    ) -> Result<(GroupAssignment, bool), BrokerError> {
        self.expire(now_ms);
        if !self.groups.contains_key(group) && self.groups.len() >= MAX_GROUPS {
            return Err(BrokerError::Conflict(format!(
                "the stream already has {MAX_GROUPS} consumer groups"
            )));
        }
        let g = self.groups.entry(group.to_string()).or_default();
        let joined = !g.members.contains_key(member);
        if joined && g.members.len() >= MAX_MEMBERS {
            return Err(BrokerError::Conflict(format!(
                "group {group} already has {MAX_MEMBERS} members"
            )));
        }
        g.members.insert(
            member.to_string(),
            Member {
                last_seen_ms: now_ms,
                session_timeout_ms,
            },
        );
        if joined {
            g.generation += 1;
        }
        Ok((self.assignment(group, member, partitions), joined))
    }

    fn not_member(group: &str, member: &str) -> BrokerError {
        BrokerError::NotFound {
            kind: "group member",
            name: format!("{group}/{member}"),
        }
    }

    /// Refreshes a live member's session; a member whose session ended must join again.
    pub(crate) fn heartbeat(
        &mut self,
        group: &str,
        member: &str,
        partitions: u32,
        now_ms: u64,
    ) -> Result<GroupAssignment, BrokerError> {
        self.expire(now_ms);
        let m = self
            .groups
            .get_mut(group)
            .and_then(|g| g.members.get_mut(member))
            .ok_or_else(|| Self::not_member(group, member))?;
        m.last_seen_ms = now_ms;
        Ok(self.assignment(group, member, partitions))
    }

    /// Leaves the group: its partitions go to the others at once.
    pub(crate) fn leave(
        &mut self,
        group: &str,
        member: &str,
        now_ms: u64,
    ) -> Result<(), BrokerError> {
        self.expire(now_ms);
        let g = self
            .groups
            .get_mut(group)
            .filter(|g| g.members.contains_key(member))
            .ok_or_else(|| Self::not_member(group, member))?;
        g.members.remove(member);
        g.generation += 1;
        Ok(())
    }

    /// Commits offsets (each the next record to process; at most the partition's end). With a
    /// `member`, it must be live and own every partition, and `generation`, when given, must be
    /// current: a member that lost a partition cannot move its offset (409).
    pub(crate) fn commit(
        &mut self,
        group: &str,
        member: Option<(&str, Option<u64>)>,
        offsets: &[(u32, u64)],
        now_ms: u64,
    ) -> Result<Durable, BrokerError> {
        self.expire(now_ms);
        if let Some((member, generation)) = member {
            let g = self
                .groups
                .get(group)
                .filter(|g| g.members.contains_key(member))
                .ok_or_else(|| Self::not_member(group, member))?;
            if let Some(gen) = generation.filter(|gen| *gen != g.generation) {
                return Err(BrokerError::Conflict(format!(
                    "generation {gen} is stale; the group is at {}",
                    g.generation
                )));
            }
            if let Some((p, _)) = offsets
                .iter()
                .find(|(p, _)| g.owner(*p).map(String::as_str) != Some(member))
            {
                return Err(BrokerError::Conflict(format!(
                    "member {member} does not own partition {p}"
                )));
            }
        } else if !self.groups.contains_key(group) && self.groups.len() >= MAX_GROUPS {
            return Err(BrokerError::Conflict(format!(
                "the stream already has {MAX_GROUPS} consumer groups"
            )));
        }
        let durable = self.journal.append(&[encode_commit(group, offsets)])?;
        let g = self.groups.entry(group.to_string()).or_default();
        for (p, o) in offsets {
            g.committed.insert(*p, *o);
        }
        Ok(durable)
    }

    /// Forgets a group and its offsets.
    pub(crate) fn delete(&mut self, group: &str) -> Result<Durable, BrokerError> {
        if !self.groups.contains_key(group) {
            return Err(BrokerError::NotFound {
                kind: "group",
                name: group.to_string(),
            });
        }
        let mut out = vec![2];
        put_bytes(&mut out, group.as_bytes());
        let durable = self.journal.append(&[Bytes::from(out)])?;
        self.groups.remove(group);
        Ok(durable)
    }

    /// A group's status; `bounds` gives each partition's (start, end) offsets.
    pub(crate) fn status(
        &mut self,
        group: &str,
        bounds: &[(u64, u64)],
        now_ms: u64,
    ) -> Result<GroupStatus, BrokerError> {
        self.expire(now_ms);
        let g = self
            .groups
            .get(group)
            .ok_or_else(|| BrokerError::NotFound {
                kind: "group",
                name: group.to_string(),
            })?;
        // At most MAX_PARTITIONS partitions: the count fits in u32.
        let n = bounds.len() as u32;
        Ok(GroupStatus {
            name: group.to_string(),
            generation: g.generation,
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberStatus {
                    id: id.clone(),
                    partitions: g.owned(id, n),
                    expires_at_ms: m.last_seen_ms.saturating_add(m.session_timeout_ms),
                })
                .collect(),
            partitions: bounds
                .iter()
                .enumerate()
                .map(|(p, (start, end))| {
                    let p = p as u32;
                    let committed = g.committed.get(&p).copied();
                    PartitionLag {
                        partition: p,
                        owner: g.owner(p).cloned(),
                        committed,
                        end_offset: *end,
                        lag: end.saturating_sub(committed.unwrap_or(0).max(*start)),
                    }
                })
                .collect(),
        })
    }

    /// Snapshots the committed offsets when the journal grew past `every_bytes`.
    pub(crate) fn maybe_snapshot(&self, every_bytes: u64) -> Result<bool, StoreError> {
        if self.journal.bytes_since_snapshot() <= every_bytes {
            return Ok(false);
        }
        let mut out = vec![1];
        put_varint(&mut out, self.groups.len() as u64);
        for (name, g) in &self.groups {
            put_bytes(&mut out, name.as_bytes());
            put_varint(&mut out, g.committed.len() as u64);
            for (p, o) in &g.committed {
                put_varint(&mut out, u64::from(*p));
                put_varint(&mut out, *o);
            }
        }
        self.journal.snapshot(Bytes::from(out))?;
        Ok(true)
    }
}
