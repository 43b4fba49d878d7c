//! Consumer groups: assignment, rebalance on death / join / leave, fenced and durable commits,
//! lag.

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::{block, Harness};
use weir_broker::{BrokerError, NewRecord, StreamConfig};

fn stream(h: &Harness, partitions: u32) {
    h.broker
        .create_stream(
            "s",
            StreamConfig {
                partitions,
                ..StreamConfig::default()
            },
        )
        .expect("create");
}

fn owned_by_all(h: &Harness, members: &[&str]) -> Vec<Vec<u32>> {
    members
        .iter()
        .map(|m| {
            h.broker
                .heartbeat("s", "g", m)
                .expect("heartbeat")
                .partitions
        })
        .collect()
}

#[test]
fn partitions_are_split_among_live_members_and_move_when_one_dies() {
    let h = Harness::new();
    stream(&h, 4);
    let (a, joined) = h
        .broker
        .join_group("s", "g", "a", Some(1000))
        .expect("join");
    assert!(joined);
    assert_eq!(a.partitions, vec![0, 1, 2, 3]);
    let (b, _) = h
        .broker
        .join_group("s", "g", "b", Some(1000))
        .expect("join");
    assert_eq!(b.generation, a.generation + 1);
    let split = owned_by_all(&h, &["a", "b"]);
    assert_eq!(split, vec![vec![0, 2], vec![1, 3]]);
    // b stops heartbeating; a keeps going. Within the session timeout b still owns its share;
    // once it passes, every partition is a's: none is unowned longer than the timeout.
    for step in 1..=3u64 {
        h.advance(400);
        let a = h.broker.heartbeat("s", "g", "a").expect("a lives");
        let status = h.broker.group_status("s", "g").expect("status");
        assert!(status.partitions.iter().all(|p| p.owner.is_some()));
        if step * 400 > 1000 {
            assert_eq!(a.partitions, vec![0, 1, 2, 3]);
        } else {
            assert_eq!(a.partitions, vec![0, 2]);
        }
    }
    let status = h.broker.group_status("s", "g").expect("status");
    assert_eq!(status.members.len(), 1);
    assert!(status
        .partitions
        .iter()
        .all(|p| p.owner.as_deref() == Some("a")));
    // The dead member must rejoin; then it gets its share back.
    assert!(matches!(
        h.broker.heartbeat("s", "g", "b"),
        Err(BrokerError::NotFound { .. })
    ));
    h.broker
        .join_group("s", "g", "b", Some(1000))
        .expect("rejoin");
    assert_eq!(owned_by_all(&h, &["a", "b"]), vec![vec![0, 2], vec![1, 3]]);
    // Leaving hands over at once.
    h.broker.leave_group("s", "g", "a").expect("leave");
    assert_eq!(owned_by_all(&h, &["b"]), vec![vec![0, 1, 2, 3]]);
    // The tick expires silent members too.
    h.advance(5000);
    h.broker.tick();
    assert!(h
        .broker
        .group_status("s", "g")
        .expect("status")
        .members
        .is_empty());
}

#[test]
fn every_partition_has_exactly_one_owner_whatever_the_membership() {
    let h = Harness::new();
    stream(&h, 7);
    let names = ["m1", "m2", "m3", "m4", "m5"];
    for n in 1..=names.len() {
        h.broker
            .join_group("s", "g", names[n - 1], None)
            .expect("join");
        let all = owned_by_all(&h, &names[..n]);
        let mut seen = BTreeSet::new();
        for p in all.iter().flatten() {
            assert!(seen.insert(*p), "partition {p} owned twice");
        }
        assert_eq!(seen.len(), 7);
    }
}

#[test]
fn commits_are_fenced_durable_and_drive_lag() {
    let mut h = Harness::new();
    stream(&h, 2);
    let recs: Vec<NewRecord> = (0..10)
        .map(|i| NewRecord {
            key: Some(Bytes::from(format!("k{i}"))),
            body: Bytes::from_static(b"x"),
            ..NewRecord::default()
        })
        .collect();
    let out = h.broker.append_stream("s", recs).expect("append");
    block(out.durable);
    h.broker.join_group("s", "g", "a", None).expect("join");
    h.broker.join_group("s", "g", "b", None).expect("join");
    let a = h.broker.heartbeat("s", "g", "a").expect("hb");
    assert_eq!(a.partitions, vec![0]);
    // a may commit its own partition, not b's, and not with a stale generation.
    let d = h
        .broker
        .commit_offsets("s", "g", Some(("a", Some(a.generation))), &[(0, 1)])
        .expect("commit");
    block(d);
    assert!(matches!(
        h.broker
            .commit_offsets("s", "g", Some(("a", None)), &[(1, 1)]),
        Err(BrokerError::Conflict(_))
    ));
    assert!(matches!(
        h.broker
            .commit_offsets("s", "g", Some(("a", Some(a.generation - 1))), &[(0, 1)]),
        Err(BrokerError::Conflict(_))
    ));
    assert!(matches!(
        h.broker.commit_offsets("s", "g", None, &[(0, 1000)]),
        Err(BrokerError::InvalidArgument(_))
    ));
    let status = h.broker.group_status("s", "g").expect("status");
    let ends: Vec<u64> = status.partitions.iter().map(|p| p.end_offset).collect();
    assert_eq!(ends.iter().sum::<u64>(), 10);
    assert_eq!(status.partitions[0].committed, Some(1));
    assert_eq!(status.partitions[0].lag, ends[0] - 1);
    assert_eq!(status.partitions[1].lag, ends[1]);
    // Committed offsets survive a restart; memberships do not.
    h.restart();
    let status = h.broker.group_status("s", "g").expect("status");
    assert!(status.members.is_empty());
    assert_eq!(status.partitions[0].committed, Some(1));
    let (again, _) = h.broker.join_group("s", "g", "a", None).expect("join");
    assert_eq!(again.committed, vec![(0, Some(1)), (1, None)]);
    h.broker.delete_group("s", "g").expect("delete");
    h.restart();
    assert!(h.broker.group_status("s", "g").is_err());
    assert!(h.broker.stream_stats("s").expect("stats").groups.is_empty());
}
