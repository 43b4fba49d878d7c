//! Round-trip and robustness tests for the frames of protocol version 3: topics (and the
//! subscription forms of the consume frames), streams with consumer groups, and tasks.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::tests::{bytes, encoded, headers, info, lease, name, options, out_message, receipts};
use super::*;
use crate::limits::*;
use crate::ErrorCode;

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
                options,
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
        task_submit().prop_map(Payload::SubmitTask),
        (task_id(), 0..=MAX_WAIT_MS).prop_map(|(id, wait_ms)| Payload::GetTask { id, wait_ms }),
        task_id().prop_map(|id| Payload::CancelTask { id }),
        topic_info().prop_map(Payload::TopicInfo),
        stream_info().prop_map(Payload::StreamInfo),
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
        task_info().prop_map(Payload::TaskInfo),
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

fn decode_err(payload: Payload) -> DecodeError {
    let buf = encoded(&Frame::new(3, payload));
    let err = Frame::decode(&buf).unwrap_err();
    assert_eq!(
        (err.request_id, err.skip),
        (Some(3), Some(buf.len())),
        "{err}"
    );
    err
}

fn out_of_range(err: &DecodeError, field: &str) -> bool {
    matches!(err.reason, DecodeReason::OutOfRange { what, .. } if what == field)
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
fn topic_limits_are_enforced_on_decode() {
    let err = decode_err(Payload::CreateSubscription {
        topic: "t".into(),
        subscription: "../x".into(),
        start: SubscriptionStart::Now,
        options: QueueOptions::default(),
    });
    assert!(
        matches!(
            err.reason,
            DecodeReason::BadName {
                what: "subscription",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.offset, 17);

    let mut bad_start = encoded(&Frame::new(
        3,
        Payload::CreateSubscription {
            topic: "t".into(),
            subscription: "s".into(),
            start: SubscriptionStart::Oldest,
            options: QueueOptions::default(),
        },
    ));
    bad_start[20] = 2;
    let err = Frame::decode(&bad_start).unwrap_err();
    assert!(out_of_range(&err, "start"), "{err}");

    let err = decode_err(Payload::PublishTopic {
        topic: "t".into(),
        messages: vec![OutMessage::default(); MAX_BATCH_MESSAGES + 1],
    });
    assert!(matches!(
        err.reason,
        DecodeReason::TooMany {
            what: "messages",
            ..
        }
    ));
    assert_eq!(err.code(), ErrorCode::TooLarge);

    let err = decode_err(Payload::Ack {
        target: Target::subscription("t", ""),
        receipts: vec![],
    });
    assert!(matches!(err.reason, DecodeReason::BadName { .. }), "{err}");
}

#[test]
fn stream_limits_are_enforced_on_decode() {
    let read = |partition, max, wait_ms| Payload::Read {
        stream: "s".into(),
        partition,
        from: ReadFrom::Offset(0),
        max,
        wait_ms,
    };
    assert!(out_of_range(
        &decode_err(read(MAX_STREAM_PARTITIONS, 1, 0)),
        "partition"
    ));
    assert!(out_of_range(&decode_err(read(0, 0, 0)), "max"));
    assert!(out_of_range(
        &decode_err(read(0, MAX_READ_RECORDS as u32 + 1, 0)),
        "max"
    ));
    assert!(out_of_range(
        &decode_err(read(0, 1, MAX_WAIT_MS + 1)),
        "wait_ms"
    ));

    let mut bad_kind = encoded(&Frame::new(3, read(0, 1, 0)));
    bad_kind[21] = 2;
    assert!(out_of_range(
        &Frame::decode(&bad_kind).unwrap_err(),
        "read from"
    ));

    let create = |partitions| Payload::CreateStream {
        stream: "s".into(),
        options: StreamOptions {
            partitions: Some(partitions),
            ..StreamOptions::default()
        },
    };
    assert!(out_of_range(&decode_err(create(0)), "partitions"));
    assert!(out_of_range(
        &decode_err(create(MAX_STREAM_PARTITIONS + 1)),
        "partitions"
    ));
    let err = decode_err(Payload::CreateStream {
        stream: "s".into(),
        options: StreamOptions {
            retention_ms: Some(0),
            ..StreamOptions::default()
        },
    });
    assert!(out_of_range(&err, "retention_ms"));

    let err = decode_err(Payload::Append {
        stream: "s".into(),
        records: vec![OutRecord::default(); MAX_BATCH_MESSAGES + 1],
    });
    assert!(matches!(
        err.reason,
        DecodeReason::TooMany {
            what: "records",
            ..
        }
    ));
    let err = decode_err(Payload::Append {
        stream: "s".into(),
        records: vec![OutRecord {
            key: Some(Bytes::from(vec![0u8; MAX_KEY_BYTES + 1])),
            ..OutRecord::default()
        }],
    });
    assert!(matches!(
        err.reason,
        DecodeReason::BadLength { what: "key", .. }
    ));

    let join = |t| Payload::JoinGroup {
        stream: "s".into(),
        group: "g".into(),
        member: "m".into(),
        session_timeout_ms: Some(t),
    };
    assert!(out_of_range(
        &decode_err(join(MIN_SESSION_TIMEOUT_MS - 1)),
        "session_timeout_ms"
    ));
    assert!(out_of_range(
        &decode_err(join(MAX_SESSION_TIMEOUT_MS + 1)),
        "session_timeout_ms"
    ));

    let err = decode_err(Payload::CommitOffsets {
        stream: "s".into(),
        group: "g".into(),
        member: None,
        generation: Some(4),
        offsets: vec![],
    });
    assert!(
        matches!(
            err.reason,
            DecodeReason::Inconsistent {
                what: "generation",
                ..
            }
        ),
        "{err}"
    );
    let err = decode_err(Payload::CommitOffsets {
        stream: "s".into(),
        group: "g".into(),
        member: Some("m".into()),
        generation: None,
        offsets: vec![PartitionOffset::default(); MAX_STREAM_PARTITIONS as usize + 1],
    });
    assert!(matches!(
        err.reason,
        DecodeReason::TooMany {
            what: "offsets",
            ..
        }
    ));
}

#[test]
fn task_limits_are_enforced_on_decode() {
    let submit = |f: fn(&mut TaskSubmit)| {
        let mut s = TaskSubmit {
            queue: "jobs".into(),
            name: "resize".into(),
            args: Bytes::from_static(b"null"),
            ..TaskSubmit::default()
        };
        f(&mut s);
        decode_err(Payload::SubmitTask(s))
    };
    let err = submit(|s| s.args = Bytes::new());
    assert!(matches!(
        err.reason,
        DecodeReason::BadLength { what: "args", .. }
    ));
    let err = submit(|s| s.name = String::new());
    assert!(matches!(
        err.reason,
        DecodeReason::BadLength {
            what: "task name",
            ..
        }
    ));
    let err = submit(|s| s.name = "n".repeat(MAX_TASK_NAME_BYTES + 1));
    assert!(matches!(
        err.reason,
        DecodeReason::BadLength {
            what: "task name",
            ..
        }
    ));
    let err = submit(|s| s.id = Some("x".repeat(MAX_MESSAGE_ID_BYTES + 1)));
    assert!(matches!(
        err.reason,
        DecodeReason::BadLength {
            what: "task id",
            ..
        }
    ));
    let err = submit(|s| s.queue = "a b".into());
    assert!(matches!(
        err.reason,
        DecodeReason::BadName { what: "queue", .. }
    ));
    assert!(out_of_range(
        &submit(|s| s.delay_ms = MAX_DELAY_MS + 1),
        "delay_ms"
    ));
    assert!(out_of_range(
        &submit(|s| s.max_attempts = Some(0)),
        "max_attempts"
    ));
    assert!(out_of_range(
        &submit(|s| s.timeout_ms = Some(1)),
        "timeout_ms"
    ));
    assert!(out_of_range(
        &submit(|s| s.backoff_ms = Some(MAX_DELAY_MS + 1)),
        "backoff_ms"
    ));
    let err = submit(|s| s.unique_key = Some(String::new()));
    assert!(matches!(
        err.reason,
        DecodeReason::BadLength {
            what: "unique_key",
            ..
        }
    ));

    let err = decode_err(Payload::GetTask {
        id: String::new(),
        wait_ms: 0,
    });
    assert!(matches!(
        err.reason,
        DecodeReason::BadLength {
            what: "task id",
            ..
        }
    ));
    assert!(out_of_range(
        &decode_err(Payload::GetTask {
            id: "x".into(),
            wait_ms: MAX_WAIT_MS + 1,
        }),
        "wait_ms"
    ));

    let mut bad_state = encoded(&Frame::new(
        3,
        Payload::TaskSubmitted {
            id: "x".into(),
            state: TaskState::Cancelled,
            created: false,
        },
    ));
    bad_state[17] = 6;
    assert!(out_of_range(
        &Frame::decode(&bad_state).unwrap_err(),
        "task state"
    ));
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

#[test]
fn request_ids_and_garbage_payloads_never_panic() {
    // Every v3 type byte over a few garbage payloads: an error with the request id, skippable.
    for type_byte in [
        0x13u8, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x40, 0x41, 0x42, 0x43, 0x44, 0x50, 0x60,
        0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x70, 0x71, 0x72, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c,
        0x8d, 0x8e,
    ] {
        for garbage in [
            &b""[..],
            b"\xff",
            b"\x00\x05abc",
            b"\xff\xff\xff\xff\xff\xff",
        ] {
            let mut buf = BytesMut::new();
            let len = (HEADER_BYTES + garbage.len()) as u32;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&[type_byte, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
            buf.extend_from_slice(garbage);
            match Frame::decode(&buf) {
                Ok(Some((f, _))) => panic!("garbage decoded as {f:?}"),
                Ok(None) => panic!("complete frame reported as partial"),
                Err(e) => assert_eq!((e.request_id, e.skip), (Some(5), Some(buf.len()))),
            }
        }
    }
}
