//! Round-trip and robustness tests for the codec.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

use super::*;
use crate::limits::*;
use crate::ErrorCode;

pub(super) fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}"
}

pub(super) fn small_string(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(".{{{min},{max}}}"))
        .expect("valid regex")
        .prop_filter("byte length", move |s| s.len() >= min && s.len() <= max * 4)
        .prop_map(move |mut s| {
            while s.len() > max {
                s.pop();
            }
            s
        })
        .prop_filter("min length after trimming", move |s| s.len() >= min)
}

pub(super) fn receipt() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,64}"
}

pub(super) fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

pub(super) fn headers() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(small_string(1, 20), small_string(0, 40), 0..4)
}

pub(super) fn lease() -> impl Strategy<Value = u64> {
    MIN_LEASE_MS..=MAX_LEASE_MS
}

pub(super) fn out_message() -> impl Strategy<Value = OutMessage> {
    (
        option::of(small_string(1, MAX_MESSAGE_ID_BYTES)),
        option::of(bytes(64)),
        headers(),
        bytes(256),
        0..=MAX_PRIORITY,
        0..=MAX_DELAY_MS,
    )
        .prop_map(|(id, key, headers, body, priority, delay_ms)| OutMessage {
            id,
            key,
            headers,
            body,
            priority,
            delay_ms,
        })
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (
        small_string(1, MAX_MESSAGE_ID_BYTES),
        receipt(),
        option::of(bytes(64)),
        headers(),
        bytes(256),
        any::<u32>(),
        any::<u64>(),
        0..=MAX_PRIORITY,
    )
        .prop_map(
            |(id, receipt, key, headers, body, attempt, enqueued_at_ms, priority)| Delivery {
                id,
                receipt,
                key,
                headers,
                body,
                attempt,
                enqueued_at_ms,
                priority,
            },
        )
}

pub(super) fn options() -> impl Strategy<Value = QueueOptions> {
    (
        (
            option::of(any::<u64>()),
            option::of(any::<u64>()),
            option::of(any::<u64>()),
            option::of(lease()),
            option::of(1..=u32::MAX),
        ),
        (
            option::of(any::<u64>()),
            option::of(any::<u64>()),
            option::of(name()),
            option::of(any::<u64>()),
            option::of(any::<bool>()),
        ),
    )
        .prop_map(|((a, b, c, d, e), (f, g, h, i, j))| QueueOptions {
            max_depth: a,
            max_bytes: b,
            max_latency_ms: c,
            lease_ms: d,
            max_attempts: e,
            backoff_base_ms: f,
            backoff_max_ms: g,
            dead_letter_queue: h,
            dedup_window_ms: i,
            ordered_by_key: j,
        })
}

pub(super) fn info() -> impl Strategy<Value = QueueInfo> {
    (name(), any::<bool>(), any::<[u64; 15]>(), options()).prop_map(|(name, created, c, config)| {
        QueueInfo {
            name,
            created,
            ready: c[0],
            in_flight: c[1],
            delayed: c[2],
            total: c[3],
            bytes: c[4],
            published_total: c[5],
            delivered_total: c[6],
            acked_total: c[7],
            nacked_total: c[8],
            dead_lettered_total: c[9],
            refused_total: c[10],
            duplicates_total: c[11],
            redelivered_total: c[12],
            expired_leases_total: c[13],
            disk_bytes: c[14],
            config,
        }
    })
}

pub(super) fn receipts() -> impl Strategy<Value = Vec<String>> {
    vec(receipt(), 0..8)
}

