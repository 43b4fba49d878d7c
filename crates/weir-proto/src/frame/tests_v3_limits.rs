//! Decode-time limits of the frames of protocol version 3: every name, string, list, count and
//! wait out of bounds is refused with a precise reason, the request id kept and the frame
//! skippable; garbage payloads of every new type never decode and never panic.

use bytes::{Bytes, BytesMut};

use super::tests::encoded;
use super::*;
use crate::limits::*;
use crate::ErrorCode;

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
fn topic_limits_are_enforced_on_decode() {
    let err = decode_err(Payload::CreateSubscription {
        topic: "t".into(),
        subscription: "../x".into(),
        start: SubscriptionStart::Now,
        options: Box::default(),
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
            options: Box::default(),
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
        decode_err(Payload::SubmitTask(Box::new(s)))
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
