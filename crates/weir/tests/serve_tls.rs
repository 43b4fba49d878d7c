//! `weir serve --tls-cert --tls-key` as a real child process: the native client connects over
//! TLS with the test CA; a bad file stops the start naming it; half a pair is a usage error; TLS
//! does not stand in for authentication beyond loopback.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use weir_client::{Client, ConnectOptions, Message, QueueOptions, TlsOptions};

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Writes a CA-signed certificate for `127.0.0.1` and its key into `dir`; returns the CA's PEM
/// and the two paths.
fn pki(dir: &Path) -> (String, PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_key = KeyPair::generate().expect("key");
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    let (cert_path, key_path) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    (ca_pem, cert_path, key_path)
}

fn weir() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command.env("WEIR_LOG", "warn").stdin(Stdio::null());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_tls_flags_serves_the_native_client_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_pem, cert, key) = pki(dir.path());
    let (native, http) = (free_addr(), free_addr());
    let mut child = weir()
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--addr",
            &native.to_string(),
            "--http-addr",
            &http.to_string(),
        ])
        .arg("--tls-cert")
        .arg(&cert)
        // The key through its environment variable.
        .env("WEIR_TLS_KEY", &key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir serve");
    let stderr = child.stderr.take().expect("stderr");
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let found = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.starts_with("weir serving"));
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        found
    })
    .await
    .expect("join")
    .expect("weir serve printed its banner");
    assert!(banner.contains("(TLS)"), "{banner}");
    assert!(banner.contains(&format!("https://{http}")), "{banner}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let tls = TlsOptions::from_pem(ca_pem.as_bytes(), "127.0.0.1").expect("options");
    let client = loop {
        match Client::connect_with(native, ConnectOptions::default().tls(tls.clone())).await {
            Ok(client) => break client,
            Err(e) => {
                assert!(Instant::now() < deadline, "no TLS connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    client
        .create_queue("cli", QueueOptions::default())
        .await
        .expect("create");
    let published = client
        .publish("cli", vec![Message::new("over tls")])
        .await
        .expect("publish");
    assert_eq!(published.len(), 1);
    drop(client);
    // SIGTERM: a graceful stop (libc::kill with the pid of our own child).
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().expect("wait");
    assert!(status.success(), "graceful shutdown exits 0: {status}");
}

#[test]
fn a_missing_certificate_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.crt");
    let out = weir()
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(&missing)
        .arg("--tls-key")
        .arg(dir.path().join("missing.key"))
        .output()
        .expect("run weir serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(stderr.contains("certificate chain"), "{stderr}");
}

#[test]
fn half_a_tls_pair_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = weir()
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--tls-cert", "server.crt"])
        .env_remove("WEIR_TLS_KEY")
        .output()
        .expect("run weir serve");
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

#[test]
fn tls_without_auth_beyond_loopback_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, cert, key) = pki(dir.path());
    // Refused before anything is bound.
    let out = weir()
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .output()
        .expect("run weir serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without authentication"), "{stderr}");
}
