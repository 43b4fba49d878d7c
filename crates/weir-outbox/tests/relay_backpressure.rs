//! Weir down or busy: the relay waits and retries, rows stay pending, nothing is lost, and the
//! relay holds one batch at a time (back pressure reaches the relay, not its memory).

mod common;

use std::time::{Duration, Instant};

use common::{consume, TestDb, Weir};
use serde_json::json;
use weir_outbox::{Relay, RelayConfig};

async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn weir_down_then_up_rows_wait_then_all_arrive_once() {
    common::init_tracing();
    let db = TestDb::create().await;
    // An address where nothing listens yet; Weir starts there later.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = RelayConfig::new(&db.url, format!("http://{addr}"));
    config.batch_size = 100;
    config.backoff_base = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(400);
    config.max_hold = Duration::from_millis(500);
    let relay = Relay::new(config).unwrap();
    let metrics = relay.metrics();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async {
        let _ = stop_rx.await;
    }));
    let ids = common::insert_rows(&db, "payments", 500, 5).await;
    wait_until(
        "the relay to notice Weir is down",
        Duration::from_secs(10),
        async || metrics.snapshot().unavailable_total >= 3,
    )
    .await;
    assert_eq!(
        db.count("sent_at IS NULL").await,
        500,
        "rows must stay pending while Weir is down"
    );
    assert_eq!(metrics.snapshot().published_total, 0);

    let weir = Weir::start_at(tempfile::tempdir().unwrap(), Some(addr)).await;
    // Up, but the queue is not there yet: 404 is waited out too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(db.count("sent_at IS NULL").await, 500);
    weir.create_queue("payments", json!({})).await;
    let received = consume(&weir.url, "payments", 500, Duration::from_secs(20)).await;
    common::assert_exactly_once_in_key_order(&received, &ids);
    assert_eq!(db.count("sent_at IS NULL").await, 0);
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    weir.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn weir_busy_the_relay_backs_off_and_rows_stay_pending() {
    common::init_tracing();
    let db = TestDb::create().await;
    let weir = Weir::start().await;
    weir.create_queue("payments", json!({ "max_depth": 250 }))
        .await;
    let mut config = RelayConfig::new(&db.url, &weir.url);
    config.batch_size = 100;
    config.backoff_base = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(500);
    let relay = Relay::new(config).unwrap();
    let metrics = relay.metrics();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async {
        let _ = stop_rx.await;
    }));
    let ids = common::insert_rows(&db, "payments", 600, 6).await;
    wait_until("a busy answer", Duration::from_secs(10), async || {
        metrics.snapshot().busy_total > 0
    })
    .await;
    // The queue holds at most 250: the rest waits in the table, not in the relay.
    let pending = db.count("sent_at IS NULL").await;
    assert!(
        pending >= 350,
        "{pending} pending: rows left the table without being stored"
    );
    let published = metrics.snapshot().published_total;
    assert!(published <= 250, "{published} confirmed past max_depth");

    let received = consume(&weir.url, "payments", 600, Duration::from_secs(40)).await;
    common::assert_exactly_once_in_key_order(&received, &ids);
    let s = metrics.snapshot();
    eprintln!("busy test metrics: {s:?}");
    assert_eq!(s.published_total, 600);
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    weir.stop().await;
    db.drop_db().await;
}
