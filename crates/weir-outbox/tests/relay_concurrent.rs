//! Two relays at once on one PostgreSQL outbox: no row is published twice (SKIP LOCKED hands them
//! disjoint rows) and per-key order holds (a relay holds back rows whose key has an older unsent
//! row held by the other relay).

mod common;

use std::time::{Duration, Instant};

use common::{consume, TestDb, Weir};
use serde_json::json;
use weir_outbox::{Relay, RelayConfig};

const ROWS: usize = 3000;
/// Distinct keys of the rows.
const KEYS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_publish_each_row_once_and_keep_per_key_order() {
    common::init_tracing();
    let db = TestDb::create().await;
    let weir = Weir::start().await;
    weir.create_queue("payments", json!({})).await;

    let mut tasks = Vec::new();
    let mut metrics = Vec::new();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    for _ in 0..2 {
        let mut config = RelayConfig::new(&db.url, &weir.url);
        // 16 rows per claim over 24 keys: a claim made while the other relay holds the previous
        // 16 rows shares 8 keys with it (held back) and has 8 of its own (published), so both
        // relays publish and both hold back. (With 40 rows over 8 keys every claim of the
        // second relay met all 8 keys held by the first: on a quick machine one relay did all
        // the work and the test failed its own premise.)
        config.batch_size = 16;
        config.poll_interval = Duration::from_millis(100);
        let relay = Relay::new(config).unwrap();
        metrics.push(relay.metrics());
        let mut stop = stop_tx.subscribe();
        tasks.push(tokio::spawn(relay.run(async move {
            let _ = stop.recv().await;
        })));
    }
    // Rows arrive while both relays run, over 24 keys: both relays constantly meet the same keys.
    let producer = {
        let db_url = db.url.clone();
        tokio::spawn(async move {
            let db = TestDb {
                name: String::new(),
                url: db_url,
            };
            let mut ids = Vec::new();
            for _ in 0..6 {
                ids.extend(common::insert_rows(&db, "payments", ROWS / 6, KEYS).await);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            ids
        })
    };
    let ids = producer.await.unwrap();
    let started = Instant::now();
    while db.count("sent_at IS NULL").await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "relays did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(()).unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let snapshots: Vec<_> = metrics.iter().map(|m| m.snapshot()).collect();
    eprintln!("relay metrics: {snapshots:#?}");
    let published: u64 = snapshots.iter().map(|s| s.published_total).sum();
    let duplicates: u64 = snapshots.iter().map(|s| s.duplicates_total).sum();
    assert_eq!(
        published, ROWS as u64,
        "a row was published twice (or missed)"
    );
    assert_eq!(duplicates, 0, "a row was published twice");
    assert!(
        snapshots.iter().all(|s| s.published_total > 0),
        "one relay did all the work: the test proved nothing about two relays"
    );
    assert!(
        snapshots.iter().map(|s| s.held_back_total).sum::<u64>() > 0,
        "no row was held back: the relays never met on a key, so key order across relays was not tested"
    );

    let received = consume(&weir.url, "payments", ROWS, Duration::from_secs(20)).await;
    common::assert_exactly_once_in_key_order(&received, &ids);
    weir.stop().await;
    db.drop_db().await;
}
