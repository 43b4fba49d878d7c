//! Topic requests (protocol version 3): create / delete / stats of topics and subscriptions.
//! Publishing to a topic and consuming a subscription go through the queue paths
//! ([`super::source`]), not through here.

use weir_broker::{BrokerError, QueueConfig, SubscriptionStart, TopicConfig, TopicStats};
use weir_proto::frame::{self, Payload, TopicInfo};
use weir_proto::limits::MAX_LISTED_SUBSCRIPTIONS;

use super::conn::Shared;
use super::convert;
use super::handler::{blocking, Failure};

/// Answers a topic request.
pub(super) async fn answer(shared: &Shared, request: Payload) -> Result<Payload, Failure> {
    let broker = shared.broker.clone();
    match request {
        Payload::CreateTopic { topic, options } => {
            blocking(move || {
                let mut config = match broker.topic_stats(&topic) {
                    Ok(t) => t.config,
                    Err(BrokerError::NotFound { .. }) => TopicConfig::default(),
                    Err(e) => return Err(e),
                };
                if let Some(w) = options.dedup_window_ms {
                    config.dedup_window_ms = w;
                }
                let (stats, created) = broker.create_topic(&topic, config)?;
                Ok(Payload::TopicInfo(Box::new(topic_info(stats, created))))
            })
            .await
        }
        Payload::DeleteTopic { topic } => {
            blocking(move || broker.delete_topic(&topic).map(|()| Payload::Ok)).await
        }
        Payload::TopicStats { topic } => broker
            .topic_stats(&topic)
            .map(|t| Payload::TopicInfo(Box::new(topic_info(t, false))))
            .map_err(Failure::from),
        Payload::CreateSubscription {
            topic,
            subscription,
            start,
            options,
        } => {
            blocking(move || {
                let base = match broker.subscription_stats(&topic, &subscription) {
                    Ok(s) => s.config,
                    Err(BrokerError::NotFound { .. }) => QueueConfig::default(),
                    Err(e) => return Err(e),
                };
                let config = convert::apply_options(base, *options);
                let start = match start {
                    frame::SubscriptionStart::Now => SubscriptionStart::Now,
                    frame::SubscriptionStart::Oldest => SubscriptionStart::Oldest,
                };
                let (stats, created) =
                    broker.create_subscription(&topic, &subscription, config, start)?;
                Ok(Payload::QueueInfo(Box::new(convert::subscription_info(
                    &topic, stats, created,
                ))))
            })
            .await
        }
        Payload::DeleteSubscription {
            topic,
            subscription,
        } => {
            blocking(move || {
                broker
                    .delete_subscription(&topic, &subscription)
                    .map(|()| Payload::Ok)
            })
            .await
        }
        other => Err(Failure::misrouted(&other)),
    }
}

/// A topic's stats as the wire carries them: at most [`MAX_LISTED_SUBSCRIPTIONS`]
/// subscriptions, by name (the slowest is named even when it is not listed).
fn topic_info(t: TopicStats, created: bool) -> TopicInfo {
    let subscriptions = t
        .subscriptions
        .into_iter()
        .take(MAX_LISTED_SUBSCRIPTIONS)
        .map(|s| convert::subscription_info(&t.name, s, false))
        .collect();
    TopicInfo {
        name: t.name,
        created,
        dedup_window_ms: t.config.dedup_window_ms,
        published_total: t.published_total,
        duplicates_total: t.duplicates_total,
        refused_total: t.refused_total,
        disk_bytes: t.disk_bytes,
        start_offset: t.start_offset,
        next_offset: t.next_offset,
        slowest_subscription: t.slowest,
        subscriptions,
    }
}