pub(super) fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        Just(Payload::Ping),
        Just(Payload::Pong),
        Just(Payload::Ok),
        (name(), options()).prop_map(|(queue, options)| Payload::CreateQueue {
            queue,
            options: Box::new(options)
        }),
        name().prop_map(|queue| Payload::DeleteQueue { queue }),
        name().prop_map(|queue| Payload::QueueStats { queue }),
        (name(), vec(out_message(), 0..5))
            .prop_map(|(queue, messages)| Payload::Publish { queue, messages }),
        (
            name(),
            1..=MAX_RECEIVE_MESSAGES as u32,
            option::of(lease()),
            0..=MAX_WAIT_MS
        )
            .prop_map(|(queue, max, lease_ms, wait_ms)| Payload::Receive {
                target: Target::Queue(queue),
                max,
                lease_ms,
                wait_ms
            }),
        (name(), receipts()).prop_map(|(queue, receipts)| Payload::Ack {
            target: Target::Queue(queue),
            receipts
        }),
        (name(), receipts(), option::of(0..=MAX_DELAY_MS)).prop_map(
            |(queue, receipts, delay_ms)| Payload::Nack {
                target: Target::Queue(queue),
                receipts,
                delay_ms
            }
        ),
        (name(), receipts(), lease()).prop_map(|(queue, receipts, lease_ms)| Payload::Extend {
            target: Target::Queue(queue),
            receipts,
            lease_ms
        }),
        (name(), 0..=MAX_CREDITS, option::of(lease())).prop_map(|(queue, credits, lease_ms)| {
            Payload::Subscribe {
                target: Target::Queue(queue),
                credits,
                lease_ms,
            }
        }),
        (any::<u64>(), 1..=MAX_CREDITS).prop_map(|(subscription, credits)| {
            Payload::GrantCredits {
                subscription,
                credits,
            }
        }),
        any::<u64>().prop_map(|subscription| Payload::Unsubscribe { subscription }),
        (any::<(u16, u32, u32, u32, u32, u32)>(), any::<bool>()).prop_map(
            |((v, a, b, c, d, e), auth)| {
                Payload::HelloOk(HelloOk {
                    version: v,
                    max_frame_bytes: a,
                    max_batch_messages: b,
                    max_body_bytes: c,
                    max_in_flight: d,
                    max_credits: e,
                    // A version-1 HelloOk has no room for the flag.
                    auth_required: auth && v >= AUTH_PROTOCOL_VERSION,
                })
            }
        ),
        small_string(0, MAX_TOKEN_BYTES).prop_map(|token| Payload::Authenticate { token }),
        (
            proptest::sample::select(ErrorCode::ALL.to_vec()),
            any::<u64>(),
            small_string(0, 200)
        )
            .prop_map(|(code, retry_after_ms, message)| {
                Payload::Error(ErrorFrame {
                    code,
                    retry_after_ms,
                    message,
                })
            }),
        info().prop_map(|i| Payload::QueueInfo(Box::new(i))),
        vec(
            (small_string(1, MAX_MESSAGE_ID_BYTES), any::<bool>())
                .prop_map(|(id, duplicate)| PublishResult { id, duplicate }),
            0..6
        )
        .prop_map(Payload::Published),
        vec(delivery(), 0..5).prop_map(Payload::Deliveries),
        (any::<u32>(), receipts())
            .prop_map(|(done, invalid)| Payload::ReceiptsDone { done, invalid }),
    ]
}

