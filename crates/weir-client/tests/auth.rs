//! Native-protocol authentication against a real server with a token file: the same tokens and
//! grants as the HTTP API (`weir_server::auth`), 401 without a good token, 403 without the grant.

mod common;

use common::{read_frame, token};

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir_client::{
    Client, ClientError, ConnectOptions, ConsumerOptions, ErrorCode, Message, ProducerOptions,
    QueueOptions,
};
use weir_proto::frame::{Frame, Hello, Payload};
use weir_server::auth::{Action, AuthConfig};
use weir_server::{RunningServer, ServerConfig};

const ADMIN: &str = "admin-token-0123456789";
const PRODUCER: &str = "producer-token-0123456789";
const CONSUMER: &str = "consumer-token-0123456789";
const WRONG: &str = "wrong-token-0123456789";

fn auth() -> Arc<AuthConfig> {
    let config = AuthConfig {
        tokens: vec![
            token("admin", ADMIN, &["*"], Action::Admin),
            token("producer", PRODUCER, &["orders*"], Action::Publish),
            token("consumer", CONSUMER, &["orders"], Action::Consume),
        ],
    };
    config.validate().expect("valid token file");
    Arc::new(config)
}

/// A server with the token file above and the queues `orders` and `billing`.
async fn server() -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = weir_server::start(ServerConfig {
        auth: Some(auth()),
        ..ServerConfig::ephemeral(dir.path())
    })
    .await
    .unwrap();
    let admin = Client::connect_with_token(server.native_addr(), ADMIN)
        .await
        .unwrap();
    for q in ["orders", "billing"] {
        admin
            .create_queue(q, QueueOptions::default())
            .await
            .unwrap();
    }
    (server, dir)
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or_else(|| panic!("no server code in {e}")),
    }
}

async fn send(stream: &mut TcpStream, id: u64, payload: Payload) {
    let mut out = BytesMut::new();
    Frame::new(id, payload).encode(&mut out).unwrap();
    stream.write_all(&out).await.unwrap();
}

/// A raw connection after a version-2 handshake; returns the `auth_required` flag too.
async fn raw(server: &RunningServer) -> (TcpStream, BytesMut, bool) {
    let mut stream = TcpStream::connect(server.native_addr()).await.unwrap();
    let mut out = BytesMut::new();
    Hello::current().encode(&mut out);
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let hello = read_frame(&mut stream, &mut buf).await.unwrap();
    let Payload::HelloOk(h) = hello.payload else {
        panic!("expected HelloOk, got {hello:?}");
    };
    (stream, buf, h.auth_required)
}

