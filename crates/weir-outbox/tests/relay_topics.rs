//! A row whose destination is `topic:<t>` reaches every subscription of the topic exactly once,
//! also when the relay publishes it again (a crash between publish and mark).

mod common;

use common::Weir;
use serde_json::{json, Value};
use weir_outbox::{schema, Message, Relay, RelayConfig, TableName};

async fn put(url: String, body: Value) {
    let r = reqwest::Client::new()
        .put(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

async fn receive_all(weir: &Weir, topic: &str, sub: &str) -> Vec<(String, String)> {
    let r: Value = reqwest::Client::new()
        .post(format!(
            "{}/v1/topics/{topic}/subscriptions/{sub}/receive",
            weir.url
        ))
        .json(&json!({ "max": 100 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["body"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn topic_destination_fans_out_once_per_subscription_even_when_republished() {
    common::init_tracing();
    let weir = Weir::start().await;
    put(format!("{}/v1/topics/news", weir.url), json!({})).await;
    for sub in ["mail", "push"] {
        put(
            format!("{}/v1/topics/news/subscriptions/{sub}", weir.url),
            json!({ "start": "oldest" }),
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let mut conn = weir_outbox::sqlite::open(&path).unwrap();
        schema::migrate_sqlite(&conn, &TableName::default()).unwrap();
        let mut tx = conn.transaction().unwrap();
        weir_outbox::sqlite::enqueue(&mut tx, "topic:news", Message::new("a")).unwrap();
        weir_outbox::sqlite::enqueue(&mut tx, "topic:news", Message::new("b")).unwrap();
        tx.commit().unwrap();
    }
    let url = format!("sqlite:{}", path.display());
    let mut relay = Relay::new(RelayConfig::new(&url, &weir.url)).unwrap();
    assert_eq!(relay.drain().await.unwrap(), 2);
    drop(relay);
    // Simulate a crash between "published" and "marked sent": unmark the rows, relay again.
    {
        let conn = weir_outbox::sqlite::open(&path).unwrap();
        let n = conn
            .execute("UPDATE weir_outbox SET sent_at = NULL", [])
            .unwrap();
        assert_eq!(n, 2);
    }
    let mut relay = Relay::new(RelayConfig::new(&url, &weir.url)).unwrap();
    assert_eq!(relay.drain().await.unwrap(), 2, "published again");
    for sub in ["mail", "push"] {
        let got = receive_all(&weir, "news", sub).await;
        assert_eq!(
            got,
            vec![
                ("1".to_string(), "a".to_string()),
                ("2".to_string(), "b".to_string())
            ],
            "{sub}: each row once, in order"
        );
    }
    weir.stop().await;
}
