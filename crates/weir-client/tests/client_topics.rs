//! Topics over the native protocol (version 3) against a real server on real files: a topic fans
//! out to two subscriptions, each consumed like a queue through the same client calls.

mod common;

use common::{no_extend, server};

use std::collections::BTreeSet;
use std::time::Duration;

use weir_client::{
    Client, ErrorCode, Message, ProducerOptions, QueueOptions, SubscriptionStart, Target,
    TopicOptions,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_fans_out_to_two_subscriptions() {
    let (server, _dir) = server().await;
    let client = Client::connect(server.native_addr()).await.unwrap();
    assert_eq!(client.server_limits().version, 3);
    let info = client
        .create_topic("news", TopicOptions::default())
        .await
        .unwrap();
    assert!(info.created);
    assert!(info.subscriptions.is_empty());

    // Published before any subscription: only "oldest" sees it.
    client
        .publish_topic("news", vec![Message::new("early").id("e")])
        .await
        .unwrap();
    let mail = client
        .create_subscription(
            "news",
            "mail",
            SubscriptionStart::Now,
            QueueOptions {
                max_attempts: Some(5),
                ..QueueOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(mail.created);
    assert_eq!(mail.name, "mail");
    assert_eq!(mail.config.max_attempts, Some(5));
    assert_eq!(
        mail.config.dead_letter_queue.as_deref(),
        Some("news.mail.dlq")
    );
    client
        .create_subscription(
            "news",
            "audit",
            SubscriptionStart::Oldest,
            QueueOptions::default(),
        )
        .await
        .unwrap();

    // The batching producer, pointed at the topic.
    let producer = client.topic_producer("news", ProducerOptions::default());
    assert!(producer.is_topic());
    let mut sends = Vec::new();
    for i in 0..5 {
        let p = producer.clone();
        sends.push(tokio::spawn(async move {
            p.send(Message::new(format!("m{i}")).id(format!("m{i}")))
                .await
        }));
    }
    for s in sends {
        assert!(!s.await.unwrap().unwrap().duplicate);
    }
    // A repeated id reaches no subscription.
    let again = client
        .publish_topic("news", vec![Message::new("m0 again").id("m0")])
        .await
        .unwrap();
    assert!(again[0].duplicate);

    // `mail`: a push consumer on the subscription target; one nack, redelivered.
    let mail_target = Target::subscription("news", "mail");
    let mut consumer = client
        .subscribe(mail_target.clone(), no_extend(10))
        .await
        .unwrap();
    assert_eq!(consumer.target(), &mail_target);
    let mut seen = BTreeSet::new();
    let mut nacked = false;
    while seen.len() < 5 {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a delivery in time")
            .unwrap()
            .unwrap();
        if !nacked && d.id == "m2" {
            assert_eq!(d.attempt, 1);
            nacked = true;
            d.nack(Some(Duration::ZERO)).await.unwrap();
            continue;
        }
        if d.id == "m2" {
            assert_eq!(d.attempt, 2);
        }
        seen.insert(d.body_str().unwrap().to_string());
        d.ack().await.unwrap();
    }
    assert_eq!(
        seen,
        (0..5).map(|i| format!("m{i}")).collect::<BTreeSet<_>>()
    );
    consumer.close().await.unwrap();

    // `audit`: pulled with receive, settled with ack / extend on the same target.
    let audit = Target::subscription("news", "audit");
    let mut bodies = Vec::new();
    while bodies.len() < 6 {
        let got = client
            .receive(&audit, 10, Duration::from_secs(2), None)
            .await
            .unwrap();
        assert!(!got.is_empty(), "audit ran dry at {bodies:?}");
        let receipts: Vec<String> = got.iter().map(|d| d.receipt.clone()).collect();
        let extended = client
            .extend(&audit, receipts.clone(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(extended.done as usize, receipts.len());
        let acked = client.ack(&audit, receipts).await.unwrap();
        assert!(acked.invalid.is_empty());
        bodies.extend(got.into_iter().map(|d| d.body));
    }
    assert_eq!(bodies[0], "early");
    // Acking on the wrong subscription finds nothing.
    let stale = client
        .ack(&mail_target, vec!["not-a-receipt".into()])
        .await
        .unwrap();
    assert_eq!(stale.invalid.len(), 1);

    let stats = client.topic_stats("news").await.unwrap();
    assert!(!stats.created);
    let names: Vec<&str> = stats
        .subscriptions
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["audit", "mail"]);
    assert_eq!((stats.published_total, stats.duplicates_total), (6, 1));
    for s in &stats.subscriptions {
        assert_eq!(s.total, 0, "{} still holds messages", s.name);
    }

    client.delete_subscription("news", "mail").await.unwrap();
    let err = client
        .receive(&mail_target, 1, Duration::ZERO, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    client.delete_topic("news").await.unwrap();
    let err = client.topic_stats("news").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_subscription_ends_its_consumers_and_bad_input_changes_nothing() {
    let (server, _dir) = server().await;
    let client = Client::connect(server.native_addr()).await.unwrap();
    client
        .create_topic("t", TopicOptions::default())
        .await
        .unwrap();
    client
        .create_subscription("t", "s", SubscriptionStart::Now, QueueOptions::default())
        .await
        .unwrap();
    let target = Target::subscription("t", "s");
    let mut consumer = client
        .subscribe(target.clone(), no_extend(4))
        .await
        .unwrap();

    // A batch with one invalid message is refused whole: nothing reaches the subscription.
    let bad = client
        .publish_topic(
            "t",
            vec![
                Message::new("fine"),
                Message::new(vec![0u8; 2 * 1024 * 1024]),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::TooLarge), "{bad}");
    let stats = client.topic_stats("t").await.unwrap();
    assert_eq!(
        (stats.published_total, stats.subscriptions[0].total),
        (0, 0)
    );
    // Unknown topic / subscription: not found, nothing created.
    let err = client
        .publish_topic("nope", vec![Message::new("x")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    let err = client
        .subscribe(Target::subscription("t", "nope"), no_extend(1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    let err = client
        .create_subscription("nope", "s", SubscriptionStart::Now, QueueOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");

    client.delete_subscription("t", "s").await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("the consumer hears of the deletion")
        .unwrap()
        .unwrap_err();
    assert_eq!(ended.code(), Some(ErrorCode::NotFound), "{ended}");
    assert!(ended.to_string().contains("subscription t/s"), "{ended}");
    assert!(consumer.next().await.is_none());
    server.shutdown().await;
}