proptest! {
    #[test]
    fn every_frame_round_trips(request_id in any::<u64>(), payload in payload()) {
        let frame = Frame::new(request_id, payload);
        let mut buf = BytesMut::new();
        frame.encode(&mut buf).unwrap();
        let (decoded, used) = Frame::decode(&buf).unwrap().unwrap();
        prop_assert_eq!(used, buf.len());
        prop_assert_eq!(decoded, frame);
        // Every strict prefix needs more bytes, never errs or yields a frame.
        for cut in [0, 1, 3, 4, 5, 13, buf.len() / 2, buf.len() - 1] {
            if cut < buf.len() {
                prop_assert_eq!(Frame::decode(&buf[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn pipelined_frames_decode_in_sequence(frames in vec((any::<u64>(), payload()), 1..6)) {
        let mut buf = BytesMut::new();
        for (id, p) in &frames {
            Frame::new(*id, p.clone()).encode(&mut buf).unwrap();
        }
        let mut at = 0;
        for (id, p) in frames {
            let (f, used) = Frame::decode(&buf[at..]).unwrap().unwrap();
            prop_assert_eq!(f, Frame::new(id, p));
            at += used;
        }
        prop_assert_eq!(at, buf.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in vec(any::<u8>(), 0..512)) {
        if let Ok(Some((_, used))) = Frame::decode(&raw) {
            prop_assert!(used <= raw.len());
        }
        let _ = Hello::decode(&raw);
    }

    #[test]
    fn corrupted_frames_never_panic(
        payload in payload(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut buf = BytesMut::new();
        Frame::new(1, payload).encode(&mut buf).unwrap();
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

pub(super) fn encoded(frame: &Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf).unwrap();
    buf
}

#[test]
fn oversized_length_prefix_is_refused_before_buffering() {
    let len = (MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
    let err = Frame::decode(&len).unwrap_err();
    assert!(matches!(err.reason, DecodeReason::FrameTooLarge { .. }));
    assert_eq!(err.code(), ErrorCode::TooLarge);
    assert_eq!(err.skip, None);
}

#[test]
fn short_length_prefix_is_refused() {
    let err = Frame::decode(&[0, 0, 0, 3, 1, 2, 3]).unwrap_err();
    assert!(matches!(
        err.reason,
        DecodeReason::FrameTooShort { len: 3, .. }
    ));
}

#[test]
fn unknown_type_keeps_request_id_and_is_skippable() {
    let mut buf = encoded(&Frame::new(42, Payload::Ping));
    buf[4] = 0x7e;
    let err = Frame::decode(&buf).unwrap_err();
    assert_eq!(err.reason, DecodeReason::UnknownFrameType(0x7e));
    assert_eq!(
        (err.request_id, err.skip, err.offset),
        (Some(42), Some(buf.len()), 4)
    );
}

#[test]
fn limits_are_enforced_on_decode() {
    let bad_name = Frame::new(
        1,
        Payload::DeleteQueue {
            queue: "../etc".into(),
        },
    );
    let err = Frame::decode(&encoded(&bad_name)).unwrap_err();
    assert!(matches!(err.reason, DecodeReason::BadName { .. }), "{err}");
    assert_eq!(err.offset, 14);

    let big_batch = Frame::new(
        2,
        Payload::Ack {
            target: "q".into(),
            receipts: vec!["r".into(); MAX_BATCH_MESSAGES + 1],
        },
    );
    let err = Frame::decode(&encoded(&big_batch)).unwrap_err();
    assert!(matches!(err.reason, DecodeReason::TooMany { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::TooLarge);

    let mut headers = BTreeMap::new();
    for i in 0..=MAX_HEADERS {
        headers.insert(format!("h{i}"), String::new());
    }
    let many_headers = Frame::new(
        3,
        Payload::Publish {
            queue: "q".into(),
            messages: vec![OutMessage {
                headers,
                ..OutMessage::default()
            }],
        },
    );
    let err = Frame::decode(&encoded(&many_headers)).unwrap_err();
    assert!(matches!(
        err.reason,
        DecodeReason::TooMany {
            what: "headers",
            ..
        }
    ));

    let long_id = Frame::new(
        4,
        Payload::Publish {
            queue: "q".into(),
            messages: vec![OutMessage {
                id: Some("x".repeat(MAX_MESSAGE_ID_BYTES + 1)),
                ..OutMessage::default()
            }],
        },
    );
    let err = Frame::decode(&encoded(&long_id)).unwrap_err();
    assert!(matches!(
        err.reason,
        DecodeReason::BadLength {
            what: "message id",
            ..
        }
    ));

    let priority = Frame::new(
        5,
        Payload::Publish {
            queue: "q".into(),
            messages: vec![OutMessage {
                priority: 10,
                ..OutMessage::default()
            }],
        },
    );
    let err = Frame::decode(&encoded(&priority)).unwrap_err();
    assert!(matches!(
        err.reason,
        DecodeReason::OutOfRange {
            what: "priority",
            ..
        }
    ));
    assert_eq!(err.skip, Some(encoded(&priority).len()));
}

#[test]
fn trailing_bytes_and_reserved_flags_are_errors() {
    let mut buf = encoded(&Frame::new(9, Payload::Ping));
    buf.extend_from_slice(&[0]);
    buf[3] += 1;
    let err = Frame::decode(&buf).unwrap_err();
    assert_eq!(err.reason, DecodeReason::TrailingBytes { extra: 1 });

    let mut buf = encoded(&Frame::new(9, Payload::Ping));
    buf[5] = 0x80;
    let err = Frame::decode(&buf).unwrap_err();
    assert_eq!(err.reason, DecodeReason::ReservedFlags(0x80));
}

#[test]
fn encode_refuses_what_the_wire_cannot_carry() {
    let mut buf = BytesMut::from(&b"keep"[..]);
    let huge = Frame::new(
        1,
        Payload::Publish {
            queue: "q".into(),
            messages: vec![OutMessage {
                body: Bytes::from(vec![0u8; MAX_FRAME_BYTES]),
                ..OutMessage::default()
            }],
        },
    );
    assert!(matches!(
        huge.encode(&mut buf),
        Err(EncodeError::FrameTooLarge { .. })
    ));
    assert_eq!(&buf[..], b"keep");
}

#[test]
fn handshake_errors_are_precise() {
    let err = Hello::decode(b"GET / HTTP/1.1").unwrap_err();
    assert!(matches!(err.reason, DecodeReason::BadMagic { found } if &found == b"GET "));
    assert!(matches!(
        Hello::decode(b"X").unwrap_err().reason,
        DecodeReason::BadMagic { .. }
    ));
    assert_eq!(Hello::decode(b"WEI"), Ok(None));
    let err = Hello::decode(b"WEIR\x00\x09\x00\x00").unwrap_err();
    assert_eq!(
        err.reason,
        DecodeReason::UnsupportedVersion {
            requested: 9,
            min: 1,
            max: 3
        }
    );
    assert!(err.to_string().contains("unsupported protocol version 9"));
}

#[test]
fn error_messages_are_truncated_on_a_char_boundary() {
    let f = Frame::error(
        1,
        ErrorCode::Internal,
        0,
        "é".repeat(MAX_ERROR_MESSAGE_BYTES),
    );
    let (back, _) = Frame::decode(&encoded(&f)).unwrap().unwrap();
    assert_eq!(back, f);
}

#[test]
fn encoded_len_helpers_match_the_codec() {
    let m = OutMessage {
        id: Some("abc".into()),
        key: Some(Bytes::from_static(b"k")),
        headers: [("a".to_string(), "b".to_string())].into(),
        body: Bytes::from_static(b"hello"),
        priority: 3,
        delay_ms: 5,
    };
    let one = encoded(&Frame::new(
        1,
        Payload::Publish {
            queue: "q".into(),
            messages: vec![m.clone()],
        },
    ));
    let none = encoded(&Frame::new(
        1,
        Payload::Publish {
            queue: "q".into(),
            messages: vec![],
        },
    ));
    assert_eq!(one.len() - none.len(), m.encoded_len());
    let d = Delivery {
        id: "i".into(),
        receipt: "r".into(),
        key: None,
        headers: [("x".to_string(), "yy".to_string())].into(),
        body: Bytes::from_static(b"body"),
        attempt: 1,
        enqueued_at_ms: 2,
        priority: 0,
    };
    let one = encoded(&Frame::new(1, Payload::Deliveries(vec![d.clone()])));
    let none = encoded(&Frame::new(1, Payload::Deliveries(vec![])));
    assert_eq!(one.len() - none.len(), d.encoded_len());
}

#[test]
fn authenticate_token_length_is_enforced_on_decode() {
    let at_limit = Frame::new(
        1,
        Payload::Authenticate {
            token: "t".repeat(MAX_TOKEN_BYTES),
        },
    );
    let (back, _) = Frame::decode(&encoded(&at_limit)).unwrap().unwrap();
    assert_eq!(back, at_limit);

    // The encoder lets a long token through (it fits a str16); the decoder refuses it, keeping the
    // request id so the error answers that request.
    let too_long = encoded(&Frame::new(
        2,
        Payload::Authenticate {
            token: "t".repeat(MAX_TOKEN_BYTES + 1),
        },
    ));
    let err = Frame::decode(&too_long).unwrap_err();
    assert!(
        matches!(
            err.reason,
            DecodeReason::BadLength {
                what: "token",
                len,
                max: MAX_TOKEN_BYTES,
                ..
            } if len == MAX_TOKEN_BYTES + 1
        ),
        "{err}"
    );
    assert_eq!((err.request_id, err.skip), (Some(2), Some(too_long.len())));
    assert_eq!(err.offset, 14);
}

#[test]
fn hello_ok_layout_follows_its_version() {
    let v1 = HelloOk {
        version: 1,
        max_frame_bytes: 1,
        max_batch_messages: 2,
        max_body_bytes: 3,
        max_in_flight: 4,
        max_credits: 5,
        auth_required: false,
    };
    let v2 = HelloOk {
        version: AUTH_PROTOCOL_VERSION,
        auth_required: true,
        ..v1.clone()
    };
    let one = encoded(&Frame::new(0, Payload::HelloOk(v1.clone())));
    let two = encoded(&Frame::new(0, Payload::HelloOk(v2.clone())));
    // Version 1: 14-byte header + u16 + 5 x u32, exactly as before; version 2 adds one bool.
    assert_eq!(one.len(), 14 + 2 + 5 * 4);
    assert_eq!(two.len(), one.len() + 1);
    assert_eq!(two[two.len() - 1], 1);
    assert_eq!(
        Frame::decode(&one).unwrap().unwrap().0.payload,
        Payload::HelloOk(v1.clone())
    );
    assert_eq!(
        Frame::decode(&two).unwrap().unwrap().0.payload,
        Payload::HelloOk(v2)
    );
    // A version-1 HelloOk cannot carry the flag: it is dropped, not smuggled in.
    let forced = encoded(&Frame::new(
        0,
        Payload::HelloOk(HelloOk {
            auth_required: true,
            ..v1.clone()
        }),
    ));
    assert_eq!(forced, one);
}

#[test]
fn authenticate_is_the_only_version_2_frame() {
    assert_eq!(
        Payload::Authenticate {
            token: String::new()
        }
        .since_version(),
        AUTH_PROTOCOL_VERSION
    );
    assert_eq!(Payload::Ping.since_version(), MIN_PROTOCOL_VERSION);
    assert_eq!(
        Hello::decode(b"WEIR\x00\x01\x00\x00"),
        Ok(Some((Hello { version: 1 }, 8)))
    );
    assert_eq!(
        Hello::decode(b"WEIR\x00\x02\x00\x00"),
        Ok(Some((Hello { version: 2 }, 8)))
    );
    assert_eq!(
        Hello::decode(b"WEIR\x00\x03\x00\x00"),
        Ok(Some((Hello::current(), 8)))
    );
}
