//! TLS on both listeners, against a real server on real sockets and real PEM files: a CA and a
//! server certificate are generated at test time (rcgen), written to a temporary directory and
//! given to `weir_server::start`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bodies, receipts, TestServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use reqwest::Method;
use serde_json::json;
use weir_client::{
    Client, ClientError, ConnectOptions, ConsumerOptions, ErrorCode, Message, QueueOptions,
    TlsOptions,
};
use weir_server::auth::{Action, AuthConfig, Grant, TokenEntry};
use weir_server::tls::TlsConfig;
use weir_server::ServerConfig;

const ADMIN: &str = "admin-token-0123456789";

/// A certificate authority and a server certificate it signed, as PEM files in a directory.
struct Pki {
    _dir: tempfile::TempDir,
    /// The CA certificate (PEM), what clients trust.
    ca_pem: String,
    /// The server's certificate chain file.
    cert: PathBuf,
    /// The server's private key file.
    key: PathBuf,
}

impl Pki {
    /// A fresh CA and a server certificate for `localhost` and `127.0.0.1`.
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_pem, issuer) = ca("Weir test CA");
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("valid names");
        params
            .distinguished_name
            .push(DnType::CommonName, "weir test server");
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("key pair");
        let cert = params.signed_by(&key, &issuer).expect("signed");
        let cert_path = dir.path().join("server.crt");
        let key_path = dir.path().join("server.key");
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        Pki {
            _dir: dir,
            ca_pem,
            cert: cert_path,
            key: key_path,
        }
    }

    fn config(&self) -> TlsConfig {
        TlsConfig::new(&self.cert, &self.key)
    }
}

/// A self-signed CA: its PEM and the issuer that signs with it.
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("key pair");
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), Issuer::new(params, key))
}

fn auth() -> Arc<AuthConfig> {
    let config = AuthConfig {
        tokens: vec![TokenEntry {
            name: "admin".into(),
            token: ADMIN.into(),
            grants: vec![Grant {
                resources: vec!["*".into()],
                actions: vec![Action::Admin],
            }],
        }],
    };
    config.validate().expect("valid token file");
    Arc::new(config)
}

/// An HTTPS client trusting `ca_pem` (and nothing else).
fn https_client(ca_pem: &str) -> reqwest::Client {
    https_builder(ca_pem).build().expect("HTTPS client")
}

/// The builder of [`https_client`], for tests that add to it.
fn https_builder(ca_pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM"))
        .timeout(Duration::from_secs(10))
}

/// A TLS server (no auth unless given) wrapped in the shared HTTP helpers, speaking HTTPS.
async fn tls_server(
    pki: &Pki,
    data: &Path,
    configure: impl FnOnce(&mut ServerConfig),
) -> TestServer {
    let mut config = ServerConfig {
        tls: Some(pki.config()),
        ..ServerConfig::ephemeral(data)
    };
    configure(&mut config);
    let server = weir_server::start(config).await.expect("TLS server starts");
    let base = format!("https://{}", server.http_addr());
    TestServer {
        server: Some(server),
        base,
        http: https_client(&pki.ca_pem),
    }
}

