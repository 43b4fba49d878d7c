//! The crash harness shared by `tests/crash_harness.rs` (short CI run) and
//! `examples/crash_harness.rs` (long runs): a real `weir serve` child, producers and consumers
//! over HTTP and the native protocol at full speed, SIGKILL at seeded random moments, restart,
//! and checks of DESIGN §2.1/§2.2:
//!
//! - **lost**: every confirmed publish is delivered at least once (checked by a full drain at
//!   the end, and after every restart by counting: the queue holds at least every confirmed
//!   message no ack was even sent for);
//! - **resurrected**: no message whose ack was confirmed is ever delivered again;
//! - **garbage**: every delivery is a message some producer sent, with its exact body;
//! - **unopenable**: every restart comes up (HTTP `/healthz`) within [`STARTUP_TIMEOUT`];
//! - with the native protocol, a stream and a consumer group under the same kills
//!   ([`stream`]: confirmed appends read back intact, confirmed commits never go back).
//!
//! The kill moments and batch shapes come from the seed; thread scheduling does not, so a seed
//! replays the same plan, not the same interleaving.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot_free::Mutex;

#[path = "crash_stream.rs"]
mod stream;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// `std::sync::Mutex` with poisoning ignored (a panicking worker must not hide the report).
mod parking_lot_free {
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub(crate) fn new(t: T) -> Self {
            Mutex(std::sync::Mutex::new(t))
        }
        pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

/// The queue under test.
const QUEUE: &str = "crash";
/// Its dead-letter queue (a message leased in more than `max_attempts` cycles lands there).
const DLQ: &str = "crash.dlq";
/// How long a restart may take before the data directory counts as unopenable.
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-request timeout of the harness's clients.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest publish batch.
const MAX_BATCH: usize = 32;
/// Largest receive batch.
const MAX_RECEIVE: u32 = 64;

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The `weir` binary.
    pub(crate) weir_bin: PathBuf,
    /// The data directory (created if absent); the server log goes beside it.
    pub(crate) data_dir: PathBuf,
    /// Kill cycles.
    pub(crate) cycles: u64,
    /// Seed of the kill moments and batch shapes.
    pub(crate) seed: u64,
    /// Shortest time the workers run before the kill, in ms.
    pub(crate) min_run_ms: u64,
    /// Longest time the workers run before the kill, in ms.
    pub(crate) max_run_ms: u64,
    /// Also produce and consume over the native protocol (weir-client).
    pub(crate) native: bool,
    /// Print a line per cycle.
    pub(crate) verbose: bool,
}

/// What a run saw.
#[derive(Clone, Debug, Default)]
pub(crate) struct Report {
    /// SIGKILLs sent.
    pub(crate) kills: u64,
    /// Of those, sent while the server was still starting (recovering).
    pub(crate) kills_during_startup: u64,
    /// Messages sent in publish requests.
    pub(crate) published_attempted: u64,
    /// Messages whose publish was confirmed.
    pub(crate) published_confirmed: u64,
    /// Messages whose ack was confirmed.
    pub(crate) acked_confirmed: u64,
    /// Deliveries seen (with redeliveries).
    pub(crate) deliveries: u64,
    /// Deliveries of an id already delivered before.
    pub(crate) redeliveries: u64,
    /// Confirmed messages found delivered at the end (= `published_confirmed` when nothing is lost).
    pub(crate) messages_checked: u64,
    /// Confirmed publishes never delivered.
    pub(crate) lost: u64,
    /// Deliveries of a message whose ack had been confirmed.
    pub(crate) resurrected: u64,
    /// Deliveries of unknown ids or with a wrong body.
    pub(crate) garbage: u64,
    /// Slowest restart until `/healthz` answered, in ms.
    pub(crate) max_startup_ms: u64,
    /// Stream records sent in append requests (native runs).
    pub(crate) stream_attempted: u64,
    /// Stream records whose append was confirmed.
    pub(crate) stream_confirmed: u64,
    /// Of those, read back intact at their (partition, offset) at the end.
    pub(crate) stream_checked: u64,
    /// Confirmed stream records missing or changed (after a restart or at the end).
    pub(crate) stream_lost: u64,
    /// Consumer-group commits confirmed (none may go back after a restart).
    pub(crate) stream_commits_confirmed: u64,
    /// Every violation, described (empty when the run passed).
    pub(crate) violations: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kills {} ({} during startup), published {} attempted / {} confirmed, acked {} confirmed, \
             deliveries {} ({} redeliveries), messages checked {}, lost {}, resurrected {}, garbage {}, \
             slowest restart {} ms; stream records {} attempted / {} confirmed / {} checked, \
             lost {}, group commits confirmed {}; violations {}",
            self.kills,
            self.kills_during_startup,
            self.published_attempted,
            self.published_confirmed,
            self.acked_confirmed,
            self.deliveries,
            self.redeliveries,
            self.messages_checked,
            self.lost,
            self.resurrected,
            self.garbage,
            self.max_startup_ms,
            self.stream_attempted,
            self.stream_confirmed,
            self.stream_checked,
            self.stream_lost,
            self.stream_commits_confirmed,
            self.violations.len()
        )
    }
}

