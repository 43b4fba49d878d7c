//! Measures one relay's throughput on PostgreSQL (printed; asserted only loosely) — the number
//! quoted in docs/outbox.md comes from here.

mod common;

use std::time::{Duration, Instant};

use common::{consume, TestDb, Weir};
use serde_json::json;
use weir_outbox::{Relay, RelayConfig};

const ROWS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_drains_ten_thousand_rows() {
    common::init_tracing();
    let db = TestDb::create().await;
    let weir = Weir::start().await;
    weir.create_queue("payments", json!({})).await;
    let ids = common::insert_rows(&db, "payments", ROWS, 100).await;
    let mut relay = Relay::new(RelayConfig::new(&db.url, &weir.url)).unwrap();
    let started = Instant::now();
    assert_eq!(relay.drain().await.unwrap(), ROWS as u64);
    let elapsed = started.elapsed();
    eprintln!(
        "relay throughput: {ROWS} rows in {elapsed:?} = {:.0} rows/s (batch 500)",
        ROWS as f64 / elapsed.as_secs_f64()
    );
    assert!(elapsed < Duration::from_secs(30));
    let received = consume(&weir.url, "payments", ROWS, Duration::from_secs(20)).await;
    common::assert_exactly_once_in_key_order(&received, &ids);
    drop(relay);
    weir.stop().await;
    db.drop_db().await;
}
