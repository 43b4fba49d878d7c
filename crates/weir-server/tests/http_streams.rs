//! Streams and consumer groups over real HTTP against a real server on real files.

mod common;

use std::time::Duration;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn append(s: &TestServer, stream: &str, records: Value) -> Vec<(u64, u64)> {
    let out = s
        .ok(
            Method::POST,
            &format!("/v1/streams/{stream}/records"),
            Some(json!({ "records": records })),
        )
        .await;
    out["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["partition"].as_u64().expect("p"),
                r["offset"].as_u64().expect("o"),
            )
        })
        .collect()
}

async fn read(s: &TestServer, stream: &str, p: u64, query: &str) -> Value {
    s.ok(
        Method::GET,
        &format!("/v1/streams/{stream}/partitions/{p}/records?{query}"),
        None,
    )
    .await
}

fn bodies(v: &Value) -> Vec<String> {
    v["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["body"].as_str().expect("body").to_string())
        .collect()
}

#[tokio::test]
async fn append_read_by_offset_and_time_and_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    let (status, body, _) = s
        .call(
            Method::PUT,
            "/v1/streams/clicks",
            Some(json!({ "partitions": 3 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["partitions"], 3);
    let (status, _, _) = s
        .call(
            Method::PUT,
            "/v1/streams/clicks",
            Some(json!({ "partitions": 4 })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let recs: Vec<Value> = (0..12)
        .map(|i| json!({ "key": format!("user-{}", i % 3), "body": format!("{i}"), "headers": { "n": format!("{i}") } }))
        .collect();
    let pos = append(&s, "clicks", Value::Array(recs)).await;
    // Same key, same partition, consecutive offsets in order.
    for k in 0..3 {
        let mine: Vec<(u64, u64)> = pos.iter().skip(k).step_by(3).copied().collect();
        assert!(mine.iter().all(|(p, _)| *p == mine[0].0));
        assert!(mine.windows(2).all(|w| w[1].1 > w[0].1));
    }
    let p = pos[0].0;
    let all = read(&s, "clicks", p, "offset=0&max=100").await;
    let expected: Vec<String> = pos
        .iter()
        .enumerate()
        .filter(|(_, (q, _))| *q == p)
        .map(|(i, _)| format!("{i}"))
        .collect();
    assert_eq!(bodies(&all), expected);
    let first = &all["records"][0];
    assert_eq!(first["key"], "user-0");
    assert_eq!(first["headers"]["n"], "0");
    assert!(first["body_base64"].is_string());
    let ts = first["timestamp_ms"].as_u64().expect("ts");
    // Replay from 0 after reading: reads consume nothing.
    assert_eq!(
        bodies(&read(&s, "clicks", p, "offset=0&max=1").await),
        vec!["0"]
    );
    let by_time = read(&s, "clicks", p, &format!("timestamp_ms={ts}&max=1")).await;
    assert_eq!(by_time["records"][0]["offset"], 0);
    let future = read(&s, "clicks", p, &format!("timestamp_ms={}", ts + 3_600_000)).await;
    assert!(bodies(&future).is_empty());
    // Tailing: a long poll at the end wakes when a record arrives.
    let end = all["next_offset"].as_u64().expect("next");
    let tail = {
        let url = format!(
            "{}/v1/streams/clicks/partitions/{p}/records?offset={end}&wait_ms=5000",
            s.base
        );
        let http = s.http.clone();
        tokio::spawn(async move {
            http.get(url)
                .send()
                .await
                .expect("sent")
                .json::<Value>()
                .await
                .expect("json")
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&s, "clicks", json!([{ "key": "user-0", "body": "late" }])).await;
    let got = tail.await.expect("join");
    assert_eq!(bodies(&got), vec!["late"]);
    assert_eq!(got["next_offset"], end + 1);
    // A poll that times out returns nothing and the same position.
    let idle = read(&s, "clicks", p, &format!("offset={}&wait_ms=50", end + 1)).await;
    assert!(bodies(&idle).is_empty());
    assert_eq!(idle["next_offset"], end + 1);
    // Bad input.
    for q in [
        "offset=0&timestamp_ms=1",
        "max=0",
        "wait_ms=999999",
        "offset=-1",
        "bogus=1",
        "offset=999",
    ] {
        let (status, body, _) = s
            .call(
                Method::GET,
                &format!("/v1/streams/clicks/partitions/{p}/records?{q}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
    }
    let (status, _, _) = s
        .call(Method::GET, "/v1/streams/clicks/partitions/9/records", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = s
        .call(Method::GET, "/v1/streams/clicks/partitions/x/records", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = s
        .call(
            Method::POST,
            "/v1/streams/clicks/records",
            Some(json!({ "records": [{ "bdy": "x" }] })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = s
        .call(
            Method::POST,
            "/v1/streams/none/records",
            Some(json!({ "records": [{ "body": "x" }] })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let list = s.ok(Method::GET, "/v1/streams", None).await;
    assert_eq!(list["streams"][0]["name"], "clicks");
    s.stop().await;
}

#[tokio::test]
async fn consumer_groups_rebalance_commit_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    s.ok(
        Method::PUT,
        "/v1/streams/orders",
        Some(json!({ "partitions": 2 })),
    )
    .await;
    let recs: Vec<Value> = (0..10)
        .map(|i| json!({ "key": format!("k{i}"), "body": "x" }))
        .collect();
    append(&s, "orders", Value::Array(recs)).await;
    let members = "/v1/streams/orders/groups/g/members";
    let (status, a, _) = s
        .call(
            Method::PUT,
            &format!("{members}/a"),
            Some(json!({ "session_timeout_ms": 500 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    assert_eq!(a["partitions"], json!([0, 1]));
    let (status, _, _) = s
        .call(
            Method::PUT,
            &format!("{members}/b"),
            Some(json!({ "session_timeout_ms": 500 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let a = s
        .ok(Method::POST, &format!("{members}/a/heartbeat"), None)
        .await;
    assert_eq!(a["partitions"], json!([0]));
    let generation = a["generation"].as_u64().expect("generation");
    // a commits its partition; committing b's is a conflict.
    let commit = "/v1/streams/orders/groups/g/offsets";
    s.ok(
        Method::POST,
        commit,
        Some(json!({ "member": "a", "generation": generation, "offsets": [{ "partition": 0, "offset": 2 }] })),
    )
    .await;
    let (status, _, _) = s
        .call(
            Method::POST,
            commit,
            Some(json!({ "member": "a", "offsets": [{ "partition": 1, "offset": 1 }] })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // b dies: after its session timeout a owns everything; the heartbeat tells it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.ok(Method::POST, &format!("{members}/a/heartbeat"), None)
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let a = s
        .ok(Method::POST, &format!("{members}/a/heartbeat"), None)
        .await;
    assert_eq!(a["partitions"], json!([0, 1]));
    let (status, _, _) = s
        .call(Method::POST, &format!("{members}/b/heartbeat"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let group = s.ok(Method::GET, "/v1/streams/orders/groups/g", None).await;
    assert_eq!(group["members"].as_array().map(Vec::len), Some(1));
    let p0 = &group["partitions"][0];
    assert_eq!(p0["owner"], "a");
    assert_eq!(p0["committed"], 2);
    assert_eq!(p0["lag"], p0["end_offset"].as_u64().expect("end") - 2);
    let (status, _, _) = s.call(Method::DELETE, &format!("{members}/a"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.stop().await;

    // Committed offsets survive a server restart over the same data directory.
    let s = TestServer::start(dir.path()).await;
    let offsets = s.ok(Method::GET, commit, None).await;
    assert_eq!(offsets["partitions"][0]["committed"], 2);
    assert_eq!(offsets["partitions"][1]["committed"], Value::Null);
    let a = s
        .ok(Method::PUT, &format!("{members}/a"), Some(json!({})))
        .await;
    assert_eq!(a["committed"][0], json!({ "partition": 0, "offset": 2 }));
    let groups = s.ok(Method::GET, "/v1/streams/orders/groups", None).await;
    assert_eq!(groups["groups"], json!(["g"]));
    let (status, _, _) = s.call(Method::DELETE, "/v1/streams/orders", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = s.call(Method::GET, "/v1/streams/orders", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn retention_by_age_drops_whole_old_segments_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = weir_server::ServerConfig::ephemeral(dir.path());
    config.broker.log.segment_bytes = 4096;
    let s = TestServer::start_with(config).await;
    s.ok(
        Method::PUT,
        "/v1/streams/logs",
        Some(json!({ "retention_ms": 300 })),
    )
    .await;
    let body = "y".repeat(500);
    for _ in 0..4 {
        let recs: Vec<Value> = (0..10).map(|_| json!({ "body": body })).collect();
        append(&s, "logs", Value::Array(recs)).await;
    }
    let before = s.ok(Method::GET, "/v1/streams/logs", None).await;
    assert_eq!(before["partition_stats"][0]["start_offset"], 0);
    assert!(
        before["partition_stats"][0]["segments"]
            .as_u64()
            .expect("segments")
            > 2
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    append(&s, "logs", json!([{ "body": "fresh" }])).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a few ticks
    let after = s.ok(Method::GET, "/v1/streams/logs", None).await;
    let start = after["partition_stats"][0]["start_offset"]
        .as_u64()
        .expect("start");
    assert!(start > 0 && start <= 40, "start {start}");
    // What remains starts at a segment boundary and ends with the fresh record.
    let got = read(&s, "logs", 0, "offset=0&max=1000").await;
    assert_eq!(got["records"][0]["offset"], start);
    assert_eq!(got["next_offset"], 41);
    assert_eq!(bodies(&got).last().map(String::as_str), Some("fresh"));
    s.stop().await;
}