/// The body a message with this id must carry: the id, a bar, and 0–511 filler bytes.
fn expected_body(id: &str) -> String {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let fill = (h % 512) as usize;
    let mut body = String::with_capacity(id.len() + 1 + fill);
    body.push_str(id);
    body.push('|');
    body.extend(std::iter::repeat_n(char::from(b'a' + (h % 26) as u8), fill));
    body
}

#[derive(Debug, Default)]
struct Tracker {
    attempted: HashSet<String>,
    confirmed: HashSet<String>,
    ack_sent: HashSet<String>,
    ack_confirmed: HashSet<String>,
    delivered: HashSet<String>,
    deliveries: u64,
    redeliveries: u64,
    resurrected: u64,
    garbage: u64,
    violations: Vec<String>,
}

impl Tracker {
    fn violation(&mut self, v: String) {
        if self.violations.len() < 50 {
            self.violations.push(v);
        }
    }

    fn delivered(&mut self, id: &str, body: &[u8], via: &str, cycle: u64) {
        self.deliveries += 1;
        if !self.attempted.contains(id) {
            self.garbage += 1;
            self.violation(format!("cycle {cycle}: {via} delivered unknown id {id:?}"));
        } else if body != expected_body(id).as_bytes() {
            self.garbage += 1;
            self.violation(format!(
                "cycle {cycle}: {via} delivered {id:?} with a wrong body ({} bytes)",
                body.len()
            ));
        }
        if self.ack_confirmed.contains(id) {
            self.resurrected += 1;
            self.violation(format!(
                "cycle {cycle}: {via} delivered {id:?} again after its ack was confirmed"
            ));
        }
        if !self.delivered.insert(id.to_string()) {
            self.redeliveries += 1;
        }
    }
}

type Shared = Arc<Mutex<Tracker>>;

fn free_addr() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// A running `weir serve`.
struct Server {
    child: Child,
    http: SocketAddr,
    native: SocketAddr,
}

