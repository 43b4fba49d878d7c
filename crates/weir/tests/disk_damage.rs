//! On-disk damage: truncations and bit flips in a queue's segment, index and journal files, and
//! in the meta journal, at many offsets. For each damaged copy of one populated data directory a
//! real `weir serve` is started and must:
//!
//! - start (no crash loop) — except when the meta journal itself is damaged, where it must exit
//!   at once with an error naming the file, not serve a broker that forgot its queues;
//! - serve the undamaged queue completely and exactly;
//! - for the damaged queue, either serve it — only messages that were published, with their exact
//!   bodies, and nothing missing but a torn tail — or quarantine it: every call on it fails with
//!   an error that says "quarantined" and names the damaged file and byte, and the server log says
//!   the same. Mid-file damage in a sealed segment or a snapshot must be quarantined; damage an
//!   index can repair must lose nothing.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const GOOD: &str = "good";
const VICTIM: &str = "victim";
/// Messages per queue.
const N: usize = 240;
/// Of the victim's, the first `ACKED` are acked before the damage.
const ACKED: usize = 20;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

fn body(queue: &str, i: usize) -> String {
    format!("{queue}-{i}-{}", "z".repeat(100 + i % 50))
}

struct Serve {
    child: Child,
    http: SocketAddr,
    log: PathBuf,
}

impl Serve {
    fn spawn(data: &Path) -> Serve {
        let (native, http) = (free_addr(), free_addr());
        let log = data.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["serve", "--data-dir"])
            .arg(data)
            .args([
                "--addr",
                &native.to_string(),
                "--http-addr",
                &http.to_string(),
            ])
            // Small segments: a queue spans several sealed segments with indexes.
            .args(["--segment-bytes", "4096"])
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn weir serve");
        Serve { child, http, log }
    }

    /// `Ok` once `/healthz` answers; `Err(log)` if the process exited first.
    fn ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(format!("exited {status}: {}", self.log_text()));
            }
            if std::net::TcpStream::connect(self.http).is_ok() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "weir serve neither up nor exited in 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    fn stop(mut self) {
        // SAFETY: kill(2) on our own, not yet reaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "graceful stop: {status}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn call(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let resp = client.post(url).json(&body).send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Builds the pristine data directory: two queues of `N` messages, the victim's first `ACKED`
