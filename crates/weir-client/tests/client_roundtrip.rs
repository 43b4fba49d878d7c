//! End-to-end tests of the client against a real server (native protocol over TCP).

mod common;

use common::{no_extend, server};

use std::time::Duration;

use weir_client::{
    Client, ClientError, ConsumerOptions, ErrorCode, Message, ProducerOptions, QueueOptions,
};
use weir_server::RunningServer;

async fn client_with_queue(server: &RunningServer, queue: &str) -> Client {
    let client = Client::connect(server.native_addr()).await.unwrap();
    let info = client
        .create_queue(queue, QueueOptions::default())
        .await
        .unwrap();
    assert!(info.created);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_consume_ack_round_trip() {
    let (server, _dir) = server().await;
    let client = client_with_queue(&server, "orders").await;
    let published = client
        .publish(
            "orders",
            vec![
                Message::new("one").id("m1").header("h", "v").priority(1),
                Message::new("two").id("m2").key("k"),
                Message::new("one again").id("m1"),
            ],
        )
        .await
        .unwrap();
    let flags: Vec<_> = published
        .iter()
        .map(|p| (p.id.as_str(), p.duplicate))
        .collect();
    assert_eq!(flags, [("m1", false), ("m2", false), ("m1", true)]);

    let mut consumer = client.subscribe("orders", no_extend(10)).await.unwrap();
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let d = consumer.next().await.unwrap().unwrap();
        assert_eq!(d.attempt, 1);
        if d.id == "m1" {
            assert_eq!(d.headers.get("h").map(String::as_str), Some("v"));
        }
        bodies.push(d.body_str().unwrap().to_string());
        d.ack().await.unwrap();
    }
    bodies.sort();
    assert_eq!(bodies, ["one", "two"]);
    let stats = client.queue_stats("orders").await.unwrap();
    assert_eq!((stats.total, stats.acked_total), (0, 2));
    consumer.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pipelined_requests_on_one_connection() {
    let (server, _dir) = server().await;
    let client = client_with_queue(&server, "pipe").await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("m{i}");
            client.publish("pipe", vec![Message::new(body)]).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 1);
    }
    let mut received = 0;
    while received < 300 {
        let ds = client
            .receive("pipe", 1000, Duration::from_millis(500), None)
            .await
            .unwrap();
        assert!(!ds.is_empty(), "only {received} of 300 received");
        received += ds.len();
        let receipts = ds.into_iter().map(|d| d.receipt).collect();
        assert!(client
            .ack("pipe", receipts)
            .await
            .unwrap()
            .invalid
            .is_empty());
    }
    assert_eq!(received, 300);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_bound_what_a_consumer_holds() {
    let (server, _dir) = server().await;
    let client = client_with_queue(&server, "credits").await;
    let messages = (0..10).map(|i| Message::new(format!("{i}"))).collect();
    client.publish("credits", messages).await.unwrap();

    let mut consumer = client.subscribe("credits", no_extend(5)).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(consumer.next().await.unwrap().unwrap());
    }
    let more = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
    assert!(more.is_err(), "a 6th delivery arrived without credit");
    let stats = client.queue_stats("credits").await.unwrap();
    assert_eq!((stats.in_flight, stats.ready), (5, 5));

    // Acking one returns one credit: exactly one more arrives.
    held.pop().unwrap().ack().await.unwrap();
    let sixth = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await;
    held.push(sixth.expect("credit was returned").unwrap().unwrap());
    let seventh = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(seventh.is_err());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_message_is_redelivered_with_a_higher_attempt() {
    let (server, _dir) = server().await;
    let client = client_with_queue(&server, "retry").await;
    client
        .publish("retry", vec![Message::new("flaky").id("f")])
        .await
        .unwrap();
    let mut consumer = client.subscribe("retry", no_extend(1)).await.unwrap();
    let first = consumer.next().await.unwrap().unwrap();
    assert_eq!((first.id.as_str(), first.attempt), ("f", 1));
    let receipt = first.receipt().to_string();
    first.nack(Some(Duration::ZERO)).await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("redelivered")
        .unwrap()
        .unwrap();
    assert_eq!((again.id.as_str(), again.attempt), ("f", 2));
    // The first delivery's receipt is stale now.
    let stale = client.ack("retry", vec![receipt.clone()]).await.unwrap();
    assert_eq!(stale.invalid, [receipt]);
    again.ack().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_a_retryable_busy_with_retry_after() {
    let (server, _dir) = server().await;
    let client = Client::connect(server.native_addr()).await.unwrap();
    let options = QueueOptions {
        max_depth: Some(2),
        ..QueueOptions::default()
    };
    client.create_queue("small", options).await.unwrap();
    let two = vec![Message::new("a"), Message::new("b")];
    client.publish("small", two).await.unwrap();
    let err = client
        .publish("small", vec![Message::new("c")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Busy), "{err}");
    assert!(err.is_retryable());
    assert!(err.retry_after().is_some_and(|d| d > Duration::ZERO));
    // Nothing of the refused batch was stored.
    assert_eq!(client.queue_stats("small").await.unwrap().total, 2);

    // The producer retries until room appears.
    let producer = client.producer(
        "small",
        ProducerOptions {
            linger: Duration::from_millis(1),
            ..ProducerOptions::default()
        },
    );
    let pending = tokio::spawn(async move { producer.send(Message::new("c")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ds = client
        .receive("small", 1, Duration::ZERO, None)
        .await
        .unwrap();
    client
        .ack("small", vec![ds[0].receipt.clone()])
        .await
        .unwrap();
    let sent = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("producer retried")
        .unwrap();
    assert!(!sent.unwrap().duplicate);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_queue_is_not_found() {
    let (server, _dir) = server().await;
    let client = Client::connect(server.native_addr()).await.unwrap();
    let err = client
        .publish("nope", vec![Message::new("x")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    let err = client.subscribe("nope", no_extend(1)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    let err = client.queue_stats("nope").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    // An invalid name never reaches the broker: the codec refuses it.
    let err = client.queue_stats("../etc").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{err}");
    client.ping().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_batches_concurrent_sends() {
    let (server, _dir) = server().await;
    let client = client_with_queue(&server, "batched").await;
    let producer = client.producer("batched", ProducerOptions::default());
    let mut tasks = Vec::new();
    for i in 0..100 {
        let producer = producer.clone();
        tasks.push(tokio::spawn(async move {
            producer
                .send(Message::new(format!("{i}")).id(format!("id-{i}")))
                .await
        }));
    }
    for t in tasks {
        assert!(!t.await.unwrap().unwrap().duplicate);
    }
    assert_eq!(client.queue_stats("batched").await.unwrap().total, 100);
    server.shutdown().await;
}

#[tokio::test]
async fn connecting_to_nothing_says_so() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Client::connect(addr).await.unwrap_err();
    assert!(
        matches!(err, ClientError::ConnectionRefused { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("connection refused at {addr} — is `weir serve` running?")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_deliveries_keep_their_lease_while_unheld_ones_expire() {
    let (server, _dir) = server().await;
    let client = client_with_queue(&server, "long").await;
    client
        .publish("long", vec![Message::new("slow job")])
        .await
        .unwrap();
    let options = ConsumerOptions {
        prefetch: 1,
        lease: Duration::from_millis(400),
        auto_extend: true,
    };
    let mut consumer = client.subscribe("long", options).await.unwrap();
    let d = consumer.next().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Auto-extension kept the lease alive for well over its 400 ms.
    d.ack().await.unwrap();
    consumer.close().await.unwrap();

    client
        .publish("long", vec![Message::new("abandoned")])
        .await
        .unwrap();
    let ds = client
        .receive(
            "long",
            1,
            Duration::from_secs(2),
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let late = client
        .ack("long", vec![ds[0].receipt.clone()])
        .await
        .unwrap();
    assert_eq!(
        late.invalid.len(),
        1,
        "an expired lease's receipt is invalid"
    );
    server.shutdown().await;
}