fn error_of(frame: &Frame) -> (u64, ErrorCode) {
    match &frame.payload {
        Payload::Error(e) => (frame.request_id, e.code),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

fn stats(queue: &str) -> Payload {
    Payload::QueueStats {
        queue: queue.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_is_unauthorized() {
    let (server, _dir) = server().await;
    let err = Client::connect(server.native_addr()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");

    // Over a raw socket: every request before Authenticate is refused, and the connection stays
    // open for the Authenticate that follows (pipelined right behind it here).
    let (mut stream, mut buf, auth_required) = raw(&server).await;
    assert!(auth_required);
    send(&mut stream, 1, Payload::Ping).await;
    send(&mut stream, 2, stats("orders")).await;
    send(
        &mut stream,
        3,
        Payload::Publish {
            queue: "orders".into(),
            messages: Vec::new(),
        },
    )
    .await;
    send(
        &mut stream,
        4,
        Payload::Authenticate {
            token: ADMIN.into(),
        },
    )
    .await;
    send(&mut stream, 5, stats("orders")).await;
    for id in 1..=3 {
        let frame = read_frame(&mut stream, &mut buf).await.unwrap();
        assert_eq!(error_of(&frame), (id, ErrorCode::Unauthorized));
    }
    let ok = read_frame(&mut stream, &mut buf).await.unwrap();
    assert_eq!((ok.request_id, ok.payload), (4, Payload::Ok));
    let info = read_frame(&mut stream, &mut buf).await.unwrap();
    assert_eq!(info.request_id, 5);
    assert!(matches!(info.payload, Payload::QueueInfo(_)), "{info:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_unauthorized_and_three_failures_close() {
    let (server, _dir) = server().await;
    let err = Client::connect_with_token(server.native_addr(), WRONG)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");

    let (mut stream, mut buf, _) = raw(&server).await;
    for (id, token) in [(1, WRONG), (2, ""), (3, "x")] {
        let token = token.to_string();
        send(&mut stream, id, Payload::Authenticate { token }).await;
    }
    for id in 1..=3 {
        let frame = read_frame(&mut stream, &mut buf).await.unwrap();
        assert_eq!(error_of(&frame), (id, ErrorCode::Unauthorized));
    }
    // Then the connection-level error, and the close.
    let frame = read_frame(&mut stream, &mut buf).await.unwrap();
    assert_eq!(error_of(&frame), (0, ErrorCode::Unauthorized));
    assert!(read_frame(&mut stream, &mut buf).await.is_none());

    // Before authentication, a large frame is refused before it is buffered.
    let (mut stream, mut buf, _) = raw(&server).await;
    let big = 1024 * 1024u32;
    let mut header = big.to_be_bytes().to_vec();
    header.extend_from_slice(&[0x20, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    stream.write_all(&header).await.unwrap();
    let frame = read_frame(&mut stream, &mut buf).await.unwrap();
    assert_eq!(error_of(&frame), (0, ErrorCode::TooLarge));
    assert!(read_frame(&mut stream, &mut buf).await.is_none());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_token_publishes_to_its_queues_only() {
    let (server, _dir) = server().await;
    let client = Client::connect_with_token(server.native_addr(), PRODUCER)
        .await
        .unwrap();
    assert!(client.server_limits().auth_required);
    let published = client
        .publish("orders", vec![Message::new("one")])
        .await
        .unwrap();
    assert_eq!(published.len(), 1);

    assert_eq!(
        code(client.publish("billing", vec![Message::new("no")]).await),
        ErrorCode::Forbidden
    );
    let wait = Duration::ZERO;
    assert_eq!(
        code(client.receive("orders", 1, wait, None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            client
                .subscribe("orders", ConsumerOptions::default())
                .await
                .map(|_| ())
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(client.ack("orders", vec!["r".into()]).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            client
                .create_queue("orders2", QueueOptions::default())
                .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(client.delete_queue("orders").await),
        ErrorCode::Forbidden
    );

    // Refusals leave the connection usable; stats need any valid token; a Producer just works.
    let producer = client.producer("orders", ProducerOptions::default());
    producer.send(Message::new("two")).await.unwrap();
    assert_eq!(client.queue_stats("billing").await.unwrap().total, 0);
    assert_eq!(client.queue_stats("orders").await.unwrap().total, 2);
    client.ping().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_token_subscribes_and_acks() {
    let (server, _dir) = server().await;
    let producer = Client::connect_with_token(server.native_addr(), PRODUCER)
        .await
        .unwrap();
    producer
        .publish("orders", vec![Message::new("a"), Message::new("b")])
        .await
        .unwrap();

    let client = Client::connect_with_token(server.native_addr(), CONSUMER)
        .await
        .unwrap();
    let mut consumer = client
        .subscribe("orders", ConsumerOptions::default())
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("a delivery in time")
            .expect("subscription open")
            .unwrap();
        bodies.push(delivery.body_str().unwrap().to_string());
        delivery.ack().await.unwrap();
    }
    bodies.sort();
    assert_eq!(bodies, ["a", "b"]);
    consumer.close().await.unwrap();

    assert_eq!(
        code(client.publish("orders", vec![Message::new("x")]).await),
        ErrorCode::Forbidden
    );
    // "orders" exactly: not "orders.eu", not "billing".
    assert_eq!(
        code(
            client
                .receive("billing", 1, Duration::ZERO, None)
                .await
                .map(|_| ())
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            client
                .create_queue("orders", QueueOptions::default())
                .await
                .map(|_| ())
        ),
        ErrorCode::Forbidden
    );
    let stats = client.queue_stats("orders").await.unwrap();
    assert_eq!((stats.acked_total, stats.total), (2, 0));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_manages_queues_and_may_do_everything() {
    let (server, _dir) = server().await;
    let admin = Client::connect_with(server.native_addr(), ConnectOptions::default().token(ADMIN))
        .await
        .unwrap();
    let info = admin
        .create_queue("payments", QueueOptions::default())
        .await
        .unwrap();
    assert!(info.created);
    admin
        .publish("payments", vec![Message::new("p")])
        .await
        .unwrap();
    let got = admin
        .receive("payments", 10, Duration::from_secs(1), None)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let done = admin
        .ack("payments", vec![got[0].receipt.clone()])
        .await
        .unwrap();
    assert_eq!(done.done, 1);
    admin.delete_queue("payments").await.unwrap();
    assert_eq!(
        code(admin.queue_stats("payments").await),
        ErrorCode::NotFound
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_clients_are_refused_when_auth_is_on() {
    let (server, _dir) = server().await;
    let mut stream = TcpStream::connect(server.native_addr()).await.unwrap();
    let mut out = BytesMut::new();
    Hello { version: 1 }.encode(&mut out);
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let frame = read_frame(&mut stream, &mut buf).await.unwrap();
    assert_eq!(error_of(&frame), (0, ErrorCode::Unauthorized));
    assert!(read_frame(&mut stream, &mut buf).await.is_none());

    // A second Authenticate on an authenticated connection is a conflict, not a switch.
    let (mut stream, mut buf, _) = raw(&server).await;
    for (id, token) in [(1, PRODUCER), (2, ADMIN)] {
        let token = token.to_string();
        send(&mut stream, id, Payload::Authenticate { token }).await;
    }
    let ok = read_frame(&mut stream, &mut buf).await.unwrap();
    assert_eq!((ok.request_id, ok.payload), (1, Payload::Ok));
    let frame = read_frame(&mut stream, &mut buf).await.unwrap();
    assert_eq!(error_of(&frame), (2, ErrorCode::Conflict));
    send(
        &mut stream,
        3,
        Payload::DeleteQueue {
            queue: "orders".into(),
        },
    )
    .await;
    let frame = read_frame(&mut stream, &mut buf).await.unwrap();
    assert_eq!(error_of(&frame), (3, ErrorCode::Forbidden));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_server_reports_its_body_limit_and_ignores_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::ephemeral(dir.path());
    config.broker.max_body_bytes = 4096;
    let server = weir_server::start(config).await.unwrap();
    let client = Client::connect_with_token(server.native_addr(), "any-token-at-all")
        .await
        .unwrap();
    let limits = client.server_limits();
    assert_eq!(limits.max_body_bytes, 4096);
    assert!(!limits.auth_required);
    assert_eq!(limits.version, weir_proto::frame::PROTOCOL_VERSION);
    client
        .create_queue("q", QueueOptions::default())
        .await
        .unwrap();
    client
        .publish("q", vec![Message::new(vec![0u8; 4096])])
        .await
        .unwrap();
    assert_eq!(
        code(
            client
                .publish("q", vec![Message::new(vec![0u8; 4097])])
                .await
        ),
        ErrorCode::TooLarge
    );

    // Without auth, Authenticate is accepted (and ignored); version 1 still works.
    let (mut stream, mut buf, auth_required) = raw(&server).await;
    assert!(!auth_required);
    let token = "whatever".to_string();
    send(&mut stream, 1, Payload::Authenticate { token }).await;
    let ok = read_frame(&mut stream, &mut buf).await.unwrap();
    assert_eq!((ok.request_id, ok.payload), (1, Payload::Ok));

    let mut v1 = TcpStream::connect(server.native_addr()).await.unwrap();
    let mut out = BytesMut::new();
    Hello { version: 1 }.encode(&mut out);
    v1.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let hello = read_frame(&mut v1, &mut buf).await.unwrap();
    let Payload::HelloOk(h) = hello.payload else {
        panic!("expected HelloOk, got {hello:?}");
    };
    assert_eq!((h.version, h.auth_required), (1, false));
    // Authenticate does not exist in version 1.
    let token = "whatever".to_string();
    send(&mut v1, 1, Payload::Authenticate { token }).await;
    let frame = read_frame(&mut v1, &mut buf).await.unwrap();
    assert_eq!(error_of(&frame), (1, ErrorCode::BadRequest));
    send(&mut v1, 2, Payload::Ping).await;
    let pong = read_frame(&mut v1, &mut buf).await.unwrap();
    assert_eq!((pong.request_id, pong.payload), (2, Payload::Pong));
    server.shutdown().await;
}
