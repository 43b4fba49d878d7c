//! Bad input over raw sockets: the server answers precisely, closes only what it must, and keeps
//! serving everyone else.

mod common;

use common::{read_frame, server};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir_client::{Client, ErrorCode};
use weir_proto::frame::{Frame, Hello, Payload};
use weir_server::{RunningServer, ServerConfig};

async fn handshaken(server: &RunningServer) -> (TcpStream, BytesMut) {
    let mut stream = TcpStream::connect(server.native_addr()).await.unwrap();
    let mut out = BytesMut::new();
    Hello::current().encode(&mut out);
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let hello = read_frame(&mut stream, &mut buf).await.unwrap();
    assert!(matches!(hello.payload, Payload::HelloOk(_)), "{hello:?}");
    (stream, buf)
}

fn error_of(frame: &Frame) -> (u64, ErrorCode, String) {
    match &frame.payload {
        Payload::Error(e) => (frame.request_id, e.code, e.message.clone()),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_hello_gets_an_error_then_close() {
    let (server, _dir) = server().await;
    let mut stream = TcpStream::connect(server.native_addr()).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = BytesMut::new();
    let frame = read_frame(&mut stream, &mut buf).await.unwrap();
    let (id, code, message) = error_of(&frame);
    assert_eq!((id, code), (0, ErrorCode::BadRequest));
    assert!(message.contains("bad magic"), "{message}");
    assert!(read_frame(&mut stream, &mut buf).await.is_none());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_version_gets_a_precise_error_then_close() {
    let (server, _dir) = server().await;
    let mut stream = TcpStream::connect(server.native_addr()).await.unwrap();
    let mut out = BytesMut::new();
    Hello { version: 99 }.encode(&mut out);
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let frame = read_frame(&mut stream, &mut buf).await.unwrap();
    let (_, code, message) = error_of(&frame);
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(
        message.contains("unsupported protocol version 99"),
        "{message}"
    );
    assert!(read_frame(&mut stream, &mut buf).await.is_none());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_is_refused_and_others_keep_being_served() {
    let (server, _dir) = server().await;
    let other = Client::connect(server.native_addr()).await.unwrap();
    let (mut stream, mut buf) = handshaken(&server).await;
    // A length prefix of 4 GiB - 1: refused before any of it is buffered.
    stream
        .write_all(&[0xff, 0xff, 0xff, 0xff, 0x20])
        .await
        .unwrap();
    let frame = read_frame(&mut stream, &mut buf).await.unwrap();
    let (_, code, message) = error_of(&frame);
    assert_eq!(code, ErrorCode::TooLarge, "{message}");
    assert!(read_frame(&mut stream, &mut buf).await.is_none());
    other.ping().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_fails_alone_and_the_connection_goes_on() {
    let (server, _dir) = server().await;
    let (mut stream, mut buf) = handshaken(&server).await;
    let mut out = BytesMut::new();
    Frame::new(7, Payload::Ping).encode(&mut out).unwrap();
    out[4] = 0x7e; // unknown frame type, intact envelope
    Frame::new(8, Payload::Ping).encode(&mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let first = read_frame(&mut stream, &mut buf).await.unwrap();
    let (id, code, message) = error_of(&first);
    assert_eq!((id, code), (7, ErrorCode::BadRequest));
    assert!(message.contains("unknown frame type 0x7e"), "{message}");
    let second = read_frame(&mut stream, &mut buf).await.unwrap();
    assert_eq!(second, Frame::new(8, Payload::Pong));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_politely() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::ephemeral(dir.path())
    };
    let server = weir_server::start(config).await.unwrap();
    let first = Client::connect(server.native_addr()).await.unwrap();
    let err = Client::connect(server.native_addr()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Busy), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("too many connections"), "{err}");
    first.ping().await.unwrap();
    drop(first);
    server.shutdown().await;
}
