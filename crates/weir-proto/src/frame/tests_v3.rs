//! Round-trip and robustness tests for the frames of protocol version 3: topics (and the
//! subscription forms of the consume frames), streams with consumer groups, and tasks.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::tests::{bytes, encoded, headers, info, lease, name, options, out_message, receipts};
use super::*;
use crate::limits::*;

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        name().prop_map(Target::Queue),
        (name(), name()).prop_map(|(t, s)| Target::subscription(t, s)),
    ]
}

fn subscription_target() -> impl Strategy<Value = Target> {
    (name(), name()).prop_map(|(t, s)| Target::subscription(t, s))
}

fn start() -> impl Strategy<Value = SubscriptionStart> {
    prop_oneof![
        Just(SubscriptionStart::Now),
        Just(SubscriptionStart::Oldest)
    ]
}

fn topic_info() -> impl Strategy<Value = TopicInfo> {
    (
        name(),
        any::<bool>(),
        any::<[u64; 7]>(),
        option::of(name()),
        vec(info(), 0..3),
    )
        .prop_map(
            |(name, created, c, slowest_subscription, subscriptions)| TopicInfo {
                name,
                created,
                dedup_window_ms: c[0],
                published_total: c[1],
                duplicates_total: c[2],
                refused_total: c[3],
                disk_bytes: c[4],
                start_offset: c[5],
                next_offset: c[6],
                slowest_subscription,
                subscriptions,
            },
        )
}

fn partition() -> impl Strategy<Value = u32> {
    0..MAX_STREAM_PARTITIONS
}

fn stream_options() -> impl Strategy<Value = StreamOptions> {
    (
        option::of(1..=MAX_STREAM_PARTITIONS),
        option::of(1..=u64::MAX),
        option::of(1..=u64::MAX),
    )
        .prop_map(
            |(partitions, retention_ms, retention_bytes)| StreamOptions {
                partitions,
                retention_ms,
                retention_bytes,
            },
        )
}

fn stream_info() -> impl Strategy<Value = StreamInfo> {
    (
        name(),
        any::<bool>(),
        stream_options(),
        vec((partition(), any::<[u64; 4]>()), 0..4),
        vec(name(), 0..4),
    )
        .prop_map(|(name, created, o, ps, groups)| StreamInfo {
            name,
            created,
            partitions: o.partitions.unwrap_or(1),
            retention_ms: o.retention_ms,
            retention_bytes: o.retention_bytes,
            partition_stats: ps
                .into_iter()
                .map(|(partition, c)| PartitionInfo {
                    partition,
                    start_offset: c[0],
                    end_offset: c[1],
                    disk_bytes: c[2],
                    segments: c[3],
                })
                .collect(),
            groups,
        })
}

fn out_record() -> impl Strategy<Value = OutRecord> {
    (option::of(bytes(64)), headers(), bytes(256)).prop_map(|(key, headers, body)| OutRecord {
        key,
        headers,
        body,
    })
}

fn stream_record() -> impl Strategy<Value = StreamRecord> {
    (
        any::<(u64, u64)>(),
        option::of(bytes(64)),
        headers(),
        bytes(256),
    )
        .prop_map(
            |((offset, timestamp_ms), key, headers, body)| StreamRecord {
                offset,
                timestamp_ms,
                key,
                headers,
                body,
            },
        )
}

fn positions(max: usize) -> impl Strategy<Value = Vec<PartitionOffset>> {
    vec(
        (partition(), any::<u64>())
            .prop_map(|(partition, offset)| PartitionOffset { partition, offset }),
        0..max,
    )
}

fn read_from() -> impl Strategy<Value = ReadFrom> {
    prop_oneof![
        any::<u64>().prop_map(ReadFrom::Offset),
        any::<u64>().prop_map(ReadFrom::Timestamp),
    ]
}

