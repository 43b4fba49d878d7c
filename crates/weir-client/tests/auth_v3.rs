//! Grants on the frames of protocol version 3 against a real server with a token file: each new
//! request needs what its HTTP route needs (`weir_server::auth`), is refused `forbidden` without
//! it, changes nothing, and leaves the connection usable.

mod common;

use common::token;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use weir_client::{
    Client, ClientError, ErrorCode, Message, QueueOptions, ReadFrom, Record, StreamOptions,
    SubscriptionStart, Target, TaskRequest, TopicOptions,
};
use weir_server::auth::{Action, AuthConfig};
use weir_server::{RunningServer, ServerConfig};

const ADMIN: &str = "admin-token-0123456789";
const PRODUCER: &str = "producer-token-0123456789";
const CONSUMER: &str = "consumer-token-0123456789";

/// A server with the tokens above, the topic `orders` (subscription `mail`), the stream
/// `orders-log` and the queue `jobs`.
async fn server() -> (RunningServer, tempfile::TempDir) {
    let config = AuthConfig {
        tokens: vec![
            token("admin", ADMIN, &["*"], Action::Admin),
            token("producer", PRODUCER, &["orders*"], Action::Publish),
            token("consumer", CONSUMER, &["orders"], Action::Consume),
        ],
    };
    config.validate().expect("valid token file");
    let dir = tempfile::tempdir().unwrap();
    let server = weir_server::start(ServerConfig {
        auth: Some(Arc::new(config)),
        ..ServerConfig::ephemeral(dir.path())
    })
    .await
    .unwrap();
    let admin = Client::connect_with_token(server.native_addr(), ADMIN)
        .await
        .unwrap();
    admin
        .create_topic("orders", TopicOptions::default())
        .await
        .unwrap();
    admin
        .create_subscription(
            "orders",
            "mail",
            SubscriptionStart::Now,
            QueueOptions::default(),
        )
        .await
        .unwrap();
    admin
        .create_stream("orders-log", StreamOptions::default())
        .await
        .unwrap();
    admin
        .create_queue("jobs", QueueOptions::default())
        .await
        .unwrap();
    (server, dir)
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or_else(|| panic!("no server code in {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_frames_need_the_grants_of_their_http_routes() {
    let (server, _dir) = server().await;
    let mail = Target::subscription("orders", "mail");
    let wait = Duration::ZERO;

    // Publish on `orders*`: publish to the topic and append to the stream, nothing more.
    let producer = Client::connect_with_token(server.native_addr(), PRODUCER)
        .await
        .unwrap();
    producer
        .publish_topic("orders", vec![Message::new("hello")])
        .await
        .unwrap();
    producer
        .append("orders-log", vec![Record::new("r")])
        .await
        .unwrap();
    assert_eq!(
        code(producer.receive(&mail, 1, wait, None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            producer
                .create_topic("orders2", TopicOptions::default())
                .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(producer.delete_subscription("orders", "mail").await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(
            producer
                .read_stream("orders-log", 0, ReadFrom::Offset(0), 1, wait)
                .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(producer.group_status("orders-log", "g").await),
        ErrorCode::Forbidden
    );
    // Task submission names no resource: it needs publish on `*`.
    assert_eq!(
        code(
            producer
                .submit_task(TaskRequest::new("jobs", "t", Value::Null).id("t1"))
                .await
        ),
        ErrorCode::Forbidden
    );
    // Stats and task status need any valid token; the connection is still usable.
    assert_eq!(
        producer
            .topic_stats("orders")
            .await
            .unwrap()
            .published_total,
        1
    );
    assert_eq!(
        code(producer.get_task("t1", wait).await),
        ErrorCode::NotFound
    );

    // Consume on `orders` exactly: the subscription, not the stream `orders-log`.
    let consumer = Client::connect_with_token(server.native_addr(), CONSUMER)
        .await
        .unwrap();
    let got = consumer
        .receive(&mail, 10, Duration::from_secs(2), None)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let done = consumer
        .ack(&mail, vec![got[0].receipt.clone()])
        .await
        .unwrap();
    assert_eq!(done.done, 1);
    assert_eq!(
        code(
            consumer
                .publish_topic("orders", vec![Message::new("no")])
                .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(consumer.join_group("orders-log", "g", "m", None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(code(consumer.cancel_task("t1").await), ErrorCode::Forbidden);

    // Nothing refused left a trace: one message published, one record, no group, no task.
    let admin = Client::connect_with_token(server.native_addr(), ADMIN)
        .await
        .unwrap();
    let stats = admin.topic_stats("orders").await.unwrap();
    assert_eq!((stats.published_total, stats.subscriptions.len()), (1, 1));
    let log = admin.stream_stats("orders-log").await.unwrap();
    assert_eq!(log.partition_stats[0].end_offset, 1);
    assert!(log.groups.is_empty());
    assert_eq!(code(admin.get_task("t1", wait).await), ErrorCode::NotFound);
    // The admin may do all of it.
    admin
        .submit_task(TaskRequest::new("jobs", "t", Value::Null).id("t1"))
        .await
        .unwrap();
    admin.cancel_task("t1").await.unwrap();
    admin
        .join_group("orders-log", "g", "m", None)
        .await
        .unwrap();
    server.shutdown().await;
}
