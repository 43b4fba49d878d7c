//! `weir serve` as a real child process: confirmed publishes and confirmed acks survive `kill -9`,
//! and the CLI commands work against it.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

struct Serve {
    child: Child,
    http: SocketAddr,
}

impl Serve {
    fn start(data: &Path) -> Serve {
        let (native, http) = (free_addr(), free_addr());
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["serve", "--data-dir"])
            .arg(data)
            .args([
                "--addr",
                &native.to_string(),
                "--http-addr",
                &http.to_string(),
            ])
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weir serve");
        let serve = Serve { child, http };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(http).is_err() {
            assert!(Instant::now() < deadline, "weir serve did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        serve
    }

    fn kill9(mut self) {
        // SAFETY-free: libc::kill with a valid pid of our own child.
        let pid = self.child.id() as i32;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let status = self.child.wait().expect("wait");
        assert!(!status.success());
    }

    fn terminate(mut self) {
        let pid = self.child.id() as i32;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "graceful shutdown exits 0: {status}");
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    fn cli(&self, args: &[&str], stdin: &str) -> (bool, String, String) {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .env("WEIR_HTTP_ADDR", self.http.to_string())
            .env("WEIR_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let resp = client.post(url).json(&body).send().await.expect("send");
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread")]
async fn confirmed_publishes_and_acks_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let serve = Serve::start(dir.path());
    let resp = client
        .put(serve.url("/v1/queues/durable"))
        .json(&json!({}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 201);

    // 40 confirmed batches of 50.
    let mut confirmed = Vec::new();
    for batch in 0..40 {
        let messages: Vec<Value> = (0..50)
            .map(|i| json!({ "id": format!("m-{batch}-{i}"), "body": format!("body {batch} {i}") }))
            .collect();
        let out = post(
            &client,
            serve.url("/v1/queues/durable/messages"),
            json!({ "messages": messages }),
        )
        .await;
        for m in out["messages"].as_array().expect("array") {
            confirmed.push(m["id"].as_str().expect("id").to_string());
        }
    }
    // Ack the first 300 deliveries; lease the next 200 without acking.
    let got = post(
        &client,
        serve.url("/v1/queues/durable/receive"),
        json!({ "max": 300 }),
    )
    .await;
    let acked_ids: Vec<String> = got["messages"]
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect();
    let receipts: Vec<Value> = got["messages"]
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["receipt"].clone())
        .collect();
    let acked = post(
        &client,
        serve.url("/v1/queues/durable/ack"),
        json!({ "receipts": receipts }),
    )
    .await;
    assert_eq!(acked["acked"], 300);
    let leased = post(
        &client,
        serve.url("/v1/queues/durable/receive"),
        json!({ "max": 200 }),
    )
    .await;
    assert_eq!(leased["messages"].as_array().map(Vec::len), Some(200));

    serve.kill9();
    let serve = Serve::start(dir.path());
    let stats: Value = client
        .get(serve.url("/v1/queues/durable"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["total"], 2000 - 300, "{stats}");
    assert_eq!(stats["in_flight"], 0, "leases do not survive a restart");
    let mut seen = std::collections::HashSet::new();
    loop {
        let got = post(
            &client,
            serve.url("/v1/queues/durable/receive"),
            json!({ "max": 1000 }),
        )
        .await;
        let messages = got["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            assert!(
                seen.insert(m["id"].as_str().expect("id").to_string()),
                "delivered twice: {m}"
            );
        }
    }
    for id in &acked_ids {
        assert!(!seen.contains(id), "acked message {id} came back");
    }
    let expected: std::collections::HashSet<String> = confirmed
        .into_iter()
        .filter(|id| !acked_ids.contains(id))
        .collect();
    assert_eq!(seen, expected, "every confirmed, unacked message is there");
    serve.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_queue_publish_consume_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = Serve::start(dir.path());
    let (ok, out, err) = serve.cli(&["queue", "create", "cli", "--max-attempts", "3"], "");
    assert!(ok, "{err}");
    assert!(out.contains("\"max_attempts\": 3"), "{out}");
    let (ok, _, err) = serve.cli(&["publish", "cli"], "hello\nworld\n");
    assert!(ok, "{err}");
    assert!(err.contains("confirmed 2 messages"), "{err}");
    let (ok, out, err) = serve.cli(
        &["consume", "cli", "--count", "2", "--timeout-ms", "5000"],
        "",
    );
    assert!(ok, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["body"], "hello");
    assert_eq!(lines[1]["body"], "world");
    let (ok, out, _) = serve.cli(&["queue", "list"], "");
    assert!(ok);
    assert!(out.lines().any(|l| l.starts_with("cli ")), "{out}");
    let (ok, out, _) = serve.cli(&["queue", "stats", "cli"], "");
    assert!(ok);
    let stats: Value = serde_json::from_str(&out).expect("stats json");
    assert_eq!(stats["total"], 0, "consume acked both");
    let (ok, _, err) = serve.cli(&["queue", "stats", "missing"], "");
    assert!(!ok);
    assert!(err.contains("404") && err.contains("not_found"), "{err}");
    serve.terminate();
    let (ok, _, err) = Serve::cli_without_server(&["queue", "list"]);
    assert!(!ok);
    assert!(err.contains("is `weir serve` running?"), "{err}");
}

impl Serve {
    fn cli_without_server(args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .env("WEIR_HTTP_ADDR", free_addr().to_string())
            .output()
            .expect("run weir");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}