impl Server {
    fn spawn(config: &Config, log: &Path) -> Result<Server, String> {
        let (native, http) = (
            free_addr().map_err(|e| e.to_string())?,
            free_addr().map_err(|e| e.to_string())?,
        );
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("open {}: {e}", log.display()))?;
        let child = Command::new(&config.weir_bin)
            .args(["serve", "--data-dir"])
            .arg(&config.data_dir)
            .args(["--addr", &native.to_string()])
            .args(["--http-addr", &http.to_string()])
            // Small segments: rolls, sealed indexes and reclaim happen under the kills too.
            .args(["--segment-bytes", "262144"])
            .env("WEIR_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", config.weir_bin.display()))?;
        Ok(Server {
            child,
            http,
            native,
        })
    }

    /// Waits for `/healthz`; an exit or a timeout means the data directory did not open.
    async fn ready(&mut self, http: &reqwest::Client, log: &Path) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "weir serve exited during startup ({status}); log tail:\n{}",
                    log_tail(log)
                ));
            }
            if let Ok(r) = http
                .get(format!("http://{}/healthz", self.http))
                .timeout(Duration::from_millis(500))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(start.elapsed());
                }
            }
            if start.elapsed() > STARTUP_TIMEOUT {
                return Err(format!(
                    "weir serve not ready after {STARTUP_TIMEOUT:?}; log tail:\n{}",
                    log_tail(log)
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn kill9(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    fn terminate(&mut self) -> Result<(), String> {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("graceful shutdown exited with {status}"))
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

fn log_tail(log: &Path) -> String {
    let mut out = String::new();
    if let Ok(mut f) = File::open(log) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
        let _ = f.read_to_string(&mut out);
    }
    out
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Result<Value, String> {
    let resp = http
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let v: Value = resp.json().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(v)
    } else {
        Err(format!("{status}: {v}"))
    }
}

async fn queue_total(http: &reqwest::Client, server: &Server, q: &str) -> Result<Value, String> {
    let resp = http
        .get(server.url(&format!("/v1/queues/{q}")))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let v: Value = resp.json().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(v)
    } else {
        Err(format!("GET /v1/queues/{q}: {status}: {v}"))
    }
}

/// Runs the harness; violations are in the report (the caller decides how to fail).
pub(crate) async fn run(config: Config) -> Result<Report, String> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| e.to_string())?;
    let log = config.data_dir.with_extension("server.log");
    let _ = std::fs::remove_file(&log);
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let tracker: Shared = Arc::new(Mutex::new(Tracker::default()));
    let streams: stream::SharedStream = Arc::new(Mutex::new(Default::default()));
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut report = Report::default();

    for cycle in 0..=config.cycles {
        let last = cycle == config.cycles;
        let mut server = Server::spawn(&config, &log)?;
        // Now and then, kill it while it recovers (before it answers).
        if !last && cycle > 0 && rng.gen_bool(0.15) {
            let delay_ms = rng.gen_range(0..40);
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            server.kill9();
            report.kills += 1;
            report.kills_during_startup += 1;
            if config.verbose {
                eprintln!("cycle {cycle}: killed during startup after {delay_ms} ms");
            }
            continue;
        }
        let startup = server.ready(&http, &log).await.map_err(|e| {
            format!(
                "cycle {cycle} (seed {}): data directory unopenable: {e}",
                config.seed
            )
        })?;
        report.max_startup_ms = report.max_startup_ms.max(startup.as_millis() as u64);
        if cycle == 0 {
            for q in [QUEUE, DLQ] {
                let resp = http
                    .put(server.url(&format!("/v1/queues/{q}")))
                    .json(&json!({ "max_attempts": 1000, "lease_ms": 60000 }))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("create {q}: {}", resp.status()));
                }
            }
            if config.native {
                stream::create(server.native).await?;
            }
        } else {
            check_counts(&http, &server, &tracker, cycle).await?;
            if config.native {
                stream::check(server.native, &streams, cycle, last).await?;
            }
        }
        if last {
            drain(&http, &server, &tracker, cycle).await?;
            server.terminate()?;
            break;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        let worker_seed = rng.gen::<u64>();
        for w in 0..2u64 {
            workers.push(tokio::spawn(http_producer(
                http.clone(),
                server.url(""),
                tracker.clone(),
                stop.clone(),
                cycle,
                w,
                worker_seed ^ w,
            )));
        }
        workers.push(tokio::spawn(http_consumer(
            http.clone(),
            server.url(""),
            tracker.clone(),
            stop.clone(),
            cycle,
        )));
        if config.native {
            let addr = server.native;
            workers.push(tokio::spawn(native_producer(
                addr,
                tracker.clone(),
                stop.clone(),
                cycle,
                worker_seed ^ 7,
            )));
            workers.push(tokio::spawn(native_consumer(
                addr,
                tracker.clone(),
                stop.clone(),
                cycle,
            )));
            workers.push(tokio::spawn(stream::worker(
                addr,
                streams.clone(),
                stop.clone(),
                cycle,
                worker_seed ^ 11,
            )));
        }
        let run_ms = rng.gen_range(config.min_run_ms..=config.max_run_ms);
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        server.kill9();
        report.kills += 1;
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            match tokio::time::timeout(REQUEST_TIMEOUT * 2, w).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => return Err(format!("cycle {cycle}: worker failed: {e}")),
                Ok(Err(e)) => return Err(format!("cycle {cycle}: worker panicked: {e}")),
                Err(_) => return Err(format!("cycle {cycle}: worker did not stop")),
            }
        }
        if config.verbose {
            let t = tracker.lock();
            eprintln!(
                "cycle {cycle}: ran {run_ms} ms, restart {} ms; confirmed {} acked {} delivered {} violations {}",
                startup.as_millis(),
                t.confirmed.len(),
                t.ack_confirmed.len(),
                t.deliveries,
                t.violations.len()
            );
        }
    }

    let t = tracker.lock();
    report.published_attempted = t.attempted.len() as u64;
    report.published_confirmed = t.confirmed.len() as u64;
    report.acked_confirmed = t.ack_confirmed.len() as u64;
    report.deliveries = t.deliveries;
    report.redeliveries = t.redeliveries;
    report.resurrected = t.resurrected;
    report.garbage = t.garbage;
    let mut lost: Vec<&String> = t.confirmed.difference(&t.delivered).collect();
    lost.sort();
    report.lost = lost.len() as u64;
    report.messages_checked = report.published_confirmed - report.lost;
    report.violations = t.violations.clone();
    {
        let s = streams.lock();
        report.stream_attempted = s.attempted;
        report.stream_confirmed = s.confirmed();
        report.stream_checked = s.checked;
        report.stream_lost = s.lost;
        report.stream_commits_confirmed = s.commits_confirmed;
        report.violations.extend(s.violations.iter().cloned());
        if config.native && s.confirmed() > 0 && s.checked != s.confirmed() {
            report.violations.push(format!(
                "the final stream check read back {} of {} confirmed records",
                s.checked,
                s.confirmed()
            ));
        }
    }
    if !lost.is_empty() {
        report.violations.push(format!(
            "{} confirmed publishes never delivered, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    if report.violations.is_empty() && report.published_confirmed == 0 {
        report
            .violations
            .push("nothing was confirmed: the harness tested nothing".into());
    }
    Ok(report)
}

/// After a restart, before anything runs: the queues hold at least every confirmed message no
/// ack was sent for, at most every sent message whose ack was not confirmed, and no leases.
async fn check_counts(
    http: &reqwest::Client,
    server: &Server,
    tracker: &Shared,
    cycle: u64,
) -> Result<(), String> {
    let q = queue_total(http, server, QUEUE).await?;
    let d = queue_total(http, server, DLQ).await?;
    let total = q["total"].as_u64().unwrap_or(0);
    let dlq_total = d["total"].as_u64().unwrap_or(0);
    let mut t = tracker.lock();
    let must_hold = t.confirmed.difference(&t.ack_sent).count() as u64;
    let may_hold = t.attempted.difference(&t.ack_confirmed).count() as u64;
    if total + dlq_total < must_hold {
        t.violation(format!(
            "cycle {cycle}: after restart the queues hold {total} + {dlq_total} messages, \
             fewer than the {must_hold} confirmed and never acked"
        ));
    }
    if total > may_hold {
        t.violation(format!(
            "cycle {cycle}: after restart the queue holds {total} messages, more than the \
             {may_hold} sent and not confirmed acked"
        ));
    }
    if q["in_flight"].as_u64() != Some(0) {
        t.violation(format!("cycle {cycle}: leases survived a restart: {q}"));
    }
    Ok(())
}

/// Receives and acks everything left in both queues (HTTP), recording each delivery.
async fn drain(
    http: &reqwest::Client,
    server: &Server,
    tracker: &Shared,
    cycle: u64,
) -> Result<(), String> {
    for q in [QUEUE, DLQ] {
        loop {
            let got = post(
                http,
                server.url(&format!("/v1/queues/{q}/receive")),
                json!({ "max": 1000, "wait_ms": 0 }),
            )
            .await?;
            let messages = got["messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                let stats = queue_total(http, server, q).await?;
                if stats["total"].as_u64() != Some(0) {
                    return Err(format!("drain of {q}: nothing receivable but {stats}"));
                }
                break;
            }
            let mut receipts = Vec::new();
            {
                let mut t = tracker.lock();
                for m in &messages {
                    let id = m["id"].as_str().unwrap_or_default();
                    let body = decode_body(m);
                    t.delivered(id, &body, "drain", cycle);
                    receipts.push(m["receipt"].clone());
                }
            }
            post(
                http,
                server.url(&format!("/v1/queues/{q}/ack")),
                json!({ "receipts": receipts }),
            )
            .await?;
        }
    }
    Ok(())
}

fn decode_body(m: &Value) -> Vec<u8> {
    use base64::Engine as _;
    m["body_base64"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default()
}

async fn http_producer(
    http: reqwest::Client,
    base: String,
    tracker: Shared,
    stop: Arc<AtomicBool>,
    cycle: u64,
    worker: u64,
    seed: u64,
) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let n = rng.gen_range(1..=MAX_BATCH);
        let ids: Vec<String> = (0..n)
            .map(|_| {
                seq += 1;
                format!("h{cycle}-{worker}-{seq}")
            })
            .collect();
        let messages: Vec<Value> = ids
            .iter()
            .map(|id| json!({ "id": id, "body": expected_body(id) }))
            .collect();
        tracker.lock().attempted.extend(ids.iter().cloned());
        match post(
            &http,
            format!("{base}/v1/queues/{QUEUE}/messages"),
            json!({ "messages": messages }),
        )
        .await
        {
            Ok(v) => {
                let confirmed: Vec<String> = v["messages"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|m| m["id"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if confirmed != ids {
                    return Err(format!("publish answered other ids: {v}"));
                }
                tracker.lock().confirmed.extend(confirmed);
            }
            Err(e) if e.starts_with("503") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    Ok(())
}

async fn http_consumer(
    http: reqwest::Client,
    base: String,
    tracker: Shared,
    stop: Arc<AtomicBool>,
    cycle: u64,
) -> Result<(), String> {
    while !stop.load(Ordering::SeqCst) {
        let got = match post(
            &http,
            format!("{base}/v1/queues/{QUEUE}/receive"),
            json!({ "max": MAX_RECEIVE, "wait_ms": 100 }),
        )
        .await
        {
            Ok(v) => v,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let messages = got["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        let mut by_receipt = HashMap::new();
        {
            let mut t = tracker.lock();
            for m in &messages {
                let id = m["id"].as_str().unwrap_or_default().to_string();
                t.delivered(&id, &decode_body(m), "http", cycle);
                t.ack_sent.insert(id.clone());
                by_receipt.insert(m["receipt"].as_str().unwrap_or_default().to_string(), id);
            }
        }
        let receipts: Vec<&String> = by_receipt.keys().collect();
        if let Ok(v) = post(
            &http,
            format!("{base}/v1/queues/{QUEUE}/ack"),
            json!({ "receipts": receipts }),
        )
        .await
        {
            let invalid: HashSet<&str> = v["invalid"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut t = tracker.lock();
            for (r, id) in &by_receipt {
                if !invalid.contains(r.as_str()) {
                    t.ack_confirmed.insert(id.clone());
                }
            }
        }
    }
    Ok(())
}

async fn native_producer(
    addr: SocketAddr,
    tracker: Shared,
    stop: Arc<AtomicBool>,
    cycle: u64,
    seed: u64,
) -> Result<(), String> {
    let Ok(Ok(client)) =
        tokio::time::timeout(REQUEST_TIMEOUT, weir_client::Client::connect(addr)).await
    else {
        // Killed before we connected: nothing attempted, nothing to check.
        return Ok(());
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let n = rng.gen_range(1..=MAX_BATCH);
        let ids: Vec<String> = (0..n)
            .map(|_| {
                seq += 1;
                format!("n{cycle}-{seq}")
            })
            .collect();
        let messages = ids
            .iter()
            .map(|id| weir_client::Message::new(expected_body(id)).id(id.clone()))
            .collect();
        tracker.lock().attempted.extend(ids.iter().cloned());
        match tokio::time::timeout(REQUEST_TIMEOUT, client.publish(QUEUE, messages)).await {
            Ok(Ok(results)) => {
                let confirmed: Vec<String> = results.into_iter().map(|r| r.id).collect();
                if confirmed != ids {
                    return Err(format!("native publish answered other ids: {confirmed:?}"));
                }
                tracker.lock().confirmed.extend(confirmed);
            }
            Ok(Err(e)) if e.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The connection died with the server: this cycle is over for us.
            Ok(Err(_)) | Err(_) => return Ok(()),
        }
    }
    Ok(())
}

async fn native_consumer(
    addr: SocketAddr,
    tracker: Shared,
    stop: Arc<AtomicBool>,
    cycle: u64,
) -> Result<(), String> {
    let Ok(Ok(client)) =
        tokio::time::timeout(REQUEST_TIMEOUT, weir_client::Client::connect(addr)).await
    else {
        return Ok(());
    };
    while !stop.load(Ordering::SeqCst) {
        let got = match tokio::time::timeout(
            REQUEST_TIMEOUT,
            client.receive(QUEUE, MAX_RECEIVE, Duration::from_millis(100), None),
        )
        .await
        {
            Ok(Ok(d)) => d,
            Ok(Err(_)) | Err(_) => return Ok(()),
        };
        if got.is_empty() {
            continue;
        }
        let mut by_receipt = HashMap::new();
        {
            let mut t = tracker.lock();
            for d in &got {
                t.delivered(&d.id, &d.body, "native", cycle);
                t.ack_sent.insert(d.id.clone());
                by_receipt.insert(d.receipt.clone(), d.id.clone());
            }
        }
        let receipts: Vec<String> = by_receipt.keys().cloned().collect();
        match tokio::time::timeout(REQUEST_TIMEOUT, client.ack(QUEUE, receipts)).await {
            Ok(Ok(done)) => {
                let invalid: HashSet<String> = done.invalid.into_iter().collect();
                let mut t = tracker.lock();
                for (r, id) in &by_receipt {
                    if !invalid.contains(r) {
                        t.ack_confirmed.insert(id.clone());
                    }
                }
            }
            Ok(Err(_)) | Err(_) => return Ok(()),
        }
    }
    Ok(())
}