fn assignment() -> impl Strategy<Value = GroupAssignment> {
    (
        any::<(bool, u64, u64)>(),
        vec(partition(), 0..5),
        vec((partition(), option::of(any::<u64>())), 0..5),
        0..=MAX_GROUP_MEMBERS as u32,
    )
        .prop_map(
            |((joined, generation, session_timeout_ms), partitions, committed, members)| {
                GroupAssignment {
                    joined,
                    generation,
                    partitions,
                    committed: committed
                        .into_iter()
                        .map(|(partition, offset)| PartitionCommit { partition, offset })
                        .collect(),
                    members,
                    session_timeout_ms,
                }
            },
        )
}

fn group_info() -> impl Strategy<Value = GroupInfo> {
    (
        name(),
        any::<u64>(),
        vec((name(), vec(partition(), 0..4), any::<u64>()), 0..4),
        vec(
            (
                partition(),
                option::of(name()),
                option::of(any::<u64>()),
                any::<(u64, u64)>(),
            ),
            0..4,
        ),
    )
        .prop_map(|(name, generation, members, partitions)| GroupInfo {
            name,
            generation,
            members: members
                .into_iter()
                .map(|(id, partitions, expires_at_ms)| GroupMember {
                    id,
                    partitions,
                    expires_at_ms,
                })
                .collect(),
            partitions: partitions
                .into_iter()
                .map(
                    |(partition, owner, committed, (end_offset, lag))| PartitionLag {
                        partition,
                        owner,
                        committed,
                        end_offset,
                        lag,
                    },
                )
                .collect(),
        })
}

fn task_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9:._-]{1,128}"
}

fn json_doc() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        Just(Bytes::from_static(b"null")),
        "[a-z]{0,20}".prop_map(|s| Bytes::from(format!("{{\"s\":\"{s}\"}}"))),
    ]
}

fn task_state() -> impl Strategy<Value = TaskState> {
    proptest::sample::select(TaskState::ALL.to_vec())
}

fn task_submit() -> impl Strategy<Value = TaskSubmit> {
    (
        (option::of(task_id()), name(), "[a-z_]{1,40}", json_doc()),
        (
            0..=MAX_DELAY_MS,
            option::of(1..=u32::MAX),
            option::of(lease()),
            option::of(0..=MAX_DELAY_MS),
            option::of(task_id()),
        ),
    )
        .prop_map(
            |((id, queue, name, args), (delay_ms, max_attempts, timeout_ms, backoff_ms, key))| {
                TaskSubmit {
                    id,
                    queue,
                    name,
                    args,
                    delay_ms,
                    max_attempts,
                    timeout_ms,
                    backoff_ms,
                    unique_key: key,
                }
            },
        )
}

fn task_info() -> impl Strategy<Value = TaskInfo> {
    let attempt = (
        any::<(u32, u64)>(),
        option::of(any::<u64>()),
        option::of("[a-z]{0,20}"),
        option::of(".{0,40}"),
    )
        .prop_map(
            |((number, started_at_ms), finished_at_ms, worker, error)| TaskAttempt {
                number,
                started_at_ms,
                finished_at_ms,
                worker,
                error,
            },
        );
    (
        (task_id(), name(), "[a-z_]{1,40}", task_state()),
        (
            any::<(u32, u32, u64, u64)>(),
            json_doc(),
            option::of(json_doc()),
        ),
        (
            option::of(".{0,40}"),
            option::of(task_id()),
            option::of(task_id()),
            vec(attempt, 0..3),
        ),
    )
        .prop_map(
            |(
                (id, queue, name, state),
                ((attempts, max_attempts, created_at_ms, updated_at_ms), args, result),
                (error, workflow, unique_key, history),
            )| TaskInfo {
                id,
                queue,
                name,
                state,
                attempts,
                max_attempts,
                args,
                result,
                error,
                created_at_ms,
                updated_at_ms,
                workflow,
                unique_key,
                history,
            },
        )
}

