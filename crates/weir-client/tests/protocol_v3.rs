//! Protocol version 3 over raw sockets: older clients keep working and see the new frame types as
//! unknown; bad input in the new frames gets a precise error for that request and changes
//! nothing; the connection goes on.

mod common;

use common::{read_frame, server};

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir_client::{Client, ErrorCode, QueueOptions};
use weir_proto::frame::{Frame, Hello, Payload, Target, TaskSubmit};
use weir_server::RunningServer;

/// A raw connection after a hello asking for `version`; returns the `HelloOk` version too.
async fn raw(server: &RunningServer, version: u16) -> (TcpStream, BytesMut, u16) {
    let mut stream = TcpStream::connect(server.native_addr()).await.unwrap();
    let mut out = BytesMut::new();
    Hello { version }.encode(&mut out);
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let hello = read_frame(&mut stream, &mut buf).await.unwrap();
    let Payload::HelloOk(h) = hello.payload else {
        panic!("expected HelloOk, got {hello:?}");
    };
    (stream, buf, h.version)
}

async fn send(stream: &mut TcpStream, id: u64, payload: Payload) {
    let mut out = BytesMut::new();
    Frame::new(id, payload).encode(&mut out).unwrap();
    stream.write_all(&out).await.unwrap();
}

fn error_of(frame: &Frame) -> (u64, ErrorCode, String) {
    match &frame.payload {
        Payload::Error(e) => (frame.request_id, e.code, e.message.clone()),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_versions_see_new_frames_as_unknown_and_go_on() {
    let (server, _dir) = server().await;
    let client = Client::connect(server.native_addr()).await.unwrap();
    client
        .create_queue("q", QueueOptions::default())
        .await
        .unwrap();
    for version in [1, 2] {
        let (mut stream, mut buf, got) = raw(&server, version).await;
        assert_eq!(got, version);
        send(&mut stream, 1, Payload::TopicStats { topic: "t".into() }).await;
        // The subscription form of a consume frame is new too; the queue form is not.
        send(
            &mut stream,
            2,
            Payload::Ack {
                target: Target::subscription("t", "s"),
                receipts: vec![],
            },
        )
        .await;
        send(
            &mut stream,
            3,
            Payload::Ack {
                target: "q".into(),
                receipts: vec![],
            },
        )
        .await;
        send(&mut stream, 4, Payload::Ping).await;
        for id in [1u64, 2] {
            let frame = read_frame(&mut stream, &mut buf).await.unwrap();
            let (got_id, code, message) = error_of(&frame);
            assert_eq!((got_id, code), (id, ErrorCode::BadRequest));
            assert!(
                message.contains(&format!("in protocol version {version}")),
                "{message}"
            );
        }
        // Answers may come in any order (the ack waits for its durability, the ping does not).
        let mut rest = [
            read_frame(&mut stream, &mut buf).await.unwrap(),
            read_frame(&mut stream, &mut buf).await.unwrap(),
        ];
        rest.sort_by_key(|f| f.request_id);
        assert!(
            matches!(rest[0].payload, Payload::ReceiptsDone { done: 0, .. }),
            "{:?}",
            rest[0]
        );
        assert_eq!((rest[1].request_id, &rest[1].payload), (4, &Payload::Pong));
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_v3_requests_are_answered_precisely_and_change_nothing() {
    let (server, _dir) = server().await;
    let client = Client::connect(server.native_addr()).await.unwrap();
    client
        .create_queue("jobs", QueueOptions::default())
        .await
        .unwrap();
    let (mut stream, mut buf, version) = raw(&server, 3).await;
    assert_eq!(version, 3);

    // Task arguments that are not a JSON document.
    send(
        &mut stream,
        1,
        Payload::SubmitTask(Box::new(TaskSubmit {
            id: Some("t1".into()),
            queue: "jobs".into(),
            name: "n".into(),
            args: Bytes::from_static(b"{not json"),
            ..TaskSubmit::default()
        })),
    )
    .await;
    let (id, code, message) = error_of(&read_frame(&mut stream, &mut buf).await.unwrap());
    assert_eq!((id, code), (1, ErrorCode::BadRequest));
    assert!(message.contains("args is not a JSON document"), "{message}");

    // A v3 frame whose payload is cut short (the envelope intact): an error for that request.
    let mut out = BytesMut::new();
    Frame::new(
        2,
        Payload::JoinGroup {
            stream: "s".into(),
            group: "g".into(),
            member: "m".into(),
            session_timeout_ms: None,
        },
    )
    .encode(&mut out)
    .unwrap();
    let cut = out.len() - 3;
    let mut short = out[..cut].to_vec();
    short[..4].copy_from_slice(&((cut - 4) as u32).to_be_bytes());
    stream.write_all(&short).await.unwrap();
    let (id, code, message) = error_of(&read_frame(&mut stream, &mut buf).await.unwrap());
    assert_eq!((id, code), (2, ErrorCode::BadRequest));
    assert!(message.contains("member"), "{message}");

    // A name that would be a path outside the data directory.
    send(
        &mut stream,
        3,
        Payload::CreateStream {
            stream: "../evil".into(),
            options: Default::default(),
        },
    )
    .await;
    let (id, code, message) = error_of(&read_frame(&mut stream, &mut buf).await.unwrap());
    assert_eq!((id, code), (3, ErrorCode::BadRequest));
    assert!(message.contains("invalid stream"), "{message}");

    // Answers are frames only the server sends.
    send(&mut stream, 4, Payload::Appended(vec![])).await;
    let (id, code, _) = error_of(&read_frame(&mut stream, &mut buf).await.unwrap());
    assert_eq!((id, code), (4, ErrorCode::BadRequest));

    // The connection goes on, and nothing was created.
    send(&mut stream, 5, Payload::Ping).await;
    let pong = read_frame(&mut stream, &mut buf).await.unwrap();
    assert_eq!((pong.request_id, pong.payload), (5, Payload::Pong));
    let err = client.get_task("t1", Duration::ZERO).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    assert_eq!(client.queue_stats("jobs").await.unwrap().total, 0);
    let err = client.stream_stats("s").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    assert!(!server
        .broker()
        .list_streams()
        .iter()
        .any(|s| s.name.contains("evil")));
    server.shutdown().await;
}
