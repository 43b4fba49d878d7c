//! Shared test fixtures: a fresh PostgreSQL database per test, an in-process Weir server, and a
//! consumer that drains a queue.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use weir_outbox::schema::{self, TableName};

/// The admin connection string (tests create their own databases through it).
pub fn admin_url() -> String {
    std::env::var("WEIR_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".to_owned())
}

/// `url` pointed at database `name`.
fn with_dbname(url: &str, name: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (url, String::new()),
        };
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let host_part = match base[scheme_end..].find('/') {
            Some(i) => &base[..scheme_end + i],
            None => base,
        };
        format!("{host_part}/{name}{query}")
    } else {
        format!("{url} dbname={name}")
    }
}

/// A uniquely named PostgreSQL database, with the outbox table migrated.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Creates the database; panics (the test FAILS) when PostgreSQL is unreachable.
    pub async fn create() -> TestDb {
        let admin = admin_url();
        let client = weir_outbox::pg::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is unreachable at {admin:?} (set WEIR_TEST_DATABASE_URL): {e}")
        });
        let name = format!(
            "weir_outbox_test_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = with_dbname(&admin, &name);
        let db = TestDb { name, url };
        let c = db.client().await;
        schema::migrate_postgres(&c, &TableName::default())
            .await
            .expect("migrate");
        db
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        weir_outbox::pg::connect(&self.url)
            .await
            .expect("connect to test database")
    }

    pub async fn count(&self, filter: &str) -> i64 {
        self.client()
            .await
            .query_one(
                &format!("SELECT count(*) FROM weir_outbox WHERE {filter}"),
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    pub async fn drop_db(self) {
        let client = weir_outbox::pg::connect(&admin_url()).await.unwrap();
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .unwrap();
    }
}

/// An in-process Weir with its temporary data directory.
pub struct Weir {
    pub server: weir_server::RunningServer,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Weir {
    pub async fn start() -> Weir {
        let dir = tempfile::tempdir().unwrap();
        Self::start_at(dir, None).await
    }

    /// Starts on a given HTTP address (to bring Weir up where a relay already looks for it).
    pub async fn start_at(dir: tempfile::TempDir, http: Option<std::net::SocketAddr>) -> Weir {
        let mut config = weir_server::ServerConfig::ephemeral(dir.path().join("data"));
        if let Some(addr) = http {
            config.http_addr = addr;
        }
        let server = weir_server::start(config).await.expect("start weir");
        let url = format!("http://{}", server.http_addr());
        Weir { server, url, dir }
    }

    pub async fn create_queue(&self, name: &str, config: Value) {
        let r = reqwest::Client::new()
            .put(format!("{}/v1/queues/{name}", self.url))
            .json(&config)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create queue: {}", r.status());
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// One message as the consumer saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub key: Option<String>,
    pub body: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// Receives and acks messages until `expected` arrived or `timeout` passed; then keeps reading a
/// short while longer to catch extras. Returns them in delivery order.
pub async fn consume(
    weir_url: &str,
    queue: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<Received> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut quiet_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now > deadline || quiet_until.is_some_and(|q| now > q) {
            break;
        }
        let r: Value = http
            .post(format!("{weir_url}/v1/queues/{queue}/receive"))
            .json(&json!({"max": 1000, "wait_ms": 100}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let messages = r["messages"].as_array().cloned().unwrap_or_default();
        let mut receipts = Vec::new();
        for m in &messages {
            let body = base64::engine::general_purpose::STANDARD
                .decode(m["body_base64"].as_str().unwrap())
                .unwrap();
            let headers = m["headers"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Received {
                id: m["id"].as_str().unwrap().to_owned(),
                key: m["key"].as_str().map(str::to_owned),
                body,
                headers,
            });
            receipts.push(m["receipt"].clone());
        }
        if !receipts.is_empty() {
            let r = http
                .post(format!("{weir_url}/v1/queues/{queue}/ack"))
                .json(&json!({ "receipts": receipts }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
        if out.len() >= expected && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_millis(300));
        }
    }
    out
}

/// Asserts: every id in `expected_ids` arrived exactly once, nothing else arrived, and per key the
/// ids arrived in increasing row order.
pub fn assert_exactly_once_in_key_order(received: &[Received], expected_ids: &[i64]) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for m in received {
        *seen.entry(m.id.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    let missing: Vec<_> = expected_ids
        .iter()
        .filter(|id| !seen.contains_key(id.to_string().as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} never delivered, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(
        received.len(),
        expected_ids.len(),
        "unexpected extra messages"
    );
    let mut last: HashMap<&str, i64> = HashMap::new();
    for m in received {
        let id: i64 = m.id.parse().unwrap();
        if let Some(k) = m.key.as_deref() {
            if let Some(prev) = last.insert(k, id) {
                assert!(prev < id, "key {k}: {id} delivered after {prev}");
            }
        }
    }
}

/// Inserts `n` committed rows to `queue` with keys `k0..k{keys}` (round robin), in transactions of
/// 500, and returns their ids.
pub async fn insert_rows(db: &TestDb, queue: &str, n: usize, keys: usize) -> Vec<i64> {
    let mut client = db.client().await;
    let mut ids = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let mut tx = client.transaction().await.unwrap();
        for _ in 0..500.min(n - i) {
            let msg = weir_outbox::Message::new(format!("event {i}")).key(format!("k{}", i % keys));
            ids.push(weir_outbox::pg::enqueue(&mut tx, queue, msg).await.unwrap());
            i += 1;
        }
        tx.commit().await.unwrap();
    }
    ids
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}