/// Every frame type of version 3 (and the consume frames with either target).
fn payload_v3() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (name(), option::of(any::<u64>())).prop_map(|(topic, dedup_window_ms)| {
            Payload::CreateTopic {
                topic,
                options: TopicOptions { dedup_window_ms },
            }
        }),
        name().prop_map(|topic| Payload::DeleteTopic { topic }),
        name().prop_map(|topic| Payload::TopicStats { topic }),
        (name(), name(), start(), options()).prop_map(|(topic, subscription, start, options)| {
            Payload::CreateSubscription {
                topic,
                subscription,
                start,
                options: Box::new(options),
            }
        }),
        (name(), name()).prop_map(|(topic, subscription)| Payload::DeleteSubscription {
            topic,
            subscription
        }),
        (name(), vec(out_message(), 0..4))
            .prop_map(|(topic, messages)| Payload::PublishTopic { topic, messages }),
        (
            target(),
            1..=MAX_RECEIVE_MESSAGES as u32,
            option::of(lease()),
            0..=MAX_WAIT_MS
        )
            .prop_map(|(target, max, lease_ms, wait_ms)| Payload::Receive {
                target,
                max,
                lease_ms,
                wait_ms
            }),
        (target(), receipts()).prop_map(|(target, receipts)| Payload::Ack { target, receipts }),
        (target(), receipts(), option::of(0..=MAX_DELAY_MS)).prop_map(
            |(target, receipts, delay_ms)| Payload::Nack {
                target,
                receipts,
                delay_ms
            }
        ),
        (target(), receipts(), lease()).prop_map(|(target, receipts, lease_ms)| {
            Payload::Extend {
                target,
                receipts,
                lease_ms,
            }
        }),
        (subscription_target(), 0..=MAX_CREDITS, option::of(lease())).prop_map(
            |(target, credits, lease_ms)| Payload::Subscribe {
                target,
                credits,
                lease_ms
            }
        ),
        (name(), stream_options())
            .prop_map(|(stream, options)| Payload::CreateStream { stream, options }),
        name().prop_map(|stream| Payload::DeleteStream { stream }),
        name().prop_map(|stream| Payload::StreamStats { stream }),
        (name(), vec(out_record(), 0..4))
            .prop_map(|(stream, records)| Payload::Append { stream, records }),
        (
            name(),
            partition(),
            read_from(),
            1..=MAX_READ_RECORDS as u32,
            0..=MAX_WAIT_MS
        )
            .prop_map(|(stream, partition, from, max, wait_ms)| Payload::Read {
                stream,
                partition,
                from,
                max,
                wait_ms
            }),
        (
            name(),
            name(),
            name(),
            option::of(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS)
        )
            .prop_map(
                |(stream, group, member, session_timeout_ms)| Payload::JoinGroup {
                    stream,
                    group,
                    member,
                    session_timeout_ms
                }
            ),
        (name(), name(), name()).prop_map(|(stream, group, member)| Payload::Heartbeat {
            stream,
            group,
            member
        }),
        (name(), name(), name()).prop_map(|(stream, group, member)| Payload::LeaveGroup {
            stream,
            group,
            member
        }),
        (
            name(),
            name(),
            option::of((name(), option::of(any::<u64>()))),
            positions(5)
        )
            .prop_map(|(stream, group, member, offsets)| Payload::CommitOffsets {
                stream,
                group,
                generation: member.as_ref().and_then(|m| m.1),
                member: member.map(|m| m.0),
                offsets,
            }),
        (name(), name()).prop_map(|(stream, group)| Payload::GroupStatus { stream, group }),
        task_submit().prop_map(|t| Payload::SubmitTask(Box::new(t))),
        (task_id(), 0..=MAX_WAIT_MS).prop_map(|(id, wait_ms)| Payload::GetTask { id, wait_ms }),
        task_id().prop_map(|id| Payload::CancelTask { id }),
        topic_info().prop_map(|t| Payload::TopicInfo(Box::new(t))),
        stream_info().prop_map(|s| Payload::StreamInfo(Box::new(s))),
        positions(5).prop_map(Payload::Appended),
        (vec(stream_record(), 0..4), any::<u64>()).prop_map(|(records, next_offset)| {
            Payload::Records {
                records,
                next_offset,
            }
        }),
        assignment().prop_map(Payload::GroupAssignment),
        group_info().prop_map(Payload::GroupInfo),
        (task_id(), task_state(), any::<bool>())
            .prop_map(|(id, state, created)| Payload::TaskSubmitted { id, state, created }),
        task_info().prop_map(|t| Payload::TaskInfo(Box::new(t))),
    ]
}