fn native_tls(pki: &Pki) -> ConnectOptions {
    let tls = TlsOptions::from_pem(pki.ca_pem.as_bytes(), "127.0.0.1").expect("TLS options");
    ConnectOptions::default().tls(tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_publishes_receives_and_acks_with_the_test_ca() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let s = tls_server(&pki, data.path(), |_| {}).await;
    s.create_queue("orders", json!({})).await;
    let out = s
        .publish("orders", json!([{ "body": "over tls", "id": "m-1" }]))
        .await;
    assert_eq!(
        out["messages"][0],
        json!({ "id": "m-1", "duplicate": false })
    );
    let got = s.receive("orders", json!({ "max": 10 })).await;
    assert_eq!(bodies(&got), vec!["over tls"]);
    let acked = s.ack("orders", receipts(&got)).await;
    assert_eq!(acked, json!({ "acked": 1, "invalid": [] }));
    // The DNS name in the certificate works as well as the IP address (`localhost` pinned to
    // the listener's address, whatever the machine's resolver says).
    let addr = s.server().http_addr();
    let by_name = https_builder(&pki.ca_pem)
        .resolve("localhost", addr)
        .build()
        .expect("client")
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await;
    assert_eq!(by_name.expect("HTTPS by name").status(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_fails_and_others_are_still_served() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let s = tls_server(&pki, data.path(), |_| {}).await;
    let addr = s.server().http_addr();

    // reqwest over plain HTTP: no answer it can read.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let result = plain.get(format!("http://{addr}/healthz")).send().await;
    assert!(result.is_err(), "plain HTTP got an answer: {result:?}");

    // A raw plaintext request: the server closes without an HTTP answer.
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .expect("join");
    assert!(
        !answer.contains("HTTP/1.1 200"),
        "plaintext request served: {answer:?}"
    );

    // HTTPS clients are served as before.
    for _ in 0..3 {
        let (status, _, _) = s.call(Method::GET, "/healthz", None).await;
        assert_eq!(status, 200);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_client_over_tls_with_a_token_publishes_and_receives() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let s = tls_server(&pki, data.path(), |c| c.auth = Some(auth())).await;
    let addr = s.server().native_addr();
    let client = Client::connect_with(addr, native_tls(&pki).token(ADMIN))
        .await
        .expect("TLS connect");
    client
        .create_queue("jobs", QueueOptions::default())
        .await
        .expect("create");
    let published = client
        .publish(
            "jobs",
            vec![Message::new("one"), Message::new(vec![7u8; 100_000])],
        )
        .await
        .expect("publish");
    assert_eq!(published.len(), 2);
    let mut consumer = client
        .subscribe("jobs", ConsumerOptions::default())
        .await
        .expect("subscribe");
    let first = consumer.next().await.expect("delivery").expect("ok");
    assert_eq!(first.body_str(), Some("one"));
    first.ack().await.expect("ack");
    let second = consumer.next().await.expect("delivery").expect("ok");
    assert_eq!(second.body.len(), 100_000);
    second.ack().await.expect("ack");

    // Without TLS, the TLS port does not handshake.
    let plain = Client::connect_with(
        addr,
        ConnectOptions {
            timeout: Duration::from_secs(5),
            ..ConnectOptions::default().token(ADMIN)
        },
    )
    .await;
    assert!(plain.is_err(), "a plain client connected to the TLS port");
    // Without a token, TLS alone is not enough.
    let anonymous = Client::connect_with(addr, native_tls(&pki)).await;
    match anonymous {
        Err(e) => assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}"),
        Ok(_) => panic!("connected without a token"),
    }
    drop(consumer);
    drop(client);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_trust_the_ca_fail_the_handshake() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let s = tls_server(&pki, data.path(), |_| {}).await;
    let (other_ca, _) = ca("Some other CA");

    // HTTPS trusting another CA.
    let stranger = https_client(&other_ca);
    let result = stranger
        .get(format!("https://{}/healthz", s.server().http_addr()))
        .send()
        .await;
    let error = result.expect_err("untrusted certificate accepted");
    let chain = error_chain(&error);
    assert!(
        chain.contains("UnknownIssuer") || chain.contains("certificate"),
        "{chain}"
    );

    // Native client trusting another CA.
    let tls = TlsOptions::from_pem(other_ca.as_bytes(), "127.0.0.1").expect("options");
    let result =
        Client::connect_with(s.server().native_addr(), ConnectOptions::default().tls(tls)).await;
    match result {
        Err(ClientError::Handshake { message, .. }) => {
            assert!(message.contains("TLS handshake failed"), "{message}");
            assert!(message.contains("UnknownIssuer"), "{message}");
        }
        other => panic!("expected a TLS handshake failure, got {other:?}"),
    }

    // Native client trusting the CA but expecting another name.
    let tls = TlsOptions::from_pem(pki.ca_pem.as_bytes(), "weir.example.com").expect("options");
    let result =
        Client::connect_with(s.server().native_addr(), ConnectOptions::default().tls(tls)).await;
    match result {
        Err(ClientError::Handshake { message, .. }) => {
            assert!(message.contains("not valid for name"), "{message}");
        }
        other => panic!("expected a TLS handshake failure, got {other:?}"),
    }

    // The server is unharmed.
    let (status, _, _) = s.call(Method::GET, "/healthz", None).await;
    assert_eq!(status, 200);
    let client = Client::connect_with(s.server().native_addr(), native_tls(&pki))
        .await
        .expect("trusted client connects");
    client
        .create_queue("after", QueueOptions::default())
        .await
        .expect("served");
    drop(client);
    s.stop().await;
}

#[tokio::test]
async fn bad_certificate_or_key_files_fail_the_start_naming_the_file() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");
    let start = |tls: TlsConfig| {
        let config = ServerConfig {
            tls: Some(tls),
            ..ServerConfig::ephemeral(data.path())
        };
        async move {
            match weir_server::start(config).await {
                Ok(server) => {
                    server.shutdown().await;
                    panic!("the server started with a bad TLS file");
                }
                Err(e) => format!("{e:#}"),
            }
        }
    };

    let missing = files.path().join("missing.crt");
    let error = start(TlsConfig::new(&missing, &pki.key)).await;
    assert!(error.contains(&missing.display().to_string()), "{error}");
    assert!(
        error.contains("cannot read the TLS certificate chain"),
        "{error}"
    );

    let missing_key = files.path().join("missing.key");
    let error = start(TlsConfig::new(&pki.cert, &missing_key)).await;
    assert!(
        error.contains(&missing_key.display().to_string()),
        "{error}"
    );
    assert!(error.contains("private key"), "{error}");

    let garbage = files.path().join("garbage.crt");
    std::fs::write(&garbage, "hello\n").expect("write");
    let error = start(TlsConfig::new(&garbage, &pki.key)).await;
    assert!(error.contains(&garbage.display().to_string()), "{error}");
    assert!(error.contains("no CERTIFICATE block"), "{error}");

    // The certificate given as the key: no key block in it.
    let error = start(TlsConfig::new(&pki.cert, &pki.cert)).await;
    assert!(error.contains("invalid TLS private key"), "{error}");
    assert!(error.contains(&pki.cert.display().to_string()), "{error}");

    // A key that is not the certificate's.
    let other = Pki::new();
    let error = start(TlsConfig::new(&pki.cert, &other.key)).await;
    assert!(error.contains("cannot be used together"), "{error}");
    assert!(error.contains(&pki.cert.display().to_string()), "{error}");
    assert!(error.contains(&other.key.display().to_string()), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tcp_clients_do_not_keep_others_from_being_served() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let s = tls_server(&pki, data.path(), |c| {
        c.http_header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let http_addr = s.server().http_addr();
    let native_addr = s.server().native_addr();

    // Clients that open TCP and never send a ClientHello, on both listeners.
    let silent: Vec<TcpStream> = (0..4)
        .flat_map(|_| [http_addr, native_addr])
        .map(|addr| TcpStream::connect(addr).expect("connect"))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Meanwhile, others are served at once, on both listeners. (Were the handshakes in the
    // accept loops, the silent clients ahead would delay them by 4 × 500 ms and 4 × 5 s.)
    let started = Instant::now();
    let (status, _, _) = s.call(Method::GET, "/healthz", None).await;
    assert_eq!(status, 200);
    let https = started.elapsed();
    assert!(
        https < Duration::from_millis(1500),
        "HTTPS served after {https:?}"
    );
    let started = Instant::now();
    let client = Client::connect_with(native_addr, native_tls(&pki))
        .await
        .expect("native TLS connect");
    client
        .create_queue("busy", QueueOptions::default())
        .await
        .expect("served");
    let native = started.elapsed();
    assert!(
        native < Duration::from_secs(3),
        "native served after {native:?}"
    );

    // The silent clients are cut off: HTTP after its header-read timeout (500 ms), native
    // after its handshake timeout (5 s).
    let closed = tokio::task::spawn_blocking(move || {
        silent
            .into_iter()
            .map(|stream| {
                let addr = stream.peer_addr().expect("peer");
                (addr, closed_within(stream, Duration::from_secs(10)))
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("join");
    for (addr, after) in closed {
        let limit = if addr == http_addr {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(8)
        };
        let after = after.unwrap_or_else(|| panic!("silent client of {addr} never cut off"));
        assert!(
            after < limit,
            "silent client of {addr} cut off after {after:?}"
        );
    }
    drop(client);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_hold_over_tls() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let s = tls_server(&pki, data.path(), |c| {
        c.max_connections = 1;
        c.http_header_read_timeout = Duration::from_millis(500);
    })
    .await;

    // HTTP: a silent client holds the one slot until its handshake times out; the HTTPS
    // request waits in the backlog meanwhile, then is served.
    let silent = TcpStream::connect(s.server().http_addr()).expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let (status, _, _) = s.call(Method::GET, "/healthz", None).await;
    assert_eq!(status, 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "waited {waited:?} for the slot"
    );
    drop(silent);

    // Native: a second TLS client is refused with `busy`, said inside its TLS session.
    let first = Client::connect_with(s.server().native_addr(), native_tls(&pki))
        .await
        .expect("first connects");
    let second = Client::connect_with(s.server().native_addr(), native_tls(&pki)).await;
    match second {
        Err(e) => {
            assert_eq!(e.code(), Some(ErrorCode::Busy), "{e}");
            assert!(e.to_string().contains("too many connections"), "{e}");
        }
        Ok(_) => panic!("a connection beyond the limit was served"),
    }
    drop(first);
    s.stop().await;
}

/// How long until the server closes `stream` (EOF or reset); `None` if it is still open after
/// `limit`.
fn closed_within(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut byte = [0u8; 64];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return Some(started.elapsed()),
            // A TLS alert or the like before the close.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(started.elapsed()),
        }
        if started.elapsed() > limit {
            return None;
        }
    }
}

/// An error with its causes, for assertions on the reason.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_cross_tls_both_ways() {
    // Frames of many TLS records in both directions: each side's last records must be flushed
    // out of its TLS session even when the socket was full when they were written.
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let s = tls_server(&pki, data.path(), |_| {}).await;
    let client = Client::connect_with(s.server().native_addr(), native_tls(&pki))
        .await
        .expect("TLS connect");
    client
        .create_queue("big", QueueOptions::default())
        .await
        .expect("create");
    let body = |i: u8| vec![i; 1024 * 1024 - 1024];
    let work = async {
        for round in 0..3u8 {
            let messages = (0..12u8)
                .map(|i| Message::new(body(round * 12 + i)))
                .collect();
            client.publish("big", messages).await.expect("publish");
        }
        let mut seen = 0u8;
        while seen < 36 {
            let got = client
                .receive("big", 16, Duration::from_secs(1), None)
                .await
                .expect("receive");
            assert!(!got.is_empty(), "messages missing after {seen}");
            for d in &got {
                assert_eq!(d.body[..], body(seen)[..], "body {seen}");
                seen += 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("large frames crossed within the time limit");
    drop(client);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_the_end_of_a_large_frame_over_tls() {
    // A reader slower than the server keeps the server's socket full, so its last TLS records
    // stay in the session after `write_all`: only the server's flush sends them.
    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use weir_proto::frame::{Frame, Hello, Payload};

    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let s = tls_server(&pki, data.path(), |_| {}).await;
    let addr = s.server().native_addr();
    let client = Client::connect_with(addr, native_tls(&pki))
        .await
        .expect("TLS connect");
    client
        .create_queue("big", QueueOptions::default())
        .await
        .expect("create");
    let body = vec![5u8; 1024 * 1024 - 1024];
    let messages = (0..12).map(|_| Message::new(body.clone())).collect();
    client.publish("big", messages).await.expect("publish");

    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    let tcp = socket.connect(addr).await.expect("connect");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::pem::PemObject::from_pem_slice(pki.ca_pem.as_bytes()).expect("CA"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");

    let mut out = BytesMut::new();
    Hello::current().encode(&mut out);
    let receive = Payload::Receive {
        target: weir_proto::frame::Target::Queue("big".into()),
        max: 16,
        lease_ms: None,
        wait_ms: 1000,
    };
    Frame::new(1, receive).encode(&mut out).expect("encode");
    tls.write_all(&out).await.expect("write");
    tls.flush().await.expect("flush");

    let read_all = async {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        // HelloOk, then the deliveries.
        while frames.len() < 2 {
            while let Some((frame, used)) = Frame::decode(&buf).expect("decodes") {
                let _ = buf.split_to(used);
                frames.push(frame);
            }
            if frames.len() == 2 {
                break;
            }
            let mut chunk = [0u8; 32 * 1024];
            let n = tls.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..n]);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        frames
    };
    let frames = tokio::time::timeout(Duration::from_secs(30), read_all)
        .await
        .expect("the whole frame arrived (the server flushed its TLS session)");
    match &frames[1].payload {
        Payload::Deliveries(ds) => {
            assert_eq!(ds.len(), 12);
            assert!(ds.iter().all(|d| d.body[..] == body[..]));
        }
        other => panic!(
            "expected deliveries, got frame type 0x{:02x}",
            other.type_byte()
        ),
    }
    drop(client);
    s.stop().await;
}