/// acked.
async fn populate(data: &Path) {
    let client = reqwest::Client::new();
    let mut serve = Serve::spawn(data);
    serve.ready().expect("fresh server");
    for q in [GOOD, VICTIM] {
        let r = client
            .put(serve.url(&format!("/v1/queues/{q}")))
            .json(&json!({}))
            .send()
            .await
            .expect("put");
        assert!(r.status().is_success());
        for chunk in (0..N).collect::<Vec<_>>().chunks(10) {
            let messages: Vec<Value> = chunk
                .iter()
                .map(|&i| json!({ "id": format!("{q}-{i}"), "body": body(q, i) }))
                .collect();
            let (status, v) = call(
                &client,
                serve.url(&format!("/v1/queues/{q}/messages")),
                json!({ "messages": messages }),
            )
            .await;
            assert_eq!(status, 200, "{v}");
        }
    }
    let (_, got) = call(
        &client,
        serve.url(&format!("/v1/queues/{VICTIM}/receive")),
        json!({ "max": ACKED }),
    )
    .await;
    let receipts: Vec<Value> = got["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["receipt"].clone())
        .collect();
    assert_eq!(receipts.len(), ACKED);
    let (status, v) = call(
        &client,
        serve.url(&format!("/v1/queues/{VICTIM}/ack")),
        json!({ "receipts": receipts }),
    )
    .await;
    assert_eq!((status, v["acked"].as_u64()), (200, Some(ACKED as u64)));
    serve.stop();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != ".lock" {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Damage {
    /// Cut the file to this length.
    Truncate(u64),
    /// Flip one bit of the byte at this position.
    Flip(u64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Served, every message there (the damage is repairable: an index).
    Complete,
    /// Must be quarantined (mid-file damage that recovery must not skip).
    Quarantine,
    /// Served minus a torn tail, or quarantined with a precise error.
    TailOrQuarantine,
    /// A journal's state entries: served with no garbage (acks may be lost with a cut tail), or
    /// quarantined.
    NoGarbageOrQuarantine,
    /// The whole server must refuse to start with an error naming the file.
    Refuse,
    /// The last record of the meta journal (the victim's creation) is cut as a torn tail: the
    /// server starts without the victim, keeps its storage (never deletes what meta does not
    /// mention) and says so; creating the victim again adopts it with every message.
    OrphanKept,
}

fn apply(path: &Path, damage: Damage) {
    let mut bytes = std::fs::read(path).expect("read victim file");
    match damage {
        Damage::Truncate(len) => bytes.truncate(len as usize),
        Damage::Flip(pos) => bytes[pos as usize] ^= 1 << (pos % 8),
    }
    std::fs::write(path, bytes).expect("write damaged file");
}

/// Receives (and acks) everything a queue serves; `Err` with the error body when it refuses.
async fn drain(client: &reqwest::Client, serve: &Serve, q: &str) -> Result<Vec<Value>, Value> {
    let mut out = Vec::new();
    loop {
        let (status, v) = call(
            client,
            serve.url(&format!("/v1/queues/{q}/receive")),
            json!({ "max": 1000 }),
        )
        .await;
        if status != 200 {
            return Err(v);
        }
        let messages = v["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            return Ok(out);
        }
        let receipts: Vec<Value> = messages.iter().map(|m| m["receipt"].clone()).collect();
        let (status, v) = call(
            client,
            serve.url(&format!("/v1/queues/{q}/ack")),
            json!({ "receipts": receipts }),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        out.extend(messages);
    }
}

/// Index of a message id `"{q}-{i}"` whose body is exactly right; `None` for garbage.
fn check_message(q: &str, m: &Value) -> Option<usize> {
    let id = m["id"].as_str()?;
    let i: usize = id.strip_prefix(&format!("{q}-"))?.parse().ok()?;
    (i < N && m["body"].as_str() == Some(body(q, i).as_str())).then_some(i)
}

async fn check_case(pristine: &Path, work: &Path, file: &Path, damage: Damage, expect: Expect) {
    let what = format!(
        "{damage:?} of {} (expect {expect:?})",
        file.strip_prefix(pristine).unwrap_or(file).display()
    );
    let _ = std::fs::remove_dir_all(work);
    copy_dir(pristine, work);
    let target = work.join(file.strip_prefix(pristine).expect("inside"));
    apply(&target, damage);
    let file_name = target
        .file_name()
        .and_then(|f| f.to_str())
        .expect("name")
        .to_string();

    let mut serve = Serve::spawn(work);
    let up = serve.ready();
    if expect == Expect::Refuse {
        let log = up.expect_err(&format!("{what}: must refuse to start"));
        assert!(
            log.contains(&file_name) && log.contains("corrupt"),
            "{what}: the refusal names the file: {log}"
        );
        return;
    }
    if let Err(log) = up {
        panic!("{what}: weir serve did not start: {log}");
    }
    let client = reqwest::Client::new();

    if expect == Expect::OrphanKept {
        let r = client
            .get(serve.url(&format!("/v1/queues/{VICTIM}")))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 404, "{what}: the victim's creation was cut");
        assert!(
            work.join("queues").join(VICTIM).join("messages").is_dir(),
            "{what}: the victim's storage was deleted"
        );
        let log = serve.log_text();
        assert!(
            log.contains("unknown to the meta journal") && log.contains(VICTIM),
            "{what}: the log reports the kept storage: {log}"
        );
        let r = client
            .put(serve.url(&format!("/v1/queues/{VICTIM}")))
            .json(&json!({}))
            .send()
            .await
            .expect("put");
        assert!(r.status().is_success(), "{what}: re-create: {}", r.status());
    }

    // The undamaged queue is served completely and exactly.
    let good = drain(&client, &serve, GOOD)
        .await
        .unwrap_or_else(|e| panic!("{what}: good queue refused: {e}"));
    let good_ids: BTreeSet<usize> = good
        .iter()
        .map(|m| check_message(GOOD, m).unwrap_or_else(|| panic!("{what}: garbage {m}")))
        .collect();
    assert_eq!(good_ids.len(), N, "{what}: good queue complete");
    assert_eq!(good.len(), N, "{what}: good queue without duplicates");

    match drain(&client, &serve, VICTIM).await {
        Err(e) => {
            let msg = e["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                !matches!(expect, Expect::Complete | Expect::OrphanKept),
                "{what}: a repairable index or adopted storage must not quarantine: {e}"
            );
            assert!(
                msg.contains("quarantined") && msg.contains(&file_name),
                "{what}: the refusal names the damage: {e}"
            );
            assert_eq!(e["error"]["code"], "conflict", "{what}: {e}");
            let log = serve.log_text();
            assert!(
                log.contains("quarantined") && log.contains(&file_name),
                "{what}: the log reports the damage: {log}"
            );
            // Stats and publishes are refused too; the good queue still takes writes.
            let r = client
                .get(serve.url(&format!("/v1/queues/{VICTIM}")))
                .send()
                .await
                .expect("get");
            assert_eq!(r.status(), 409, "{what}");
            // The listing names it under "quarantined" with the damage.
            let list: serde_json::Value = client
                .get(serve.url("/v1/queues"))
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            let listed = list["quarantined"].as_array().is_some_and(|q| {
                q.iter().any(|e| {
                    e["name"] == VICTIM
                        && e["damage"].as_str().is_some_and(|d| d.contains(&file_name))
                })
            });
            assert!(listed, "{what}: listed as quarantined: {list}");
            let (status, _) = call(
                &client,
                serve.url(&format!("/v1/queues/{VICTIM}/messages")),
                json!({ "messages": [{ "body": "x" }] }),
            )
            .await;
            assert_eq!(status, 409, "{what}: publish to a quarantined queue");
            let (status, _) = call(
                &client,
                serve.url(&format!("/v1/queues/{GOOD}/messages")),
                json!({ "messages": [{ "body": "still writable" }] }),
            )
            .await;
            assert_eq!(status, 200, "{what}");
        }
        Ok(victim) => {
            assert!(
                expect != Expect::Quarantine,
                "{what}: mid-file damage was served ({} messages) instead of quarantined",
                victim.len()
            );
            let mut seen = BTreeSet::new();
            for m in &victim {
                let i = check_message(VICTIM, m)
                    .unwrap_or_else(|| panic!("{what}: garbage served: {m}"));
                assert!(seen.insert(i), "{what}: {i} served twice");
            }
            let expected: BTreeSet<usize> = (ACKED..N).collect();
            match expect {
                Expect::Complete | Expect::OrphanKept => {
                    assert_eq!(seen, expected, "{what}: nothing lost")
                }
                Expect::TailOrQuarantine => {
                    assert!(
                        seen.is_subset(&expected),
                        "{what}: acked messages came back"
                    );
                    let missing: Vec<usize> = expected.difference(&seen).copied().collect();
                    if let (Some(first_missing), Some(last_seen)) = (missing.first(), seen.last()) {
                        assert!(
                            first_missing > last_seen,
                            "{what}: {first_missing} skipped but {last_seen} served: a hole, not a tail"
                        );
                    }
                }
                _ => {}
            }
        }
    }
    serve.stop();
}

/// Spread positions over a file: its first and last bytes and `n` in between.
fn positions(len: u64, n: u64) -> Vec<u64> {
    if len == 0 {
        return Vec::new();
    }
    let mut out: Vec<u64> = (0..n).map(|k| k * len / n).collect();
    out.push(len - 1);
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_files_are_cut_quarantined_or_refused_never_served_as_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pristine = dir.path().join("pristine");
    populate(&pristine).await;
    let work = dir.path().join("work");
    let messages = pristine.join("queues").join(VICTIM).join("messages");
    let segments = files(&messages, "log");
    let indexes = files(&messages, "idx");
    assert!(
        segments.len() >= 3,
        "the victim spans several segments: {segments:?}"
    );
    let mut cases: Vec<(PathBuf, Damage, Expect)> = Vec::new();

    // A sealed segment: any damaged frame is mid-file corruption (it was fsync'd before its
    // successor existed) → quarantine. Truncation too.
    let sealed = &segments[segments.len() / 2];
    let len = std::fs::metadata(sealed).expect("len").len();
    for p in positions(len, 12) {
        cases.push((sealed.clone(), Damage::Flip(p), Expect::Quarantine));
    }
    for cut in [1, len / 3, len - 1] {
        cases.push((sealed.clone(), Damage::Truncate(cut), Expect::Quarantine));
    }
    // The last (active) segment: a cut or a flip in the last record is a torn tail; a flip
    // followed by valid records is corruption.
    // The last segment with data (the active one may have just been created empty).
    let last = segments
        .iter()
        .rev()
        .find(|s| std::fs::metadata(s).is_ok_and(|m| m.len() > 0))
        .expect("a segment with data");
    let len = std::fs::metadata(last).expect("len").len();
    for p in positions(len, 8) {
        cases.push((last.clone(), Damage::Flip(p), Expect::TailOrQuarantine));
    }
    for cut in positions(len, 6) {
        cases.push((
            last.clone(),
            Damage::Truncate(cut),
            Expect::TailOrQuarantine,
        ));
    }
    // Indexes are rebuilt from their segment: nothing lost.
    if let Some(idx) = indexes.first() {
        let len = std::fs::metadata(idx).expect("len").len();
        for p in positions(len, 4) {
            cases.push((idx.clone(), Damage::Flip(p), Expect::Complete));
        }
        cases.push((idx.clone(), Damage::Truncate(len / 2), Expect::Complete));
        cases.push((idx.clone(), Damage::Truncate(0), Expect::Complete));
    } else {
        eprintln!("no sealed .idx file to damage (skipped index cases)");
    }
    // The victim's journal: the snapshot must verify; the entries log recovers like a log.
    let state = pristine.join("queues").join(VICTIM).join("state");
    let snap = state.join("journal.snap");
    if snap.exists() {
        let len = std::fs::metadata(&snap).expect("len").len();
        for p in positions(len, 6) {
            cases.push((snap.clone(), Damage::Flip(p), Expect::Quarantine));
        }
        cases.push((snap.clone(), Damage::Truncate(len / 2), Expect::Quarantine));
    } else {
        eprintln!("no journal.snap written by this run (skipped snapshot cases)");
    }
    for entries in files(&state.join(".entries"), "log") {
        let len = std::fs::metadata(&entries).expect("len").len();
        if len == 0 {
            continue;
        }
        for p in positions(len, 4) {
            cases.push((
                entries.clone(),
                Damage::Flip(p),
                Expect::NoGarbageOrQuarantine,
            ));
        }
        cases.push((
            entries.clone(),
            Damage::Truncate(len / 2),
            Expect::NoGarbageOrQuarantine,
        ));
    }
    // The meta journal (every queue's config): refuse to start, naming the file.
    for meta_log in files(&pristine.join("meta").join(".entries"), "log") {
        let len = std::fs::metadata(&meta_log).expect("len").len();
        // A flip in the first record, followed by valid ones: corruption, not a tail.
        cases.push((
            meta_log.clone(),
            Damage::Flip(len.min(40) / 2),
            Expect::Refuse,
        ));
        // A flip in the last record (the victim's creation; its dead-letter queue's comes
        // just before): indistinguishable from a torn write, so cut — but the victim's storage
        // must survive, and creating the victim again must bring every message back.
        cases.push((meta_log.clone(), Damage::Flip(len - 1), Expect::OrphanKept));
    }

    let started = Instant::now();
    let count = cases.len();
    for (file, damage, expect) in cases {
        check_case(&pristine, &work, &file, damage, expect).await;
    }
    eprintln!("{count} damage cases checked in {:?}", started.elapsed());
    assert!(count >= 40, "many offsets: {count}");
}
