//! Topic calls of [`Client`] (protocol version 3): topics, subscriptions, publishing once to
//! every subscription, and a batching topic producer. A subscription is consumed exactly like a
//! queue: pass [`Target::subscription`] to [`Client::receive`], [`Client::ack`],
//! [`Client::subscribe`] and the rest.

use weir_proto::frame::Payload;

use crate::client::unexpected;
#[cfg(doc)]
use crate::Target;
use crate::{
    Client, ClientError, Message, PendingPublish, Producer, ProducerOptions, Published, QueueInfo,
    QueueOptions, SubscriptionStart, TopicInfo, TopicOptions,
};

impl Client {
    /// Creates a topic, or updates the settings given in `options` of an existing one.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), weir_client::ClientError> {
    /// use weir_client::{Client, ConsumerOptions, Message, QueueOptions, SubscriptionStart,
    ///                   Target, TopicOptions};
    ///
    /// let client = Client::connect("127.0.0.1:7400").await?;
    /// client.create_topic("news", TopicOptions::default()).await?;
    /// client
    ///     .create_subscription("news", "mail", SubscriptionStart::Now, QueueOptions::default())
    ///     .await?;
    /// client.publish_topic("news", vec![Message::new("hello")]).await?;
    /// let mut mail = client
    ///     .subscribe(Target::subscription("news", "mail"), ConsumerOptions::default())
    ///     .await?;
    /// if let Some(d) = mail.next().await {
    ///     d?.ack().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn create_topic(
        &self,
        topic: &str,
        options: TopicOptions,
    ) -> Result<TopicInfo, ClientError> {
        let payload = Payload::CreateTopic {
            topic: topic.to_string(),
            options,
        };
        match self.connection().request(payload).await? {
            Payload::TopicInfo(info) => Ok(*info),
            other => Err(unexpected("TopicInfo", &other)),
        }
    }

    /// Deletes a topic, its subscriptions and their state (dead-letter queues stay).
    pub async fn delete_topic(&self, topic: &str) -> Result<(), ClientError> {
        let payload = Payload::DeleteTopic {
            topic: topic.to_string(),
        };
        expect_ok(self.connection().request(payload).await?)
    }

    /// A topic's counters, and every subscription's (its backlog, the slowest named).
    pub async fn topic_stats(&self, topic: &str) -> Result<TopicInfo, ClientError> {
        let payload = Payload::TopicStats {
            topic: topic.to_string(),
        };
        match self.connection().request(payload).await? {
            Payload::TopicInfo(info) => Ok(*info),
            other => Err(unexpected("TopicInfo", &other)),
        }
    }

    /// Creates a subscription (and its dead-letter queue, `<topic>.<subscription>.dlq` unless
    /// `options` names another), starting at `start`; or updates the settings given in
    /// `options` of an existing one (which keeps its position). Answers the subscription's queue
    /// stats, named after the subscription.
    pub async fn create_subscription(
        &self,
        topic: &str,
        subscription: &str,
        start: SubscriptionStart,
        options: QueueOptions,
    ) -> Result<QueueInfo, ClientError> {
        let payload = Payload::CreateSubscription {
            topic: topic.to_string(),
            subscription: subscription.to_string(),
            start,
            options: Box::new(options),
        };
        match self.connection().request(payload).await? {
            Payload::QueueInfo(info) => Ok(*info),
            other => Err(unexpected("QueueInfo", &other)),
        }
    }

    /// Deletes a subscription and its state (the topic's messages stay for the others).
    pub async fn delete_subscription(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<(), ClientError> {
        let payload = Payload::DeleteSubscription {
            topic: topic.to_string(),
            subscription: subscription.to_string(),
        };
        expect_ok(self.connection().request(payload).await?)
    }

    /// Publishes one batch to a topic (all or nothing: stored once, every subscription gets each
    /// message) and returns once it is durable. A full subscription refuses the whole batch with
    /// a retryable `busy`; [`Client::topic_producer`] retries for you.
    pub async fn publish_topic(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Result<Vec<Published>, ClientError> {
        self.start_publish_topic(topic, messages).await?.await
    }

    /// [`Client::publish_topic`] without waiting for the answer (see
    /// [`Client::start_publish`]).
    pub async fn start_publish_topic(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Result<PendingPublish, ClientError> {
        let payload = Payload::PublishTopic {
            topic: topic.to_string(),
            messages: messages.into_iter().map(Message::into_wire).collect(),
        };
        Ok(PendingPublish::new(self.connection().send(payload).await?))
    }

    /// A batching producer for `topic`: the queue [`Producer`], publishing with
    /// `PublishTopic`.
    pub fn topic_producer(&self, topic: &str, options: ProducerOptions) -> Producer {
        Producer::to_topic(self.clone(), topic, options)
    }
}

/// `Ok` for an `Ok` answer, a protocol error for anything else.
pub(crate) fn expect_ok(answer: Payload) -> Result<(), ClientError> {
    match answer {
        Payload::Ok => Ok(()),
        other => Err(unexpected("Ok", &other)),
    }
}