proptest! {
    #[test]
    fn every_v3_frame_round_trips(request_id in any::<u64>(), payload in payload_v3()) {
        let frame = Frame::new(request_id, payload);
        let buf = encoded(&frame);
        let (decoded, used) = Frame::decode(&buf).unwrap().unwrap();
        prop_assert_eq!(used, buf.len());
        prop_assert_eq!(decoded, frame);
        for cut in [0, 1, 4, 13, buf.len() / 2, buf.len() - 1] {
            if cut < buf.len() {
                prop_assert_eq!(Frame::decode(&buf[..cut]), Ok(None));
            }
        }
    }

    /// The payload cut short inside an intact envelope (the length prefix says it ends early):
    /// a precise error for that request, which the reader may skip; never a frame, never a panic.
    #[test]
    fn truncated_v3_payloads_are_skippable_errors(
        payload in payload_v3(),
        cut in any::<prop::sample::Index>(),
    ) {
        let buf = encoded(&Frame::new(7, payload));
        let body = buf.len() - LENGTH_BYTES - HEADER_BYTES;
        prop_assume!(body > 0);
        let keep = cut.index(body);
        let mut short = buf[..LENGTH_BYTES + HEADER_BYTES + keep].to_vec();
        let len = (HEADER_BYTES + keep) as u32;
        short[..4].copy_from_slice(&len.to_be_bytes());
        let err = Frame::decode(&short).unwrap_err();
        prop_assert_eq!(err.request_id, Some(7));
        prop_assert_eq!(err.skip, Some(short.len()));
    }

    /// Trailing garbage after a whole payload is refused, never ignored.
    #[test]
    fn trailing_garbage_after_v3_payloads_is_refused(
        payload in payload_v3(),
        extra in vec(any::<u8>(), 1..8),
    ) {
        let mut buf = encoded(&Frame::new(9, payload)).to_vec();
        buf.extend_from_slice(&extra);
        let len = (buf.len() - LENGTH_BYTES) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let err = Frame::decode(&buf).unwrap_err();
        prop_assert!(matches!(err.reason, DecodeReason::TrailingBytes { .. }), "{}", err);
        prop_assert_eq!(err.skip, Some(buf.len()));
    }

    #[test]
    fn corrupted_v3_frames_never_panic(
        payload in payload_v3(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut buf = encoded(&Frame::new(1, payload));
        for (i, b) in flips {
            let i = i.index(buf.len());
            buf[i] = b;
        }
        match Frame::decode(&buf) {
            Ok(Some((_, used))) => prop_assert!(used <= buf.len()),
            Ok(None) => {}
            Err(e) => {
                if let Some(skip) = e.skip {
                    prop_assert!(skip <= buf.len());
                }
            }
        }
    }
}

#[test]
fn subscription_targets_use_their_own_type_bytes() {
    let sub = Target::subscription("news", "mail");
    let cases = [
        (
            Payload::Receive {
                target: sub.clone(),
                max: 1,
                lease_ms: None,
                wait_ms: 0,
            },
            0x41,
        ),
        (
            Payload::Ack {
                target: sub.clone(),
                receipts: vec![],
            },
            0x42,
        ),
        (
            Payload::Nack {
                target: sub.clone(),
                receipts: vec![],
                delay_ms: None,
            },
            0x43,
        ),
        (
            Payload::Extend {
                target: sub.clone(),
                receipts: vec![],
                lease_ms: MIN_LEASE_MS,
            },
            0x44,
        ),
        (
            Payload::Subscribe {
                target: sub.clone(),
                credits: 1,
                lease_ms: None,
            },
            0x50,
        ),
    ];
    for (payload, type_byte) in cases {
        assert_eq!(payload.type_byte(), type_byte);
        assert_eq!(payload.since_version(), TOPICS_PROTOCOL_VERSION);
        let buf = encoded(&Frame::new(1, payload.clone()));
        assert_eq!(buf[4], type_byte);
        // The target is `name topic, name subscription` right after the header.
        assert_eq!(&buf[14..22], b"\x00\x04news\x00\x04");
        let mut queue_form = payload;
        match &mut queue_form {
            Payload::Receive { target, .. }
            | Payload::Ack { target, .. }
            | Payload::Nack { target, .. }
            | Payload::Extend { target, .. }
            | Payload::Subscribe { target, .. } => *target = Target::queue("news"),
            _ => unreachable!("only consume frames are listed"),
        }
        assert_eq!(queue_form.type_byte(), type_byte - 0x20);
        assert_eq!(queue_form.since_version(), MIN_PROTOCOL_VERSION);
    }
}

#[test]
fn queue_frames_are_byte_identical_to_version_2() {
    // A version-2 peer's Receive: type 0x21, name "q", max 5, no lease, wait 100.
    let v2 = b"\x00\x00\x00\x1a\x21\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01q\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x64";
    let (frame, used) = Frame::decode(v2).unwrap().unwrap();
    assert_eq!(used, v2.len());
    let expected = Payload::Receive {
        target: "q".into(),
        max: 5,
        lease_ms: None,
        wait_ms: 100,
    };
    assert_eq!(frame.payload, expected);
    assert_eq!(&encoded(&frame)[..], &v2[..]);
}

#[test]
fn only_v3_frames_need_version_3() {
    let v3 = [
        Payload::TopicStats { topic: "t".into() },
        Payload::StreamStats { stream: "s".into() },
        Payload::CancelTask { id: "x".into() },
        Payload::Appended(vec![]),
        Payload::TaskSubmitted {
            id: "x".into(),
            state: TaskState::Queued,
            created: true,
        },
    ];
    for p in v3 {
        assert_eq!(p.since_version(), TOPICS_PROTOCOL_VERSION, "{p:?}");
    }
    let older = [
        Payload::Ping,
        Payload::Ok,
        Payload::QueueStats { queue: "q".into() },
        Payload::Deliveries(vec![]),
        Payload::ReceiptsDone {
            done: 0,
            invalid: vec![],
        },
    ];
    for p in older {
        assert!(p.since_version() < TOPICS_PROTOCOL_VERSION, "{p:?}");
    }
}

#[test]
fn encoded_len_helpers_match_the_codec() {
    let r = OutRecord {
        key: Some(Bytes::from_static(b"key")),
        headers: [("a".to_string(), "bc".to_string())].into(),
        body: Bytes::from_static(b"body"),
    };
    let append = |records| {
        encoded(&Frame::new(
            1,
            Payload::Append {
                stream: "s".into(),
                records,
            },
        ))
        .len()
    };
    assert_eq!(append(vec![r.clone()]) - append(vec![]), r.encoded_len());
    let sr = StreamRecord {
        offset: 1,
        timestamp_ms: 2,
        key: None,
        headers: r.headers.clone(),
        body: r.body.clone(),
    };
    let records = |records| {
        encoded(&Frame::new(
            1,
            Payload::Records {
                records,
                next_offset: 0,
            },
        ))
        .len()
    };
    assert_eq!(
        records(vec![sr.clone()]) - records(vec![]),
        sr.encoded_len()
    );
}

#[test]
fn task_states_have_stable_names_and_bytes() {
    let names: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "queued",
            "running",
            "retrying",
            "succeeded",
            "dead",
            "cancelled"
        ]
    );
    assert_eq!(TaskState::ALL.iter().filter(|s| s.is_final()).count(), 3);
}

/// One valid frame of every version-3 type, as seeds for the `frame_decode` fuzz target. Run with
/// `cargo test -p weir-proto -- --ignored write_fuzz_seeds` to refresh
/// `fuzz/corpus/frame_decode/v3_*`.
#[test]
#[ignore = "writes files: run by hand to refresh the fuzz corpus"]
fn write_fuzz_seeds() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/frame_decode");
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Default::default()),
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let payload = payload_v3().new_tree(&mut runner).unwrap().current();
        let type_byte = payload.type_byte();
        if seen.insert(type_byte) {
            let buf = encoded(&Frame::new(1, payload));
            std::fs::write(dir.join(format!("v3_{type_byte:02x}")), &buf[..]).unwrap();
        }
    }
    assert!(seen.len() >= 30, "only {} types seen", seen.len());
}
