//! `weir topic …` and `weir stream …` against a real `weir serve` child process: a topic fans out
//! to two subscriptions, a stream keeps per-key order and replays from offset 0, and `groups`
//! shows offsets a group committed over HTTP.

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

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Runs `weir <args>` against this server with `stdin`; (success, stdout, stderr).
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

    /// Runs `weir <args>` and expects success; its stdout.
    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let (ok, out, err) = self.cli(args, stdin);
        assert!(ok, "weir {args:?} failed: {err}\n{out}");
        out
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn bodies(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|m| m["body"].as_str().expect("body").to_string())
        .collect()
}

#[test]
fn topic_fans_out_to_every_subscription() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = Serve::start(dir.path());

    let created: Value = serde_json::from_str(&serve.ok(&["topic", "create", "events"], ""))
        .expect("create prints JSON");
    assert_eq!(created["name"], "events");
    serve.ok(&["topic", "subscribe", "events", "billing"], "");
    serve.ok(
        &[
            "topic",
            "subscribe",
            "events",
            "audit",
            "--start",
            "oldest",
            "--max-attempts",
            "3",
        ],
        "",
    );
    // Arguments, then stdin lines.
    serve.ok(&["topic", "publish", "events", "e1", "e2"], "");
    serve.ok(&["topic", "publish", "events"], "e3\ne4\n");

    let list = serve.ok(&["topic", "list"], "");
    let row = list
        .lines()
        .find(|l| l.starts_with("events"))
        .unwrap_or_else(|| panic!("events not listed:\n{list}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "2", "two subscriptions: {row}");
    assert_eq!(cols[2], "4", "four published: {row}");

    let want = ["e1", "e2", "e3", "e4"];
    for sub in ["billing", "audit"] {
        let out = serve.ok(
            &[
                "topic",
                "consume",
                "events",
                sub,
                "--count",
                "4",
                "--timeout-ms",
                "5000",
            ],
            "",
        );
        let got = json_lines(&out);
        let mut seen = bodies(&got);
        seen.sort();
        assert_eq!(seen, want, "subscription {sub} sees every message");
        assert!(got.iter().all(|m| m["receipt"].is_string()));
    }
    // Both acked everything: nothing is left, and a consume with a timeout ends empty.
    let stats: Value =
        serde_json::from_str(&serve.ok(&["topic", "stats", "events"], "")).expect("stats JSON");
    for s in stats["subscriptions"].as_array().expect("subscriptions") {
        assert_eq!(s["total"], 0, "{s}");
    }
    let out = serve.ok(
        &[
            "topic",
            "consume",
            "events",
            "billing",
            "--timeout-ms",
            "300",
        ],
        "",
    );
    assert!(out.trim().is_empty(), "{out}");

    // --no-ack leaves a message to be redelivered.
    serve.ok(&["topic", "publish", "events", "e5"], "");
    let out = serve.ok(
        &[
            "topic", "consume", "events", "audit", "--count", "1", "--no-ack",
        ],
        "",
    );
    assert_eq!(bodies(&json_lines(&out)), ["e5"]);
    let audit: Value =
        serde_json::from_str(&serve.ok(&["topic", "stats", "events"], "")).expect("stats JSON");
    let audit = audit["subscriptions"]
        .as_array()
        .expect("subscriptions")
        .iter()
        .find(|s| s["name"].as_str().is_some_and(|n| n.ends_with("audit")))
        .cloned()
        .expect("audit");
    assert_eq!(audit["in_flight"], 1, "{audit}");

    serve.ok(&["topic", "unsubscribe", "events", "billing"], "");
    serve.ok(&["topic", "delete", "events"], "");
    let (ok, _, err) = serve.cli(&["topic", "stats", "events"], "");
    assert!(!ok && err.contains("404"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_produce_consume_and_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = Serve::start(dir.path());

    serve.ok(&["stream", "create", "clicks", "--partitions", "3"], "");
    // Each key's records in one partition, in order.
    let mut positions: Vec<(String, u64, u64)> = Vec::new();
    for (key, n) in [("alice", 5), ("bob", 4), ("carol", 3)] {
        let input: String = (0..n).map(|i| format!("{key}-{i}\n")).collect();
        let out = serve.ok(&["stream", "produce", "clicks", "--key", key], &input);
        let lines = json_lines(&out);
        assert_eq!(lines.len(), n, "{out}");
        for l in lines {
            positions.push((
                key.to_string(),
                l["partition"].as_u64().expect("partition"),
                l["offset"].as_u64().expect("offset"),
            ));
        }
    }
    for key in ["alice", "bob", "carol"] {
        let mine: Vec<_> = positions.iter().filter(|p| p.0 == key).collect();
        assert!(mine.windows(2).all(|w| w[0].1 == w[1].1 && w[0].2 < w[1].2));
    }
    // Unkeyed records as arguments.
    serve.ok(&["stream", "produce", "clicks", "x1", "x2", "x3"], "");

    // Every partition from offset 0: each key's records in order, all 15 seen.
    let out = serve.ok(&["stream", "consume", "clicks", "--offset", "0"], "");
    let records = json_lines(&out);
    assert_eq!(records.len(), 15, "{out}");
    for key in ["alice", "bob", "carol"] {
        let got: Vec<String> = records
            .iter()
            .filter(|r| r["key"] == key)
            .map(|r| r["body"].as_str().expect("body").to_string())
            .collect();
        let n = positions.iter().filter(|p| p.0 == key).count();
        let want: Vec<String> = (0..n).map(|i| format!("{key}-{i}")).collect();
        assert_eq!(got, want);
    }
    // Within each partition, offsets strictly increase from the partition's start.
    for p in 0..3u64 {
        let offsets: Vec<u64> = records
            .iter()
            .filter(|r| r["partition"] == p)
            .map(|r| r["offset"].as_u64().expect("offset"))
            .collect();
        let want: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, want, "partition {p}");
    }
    // One partition, from an offset, with a count.
    let (_, alice_p, _) = positions[0].clone();
    let p = alice_p.to_string();
    let out = serve.ok(
        &[
            "stream",
            "consume",
            "clicks",
            "--partition",
            &p,
            "--offset",
            "1",
            "--count",
            "2",
        ],
        "",
    );
    let got = json_lines(&out);
    assert_eq!(got.len(), 2, "{out}");
    assert_eq!(got[0]["offset"], 1);
    assert_eq!(got[1]["offset"], 2);

    // --follow waits for a record produced after it started.
    let follower = {
        let http = serve.http.to_string();
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(["stream", "consume", "clicks", "--follow", "--count", "16"])
                .env("WEIR_HTTP_ADDR", http)
                .env("WEIR_LOG", "warn")
                .stdin(Stdio::null())
                .output()
                .expect("run follower")
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    serve.ok(
        &["stream", "produce", "clicks", "--key", "dave", "late"],
        "",
    );
    let out = follower.join().expect("follower");
    assert!(out.status.success());
    let followed = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(followed.len(), 16);
    assert!(followed.iter().any(|r| r["body"] == "late"));

    // A group commits over HTTP; `groups` shows the committed offsets and the lag.
    let client = reqwest::Client::new();
    let joined: Value = client
        .put(serve.url("/v1/streams/clicks/groups/analytics/members/m1"))
        .json(&json!({}))
        .send()
        .await
        .expect("join")
        .json()
        .await
        .expect("join JSON");
    assert_eq!(joined["partitions"], json!([0, 1, 2]));
    let resp = client
        .post(serve.url("/v1/streams/clicks/groups/analytics/offsets"))
        .json(
            &json!({ "offsets": [{ "partition": 0, "offset": 2 }, { "partition": 2, "offset": 1 }],
                        "member": "m1", "generation": joined["generation"] }),
        )
        .send()
        .await
        .expect("commit");
    assert_eq!(resp.status(), 200);

    let stats: Value =
        serde_json::from_str(&serve.ok(&["stream", "stats", "clicks"], "")).expect("stats JSON");
    let ends: Vec<u64> = stats["partition_stats"]
        .as_array()
        .expect("partition_stats")
        .iter()
        .map(|p| p["end_offset"].as_u64().expect("end"))
        .collect();

    let table = serve.ok(&["stream", "groups", "clicks"], "");
    assert!(table.contains("group analytics"), "{table}");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() == 5 && c[0].parse::<u32>().is_ok())
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    let committed = [Some(2u64), None, Some(1)];
    for (p, row) in rows.iter().enumerate() {
        assert_eq!(row[0], p.to_string(), "{table}");
        assert_eq!(row[1], "m1", "{table}");
        let lag = match committed[p] {
            Some(c) => {
                assert_eq!(row[2], c.to_string(), "{table}");
                ends[p] - c
            }
            None => {
                assert_eq!(row[2], "-", "{table}");
                row[4].parse().expect("lag")
            }
        };
        assert_eq!(row[3], ends[p].to_string(), "{table}");
        assert_eq!(row[4], lag.to_string(), "{table}");
    }
    let one: Value =
        serde_json::from_str(&serve.ok(&["stream", "groups", "clicks", "analytics", "--json"], ""))
            .expect("group JSON");
    assert_eq!(one["partitions"][0]["committed"], 2);
    assert_eq!(one["partitions"][2]["committed"], 1);

    let list = serve.ok(&["stream", "list"], "");
    let row = list
        .lines()
        .find(|l| l.starts_with("clicks"))
        .unwrap_or_else(|| panic!("clicks not listed:\n{list}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>()[1..3],
        ["3", "16"],
        "{row}"
    );
    assert!(row.ends_with("analytics"), "{row}");

    serve.ok(&["stream", "delete", "clicks"], "");
    let (ok, _, err) = serve.cli(&["stream", "consume", "clicks"], "");
    assert!(!ok && err.contains("404"), "{err}");
}
