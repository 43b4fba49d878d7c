//! Slow and greedy HTTP clients cost a bounded amount: a client that trickles its request head is
//! cut off after the header-read timeout, and connections beyond the limit wait without harming
//! the clients being served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestServer;
use reqwest::Method;
use weir_server::ServerConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_head_is_cut_off_and_others_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        http_header_read_timeout: Duration::from_millis(500),
        ..ServerConfig::ephemeral(dir.path())
    };
    let s = TestServer::start_with(config).await;
    let addr = s.server().http_addr();
    let slow = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let started = Instant::now();
        // One byte of the request head every 100 ms: never finishes within the timeout.
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " {
            if stream.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if started.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        (
            started.elapsed(),
            String::from_utf8_lossy(&rest).into_owned(),
        )
    });
    // Meanwhile, an ordinary client is served.
    let (status, _, _) = s.call(Method::GET, "/healthz", None).await;
    assert_eq!(status, 200);
    let (elapsed, answer) = slow.await.expect("join");
    assert!(
        elapsed < Duration::from_secs(3),
        "the slow client was cut off (after {elapsed:?})"
    );
    assert!(
        !answer.contains("200 OK"),
        "the trickled request was not served: {answer:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_a_slot_frees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        max_connections: 2,
        ..ServerConfig::ephemeral(dir.path())
    };
    let s = TestServer::start_with(config).await;
    let addr = s.server().http_addr();
    // Two idle keep-alive connections take both slots.
    let hold: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(600)))
            .expect("timeout");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut buf = [0u8; 64];
        let early = stream.read(&mut buf);
        (stream, early.is_err() || matches!(early, Ok(0)))
    });
    let (mut stream, waited) = third.await.expect("join");
    assert!(
        waited,
        "the third connection is not served while two hold the slots"
    );
    drop(hold);
    let answer = tokio::task::spawn_blocking(move || {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut out = String::new();
        let _ = stream.read_to_string(&mut out);
        out
    })
    .await
    .expect("join");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "served once a slot freed: {answer:?}"
    );
    s.stop().await;
}
