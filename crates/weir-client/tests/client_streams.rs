//! Streams and consumer groups over the native protocol (version 3) against a real server on real
//! files: appends, reads by offset and by timestamp, long polls, and a group of two members where
//! one leaves and the other takes every partition from the committed offsets.

mod common;

use common::{code, server};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_client::{
    Client, ErrorCode, GroupConsumer, GroupConsumerOptions, PartitionOffset, ProducerOptions,
    ReadFrom, Record, StartAt, StreamOptions,
};

fn partitions(n: u32) -> StreamOptions {
    StreamOptions {
        partitions: Some(n),
        ..StreamOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_then_read_by_offset_and_by_timestamp() {
    let (server, _dir) = server().await;
    let client = Client::connect(server.native_addr()).await.unwrap();
    let info = client.create_stream("clicks", partitions(2)).await.unwrap();
    assert!(info.created);
    assert_eq!((info.partitions, info.partition_stats.len()), (2, 2));

    let mut batch: Vec<Record> = (0..4)
        .map(|i| {
            Record::new(format!("k{i}"))
                .key("user-1")
                .header("n", i.to_string())
        })
        .collect();
    batch.extend((0..3).map(|i| Record::new(format!("u{i}"))));
    let at = client.append("clicks", batch).await.unwrap();
    assert_eq!(at.len(), 7);
    // One key, one partition, consecutive offsets.
    let keyed = at[0].partition;
    assert!(at[..4].iter().all(|p| p.partition == keyed));
    for w in at[..4].windows(2) {
        assert_eq!(w[1].offset, w[0].offset + 1);
    }
    let producer = client.stream_producer("clicks", ProducerOptions::default());
    assert_eq!(producer.stream(), "clicks");
    let one = producer
        .send(Record::new("k4").key("user-1"))
        .await
        .unwrap();
    assert_eq!(one.partition, keyed);

    // By offset, from 0: every record of the partition, in order, with key and headers.
    let read = client
        .read_stream("clicks", keyed, ReadFrom::Offset(0), 100, Duration::ZERO)
        .await
        .unwrap();
    let keyed_bodies: Vec<_> = read
        .records
        .iter()
        .filter(|r| r.key.as_deref() == Some(&b"user-1"[..]))
        .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
        .collect();
    assert_eq!(keyed_bodies, ["k0", "k1", "k2", "k3", "k4"]);
    let k1 = read.records.iter().find(|r| r.body == "k1").unwrap();
    assert_eq!(k1.headers.get("n").map(String::as_str), Some("1"));
    for w in read.records.windows(2) {
        assert_eq!(w[1].offset, w[0].offset + 1);
        assert!(w[1].timestamp_ms >= w[0].timestamp_ms);
    }
    assert_eq!(read.next_offset, read.records.last().unwrap().offset + 1);
    // From the middle, at most 2.
    let mid = client
        .read_stream("clicks", keyed, ReadFrom::Offset(1), 2, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(mid.records.len(), 2);
    assert_eq!((mid.records[0].offset, mid.next_offset), (1, 3));

    // By timestamp: only what was appended at or after the time.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cut = read.records.last().unwrap().timestamp_ms + 10;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = client
        .append("clicks", vec![Record::new("late").key("user-1")])
        .await
        .unwrap();
    let since = client
        .read_stream(
            "clicks",
            keyed,
            ReadFrom::Timestamp(cut),
            100,
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(since.records.len(), 1);
    assert_eq!(since.records[0].body, "late");
    assert_eq!(since.records[0].offset, late[0].offset);

    // A long poll at the end returns as soon as a record arrives.
    let end = since.next_offset;
    let poller = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = client
                .read_stream(
                    "clicks",
                    keyed,
                    ReadFrom::Offset(end),
                    10,
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .append("clicks", vec![Record::new("tail").key("user-1")])
        .await
        .unwrap();
    let (got, took) = poller.await.unwrap();
    assert_eq!(got.records[0].body, "tail");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // With nothing to read, a short wait answers empty at the same position.
    let empty = client
        .read_stream(
            "clicks",
            keyed,
            ReadFrom::Offset(got.next_offset),
            10,
            Duration::from_millis(100),
        )
        .await
        .unwrap();
    assert!(empty.records.is_empty());
    assert_eq!(empty.next_offset, got.next_offset);

    let stats = client.stream_stats("clicks").await.unwrap();
    let total: u64 = stats.partition_stats.iter().map(|p| p.end_offset).sum();
    assert_eq!(total, 10);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stream_requests_are_refused_and_change_nothing() {
    let (server, _dir) = server().await;
    let client = Client::connect(server.native_addr()).await.unwrap();
    client.create_stream("s", partitions(2)).await.unwrap();

    assert_eq!(
        code(client.create_stream("s", partitions(3)).await),
        Some(ErrorCode::Conflict)
    );
    // Partition 2 of 2 does not exist.
    assert_eq!(
        code(
            client
                .read_stream("s", 2, ReadFrom::Offset(0), 1, Duration::ZERO)
                .await
        ),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(
            client
                .read_stream("s", 0, ReadFrom::Offset(5), 1, Duration::ZERO)
                .await
        ),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(
            client
                .read_stream("nope", 0, ReadFrom::Offset(0), 1, Duration::ZERO)
                .await
        ),
        Some(ErrorCode::NotFound)
    );
    // A batch with one oversized body is refused whole.
    let too_big = vec![Record::new("ok"), Record::new(vec![0u8; 2 * 1024 * 1024])];
    assert_eq!(
        code(client.append("s", too_big).await),
        Some(ErrorCode::TooLarge)
    );
    // Committing past the end, or as a member that is not in the group.
    let past = vec![PartitionOffset {
        partition: 0,
        offset: 9,
    }];
    assert_eq!(
        code(client.commit_offsets("s", "g", None, past).await),
        Some(ErrorCode::BadRequest)
    );
    let zero = vec![PartitionOffset {
        partition: 0,
        offset: 0,
    }];
    assert_eq!(
        code(
            client
                .commit_offsets("s", "g", Some(("ghost", None)), zero)
                .await
        ),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(client.heartbeat_group("s", "g", "ghost").await),
        Some(ErrorCode::NotFound)
    );
    let stats = client.stream_stats("s").await.unwrap();
    assert_eq!(stats.partitions, 2);
    assert!(stats.partition_stats.iter().all(|p| p.end_offset == 0));
    // No refused commit created the group.
    assert_eq!(
        code(client.group_status("s", "g").await),
        Some(ErrorCode::NotFound)
    );
    client.delete_stream("s").await.unwrap();
    assert_eq!(
        code(client.stream_stats("s").await),
        Some(ErrorCode::NotFound)
    );
    server.shutdown().await;
}

/// Reads batches until `want` records came, committing each batch.
async fn consume(member: &mut GroupConsumer, want: usize) -> BTreeMap<u32, Vec<u64>> {
    let mut got: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut n = 0;
    while n < want {
        let batch = tokio::time::timeout(Duration::from_secs(10), member.next())
            .await
            .expect("records in time")
            .unwrap();
        n += batch.records.len();
        got.entry(batch.partition)
            .or_default()
            .extend(batch.records.iter().map(|r| r.offset));
        member.commit(&batch).await.unwrap();
    }
    got
}

async fn wait_for_partitions(member: &GroupConsumer, want: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while member.partitions() != want {
        assert!(
            Instant::now() < deadline,
            "{} owns {:?}, expected {want:?}",
            member.member(),
            member.partitions()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_two_hands_over_on_leave_from_committed_offsets() {
    let (server, _dir) = server().await;
    let client = Client::connect(server.native_addr()).await.unwrap();
    client.create_stream("orders", partitions(2)).await.unwrap();
    // Unkeyed records go round-robin: 6 per partition.
    let at = client
        .append(
            "orders",
            (0..12).map(|i| Record::new(format!("r{i}"))).collect(),
        )
        .await
        .unwrap();
    for p in 0..2 {
        assert_eq!(at.iter().filter(|a| a.partition == p).count(), 6);
    }
    let options = GroupConsumerOptions {
        session_timeout: Duration::from_millis(1500),
        max_records: 3,
        poll_wait: Duration::from_millis(200),
        start: StartAt::Earliest,
    };
    let mut a = client
        .group_consumer("orders", "billing", "a", options.clone())
        .await
        .unwrap();
    assert_eq!(a.partitions(), [0, 1]);
    let other = Client::connect(server.native_addr()).await.unwrap();
    let mut b = other
        .group_consumer("orders", "billing", "b", options)
        .await
        .unwrap();
    // Sorted by id, partition p goes to member p % 2: `a` learns it lost 1 from a heartbeat.
    assert_eq!(b.partitions(), [1]);
    wait_for_partitions(&a, &[0]).await;
    assert!(b.generation() >= a.generation());

    // Each reads (and commits) the first 3 records of its partition.
    let got_a = consume(&mut a, 3).await;
    let got_b = consume(&mut b, 3).await;
    assert_eq!(got_a, BTreeMap::from([(0, vec![0, 1, 2])]));
    assert_eq!(got_b, BTreeMap::from([(1, vec![0, 1, 2])]));
    let status = client.group_status("orders", "billing").await.unwrap();
    assert_eq!(status.members.len(), 2);
    assert_eq!(status.lag(), 6);

    // `a` leaves; `b` gets partition 0 and resumes at a's committed offset, 3.
    a.close().await.unwrap();
    wait_for_partitions(&b, &[0, 1]).await;
    let rest = consume(&mut b, 6).await;
    assert_eq!(
        rest,
        BTreeMap::from([(0, vec![3, 4, 5]), (1, vec![3, 4, 5])])
    );
    let status = client.group_status("orders", "billing").await.unwrap();
    assert_eq!(status.members.len(), 1);
    assert_eq!(status.members[0].id, "b");
    assert_eq!(status.lag(), 0);
    assert!(status
        .partitions
        .iter()
        .all(|p| p.committed == Some(6) && p.owner.as_deref() == Some("b")));

    // New records reach the remaining member; dropping it leaves the group.
    client
        .append("orders", vec![Record::new("late")])
        .await
        .unwrap();
    let late = tokio::time::timeout(Duration::from_secs(10), b.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late.records[0].body, "late");
    b.commit_all().await.unwrap();
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = client.group_status("orders", "billing").await.unwrap();
        if status.members.is_empty() {
            assert_eq!(status.lag(), 0);
            break;
        }
        assert!(Instant::now() < deadline, "the dropped member is still in");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_session_ended_joins_again_and_latest_skips_history() {
    let (server, _dir) = server().await;
    let client = Client::connect(server.native_addr()).await.unwrap();
    client.create_stream("log", partitions(1)).await.unwrap();
    client
        .append("log", vec![Record::new("old"), Record::new("older")])
        .await
        .unwrap();
    let mut m = client
        .group_consumer(
            "log",
            "tail",
            "m",
            GroupConsumerOptions {
                session_timeout: Duration::from_millis(300),
                poll_wait: Duration::from_millis(100),
                start: StartAt::Latest,
                ..GroupConsumerOptions::default()
            },
        )
        .await
        .unwrap();
    let first = m.generation();
    // Another member's leave bumps the generation without touching `m`'s partitions; `m`'s own
    // session is then ended behind its back (as after a long pause) and it joins again.
    client
        .join_group("log", "tail", "z", Some(Duration::from_millis(100)))
        .await
        .unwrap();
    client.leave_group("log", "tail", "m").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.group_status("log", "tail").await.unwrap();
        if status.members.iter().any(|x| x.id == "m") && m.generation() > first {
            break;
        }
        assert!(Instant::now() < deadline, "m did not join again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Latest: the history before the join is skipped.
    client
        .append("log", vec![Record::new("new")])
        .await
        .unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(10), m.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.records[0].body, "new");
    assert_eq!(batch.records[0].offset, 2);
    m.close().await.unwrap();
    server.shutdown().await;
}
