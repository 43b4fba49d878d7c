//! `/metrics` covers topics, their subscriptions, stream partitions and consumer groups, with
//! values that follow what was done over the API (real server, real files, real HTTP).

mod common;

use common::TestServer;
use reqwest::Method;
use serde_json::json;

async fn scrape(s: &TestServer) -> String {
    s.http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("get /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the sample `name{labels}`, failing with the whole page when it is missing.
fn sample(text: &str, series: &str) -> u64 {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("sample {series}: {e}"))
}

#[tokio::test]
async fn topic_subscription_metrics_follow_publishes_and_acks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    s.ok(Method::PUT, "/v1/topics/events", Some(json!({})))
        .await;
    for sub in ["billing", "audit"] {
        s.ok(
            Method::PUT,
            &format!("/v1/topics/events/subscriptions/{sub}"),
            Some(json!({})),
        )
        .await;
    }
    s.ok(
        Method::POST,
        "/v1/topics/events/messages",
        Some(json!({ "messages": [{ "body": "a" }, { "body": "b" }, { "body": "c" }] })),
    )
    .await;
    // billing takes and acks one message; audit is left behind.
    let got = s
        .ok(
            Method::POST,
            "/v1/topics/events/subscriptions/billing/receive",
            Some(json!({ "max": 1 })),
        )
        .await;
    let receipt = got["messages"][0]["receipt"].clone();
    s.ok(
        Method::POST,
        "/v1/topics/events/subscriptions/billing/ack",
        Some(json!({ "receipts": [receipt] })),
    )
    .await;

    let text = scrape(&s).await;
    let t = "topic=\"events\"";
    assert_eq!(
        sample(&text, &format!("weir_topic_published_total{{{t}}}")),
        3
    );
    assert_eq!(
        sample(&text, &format!("weir_topic_subscriptions{{{t}}}")),
        2
    );
    assert!(sample(&text, &format!("weir_topic_disk_bytes{{{t}}}")) > 0);
    let billing = format!("{t},subscription=\"billing\"");
    let audit = format!("{t},subscription=\"audit\"");
    assert_eq!(
        sample(&text, &format!("weir_subscription_depth{{{billing}}}")),
        2
    );
    assert_eq!(
        sample(&text, &format!("weir_subscription_depth{{{audit}}}")),
        3
    );
    assert_eq!(
        sample(
            &text,
            &format!("weir_subscription_acked_total{{{billing}}}")
        ),
        1
    );
    assert_eq!(
        sample(&text, &format!("weir_subscription_acked_total{{{audit}}}")),
        0
    );
    assert_eq!(
        sample(&text, &format!("weir_subscription_slowest{{{audit}}}")),
        1
    );
    assert_eq!(
        sample(&text, &format!("weir_subscription_slowest{{{billing}}}")),
        0
    );
    // Subscriptions are not reported as queues.
    assert!(!text.contains("queue=\"billing\""), "{text}");
    s.stop().await;
}

#[tokio::test]
async fn stream_partition_and_group_lag_metrics_follow_appends_and_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    s.ok(
        Method::PUT,
        "/v1/streams/orders",
        Some(json!({ "partitions": 2 })),
    )
    .await;
    let records: Vec<_> = (0..10)
        .map(|i| json!({ "key": format!("k{i}"), "body": "x" }))
        .collect();
    let appended = s
        .ok(
            Method::POST,
            "/v1/streams/orders/records",
            Some(json!({ "records": records })),
        )
        .await;
    let in_p0 = appended["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["partition"] == 0)
        .count() as u64;
    let member = s
        .ok(
            Method::PUT,
            "/v1/streams/orders/groups/g/members/a",
            Some(json!({})),
        )
        .await;
    let generation = member["generation"].as_u64().expect("generation");
    s.ok(
        Method::POST,
        "/v1/streams/orders/groups/g/offsets",
        Some(json!({ "member": "a", "generation": generation,
                     "offsets": [{ "partition": 0, "offset": 1 }] })),
    )
    .await;

    let text = scrape(&s).await;
    let p0 = "stream=\"orders\",partition=\"0\"";
    let p1 = "stream=\"orders\",partition=\"1\"";
    assert_eq!(
        sample(&text, &format!("weir_stream_end_offset{{{p0}}}")),
        in_p0
    );
    assert_eq!(
        sample(&text, &format!("weir_stream_end_offset{{{p1}}}")),
        10 - in_p0
    );
    assert!(sample(&text, &format!("weir_stream_disk_bytes{{{p0}}}")) > 0);
    let g = "stream=\"orders\",group=\"g\"";
    assert_eq!(
        sample(&text, &format!("weir_stream_group_members{{{g}}}")),
        1
    );
    assert_eq!(
        sample(
            &text,
            &format!("weir_stream_group_lag{{{g},partition=\"0\"}}")
        ),
        in_p0 - 1
    );
    assert_eq!(
        sample(
            &text,
            &format!("weir_stream_group_lag{{{g},partition=\"1\"}}")
        ),
        10 - in_p0
    );
    s.stop().await;
}

/// The value of the bucket `le` of histogram `name`.
fn bucket(text: &str, name: &str, le: &str) -> u64 {
    sample(text, &format!("{name}_bucket{{le=\"{le}\"}}"))
}

#[tokio::test]
async fn fdatasync_latency_histogram_counts_the_fsyncs_behind_confirms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    let name = "weir_fdatasync_seconds";
    let before = sample(&scrape(&s).await, &format!("{name}_count"));
    s.ok(Method::PUT, "/v1/queues/jobs", Some(json!({}))).await;
    // Each publish is confirmed only after an fdatasync covering it (policy `always`), and
    // one at a time none can share another's.
    for i in 0..5 {
        s.ok(
            Method::POST,
            "/v1/queues/jobs/messages",
            Some(json!({ "messages": [{ "body": format!("m{i}") }] })),
        )
        .await;
    }
    let text = scrape(&s).await;
    let count = sample(&text, &format!("{name}_count"));
    assert!(
        count >= before + 5,
        "5 confirmed publishes, one at a time, need 5 fdatasyncs: {before} -> {count}"
    );
    // Buckets are cumulative and end at the count.
    let bounds = [
        "0.00005", "0.0001", "0.0002", "0.0005", "0.001", "0.002", "0.005", "0.01", "0.025", "0.1",
        "0.25", "1",
    ];
    let mut last = 0;
    for le in bounds {
        let n = bucket(&text, name, le);
        assert!(
            n >= last,
            "bucket le={le} ({n}) below the previous one ({last})"
        );
        last = n;
    }
    assert!(last <= count);
    assert_eq!(bucket(&text, name, "+Inf"), count);
    let sum = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}_sum ")))
        .expect("a sum")
        .parse::<f64>()
        .expect("a number");
    assert!(sum > 0.0, "fdatasyncs take time: sum {sum}");
}

#[tokio::test]
async fn native_publishes_are_counted_in_the_confirm_histogram() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start(dir.path()).await;
    let name = "weir_publish_confirm_seconds_count";
    let before = sample(&scrape(&s).await, name);
    let addr = s.server.as_ref().expect("running").native_addr();
    let client = weir_client::Client::connect(addr.to_string())
        .await
        .expect("native connect");
    client
        .create_queue("native", weir_client::QueueOptions::default())
        .await
        .expect("create");
    for i in 0..3 {
        client
            .publish("native", vec![weir_client::Message::new(format!("m{i}"))])
            .await
            .expect("publish");
    }
    let after = sample(&scrape(&s).await, name);
    assert_eq!(
        after,
        before + 3,
        "three native publishes, each confirmed once"
    );
}
