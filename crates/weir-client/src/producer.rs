//! [`Producer`]: batching with linger, and retries on `busy` with backoff, to a queue or a topic.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::batcher::{self, Entry, Sink};
use crate::{Backoff, Client, ClientError, Message, Published};

/// How a [`Producer`] (or a [`crate::StreamProducer`]) batches and retries.
#[derive(Clone, Debug)]
pub struct ProducerOptions {
    /// A batch is sent once it holds this many messages (≤ 1000)…
    pub batch_size: usize,
    /// …or this many encoded bytes…
    pub batch_bytes: usize,
    /// …or once its first message has waited this long.
    pub linger: Duration,
    /// Batches awaiting confirmation at once. With more than 1, batches may be stored out of
    /// order when one is retried.
    pub max_in_flight_batches: usize,
    /// Messages waiting to be batched before `send` waits (back pressure).
    pub queue_capacity: usize,
    /// Retry policy for `busy` refusals.
    pub backoff: Backoff,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            batch_size: 256,
            batch_bytes: 1024 * 1024,
            linger: Duration::from_millis(5),
            max_in_flight_batches: 4,
            queue_capacity: 10_000,
            backoff: Backoff::default(),
        }
    }
}

/// Where a [`Producer`] publishes: a queue (`Publish`) or a topic (`PublishTopic`: stored once,
/// every subscription gets each message).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Dest {
    Queue(Arc<str>),
    Topic(Arc<str>),
}

/// A client bound to a destination: the [`Sink`] of a producer's batches.
#[derive(Clone, Debug)]
struct Publisher {
    client: Client,
    dest: Dest,
}

impl Sink for Publisher {
    type Item = Message;
    type Out = Published;

    fn encoded_len(item: &Message) -> usize {
        item.encoded_len()
    }

    async fn send(&self, items: Vec<Message>) -> Result<Vec<Published>, ClientError> {
        match &self.dest {
            Dest::Queue(q) => self.client.publish(q, items).await,
            Dest::Topic(t) => self.client.publish_topic(t, items).await,
        }
    }

    fn describe(&self) -> String {
        match &self.dest {
            Dest::Queue(q) => format!("queue {q}"),
            Dest::Topic(t) => format!("topic {t}"),
        }
    }
}

/// Sends messages to one queue (or one topic: [`Client::topic_producer`]) in batches.
/// [`Producer::send`] resolves once the message is durable (or definitively refused); batches
/// fill to `batch_size` / `batch_bytes` or leave after `linger`; a `busy` refusal (for a topic:
/// its fullest subscription) is retried with exponential backoff and full jitter, never sooner
/// than the server's retry-after.
///
/// ```no_run
/// # async fn demo() -> Result<(), weir_client::ClientError> {
/// use weir_client::{Client, Message, ProducerOptions};
///
/// let client = Client::connect("127.0.0.1:7400").await?;
/// let producer = client.producer("orders", ProducerOptions::default());
/// let confirmed = producer.send(Message::new("order 1").id("order-1")).await?;
/// assert!(!confirmed.duplicate);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Producer {
    dest: Dest,
    tx: mpsc::Sender<Entry<Publisher>>,
}

impl Producer {
    pub(crate) fn to_queue(client: Client, queue: &str, options: ProducerOptions) -> Producer {
        Producer::start(client, Dest::Queue(Arc::from(queue)), options)
    }

    pub(crate) fn to_topic(client: Client, topic: &str, options: ProducerOptions) -> Producer {
        Producer::start(client, Dest::Topic(Arc::from(topic)), options)
    }

    fn start(client: Client, dest: Dest, options: ProducerOptions) -> Producer {
        let tx = batcher::start(
            Publisher {
                client,
                dest: dest.clone(),
            },
            options,
        );
        Producer { dest, tx }
    }

    /// The name of the queue (or topic) this producer publishes to.
    pub fn queue(&self) -> &str {
        match &self.dest {
            Dest::Queue(name) | Dest::Topic(name) => name,
        }
    }

    /// Whether this producer publishes to a topic rather than a queue.
    pub fn is_topic(&self) -> bool {
        matches!(self.dest, Dest::Topic(_))
    }

    /// Queues `message` for the next batch and waits until it is durable.
    pub async fn send(&self, message: Message) -> Result<Published, ClientError> {
        batcher::send::<Publisher>(&self.tx, message).await
    }
}
