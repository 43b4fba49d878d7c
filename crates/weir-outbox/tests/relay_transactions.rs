//! Rolled back → never published; committed → published exactly once (PostgreSQL and a real SQLite
//! file, against a real Weir). Also: NOTIFY wake-ups, refused rows, cleanup, metrics.

mod common;

use std::time::Duration;

use common::{consume, TestDb, Weir};
use serde_json::json;
use weir_outbox::{schema, Message, Relay, RelayConfig, TableName};

#[tokio::test]
async fn pg_rolled_back_never_published_committed_published_once() {
    common::init_tracing();
    let db = TestDb::create().await;
    let weir = Weir::start().await;
    weir.create_queue("payments", json!({})).await;

    let mut client = db.client().await;
    client
        .batch_execute("CREATE TABLE orders (id BIGINT PRIMARY KEY, status TEXT NOT NULL)")
        .await
        .unwrap();
    // Rolled back: the order change and the event vanish together.
    let mut tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO orders VALUES (1, 'Placed')", &[])
        .await
        .unwrap();
    let lost = weir_outbox::pg::enqueue(&mut tx, "payments", Message::new("pay 1").key("1"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // Committed.
    let mut tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO orders VALUES (2, 'Placed')", &[])
        .await
        .unwrap();
    let id = weir_outbox::pg::enqueue(
        &mut tx,
        "payments",
        Message::new(r#"{"order":2}"#)
            .key("2")
            .header("type", "process_payment"),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_ne!(lost, id);

    let mut relay = Relay::new(RelayConfig::new(&db.url, &weir.url)).unwrap();
    assert_eq!(relay.drain().await.unwrap(), 1);
    assert_eq!(
        relay.drain().await.unwrap(),
        0,
        "a sent row is not sent again"
    );
    assert_eq!(db.count("sent_at IS NOT NULL").await, 1);

    let got = consume(&weir.url, "payments", 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].id, id.to_string());
    assert_eq!(got[0].body, br#"{"order":2}"#);
    assert_eq!(got[0].key.as_deref(), Some("2"));
    assert_eq!(got[0].headers["type"], "process_payment");
    weir.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn sqlite_rolled_back_never_published_committed_published_once() {
    common::init_tracing();
    let weir = Weir::start().await;
    weir.create_queue("payments", json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    {
        let mut conn = weir_outbox::sqlite::open(&path).unwrap();
        schema::migrate_sqlite(&conn, &TableName::default()).unwrap();
        conn.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT)")
            .unwrap();
        let mut tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO orders VALUES (1, 'Placed')", [])
            .unwrap();
        weir_outbox::sqlite::enqueue(&mut tx, "payments", Message::new("pay 1")).unwrap();
        tx.rollback().unwrap();
        let mut tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO orders VALUES (2, 'Placed')", [])
            .unwrap();
        for i in 0..3 {
            weir_outbox::sqlite::enqueue(
                &mut tx,
                "payments",
                Message::new(format!("pay 2.{i}")).key("2"),
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let url = format!("sqlite:{}", path.display());
    let mut relay = Relay::new(RelayConfig::new(&url, &weir.url)).unwrap();
    assert_eq!(relay.drain().await.unwrap(), 3);
    assert_eq!(relay.drain().await.unwrap(), 0);
    let got = consume(&weir.url, "payments", 3, Duration::from_secs(5)).await;
    let bodies: Vec<_> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert_eq!(bodies, ["pay 2.0", "pay 2.1", "pay 2.2"]);
    // AUTOINCREMENT: the rolled-back insert's id is never handed out again, but the first
    // committed row may reuse it (it was never committed, so never published): ids are 1..=3.
    let ids: Vec<_> = got.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, ["1", "2", "3"]);
    weir.stop().await;
}

#[tokio::test]
async fn pg_notify_wakes_the_relay_without_polling() {
    common::init_tracing();
    let db = TestDb::create().await;
    let weir = Weir::start().await;
    weir.create_queue("payments", json!({})).await;
    let mut config = RelayConfig::new(&db.url, &weir.url);
    config.poll_interval = Duration::from_secs(60);
    let relay = Relay::new(config).unwrap();
    let metrics = relay.metrics();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async {
        let _ = stop_rx.await;
    }));
    // Let the relay find the table empty and go to sleep for up to 60 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    common::insert_rows(&db, "payments", 3, 1).await;
    let got = consume(&weir.url, "payments", 3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woke after {:?}: NOTIFY did not wake the relay",
        started.elapsed()
    );
    assert_eq!(metrics.snapshot().published_total, 3);
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    weir.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn refused_rows_are_marked_failed_and_do_not_block_the_rest() {
    common::init_tracing();
    let db = TestDb::create().await;
    let weir = Weir::start().await;
    weir.create_queue("payments", json!({})).await;
    let client = db.client().await;
    // Written by hand, around the helper's checks: a bad destination name and an over-large body.
    client
        .batch_execute(
            "INSERT INTO weir_outbox (destination, body) VALUES ('payments', 'a'); \
             INSERT INTO weir_outbox (destination, body) VALUES ('bad name!', 'b'); \
             INSERT INTO weir_outbox (destination, body) VALUES ('payments', 'c'); \
             INSERT INTO weir_outbox (destination, body) VALUES ('payments', repeat('x', 2000000)::bytea); \
             INSERT INTO weir_outbox (destination, body) VALUES ('payments', 'e');",
        )
        .await
        .unwrap();
    let mut relay = Relay::new(RelayConfig::new(&db.url, &weir.url)).unwrap();
    assert_eq!(relay.drain().await.unwrap(), 3);
    assert_eq!(
        db.count("failed_at IS NOT NULL AND last_error IS NOT NULL")
            .await,
        2
    );
    let got = consume(&weir.url, "payments", 3, Duration::from_secs(5)).await;
    let bodies: Vec<_> = got.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies, [b"a".to_vec(), b"c".to_vec(), b"e".to_vec()]);
    assert_eq!(relay.metrics().snapshot().failed_total, 2);
    weir.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn sent_rows_are_cleaned_after_retention_and_metrics_measure_the_table() {
    common::init_tracing();
    let db = TestDb::create().await;
    let weir = Weir::start().await;
    weir.create_queue("payments", json!({})).await;
    common::insert_rows(&db, "payments", 20, 4).await;
    // Weir is not told about "nowhere": those rows stay pending (404 is retried).
    common::insert_rows(&db, "nowhere", 2, 1).await;
    let mut config = RelayConfig::new(&db.url, &weir.url);
    config.retention = Duration::from_millis(200);
    config.cleanup_interval = Duration::from_millis(100);
    config.stats_interval = Duration::from_millis(100);
    config.max_hold = Duration::from_millis(300);
    config.backoff_max = Duration::from_millis(100);
    let relay = Relay::new(config).unwrap();
    let metrics = relay.metrics();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async {
        let _ = stop_rx.await;
    }));
    let got = consume(&weir.url, "payments", 20, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 20);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while db.count("true").await > 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "sent rows were not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = metrics.snapshot();
    assert_eq!(s.pending_rows, 2, "{s:?}");
    assert!(s.lag_secs > 0.0, "{s:?}");
    assert_eq!(s.cleaned_total, 20, "{s:?}");
    assert!(s.unavailable_total > 0, "{s:?}");
    assert!(metrics
        .render_prometheus()
        .contains("weir_outbox_pending_rows 2\n"));
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(
        db.count("sent_at IS NULL").await,
        2,
        "unknown destination rows stay pending"
    );
    weir.stop().await;
    db.drop_db().await;
}
